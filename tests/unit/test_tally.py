"""The reliability tally counts only what held: a case whose check fails is not counted,
even when it claimed its count before the check, and `--tally-bars` then fails the run,
naming the bar; a test counts a once-per-test category once; xdist workers' counts add up.

Each case runs a small suite in a pytest subprocess with the tally plugin, its bars
lowered to fit (tests/tally.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFTEST = """
import tests.tally as tally

pytest_plugins = ["tests.tally"]
tally.BARS.clear()
tally.BARS.update({"crash points recovered": 2})
"""

SUITE = """
from tests.tally import claim

BACKUP = {"p-1": "likes tea", "p-2": "lives in Oslo", "p-3": "has a dog"}


def restore(backup, server):
    '''Put back every backed-up row the server lacks (SKIP: a broken restore).'''
    for row_id, content in backup.items():
        if row_id != SKIP:
            server.setdefault(row_id, content)
    return server


def test_a_crash_after_the_upgrade_is_repaired():
    claim("crash points recovered")  # claimed before the check, on purpose
    claim("test cases checked by id, nothing lost")
    server = restore(BACKUP, {"p-1": "likes tea"})
    assert server == BACKUP, f"rows lost: {sorted(BACKUP.keys() - server.keys())}"
    claim("test cases checked by id, nothing lost")


def test_a_crash_before_the_first_write_changes_nothing():
    server = dict(BACKUP)
    assert server == BACKUP
    claim("crash points recovered")
"""


def run_suite(pytester: pytest.Pytester, skip: str | None, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=f"SKIP = {skip!r}\n{SUITE}")
    pytester.syspathinsert(REPO)
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--tally-bars",
        *args,
    )


def tally_line(result: pytest.RunResult, category: str) -> int:
    (line,) = [line for line in result.outlines if line.startswith(category + " ")]
    return int(line.split()[-1])


@pytest.fixture(autouse=True)
def repo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_a_suite_whose_checks_hold_reaches_its_bars(pytester: pytest.Pytester):
    result = run_suite(pytester, skip=None)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert tally_line(result, "crash points recovered") == 2
    assert tally_line(result, "test cases checked by id, nothing lost") == 1  # once per test
    result.stdout.fnmatch_lines(["every bar reached"])


def test_a_restore_that_skips_a_row_is_not_counted_and_fails_the_bar(
    pytester: pytest.Pytester,
):
    result = run_suite(pytester, skip="p-2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    assert "rows lost: ['p-2']" in result.stdout.str()
    assert tally_line(result, "crash points recovered") == 1  # its early claim was dropped
    assert tally_line(result, "test cases checked by id, nothing lost") == 0
    result.stdout.fnmatch_lines(
        [
            "*1 test(s) failed or errored: this run is no proof*",
            "*BELOW THE BAR: crash points recovered: 1 proved, the bar is 2*",
        ]
    )


def test_bars_fail_a_run_whose_tests_all_passed(pytester: pytest.Pytester):
    result = run_suite(pytester, None, "-k", "before_the_first_write")
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed: the bar failed it
    result.stdout.fnmatch_lines(["*BELOW THE BAR: crash points recovered: 1 proved*"])


def test_the_counts_of_xdist_workers_add_up(pytester: pytest.Pytester):
    result = run_suite(pytester, None, "-n", "2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert tally_line(result, "crash points recovered") == 2


def test_the_pairs_bar_is_every_pair_of_writers():
    """`make test-all` must prove every writer pair, not most of them."""
    from tests.reliability.test_writer_pairs import PAIRS
    from tests.tally import BARS, PAIRS_CHECKED

    assert BARS[PAIRS_CHECKED] == len(PAIRS) == 15
