"""The reliability suite's tally: what a run of the suite proved, and the bars it must reach.

A test claims what it proves (`claim`, or the `measured` fixture's counter) anywhere in its
body; the claims count only when the test passed, setup, call and teardown, so a claim
written before a check that then fails is dropped. A test proves a case at most once per
category in `ONCE_PER_TEST` however many helpers it calls. The counts print at the end of
the run, under a warning when a test failed (a failed run proves nothing); `--tally-bars`
(what `make test-all` passes) makes the run fail when a count is below its bar in `BARS`.

A pytest plugin (registered by tests/conftest.py). Under pytest-xdist each worker counts
its own tests and hands the counts to the controller when it finishes, which adds them up.
"""

from __future__ import annotations

from collections import Counter

import pytest

CHECKED_BY_ID = "test cases checked by id, nothing lost"
PAIRS_CHECKED = "writer pairs with real writes, rows checked by id"
CATEGORIES = (
    "fault x call point cases",
    "faults fired",
    "crash points recovered",
    "bad inputs sent to the server, nothing written",
    "bad inputs refused before any request",
    "pairs of writers started at once",
    PAIRS_CHECKED,
    "runs scanned for secrets",
    CHECKED_BY_ID,
)
ONCE_PER_TEST = frozenset({CHECKED_BY_ID})
"""Categories a test counts once, however many of its checks claim them."""
BARS = {
    "fault x call point cases": 50,
    "crash points recovered": 6,
    "bad inputs sent to the server, nothing written": 30,
    PAIRS_CHECKED: 15,  # every pair of the six writers (test_writer_pairs.py)
}
"""The least `make test-all` must prove (`--tally-bars`); CI's subset is printed, not held
to them."""

MEASURED: Counter[str] = Counter()
"""What this process's passed tests proved, by category."""
_claimed: Counter[str] = Counter()
"""What the running test has claimed so far."""
_call_passed = False
"""Whether the running test's setup and call passed (its claims count if teardown does too)."""


def _check_known(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown tally category {category!r}; one of {CATEGORIES}")


def claim(category: str, cases: int = 1) -> None:
    """The running test proves `cases` more of `category` (counted if it passes)."""
    _check_known(category)
    _claimed[category] += cases


def claimed() -> Counter[str]:
    """The running test's claims (the `measured` fixture hands this out)."""
    return _claimed


def _commit() -> None:
    for category, cases in _claimed.items():
        _check_known(category)  # claims made through the `measured` fixture's counter
        MEASURED[category] += min(cases, 1) if category in ONCE_PER_TEST else cases


def shortfalls(measured: Counter[str], bars: dict[str, int]) -> list[str]:
    """One line per category below its bar."""
    return [
        f"{category}: {measured.get(category, 0)} proved, the bar is {bar}"
        for category, bar in bars.items()
        if measured.get(category, 0) < bar
    ]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tally-bars",
        action="store_true",
        help="Fail the run when the reliability tally is below its bars (tests/tally.py).",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count a test's claims once its setup, call and teardown all passed."""
    global _call_passed
    if report.when == "setup":
        _claimed.clear()
        _call_passed = False
    elif report.when == "call":
        _call_passed = report.passed
    elif report.when == "teardown":
        if report.passed and _call_passed:
            _commit()
        _claimed.clear()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand the counts to the controller. Elsewhere: hold the bars."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["measured"] = dict(MEASURED)
        return
    held = session.config.getoption("--tally-bars")
    if held and session.exitstatus == pytest.ExitCode.OK and shortfalls(MEASURED, BARS):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_testnodedown(node: object, error: object) -> None:
    """In the xdist controller: add a finished worker's counts."""
    MEASURED.update(getattr(node, "workeroutput", {}).get("measured", {}))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Print the counts of a run that included reliability tests, and any bar missed."""
    bars = config.getoption("--tally-bars")
    if not MEASURED and not bars:
        return
    terminalreporter.section("reliability: proved by this run")
    failed = len(terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", []))
    if failed:
        terminalreporter.write_line(
            f"{failed} test(s) failed or errored: this run is no proof; the counts are of the "
            "tests that passed",
            red=True,
        )
    for category in CATEGORIES:
        terminalreporter.write_line(f"{category:48} {MEASURED.get(category, 0)}")
    if not bars:
        terminalreporter.write_line("(a subset: the bars are held by `make test-all`)")
        return
    missed = shortfalls(MEASURED, BARS)
    for line in missed:
        terminalreporter.write_line(f"BELOW THE BAR: {line}", red=True)
    if not missed:
        terminalreporter.write_line("every bar reached")
