"""Helpers shared by the pipeline integration tests: a webhook receiver and a block, row
listings, and users talking to the agent during a rerun."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from local_stack.seed import conversation_turns
from local_stack.stack import LocalStack
from reflexio_api import ReflexioClient, ReflexioError, ReflexioSettings
from reflexio_api.settings import USER_AGENT


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST body and answers `status`
    (the `statuses` queued first, one per POST)."""

    def __init__(self, status: int = 200, statuses: tuple[int, ...] = ()) -> None:
        self.status = status
        self.statuses = list(statuses)
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    receiver.posts.append(json.loads(raw))
                except ValueError:
                    receiver.posts.append({"raw": raw.decode(errors="replace")})
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token-123"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, subject_part: str, timeout_s: float) -> dict[str, Any]:
        """The first post whose subject contains `subject_part`; AssertionError after
        `timeout_s`, naming what did arrive."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for post in list(self.posts):
                if subject_part in str(post.get("subject")):
                    return post
            time.sleep(0.5)
        raise AssertionError(f"no {subject_part!r} notification in {timeout_s:g} s: {self.posts}")


@contextmanager
def saved_as(stack: LocalStack, name: str, then: str) -> Iterator[LocalStack]:
    """The stack's state saved as `name` (for a module's tests to restore, ~5 s each
    instead of building it again); snapshot `then` is put back at the end."""
    stack.snapshot(name)
    try:
        yield stack
    finally:
        stack.restore(then)


def run_backup(directory: Path, kind: str = "profiles") -> Path:
    """The one backup manifest a run wrote in `directory`: its own, not the `-live` part
    that holds the rows it kept CURRENT (rows touched in the second its rerun started count
    as live, so whether that part exists depends on timing)."""
    manifests = [
        m
        for m in directory.glob(f"{kind}-*.manifest.json")
        if not m.name.endswith("-live.manifest.json")
    ]
    assert len(manifests) == 1, manifests
    return manifests[0]


def save_webhook_block(url: str) -> str:
    """Save a Custom Webhook block pointing at `url`; return its (unique) name."""
    name = f"reflexio-alerts-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name=name,
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    ).save(name)
    return name


def profile_rows(url: str, *statuses: str, api_key: str | None = None) -> list[dict[str, Any]]:
    """Every profile in these statuses, as dicts with their status stamped (CURRENT: None)."""
    with ReflexioClient(ReflexioSettings(url=url, api_key=api_key)) as client:
        out = []
        for status in statuses:
            stamp = None if status == "current" else status
            out += [
                {**p.model_dump(), "status": p.status or stamp}
                for p in client.list_profiles(status)  # type: ignore[arg-type]
            ]
        return out


Rows = dict[str, tuple[str | None, str, str]]


def rows_by_id(url: str) -> Rows:
    """Every profile on the server, every status: id -> (status, user, content)."""
    return {
        r["profile_id"]: (r["status"], r["user_id"], r["content"])
        for r in profile_rows(url, "current", "pending", "archived")
    }


def config_bytes(url: str) -> bytes:
    """The server's config exactly as GET /api/get_config sends it."""
    response = httpx.get(f"{url}/api/get_config", headers={"User-Agent": USER_AGENT}, timeout=30)
    response.raise_for_status()
    return response.content


LIVE_LINES = {
    "alice": ["I moved to Lisbon last month and now work for a fintech."],
    "newcomer": ["Hello, I'm Nadia, a pharmacist in Porto; I like crosswords."],
}


def _publish_live(
    url: str, service: str, users: tuple[str, ...], published: threading.Event
) -> None:
    """Wait until the rerun runs and has listed its users, then have an existing and a new
    user talk to the agent, with learning awaited (what the server learns lands in CURRENT,
    H14). The slot says `in_progress` before the users are listed (total 0, H18): a user who
    talked then could be one of them."""
    with ReflexioClient(ReflexioSettings(url=url, read_timeout_s=300)) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = client.get_operation_status(service)
            except ReflexioError:  # the slot can be half-written while the rerun starts
                status = None
            if status is not None and status.status == "in_progress" and status.total_users:
                break
            time.sleep(0.05)
        for user in users:
            client.publish_interaction(
                user,
                f"{user}-live",
                "chat",
                "v1",
                conversation_turns(LIVE_LINES[user]),
                wait_for_response=True,
                force_extraction=True,
            )
    published.set()


def users_talk_during_rerun(
    url: str, service: str, users: tuple[str, ...] = tuple(LIVE_LINES)
) -> threading.Event:
    """Start `users` talking to the agent once `service`'s rerun runs (in a thread); the
    event is set when every conversation was learned."""
    published = threading.Event()
    threading.Thread(
        target=_publish_live, args=(url, service, users, published), daemon=True
    ).start()
    return published
