"""Playbook regeneration for one agent_version: the engine (core/regeneration.py) run on that
agent_version's user playbooks, then aggregation.

H6 shapes what differs from profiles, as data of the kind (core/kinds.py): a playbook rerun
tombstones the CURRENT rows it re-derives ("merged", no longer listed), so
- the backup and the gate's baseline are read BEFORE the rerun (they always are);
- the CURRENT rows are read again after the rerun to know what the upgrade will archive;
- when the gate rejects (or on a dry run) the PENDING rows are LEFT in place: deleting them
  would strand the tombstoned users further. The summary names the users left without a
  CURRENT playbook and the ways back.

Aggregation runs after a verified upgrade; its failure fails the run but does not roll the
user playbooks back (they were verified; aggregation can simply be run again).
"""

from prefect import flow
from prefect.states import State

from core.kinds import user_playbooks
from deployments.catalogue import FLOW_TIMEOUT_S
from flows import run_names
from flows._common import run_regeneration
from flows.flat_params import flat_parameters
from flows.params import PlaybookRegenerationParams


@flow(
    name="playbook-regeneration",
    flow_run_name=run_names.playbooks,
    timeout_seconds=FLOW_TIMEOUT_S["playbook-regeneration"],
    validate_parameters=True,
    persist_result=True,  # the outcome is read from the API after the run (docs)
)
@flat_parameters(PlaybookRegenerationParams)
def playbook_regeneration(params: PlaybookRegenerationParams) -> State:
    """Regenerate one agent_version's user playbooks safely, then aggregate. One parameter
    per PlaybookRegenerationParams field.

    dry_run: backup + rerun + gate, no upgrade, no aggregation. Unlike profiles, the PENDING
    rows are kept: the rerun has already tombstoned the CURRENT rows it re-derived (H6), and
    deleting the candidate would leave those users with nothing to upgrade to.
    """
    return run_regeneration(
        user_playbooks(params.agent_version),
        params,
        f"Playbook regeneration ({params.agent_version})",
    )
