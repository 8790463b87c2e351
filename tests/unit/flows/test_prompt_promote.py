"""The prompt check promotes every kind or none: the upgrade step against in-memory servers,
with the check's record on a throwaway Prefect API."""

from __future__ import annotations

from pathlib import Path

from core.outcome import Decision
from flows.prompt_change import KindRun, _promote
from tasks.check_record import delete_record, load_record, save_record
from tests.unit.core.test_check_undo import record
from tests.unit.flows.fake_server import FakeOps
from tests.unit.flows.test_engine import engine, playbooks_ops, profiles_ops

URL = "http://127.0.0.1:2991"
STATUSES = ("current", "archived")


def _gated(tmp_path: Path, profiles: FakeOps, playbooks: FakeOps) -> list[KindRun]:
    runs = [
        KindRun("profiles", engine(profiles, tmp_path)),
        KindRun("playbooks v1", engine(playbooks, tmp_path)),
    ]
    for run in runs:
        assert run.gate().decision is Decision.CANDIDATE_KEPT
    return runs


def test_a_failed_playbook_upgrade_rolls_the_upgraded_profiles_back(prefect_api, tmp_path):
    profiles, playbooks = profiles_ops(), playbooks_ops(upgrade_skips={"503"})
    before = {s: profiles.ids(s) for s in STATUSES}
    engines = _gated(tmp_path, profiles, playbooks)
    check = record(agent_version="v1", promote=True)

    promoted, kept_record, runs = _promote(URL, engines, check, [])

    assert not promoted
    decisions = {name: outcome.decision for name, outcome in runs}
    assert decisions == {"profiles": Decision.ROLLED_BACK, "playbooks v1": Decision.ROLLED_BACK}
    assert "playbooks v1 could not be upgraded (rolled_back)" in dict(runs)["profiles"].message
    assert {s: profiles.ids(s) for s in STATUSES} == before and profiles.ids("pending") == set()
    assert kept_record.upgrades == ()  # both kinds are back: nothing for the undo to restore
    saved = load_record(URL)  # what a crash during the playbook upgrade would have left
    assert saved is not None and [u.kind for u in saved.upgrades] == ["profiles", "playbooks"]
    assert saved.upgrade("profiles").backup == str(
        Path(engines[0].engine.summary.backup_path).resolve()
    )
    delete_record(URL)


def test_both_kinds_are_promoted_when_both_upgrades_verify(prefect_api, tmp_path):
    profiles, playbooks = profiles_ops(), playbooks_ops()
    engines = _gated(tmp_path, profiles, playbooks)
    save_record(URL, record(agent_version="v1", promote=True))

    promoted, kept_record, runs = _promote(URL, engines, record(agent_version="v1"), [])

    assert promoted
    assert {o.decision for _, o in runs} == {Decision.UPGRADED}
    assert profiles.ids("pending") == set() and playbooks.ids("pending") == set()
    assert {u.kind for u in kept_record.upgrades} == {"profiles", "playbooks"}
    delete_record(URL)
