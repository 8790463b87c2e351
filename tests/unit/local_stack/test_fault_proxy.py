"""The fault proxy against a tiny loopback upstream: each fault class, the log, the bounds."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from local_stack.fault_proxy import FaultProxy


class _Upstream:
    def __init__(self) -> None:
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.hits.append((self.command, self.path, dict(self.headers.items())))
                data = json.dumps({"success": True, "path": self.path, "n": 12345}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    up = _Upstream()
    yield up
    up.server.shutdown()
    up.server.server_close()


@pytest.fixture
def proxy(upstream: _Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url, max_lifetime_s=60) as running:
        yield running


def _client(proxy: FaultProxy, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, timeout=timeout)


def test_forwards_and_records_without_forwarding_headers(proxy, upstream):
    with _client(proxy) as client:
        answer = client.post("/api/x?a=1", json={"k": 1}, headers={"Authorization": "Bearer s"})
    assert answer.json()["path"] == "/api/x?a=1"
    _, _, headers = upstream.hits[0]
    assert headers["Host"] == upstream.url.removeprefix("http://")
    assert headers["Authorization"] == "Bearer s"
    assert not {"X-Forwarded-For", "Forwarded", "X-Real-IP"} & set(headers)
    (record,) = proxy.records
    assert (record.method, record.path, record.status, record.forwarded) == (
        "POST",
        "/api/x?a=1",
        200,
        True,
    )
    assert "Bearer" not in repr(record)


def test_a_rule_armed_by_a_path_counts_only_the_calls_after_it(proxy, upstream):
    proxy.add(fault="status", path="/api/list", armed_by="/api/rerun", times=2, status=503)
    with _client(proxy) as client:
        codes = [client.get("/api/list").status_code for _ in range(2)]
        client.post("/api/rerun")
        codes += [client.get("/api/list").status_code for _ in range(3)]
    assert codes == [200, 200, 503, 503, 200]


def test_nth_matching_call_and_bursts(proxy, upstream):
    proxy.add(fault="status", path="/api/up", nth=2, times=2, status=502)
    with _client(proxy) as client:
        codes = [client.get("/api/up").status_code for _ in range(4)]
        assert client.get("/api/other").status_code == 200
    assert codes == [200, 502, 502, 200]
    assert proxy.count("GET", "/api/up") == 2  # the two 502s never reached the upstream
    assert [r.fault for r in proxy.faults()] == ["status", "status"]


def test_429_with_retry_after(proxy):
    proxy.add(fault="status", status=429, headers={"Retry-After": "3"}, method="POST")
    with _client(proxy) as client:
        assert client.get("/a").status_code == 200  # method does not match
        answer = client.post("/a")
    assert answer.status_code == 429 and answer.headers["retry-after"] == "3"


def test_reset_after_forwarding_reaches_the_upstream_once(proxy, upstream):
    proxy.add(fault="reset", path="/api/upgrade", forward=True)
    with _client(proxy) as client, pytest.raises(httpx.TransportError):
        client.post("/api/upgrade")
    assert len(upstream.hits) == 1 and proxy.count("POST", "upgrade") == 1


def test_reset_before_forwarding_never_reaches_the_upstream(proxy, upstream):
    proxy.add(fault="reset")
    with _client(proxy) as client, pytest.raises(httpx.TransportError):
        client.get("/x")
    assert upstream.hits == [] and proxy.count() == 0


def test_timeout_holds_then_closes(proxy):
    proxy.add(fault="timeout", hold_s=2)
    with _client(proxy, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/x")


def test_delay_after_forwarding_is_observable_while_held(proxy):
    proxy.add(fault="delay", path="/slow", after=True, delay_s=1.0)
    result: dict[str, Any] = {}

    def call() -> None:
        with _client(proxy) as client:
            started = time.monotonic()
            result["status"] = client.get("/slow").status_code
            result["took"] = time.monotonic() - started

    thread = threading.Thread(target=call)
    thread.start()
    held = proxy.wait_for(lambda r: "/slow" in r.path and r.forwarded and not r.done, 5)
    assert held.upstream_status == 200
    thread.join(5)
    assert result["status"] == 200 and result["took"] >= 0.9


def test_truncated_body_fails_the_read(proxy):
    proxy.add(fault="truncate")
    with _client(proxy) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/x")


def test_html_page_and_replaced_bodies(proxy):
    proxy.add(fault="html", path="/page")
    proxy.add(fault="body", path="/typed", transform=lambda b: {**b, "n": "many"})
    with _client(proxy) as client:
        page = client.get("/page")
        typed = client.get("/typed").json()
    assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
    assert typed["n"] == "many"
    assert proxy.calls(path="/page")[0].forwarded is False


def test_close_wakes_held_requests_and_frees_the_port(upstream):
    proxy = FaultProxy(upstream.url).start()
    proxy.add(fault="timeout", hold_s=60)
    errors: list[Exception] = []

    def call() -> None:
        try:
            with _client(proxy, timeout=30) as client:
                client.get("/x")
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    proxy.wait_for(lambda r: r.path == "/x", 5)
    started = time.monotonic()
    proxy.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert errors and isinstance(errors[0], httpx.TransportError)
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url, timeout=1)


def test_a_request_held_when_the_proxy_closes_never_reaches_the_server(upstream):
    """The crash tests kill the client of a held request: closing the proxy must not then
    deliver it to the server (a re-create or delete of a dead run arriving after the test)."""
    proxy = FaultProxy(upstream.url).start()
    proxy.add(fault="delay", delay_s=60, path="/held")
    thread = threading.Thread(target=lambda: _quietly(proxy, "/held"))
    thread.start()
    proxy.wait_for(lambda r: r.path == "/held", 5)
    proxy.close()
    thread.join(10)
    assert not thread.is_alive()
    assert [path for _, path, _ in upstream.hits] == []


def _quietly(proxy: FaultProxy, path: str) -> None:
    """GET `path` through the proxy; a dropped connection is expected."""
    with _client(proxy, timeout=30) as client, contextlib.suppress(httpx.TransportError):
        client.get(path)


def test_stops_by_itself_after_its_lifetime(upstream):
    proxy = FaultProxy(upstream.url, max_lifetime_s=0.3).start()
    time.sleep(1.0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url, timeout=1)


def test_only_loopback_upstreams():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("http://example.com:80")
