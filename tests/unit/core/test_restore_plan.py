"""The restore plan: what each row gets, with and without the run's touched-ids file."""

from __future__ import annotations

from typing import Any

import pytest

from core.restore_plan import (
    OnServer,
    RestoreInputError,
    RestorePlan,
    RunChanges,
    name_users,
    on_server,
    plan_restore,
    restore_problems,
)


def row(pid: str, user: str, status: str | None = None, content: str | None = None) -> dict:
    return {
        "profile_id": pid,
        "user_id": user,
        "content": content or f"{user} fact {pid}",
        "status": status,
        "source": "chat",
        "last_modified_timestamp": 1_700_000_000,
    }


USERS = ("ann", "ben", "cat", "dan")


def backup_rows() -> list[dict[str, Any]]:
    """Before the run: 3 CURRENT rows and 2 ARCHIVED rows per user."""
    rows = []
    for user in USERS:
        rows += [row(f"c-{user}-{n}", user) for n in range(3)]
        rows += [row(f"a-{user}-{n}", user, "archived") for n in range(2)]
    return rows


def after_upgrade() -> tuple[dict[str, dict], RunChanges]:
    """The server after the run's upgrade: CURRENT archived, old ARCHIVED deleted, 2 new
    rows per user promoted; and the ids the run touched."""
    server: dict[str, dict] = {}
    promoted, archived, deleted = set(), set(), set()
    for r in backup_rows():
        if r["status"] == "archived":
            deleted.add(r["profile_id"])
        else:
            server[r["profile_id"]] = {**r, "status": "archived"}
            archived.add(r["profile_id"])
    for user in USERS:
        for n in range(2):
            server[f"p-{user}-{n}"] = row(f"p-{user}-{n}", user, content=f"{user} new {n}")
            promoted.add(f"p-{user}-{n}")
    return server, RunChanges(frozenset(promoted), frozenset(archived), frozenset(deleted))


def held(rows: dict[str, dict]) -> dict[str, OnServer]:
    return on_server(rows.values())


def ids(prefix: str, users: tuple[str, ...] = USERS, count: int = 3) -> set[str]:
    return {f"{prefix}-{u}-{n}" for u in users for n in range(count)}


def test_after_an_upgrade_the_run_is_undone_and_nothing_else_is_touched():
    server, run = after_upgrade()
    server["new-ann-0"] = row("new-ann-0", "ann", content="learned since")
    server["new-eve-0"] = row("new-eve-0", "eve", "archived", content="learned since")
    server["pend-ben"] = row("pend-ben", "ben", "pending")

    plan = plan_restore(backup_rows(), held(server), run, erased=())

    assert plan.recreate == ids("a", count=2)
    assert plan.restatus == ids("c")
    assert plan.undo == ids("p", count=2)
    assert plan.newer == {"new-ann-0", "new-eve-0"}
    assert not plan.kept and not plan.erased_users and plan.pending_left == 0
    assert plan.write == ids("a", count=2) | ids("c")


def test_a_backed_up_row_changed_by_someone_else_is_kept_when_the_run_is_known():
    server, run = after_upgrade()
    server["c-ann-0"] = {**server["c-ann-0"], "content": "edited since"}
    server["c-ann-0"]["status"] = None
    run = RunChanges(run.promoted, run.archived - {"c-ann-0"}, run.deleted)

    plan = plan_restore(backup_rows(), held(server), run, erased=())

    assert plan.kept == {"c-ann-0"}
    assert "c-ann-0" not in plan.write


def test_without_the_touched_file_the_backup_wins_for_its_rows_and_the_rest_is_newer():
    server, _ = after_upgrade()

    plan = plan_restore(backup_rows(), held(server), None, erased=())

    assert plan.restatus == ids("c") and plan.recreate == ids("a", count=2)
    assert not plan.undo
    assert plan.newer == ids("p", count=2)


def test_rows_of_users_erased_since_the_backup_are_not_restored():
    server, run = after_upgrade()
    for pid in [p for p, r in server.items() if r["user_id"] == "cat"]:
        del server[pid]  # clear_user_data took every row of cat

    plan = plan_restore(backup_rows(), held(server), run, erased={"cat", "zed"})

    assert plan.erased_users == {"cat"}
    assert plan.erased_rows == 5
    others = tuple(u for u in USERS if u != "cat")
    assert plan.recreate == ids("a", others, 2) and plan.restatus == ids("c", others)
    assert plan.undo == ids("p", others, 2)


def test_a_promoted_row_the_backup_holds_as_pending_is_demoted_not_deleted():
    backup = [row("c-1", "ann"), row("p-1", "ann", "pending")]
    server = {"c-1": row("c-1", "ann", "archived"), "p-1": row("p-1", "ann")}
    run = RunChanges(frozenset({"p-1"}), frozenset({"c-1"}), frozenset())

    plan = plan_restore(backup, held(server), run, erased=())

    assert plan.restatus == {"c-1", "p-1"} and not plan.undo and not plan.newer


def test_pending_rows_are_never_deleted_nor_re_created():
    backup = [
        row("c-1", "ann"),
        row("old-pending", "ann", "pending"),
        row("kept", "ann", "pending"),
    ]
    server = {
        "c-1": row("c-1", "ann"),
        "kept": row("kept", "ann", "pending"),
        "new-pending": row("new-pending", "ben", "pending"),
    }

    plan = plan_restore(backup, held(server), None, erased=())

    assert plan == RestorePlan(pending_left=2)


def test_a_touched_file_of_another_backup_is_refused():
    server, run = after_upgrade()
    stray = RunChanges(run.promoted, run.archived | {"not-backed-up"}, run.deleted)

    with pytest.raises(RestoreInputError, match=r"not-backed-up.*belongs to another backup"):
        plan_restore(backup_rows(), held(server), stray, erased=())


def test_tombstoned_rows_are_not_on_the_server():
    assert on_server([row("m", "ann", "merged"), row("c", "ann")]).keys() == {"c"}


def test_problems_name_the_ids_that_are_not_where_the_plan_put_them():
    server, run = after_upgrade()
    server["new-1"] = row("new-1", "ann", content="learned since")
    plan = plan_restore(backup_rows(), held(server), run, erased=())
    # The writes applied, except one re-created row and one promoted row's deletion.
    done = {r["profile_id"]: r for r in backup_rows() if r["profile_id"] != "a-ann-0"}
    done["p-ben-0"] = server["p-ben-0"]
    done["new-1"] = server["new-1"]
    after = plan_restore(backup_rows(), held(done), run, erased=())

    problems = restore_problems(plan, after, done.keys(), deleted_newer=False)

    assert problems == [
        "1 row(s) still missing: a-ann-0",
        "1 row(s) still present after deletion: p-ben-0",
    ]
    assert restore_problems(plan, after, done.keys(), deleted_newer=True)[-1] == (
        "2 row(s) still present after deletion: new-1, p-ben-0"
    )
    del done["new-1"]
    assert restore_problems(plan, after, done.keys(), deleted_newer=False)[-1] == (
        "1 newer row(s) that had to be kept are gone: new-1"
    )


def test_a_correct_restore_has_no_problems():
    server, run = after_upgrade()
    plan = plan_restore(backup_rows(), held(server), run, erased=())
    restored = {r["profile_id"]: r for r in backup_rows()}
    after = plan_restore(backup_rows(), held(restored), run, erased=())
    assert restore_problems(plan, after, restored.keys(), deleted_newer=True) == []


def test_a_few_users_are_named():
    assert name_users({"b", "a"}) == "a, b"
    assert name_users({f"u{i}" for i in range(8)}) == "u0, u1, u2, u3, u4 and 3 more"


@pytest.mark.parametrize(
    "document",
    [[], {"promoted": []}, {"promoted": [1], "archived": [], "deleted": []}],
)
def test_a_document_that_is_not_a_touched_file_is_refused(document):
    with pytest.raises(RestoreInputError, match="not a touched-ids file"):
        RunChanges.parse(document, "x.touched.json.gz")


def test_a_row_gone_for_any_reason_but_the_run_is_not_re_created_and_counted():
    server, run = after_upgrade()
    del server["c-ann-0"]  # the run archived it, then ann deleted it
    del server["c-ben-1"]  # the run archived it, then TTL expired it
    untouched = row("out-ann", "ann")  # the run did not touch it; dedup superseded it since
    backup = [*backup_rows(), untouched]
    kept_current = row("kept-ann", "ann")  # the run left it CURRENT
    backup.append(kept_current)
    server["kept-ann"] = kept_current

    plan = plan_restore(backup, held(server), run, erased=())

    assert plan.gone == {"c-ann-0", "c-ben-1", "out-ann"}
    assert not plan.gone & plan.write, "nothing gone is written back"
    assert plan.recreate == ids("a", count=2), "only the rows the run deleted come back"
    assert plan.restatus == ids("c") - {"c-ann-0", "c-ben-1"}, "archived and still there"
    assert plan.counts()["gone since backup"] == 3 and not plan.gone_users


def test_without_the_touched_file_every_missing_row_is_re_created():
    server, _ = after_upgrade()
    del server["c-ann-0"]

    plan = plan_restore(backup_rows(), held(server), None, erased=())

    assert "c-ann-0" in plan.recreate and not plan.gone


def test_a_user_with_no_row_left_gets_none_of_the_rows_the_run_deleted_back():
    server, run = after_upgrade()
    for pid in [p for p, r in server.items() if r["user_id"] == "cat"]:
        del server[pid]  # clear_user_data called on the API directly: no erasure record

    plan = plan_restore(backup_rows(), held(server), run, erased=())

    cat = ids("c", ("cat",)) | ids("a", ("cat",), 2)
    assert plan.gone == cat and plan.gone_users == {"cat"}
    assert not cat & plan.write
    others = tuple(u for u in USERS if u != "cat")
    assert plan.recreate == ids("a", others, 2) and plan.restatus == ids("c", others)


def test_a_user_whose_backed_up_rows_were_all_deleted_by_the_run_gets_them_back():
    """Their old ARCHIVED rows are the only rows of theirs the backup holds: nothing says the
    user left the server, so the run's deletion is undone."""
    backup = [*backup_rows(), row("a-old-0", "old", "archived")]
    server, run = after_upgrade()
    run = RunChanges(run.promoted, run.archived, run.deleted | {"a-old-0"})

    plan = plan_restore(backup, held(server), run, erased=())

    assert "a-old-0" in plan.recreate and not plan.gone


def test_a_row_the_run_archived_is_put_back_only_while_it_is_there():
    backup = [row("c-1", "ann"), row("c-2", "ann")]
    server = {"c-1": row("c-1", "ann", "archived")}  # c-2 deleted by ann since
    run = RunChanges(frozenset(), frozenset({"c-1", "c-2"}), frozenset())

    plan = plan_restore(backup, held(server), run, erased=())

    assert plan.restatus == {"c-1"} and plan.gone == {"c-2"} and not plan.recreate


def test_a_gone_row_back_after_the_restore_is_a_problem():
    server, run = after_upgrade()
    del server["c-ann-0"]
    plan = plan_restore(backup_rows(), held(server), run, erased=())
    restored = {r["profile_id"]: r for r in backup_rows()}  # c-ann-0 resurrected
    after = plan_restore(backup_rows(), held(restored), run, erased=())

    assert restore_problems(plan, after, restored.keys(), deleted_newer=True) == [
        "1 row(s) gone since the backup are back on the server: c-ann-0"
    ]
    del restored["c-ann-0"]
    after = plan_restore(backup_rows(), held(restored), run, erased=())
    assert restore_problems(plan, after, restored.keys(), deleted_newer=True) == []


def test_the_plan_unites_the_runs_ids_once_not_once_a_row(monkeypatch):
    """`RunChanges.changed` is a union of every touched id: taken per backed-up row, the
    plan is quadratic (30,000 touched rows: 222 s instead of 0.04 s; bench/RESULTS.md)."""
    server, run = after_upgrade()
    unions = []
    union = RunChanges.changed.fget  # type: ignore[attr-defined]
    monkeypatch.setattr(RunChanges, "changed", property(lambda r: unions.append(1) or union(r)))
    plan = plan_restore(backup_rows(), on_server(server.values()), run, set())
    assert len(unions) == 1
    assert plan.restatus == run.archived and plan.recreate == run.deleted
