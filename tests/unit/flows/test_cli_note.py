"""The prompt check says when its lock and record are not shared (no PREFECT_API_URL)."""

from __future__ import annotations


def test_a_prompt_check_without_a_shared_prefect_api_says_so():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import unshared_note

    with temporary_settings({PREFECT_API_URL: None}):
        assert "PREFECT_API_URL is not set" in (unshared_note() or "")
    with temporary_settings({PREFECT_API_URL: "http://prefect.internal:4200/api"}):
        assert unshared_note() is None
