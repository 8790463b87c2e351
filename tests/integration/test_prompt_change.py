"""The prompt check CI runs: `reflexio-pipelines prompt-check`, against the real server.

Each case checks the exit code, the report, and that the server was left as the verdict
says: config restored (byte for byte) and no PENDING rows unless promoted, and no record of
the check left on the Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.check_record import load_record
from tests.integration.pipeline_helpers import config_bytes, profile_rows

pytestmark = pytest.mark.integration

CANDIDATE = """\
profile_extractor_config:
  extraction_definition_prompt: Extract the user's stated preferences and constraints only.
  manual_trigger: false
"""


def _config_and_counts(url: str) -> tuple[bytes, tuple[int, int]]:
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        stats = client.get_profile_statistics()
    return config_bytes(url), (stats.current_count, stats.pending_count)


def _run(
    stack: LocalStack, tmp_path: Path, *extra: str, config_text: str | None = CANDIDATE
) -> tuple[int, str]:
    """Run the CLI on a candidate file holding config_text (None: no file at all)."""
    config = tmp_path / "candidate.yaml"
    if config_text is not None:
        config.write_text(config_text)
    report = tmp_path / "report.md"
    code = main(
        [
            "prompt-check",
            "--config",
            str(config),
            "--reflexio-url",
            stack.url,
            "--backup-dir",
            str(tmp_path / "backups"),
            "--report",
            str(report),
            *extra,
        ]
    )
    return code, report.read_text() if report.exists() else ""


def test_a_passing_dry_check_exits_0_and_leaves_the_server_as_it_was(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    config_before, counts_before = _config_and_counts(seeded_stack.url)

    code, report = _run(seeded_stack, tmp_path)

    assert code == 0, report
    assert report.startswith("# Prompt check: PASS")
    assert "Gate" in report and "retention" in report
    assert summary.read_text() == report
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
    assert load_record(seeded_stack.url) is None


def test_a_failing_gate_exits_1_restores_the_config_and_discards_the_candidate(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    config_before, counts_before = _config_and_counts(seeded_stack.url)
    seeded_stack.llm.configure(style="junk")

    code, report = _run(seeded_stack, tmp_path)

    assert code == 1
    assert report.startswith("# Prompt check: FAIL")
    assert "The check undid itself: put the original config back" in report
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
    assert load_record(seeded_stack.url) is None


def test_a_stall_exits_2_before_the_config_is_touched(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    config_before, counts_before = _config_and_counts(seeded_stack.url)
    seeded_stack.set_stall("billing_error", "quota exhausted")
    calls_before = sum(seeded_stack.llm.state.run_calls().values())

    code, report = _run(seeded_stack, tmp_path)

    assert code == 2
    assert "Learning is stalled: billing_error" in report
    assert sum(seeded_stack.llm.state.run_calls().values()) == calls_before
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("profile_extractor_config: [unclosed", "is not valid YAML"),
        ("- just\n- a list\n", "must be a non-empty mapping"),
    ],
)
def test_bad_config_files_exit_3_with_a_clear_message_and_no_server_writes(
    stack: LocalStack,
    prefect_api: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    expected: str,
) -> None:
    config_before, counts_before = _config_and_counts(stack.url)

    code, report = _run(stack, tmp_path, config_text=content)

    assert code == 3
    assert expected in report + capsys.readouterr().out
    assert _config_and_counts(stack.url) == (config_before, counts_before)


def test_promote_with_a_pass_upgrades_and_keeps_the_candidate_config(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    code, report = _run(seeded_stack, tmp_path, "--promote")

    assert code == 0, report
    with ReflexioClient(ReflexioSettings(url=seeded_stack.url)) as client:
        config_after = client.get_config()
    assert config_after["profile_extractor_config"]["extraction_definition_prompt"].startswith(
        "Extract the user's stated preferences"
    )
    _, (current_after, pending_after) = _config_and_counts(seeded_stack.url)
    assert pending_after == 0
    assert current_after > 0
    assert "promoted" in report
    assert load_record(seeded_stack.url) is None


def _playbooks(url: str) -> tuple[set[tuple[str | None, str]], int]:
    """(user, content) of CURRENT v1 playbooks, and how many PENDING rows there are."""
    with ReflexioClient(ReflexioSettings(url=url)) as client:
        rows = client.list_user_playbooks(agent_version="v1")
    current = {(r.user_id, r.content) for r in rows if r.status in (None, "current")}
    return current, sum(r.status == "pending" for r in rows)


def _profile_ids(url: str) -> dict[str, set[str]]:
    return {s: {r["profile_id"] for r in profile_rows(url, s)} for s in ("current", "archived")}


def test_promote_with_a_failing_playbook_gate_upgrades_neither_kind(
    seeded_stack: LocalStack, prefect_api: None, tmp_path: Path
) -> None:
    """The profile gate passes, the playbook gate fails (a user whose CURRENT playbook no
    interaction backs would lose it): nothing is promoted, profiles included, and the
    playbooks the rerun tombstoned (H6) are back."""
    with ReflexioClient(ReflexioSettings(url=seeded_stack.url)) as client:
        client.add_user_playbooks(
            [
                {
                    "user_id": "ghost-user",
                    "agent_version": "v1",
                    "request_id": "ghost-request",
                    "content": "Answer the ghost user in haiku.",
                    "trigger": "when the ghost user asks anything",
                }
            ]
        )
    config_before, counts_before = _config_and_counts(seeded_stack.url)
    ids_before = _profile_ids(seeded_stack.url)
    playbooks_before = _playbooks(seeded_stack.url)
    assert ("ghost-user", "Answer the ghost user in haiku.") in playbooks_before[0]

    code, report = _run(seeded_stack, tmp_path, "--agent-version", "v1", "--promote")

    assert code == 1, report
    assert "## profiles: candidate_kept" in report, report
    assert "## playbooks v1: gate_blocked" in report, report
    assert _profile_ids(seeded_stack.url) == ids_before
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
    assert _playbooks(seeded_stack.url) == playbooks_before
    assert load_record(seeded_stack.url) is None


def test_a_check_that_regenerates_nothing_is_bad_input_and_writes_nothing(
    stack: LocalStack, prefect_api: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_before, counts_before = _config_and_counts(stack.url)

    code, report = _run(stack, tmp_path, "--no-profiles", "--promote")

    assert code == 3
    output = capsys.readouterr().err
    assert "nothing to regenerate" in output and "--agent-version" in output
    assert "Traceback" not in output and "input_value" not in output
    assert report.startswith("# Prompt check: BAD_INPUT")
    assert _config_and_counts(stack.url) == (config_before, counts_before)
    assert load_record(stack.url) is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [((), 1), pytest.param(("--allow-warn",), 0, marks=pytest.mark.slow)],  # CI: the refusal
)
def test_a_warning_gate_fails_the_check_unless_allowed_and_never_waits(
    seeded_stack: LocalStack,
    prefect_api: None,
    tmp_path: Path,
    extra: tuple[str, ...],
    expected: int,
) -> None:
    policy = tmp_path / "warn-policy.yaml"
    policy.write_text("min_chars: 2000\nhygiene_fail_share: 1.0\n")  # warns, never fails
    config_before, counts_before = _config_and_counts(seeded_stack.url)

    code, report = _run(seeded_stack, tmp_path, "--gate-policy", str(policy), *extra)

    assert code == expected, report
    assert "Evaluation gate (profiles): WARN" in report
    assert _config_and_counts(seeded_stack.url) == (config_before, counts_before)
