"""A fault-injecting HTTP proxy on loopback, between the pipelines and the Reflexio server.

Tests point ``REFLEXIO_URL`` (or ``reflexio_url``) at ``proxy.url``; every request goes on
to the upstream server unless a rule says otherwise. Rules pick calls by method, a substring
of the path (query included) and the n-th matching call (counted, with ``armed_by``, only
after a request to a given path), and inject one fault class:

| fault | what the client sees | reached the server? |
|---|---|---|
| ``reset`` | connection reset (RST) instead of an answer | ``forward=True``: yes |
| ``timeout`` | nothing for ``hold_s``, then the connection closes | ``forward=True``: yes |
| ``status`` | ``status`` (502, 503, 429), ``headers`` (Retry-After), ``body`` | ``forward``: yes |
| ``delay`` | the real answer, ``delay_s`` late (``after=True``: the server acted first) | yes |
| ``truncate`` | the real status and Content-Length, half the body, then close | yes |
| ``html`` | an HTML error page (``status``, default 200) | ``forward=True``: yes |
| ``body`` | the real status with ``body`` (or ``transform(upstream JSON)``) instead | yes |

Every request is recorded (method, path, status the client got, fault, whether it was
forwarded and the upstream status) so tests can assert e.g. "upgrade_all_profiles reached
the server exactly once": ``proxy.count("POST", "upgrade_all_profiles")``.

Bounded: binds 127.0.0.1 only and forwards only to a loopback upstream; bodies up to
``MAX_BODY`` bytes; upstream calls time out; holds wake up on ``close()`` (a request held
before the server saw it is then dropped, never forwarded: the crash tests kill its client,
and it must not change the server after the test); the proxy stops by itself after
``max_lifetime_s`` even if nobody closes it. No forwarding headers are
added (Reflexio refuses keyless requests carrying X-Forwarded-For), the Host header is the
upstream's, and the Authorization header passes through untouched (never recorded).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Fault = Literal["reset", "timeout", "status", "delay", "truncate", "html", "body"]

MAX_BODY = 64 * 1024 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)


@dataclass
class Rule:
    """Inject `fault` into calls matching (method, path substring), from the `nth` matching
    call (1-based) for `times` calls (None: every call from the nth on)."""

    fault: Fault
    path: str = ""
    method: str | None = None
    nth: int = 1
    times: int | None = 1
    forward: bool = False
    after: bool = False
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    transform: Callable[[Any], Any] | None = None
    delay_s: float = 0.0
    hold_s: float = 5.0
    armed_by: str = ""
    """When set, the rule counts calls only once a request whose path holds this has
    passed (e.g. the listing that follows a rerun request)."""
    armed: bool = False
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and self.path in path

    def window(self) -> bool:
        """After counting this call: is it one the rule applies to?"""
        if self.seen < self.nth:
            return False
        return self.times is None or self.seen < self.nth + self.times


@dataclass
class Record:
    """One request the proxy handled."""

    method: str
    path: str
    status: int | None = None
    fault: str | None = None
    forwarded: bool = False
    upstream_status: int | None = None
    done: bool = False
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    """Loopback proxy with per-request fault rules; a context manager."""

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        upstream_timeout_s: float = 120.0,
        max_lifetime_s: float = 1800.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not _loopback(parts.hostname):
            raise ValueError(f"upstream must be a loopback http:// URL, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_timeout_s = upstream_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self.rules: list[Rule] = []
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._watchdog: threading.Timer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._watchdog = threading.Timer(self.max_lifetime_s, self.close)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.1)

    def close(self) -> None:
        """Stop serving, wake every held request, free the port. Safe to call twice."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- rules -----------------------------------------------------------------------------

    def add(self, rule: Rule | None = None, **kwargs: Any) -> Rule:
        """Add a rule (a Rule, or its fields as keywords); rules are tried in order."""
        rule = rule or Rule(**kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and every record."""
        with self._lock:
            self.rules.clear()
            self.records.clear()

    @contextmanager
    def rule(self, **kwargs: Any) -> Iterator[Rule]:
        """A rule for the duration of a with block."""
        added = self.add(**kwargs)
        try:
            yield added
        finally:
            with self._lock:
                if added in self.rules:
                    self.rules.remove(added)

    def _pick(self, method: str, path: str) -> Rule | None:
        chosen = None
        with self._lock:
            for rule in self.rules:
                if rule.armed_by and not rule.armed:
                    rule.armed = rule.armed_by in path
                    continue
                if rule.matches(method, path):
                    rule.seen += 1
                    if chosen is None and rule.window():
                        chosen = rule
                        rule.fired += 1
        return chosen

    # --- the log ---------------------------------------------------------------------------

    def _record(self, record: Record) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def _update(self, record: Record, **changes: Any) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(record, name, value)
            self._changed.notify_all()

    def calls(
        self, method: str | None = None, path: str = "", *, forwarded: bool | None = None
    ) -> list[Record]:
        """Records matching method and path substring (and forwarded, when given)."""
        with self._lock:
            return [
                r
                for r in self.records
                if (method is None or r.method == method.upper())
                and path in r.path
                and (forwarded is None or r.forwarded == forwarded)
            ]

    def count(self, method: str | None = None, path: str = "") -> int:
        """How many matching requests reached the upstream server."""
        return len(self.calls(method, path, forwarded=True))

    def faults(self) -> list[Record]:
        """Every record a rule changed."""
        with self._lock:
            return [r for r in self.records if r.fault]

    def wait_for(self, predicate: Callable[[Record], bool], timeout_s: float = 60.0) -> Record:
        """Block until a record satisfies `predicate` (checked on every change); TimeoutError."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.is_set():
                    raise TimeoutError("no matching request reached the fault proxy in time")
                self._changed.wait(min(left, 0.5))

    @property
    def closed(self) -> bool:
        """Whether close() was called (or the lifetime ran out)."""
        return self._closing.is_set()

    def hold(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when the proxy closes."""
        self._closing.wait(seconds)

    # --- upstream --------------------------------------------------------------------------

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout_s
        )
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            sent["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            data = response.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise ValueError("upstream body larger than the proxy's bound")
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, kept, data
        finally:
            conn.close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fault-proxy"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def _handle(self) -> None:
            method, path = self.command, self.path
            record = Record(method, path)
            proxy._record(record)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(record, 413, [], b"")
                proxy._update(record, done=True)
                return
            body = self.rfile.read(length) if length else b""
            rule = proxy._pick(method, path)
            if rule is not None:
                record.fault = rule.fault
            try:
                self._serve(rule, record, body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                proxy._update(record, done=True)

        def _upstream(self, record: Record, body: bytes) -> tuple[int, list, bytes]:
            headers = {k: v for k, v in self.headers.items()}
            try:
                status, headers_out, data = proxy.forward(self.command, self.path, headers, body)
            except (OSError, http.client.HTTPException, ValueError):
                proxy._update(record, forwarded=True, upstream_status=None)
                raise
            proxy._update(record, forwarded=True, upstream_status=status)
            return status, headers_out, data

        def _serve(self, rule: Rule | None, record: Record, body: bytes) -> None:
            if rule is None:
                try:
                    status, headers, data = self._upstream(record, body)
                except (OSError, http.client.HTTPException, ValueError):
                    unreachable = b"upstream unreachable"
                    self._send(record, 502, [("Content-Type", "text/plain")], unreachable)
                    return
                self._send(record, status, headers, data)
                return
            fault = rule.fault
            if fault == "delay" and not rule.after:
                proxy.hold(rule.delay_s)
                if proxy.closed:  # never forwarded late: its client may be long dead
                    self.close_connection = True
                    return
            upstream = None
            if rule.forward or fault in ("delay", "truncate", "body"):
                upstream = self._upstream(record, body)
            if fault == "reset":
                self._reset()
            elif fault == "timeout":
                proxy.hold(rule.hold_s)
                self.close_connection = True
            elif fault == "status":
                payload = rule.body if rule.body is not None else {"error": "injected fault"}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = [("Content-Type", "application/json"), *rule.headers.items()]
                self._send(record, rule.status, headers, data)
            elif fault == "html":
                status = rule.status if rule.status != 503 else 200
                self._send(record, status, [("Content-Type", "text/html")], HTML_PAGE)
            elif fault == "delay":
                assert upstream is not None
                if rule.after:
                    proxy.hold(rule.delay_s)
                self._send(record, *upstream)
            elif fault == "truncate":
                assert upstream is not None
                status, headers, data = upstream
                proxy._update(record, status=status)
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif fault == "body":
                assert upstream is not None
                status, _headers, data = upstream
                new = rule.body
                if rule.transform is not None:
                    new = rule.transform(json.loads(data))
                raw = new if isinstance(new, bytes) else json.dumps(new).encode()
                self._send(record, status, [("Content-Type", "application/json")], raw)

        def _send(
            self, record: Record, status: int, headers: list[tuple[str, str]], data: bytes
        ) -> None:
            """Record the status first, so a client that has its answer sees it in the log."""
            proxy._update(record, status=status)
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _reset(self) -> None:
            """Close with RST (SO_LINGER 0), so the client sees a connection reset."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    return Handler
