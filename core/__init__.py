"""The rules of the pipelines, free of Prefect and HTTP: regeneration kinds, expected state
and id-level verification, rollback plans, the backup format, stall inference."""
