"""Create (or update) everything the deployments rely on; safe to run again.

    python -m deployments.setup [--webhook-url URL] [--webhook-kind auto|slack|teams|custom]

- Secret block `reflexio-api-key` (or the name in REFLEXIO_API_KEY_BLOCK: one per server)
  from REFLEXIO_API_KEY (skipped when unset). The flows read REFLEXIO_API_KEY from their
  environment first, then this block.
- Notification block `reflexio-alerts` from --webhook-url or REFLEXIO_ALERT_WEBHOOK_URL:
  a Slack webhook (hooks.slack.com), a Microsoft Teams workflow webhook, or any other URL as
  a Custom Webhook posting {"subject": ..., "body": ..., "text": ...}. When no URL is given
  an existing block is kept.
- Process work pool `reflexio-pool`.
- Global concurrency limit `reflexio-lock-<host>-<port>` (1 slot) for the server in
  REFLEXIO_URL: the lock every flow that writes to it holds (flows/lock.py; the flows create
  it when missing too).
- Global concurrency limits `reflexio-rate-<host>-<port>-<route>` pacing the server's
  rate-limited routes for every process (tasks/pacing.py; created when missing too).
- Automations (need the notification block):
  - a flow run of these deployments (tag `reflexio`) failed, crashed or timed out. A run
    stopped by a stall ends "Stalled", and a stall watch that cannot reach the server ends
    "Unreachable" (FAILED states of other names), so they do not notify again: the flows
    notify those once themselves;
  - such a run paused for an operator's approval (a gate WARN with on_warn=ask, or
    require_approval): it waits in the UI, and no answer is a rejection;
  - silence: stall-watch has not completed (or reported the server unreachable) for 15
    minutes, or a nightly deployment has not completed a run for 26 hours: the worker, the
    schedule or the runs themselves stopped, and nothing else would say so;
  - playbooks after profiles: a run of the profile nightly that ends Completed starts a run
    of the playbook nightly, with that deployment's parameters (prefect.yaml).
  The silences and the chain match their deployments by id (a flow or deployment of the same
  name elsewhere in the workspace cannot reset or start them), so they need the deployments:
  run setup again after `prefect deploy --all` (it says which it skipped). A run refused by
  a busy lock ends "LockBusy", which the failed-run automation does not match either.
  The events (`reflexio.gate.failed`, `reflexio.approval.decided`, ...) are there for
  automations of your own.

Idempotent: every object is looked up by name and updated in place, never duplicated.
Secrets and webhook URLs are never printed: only names and what was done.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    SlackWebhook,
)
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import BlockDocument
from prefect.events.actions import RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from deployments.catalogue import (
    FLOW_TAG,
    NIGHTLY_DEPLOYMENTS,
    NOTIFICATION_BLOCK,
    PACED_ROUTES,
    PLAYBOOK_NIGHTLY,
    PROFILE_NIGHTLY,
    STALL_WATCH_DEPLOYMENT,
    WORK_POOL,
    lock_name,
    rate_limit_name,
)
from flows.lock import ensure_lock
from flows.stall_watch import UNREACHABLE_STATE_NAME
from tasks.notify import notification_documents
from tasks.pacing import ensure_rate_limit, spacing_for
from tasks.settings import api_key_block


@dataclass
class Report:
    """What setup did, one line per object (names only, never values)."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


# --- blocks --------------------------------------------------------------------------------


def ensure_secret(api_key: str | None, report: Report) -> None:
    """Secret block holding the Reflexio API key (named by REFLEXIO_API_KEY_BLOCK, else
    'reflexio-api-key')."""
    name = api_key_block()
    if not api_key or not api_key.strip():
        report.add(f"secret block '{name}': skipped (REFLEXIO_API_KEY is not set)")
        return
    Secret(value=api_key.strip()).save(name, overwrite=True)
    report.add(f"secret block '{name}': saved (value not shown)")


def webhook_kind(url: str, kind: str = "auto") -> str:
    """slack / teams / custom, from --webhook-kind or the URL's host."""
    if kind != "auto":
        return kind
    host = (urlsplit(url).hostname or "").lower()
    if host == "hooks.slack.com":
        return "slack"
    if host.endswith(("webhook.office.com", "logic.azure.com", "powerplatform.com")):
        return "teams"
    return "custom"


def _block_for(url: str, kind: str) -> Block:
    if kind == "slack":
        return SlackWebhook(url=url)
    if kind == "teams":
        return MicrosoftTeamsWebhook(url=url)
    return CustomWebhookNotificationBlock(
        name=NOTIFICATION_BLOCK,
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n{{body}}"},
    )


def _existing_notification_blocks() -> dict[str, BlockDocument]:
    """Notification block documents named NOTIFICATION_BLOCK, by block type slug."""
    return {
        doc.block_type.slug: doc
        for doc in notification_documents(NOTIFICATION_BLOCK)
        if doc.block_type is not None
    }


def ensure_notification_block(url: str | None, kind: str, report: Report) -> object | None:
    """Save the notification block; return its document id (None when there is none)."""
    existing = _existing_notification_blocks()
    if not url:
        if not existing:
            report.add(
                f"notification block '{NOTIFICATION_BLOCK}': skipped (give --webhook-url or "
                "REFLEXIO_ALERT_WEBHOOK_URL); automations that notify are skipped too"
            )
            return None
        slug, doc = next(iter(existing.items()))
        report.add(f"notification block '{NOTIFICATION_BLOCK}' ({slug}): kept as it is")
        return doc.id
    chosen = webhook_kind(url, kind)
    block = _block_for(url, chosen)
    slug = block.get_block_type_slug()
    with get_client(sync_client=True) as client:
        for other_slug, doc in existing.items():
            if other_slug != slug:  # one name, one block: tasks/notify.py finds it by name
                client.delete_block_document(doc.id)
                report.add(f"notification block '{NOTIFICATION_BLOCK}' ({other_slug}): replaced")
    block_id = block.save(NOTIFICATION_BLOCK, overwrite=True)
    report.add(f"notification block '{NOTIFICATION_BLOCK}' ({slug}): saved (URL not shown)")
    return block_id


# --- work pool and limits ------------------------------------------------------------------


def ensure_work_pool(report: Report) -> None:
    """Process work pool for `prefect worker start --pool reflexio-pool`."""
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(WORK_POOL)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
            report.add(f"work pool '{WORK_POOL}' (process): created")
            return
    report.add(f"work pool '{WORK_POOL}' ({pool.type}): exists")


def ensure_limits(reflexio_url: str, report: Report) -> None:
    """The one-slot lock of this server that every writing flow holds, and the rate limits
    of its paced routes."""
    name = lock_name(reflexio_url)
    report.add(f"global concurrency limit '{name}' (1 slot): {ensure_lock(name)}")
    for route, per_minute in PACED_ROUTES.items():
        name = rate_limit_name(reflexio_url, route)
        done = ensure_rate_limit(name, spacing_for(per_minute))
        report.add(f"rate limit '{name}' ({per_minute}/min on the server): {done}")


# --- automations ---------------------------------------------------------------------------

PLAYBOOKS_AFTER_PROFILES = "reflexio: playbooks after profiles"
WATCHED_DEPLOYMENTS = (STALL_WATCH_DEPLOYMENT, *NIGHTLY_DEPLOYMENTS)
"""The deployments (`flow/deployment`) the silence and chain automations match by id."""


def read_deployment_ids(report: Report) -> dict[str, UUID]:
    """The ids of WATCHED_DEPLOYMENTS that are deployed; each missing one is reported."""
    ids: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for name in WATCHED_DEPLOYMENTS:
            try:
                ids[name] = client.read_deployment_by_name(name).id
            except ObjectNotFound:
                report.add(
                    f"deployment '{name}': not deployed yet, so the automations that watch or "
                    "start it are skipped: run `prefect --no-prompt deploy --all`, then this "
                    "again"
                )
    return ids


def runs_of(deployment_id: UUID) -> dict[str, str]:
    """An automation's match on flow runs of one deployment, by its id."""
    return {"prefect.resource.id": f"prefect.deployment.{deployment_id}"}


FLOW_RUN_BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}"
)
STALL_WATCH_SILENCE = timedelta(minutes=15)
NIGHTLY_SILENCE = timedelta(hours=26)
STALL_WATCH_SILENT_BODY = (
    "No run of stall-watch has completed in the last {minutes} minutes: nobody is watching "
    "for stalls. Check that a worker runs (prefect worker start --pool " + WORK_POOL + ") and "
    "that the schedule of deployment '" + STALL_WATCH_DEPLOYMENT + "' is active."
)
NIGHTLY_SILENT_BODY = (
    "No run of deployment '{deployment}' has completed in the last {hours} hours: the nightly "
    "regeneration did not run, or did not succeed. Look at its last runs in the Prefect UI; "
    "check the worker (pool " + WORK_POOL + ") and that the schedule is active (the playbook "
    "nightly starts when the profile nightly completes)."
)
APPROVAL_BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }} waits for an operator's approval: open "
    "{{ flow_run|ui_url }}, click Resume, approve or reject with your name and a reason. "
    "No answer in time counts as a rejection."
)


def automation_specs(
    block_id: object,
    deployment_ids: Mapping[str, UUID],
    stall_watch_silence: timedelta = STALL_WATCH_SILENCE,
    nightly_silence: timedelta = NIGHTLY_SILENCE,
) -> list[Automation]:
    """The automations, by name; those that match a deployment only when it is deployed
    (`deployment_ids`). The silences are parameters so tests can shorten them."""
    notify: Callable[[str, str], SendNotification] = lambda subject, body: SendNotification(  # noqa: E731
        block_document_id=block_id, subject=subject, body=body
    )
    return [
        *_flow_run_automations(notify),
        *_deployment_automations(notify, deployment_ids, stall_watch_silence, nightly_silence),
    ]


def _flow_run_automations(notify: Callable[[str, str], SendNotification]) -> list[Automation]:
    """Failed and paused runs, by the tag every deployment gives its runs (runs started
    outside the deployments, e.g. by Python with that tag, count too)."""
    return [
        Automation(
            name="reflexio: flow run failed",
            description="A Reflexio pipeline run (tag 'reflexio') failed, crashed or timed out.",
            trigger=EventTrigger(
                # Runs stopped by a stall end in a FAILED state named "Stalled"
                # (prefect.flow-run.Stalled): the stall is notified once by the flow itself.
                expect={
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Crashed",
                    "prefect.flow-run.TimedOut",
                },
                match_related={"prefect.resource.id": f"prefect.tag.{FLOW_TAG}"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[notify("Reflexio pipeline run {{ flow_run.state.name }}", FLOW_RUN_BODY)],
        ),
        Automation(
            name="reflexio: run awaits approval",
            description="A Reflexio regeneration paused for an operator's approval.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Paused"},
                match_related={"prefect.resource.id": f"prefect.tag.{FLOW_TAG}"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[notify("Reflexio run awaits approval", APPROVAL_BODY)],
        ),
    ]


def _deployment_automations(
    notify: Callable[[str, str], SendNotification],
    ids: Mapping[str, UUID],
    stall_watch_silence: timedelta,
    nightly_silence: timedelta,
) -> list[Automation]:
    """The silences, each matching its deployment by id."""

    def silence(
        name: str, deployment: str, expect: set[str], within: timedelta, subject: str, body: str
    ) -> Automation:
        return Automation(
            name=f"reflexio: {name} silent",
            description=f"No run of deployment '{deployment}' completed within the window.",
            trigger=EventTrigger(
                expect=expect,
                match_related=runs_of(ids[deployment]),
                posture=Posture.Proactive,
                threshold=1,
                within=within,
            ),
            actions=[notify(subject, body)],
        )

    found: list[Automation] = []
    if STALL_WATCH_DEPLOYMENT in ids:
        minutes = int(stall_watch_silence.total_seconds() // 60)
        found.append(
            silence(
                "stall watch",
                STALL_WATCH_DEPLOYMENT,
                {"prefect.flow-run.Completed", f"prefect.flow-run.{UNREACHABLE_STATE_NAME}"},
                stall_watch_silence,
                "Reflexio stall watch is silent",
                STALL_WATCH_SILENT_BODY.format(minutes=minutes),
            )
        )
    hours = int(nightly_silence.total_seconds() // 3600)
    for deployment in NIGHTLY_DEPLOYMENTS:
        if deployment in ids:
            body = NIGHTLY_SILENT_BODY.format(deployment=deployment, hours=hours)
            short = deployment.split("/")[1]
            subject = f"Reflexio '{short}' has not completed"
            completed = {"prefect.flow-run.Completed"}
            found.append(silence(short, deployment, completed, nightly_silence, subject, body))
    return found


def chain_specs(ids: Mapping[str, UUID]) -> list[Automation]:
    """Playbooks after profiles: a Completed run of the profile nightly (upgraded, or nothing
    to do; not a dry run, which ends "DryRun") starts the playbook nightly with that
    deployment's own parameters (prefect.yaml). Matched by the profile nightly's id."""
    if PROFILE_NIGHTLY not in ids or PLAYBOOK_NIGHTLY not in ids:
        return []
    return [
        Automation(
            name=PLAYBOOKS_AFTER_PROFILES,
            description=(
                f"A run of '{PROFILE_NIGHTLY}' ended Completed: start '{PLAYBOOK_NIGHTLY}' "
                "with its own parameters."
            ),
            trigger=EventTrigger(
                expect={"prefect.flow-run.Completed"},
                match_related=runs_of(ids[PROFILE_NIGHTLY]),
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[RunDeployment(source="selected", deployment_id=ids[PLAYBOOK_NIGHTLY])],
        )
    ]


def ensure_automations(block_id: object | None, report: Report) -> None:
    """Create each automation once; update it in place when it exists. Those that notify
    need the notification block; the chain does not."""
    ids = read_deployment_ids(report)
    specs = chain_specs(ids)
    if block_id is None:
        report.add("automations that notify: skipped (no notification block)")
    else:
        specs = automation_specs(block_id, ids) + specs
    for spec in specs:
        with get_client(sync_client=True) as client:
            existing = client.read_automations_by_name(spec.name)
        if not existing:
            spec.create()
            report.add(f"automation '{spec.name}': created")
            continue
        keep, *duplicates = existing
        for extra in duplicates:
            Automation.read(id=extra.id).delete()
        updated = Automation(**{**spec.model_dump(exclude={"id"}), "id": keep.id})
        updated.update()
        report.add(f"automation '{spec.name}': updated")


# --- command -------------------------------------------------------------------------------


def run(
    webhook_url: str | None,
    webhook_kind_name: str = "auto",
    api_key: str | None = None,
    reflexio_url: str = "http://127.0.0.1:8081",
) -> Report:
    """Do everything; return the report (names and actions only)."""
    report = Report()
    ensure_secret(api_key, report)
    block_id = ensure_notification_block(webhook_url, webhook_kind_name, report)
    ensure_work_pool(report)
    ensure_limits(reflexio_url, report)
    ensure_automations(block_id, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.setup",
        description="Create the Prefect blocks, work pool, limits and automations (idempotent).",
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="Alert webhook (Slack, Teams or any URL); default: $REFLEXIO_ALERT_WEBHOOK_URL.",
    )
    parser.add_argument(
        "--webhook-kind", choices=["auto", "slack", "teams", "custom"], default="auto"
    )
    args = parser.parse_args(argv)
    webhook = args.webhook_url or os.environ.get("REFLEXIO_ALERT_WEBHOOK_URL") or None
    try:
        report = run(
            webhook,
            args.webhook_kind,
            api_key=os.environ.get("REFLEXIO_API_KEY"),
            reflexio_url=os.environ.get("REFLEXIO_URL", "http://127.0.0.1:8081"),
        )
    except Exception as exc:  # one clear line, no trace, no secret
        print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
