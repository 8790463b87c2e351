"""The golden set's run on a scratch server: start it (or take the one given), apply the
candidate config, publish the golden conversations with learning awaited, and read back
what was learned for the golden users. Scoring is gate/golden.py's; deciding is the flow's.

The scratch server gets its LLM provider key from a Secret block, loaded here and handed
only to the server process's environment: never a task parameter, a log line or a result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE

from core.golden_set import GoldenSet
from gate.golden import Generated
from local_stack.reflexio_server import ServerStartError
from local_stack.scratch import scratch_server
from reflexio_api import ReflexioClient, ReflexioSettings
from tasks.retry import honour_retry_after, retry_options


class GoldenKeyMissing(ValueError):
    """No provider key for the scratch server: the message says how to save one."""


def provider_key(block: str) -> str:
    """The provider key in Secret block `block`; GoldenKeyMissing when there is none."""
    try:
        value = Secret.load(block).get()
    except ValueError:
        value = None
    if not isinstance(value, str) or not value.strip():
        raise GoldenKeyMissing(
            f"The golden set's scratch server needs an LLM provider key, and the Secret "
            f"block '{block}' holds none: save the key there (Prefect UI: Blocks -> Secret, "
            f"or Secret(value=...).save('{block}')), or name another block "
            "(golden_llm_key_block / --golden-llm-key-block)."
        )
    return value


@contextmanager
def golden_server(url: str | None, key_block: str, llm_base_url: str | None) -> Iterator[str]:
    """The scratch server's URL: `url` when given (nothing started), else a fresh server
    started with the provider key of `key_block`, stopped and deleted afterwards."""
    if url:
        yield url
        return
    key = provider_key(key_block)
    get_run_logger().info("Starting a scratch Reflexio server for the golden set")
    try:
        with scratch_server(key, llm_base_url) as started:
            yield started
    except ServerStartError as exc:  # its log tail should not hold the key; make sure
        raise ServerStartError(str(exc).replace(key, "***")) from None


def _scratch_settings(url: str) -> ReflexioSettings:
    """Client settings for the scratch server: no API key (the checked server's is never
    sent there); publishing waits for learning, as long as a generation may take."""
    base = ReflexioSettings(url=url, api_key=None)
    return base.model_copy(update={"read_timeout_s": base.generation_timeout_s})


@task(name="golden-generate", cache_policy=NO_CACHE, persist_result=False, **retry_options())
def generate_golden_rows(
    url: str, golden: GoldenSet, candidate: Mapping[str, Any]
) -> list[Generated]:
    """On the scratch server at `url`: erase the golden users (a run again starts clean),
    apply the candidate config, publish every golden conversation with learning awaited,
    and return the CURRENT profiles and playbooks of the golden users."""
    users = set(golden.user_ids)
    with honour_retry_after(), ReflexioClient(_scratch_settings(url)) as client:
        for user in golden.user_ids:
            client.clear_user_data(user)
        client.update_config(candidate)
        for n, conversation in enumerate(golden.conversations, start=1):
            published = client.publish_interaction(
                conversation.user_id,
                f"golden-{n}",
                conversation.source,
                conversation.agent_version,
                [m.model_dump() for m in conversation.messages],
                wait_for_response=True,
                force_extraction=True,
            )
            for warning in published.warnings:  # e.g. learning paused by a stall (H7)
                get_run_logger().warning("Golden conversation %d: %s", n, warning)
        rows = [
            Generated(p.user_id, "profiles", p.content, p.profile_id)
            for user in golden.user_ids
            for p in client.list_profiles("current", user_id=user)
        ]
        for version in golden.agent_versions:
            rows += [
                Generated(r.user_id, "playbooks", r.content, str(r.user_playbook_id))
                for r in client.list_user_playbooks(agent_version=version)
                if r.user_id in users and r.status in (None, "current")
            ]
    return rows
