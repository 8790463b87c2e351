"""Profile regeneration: the engine (core/regeneration.py) run on profiles.

End states (the flow's final Prefect state; its data is the RegenerationOutcome;
`prefect deployment run --watch` and `python -m flows.main_job` exit 1 on Failed):

- Completed: upgraded and verified by id; a dry run (gate ran, the PENDING rows it created
  deleted); or nothing to do.
- Failed "Learning is stalled: ..." (state name Stalled): the server's stall flag, or a stall
  inferred from the rerun (H2/H7). Nothing is upgraded; the stall is notified once.
- Failed "Refusing ..." / "Could not prove the listing ...": an operation in progress, stale
  PENDING rows, the lock held, or a listing that does not add up. Nothing was written.
- Failed "Gate verdict FAIL ...": the candidate's PENDING rows are deleted, CURRENT untouched.
- Failed "Upgrade rolled back after ...": something from the upgrade on failed; the rows were
  put back to the backup by id, and the message says whether they now equal it.
"""

from prefect import flow
from prefect.states import State

from core.kinds import PROFILES
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import run_regeneration
from flows.flat_params import flat_parameters
from flows.params import RegenerationParams


@flow(
    name="profile-regeneration",
    flow_run_name=run_names.profiles,
    timeout_seconds=FLOW_TIMEOUT_S["profile-regeneration"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(RegenerationParams)
def profile_regeneration(params: RegenerationParams) -> State:
    """Regenerate profiles safely (see the module docstring for every end state). One
    parameter per RegenerationParams field; the defaults are safe (only_affected_users, no
    discard, no dry run).

    dry_run: backup + rerun + gate, then the PENDING rows this run created are deleted; no
    upgrade. A rerun always writes PENDING rows, so "dry" means "leaves no trace", not
    "writes nothing".
    """
    return run_regeneration(PROFILES, params, "Profile regeneration")
