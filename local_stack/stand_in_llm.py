"""A stand-in for an OpenAI-style LLM provider and Reflexio's embedding service.

The Reflexio server sends every chat and embedding call here (see reflexio-server.md §3).
Tests steer it: switch it into provider error modes (401, 402/429 quota, 429 rate limit,
500) for every call or for a stable share of them (``error_fraction``), add a delay, or
script what extraction returns (normal, nothing, duplicates, junk, a changed wording, or
user turns with given words forgotten when the prompt holds a given text: ``forget``). It
answers each structured-output schema the server asks for with a valid instance built from
the prompt, so the real server's pipeline runs end to end.

It runs in-process (tests) or as its own process (the main-job command); either way it can
be steered over HTTP at ``/_control``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, get_args

from local_stack.stand_in_answers import OutputStyle, answer, in_error_share, without_turns

EMBEDDING_MODEL = "local/minilm-l6-v2"
EMBEDDING_DIMENSIONS = 512

Mode = Literal["ok", "auth_error", "billing_error", "rate_limit", "server_error"]
_CHOICES: dict[str, tuple[str, ...]] = {"mode": get_args(Mode), "style": get_args(OutputStyle)}
_SETTINGS = ("mode", "error_fraction", "delay_s", "style", "forget", "forget_when")

_ERROR_REPLIES: dict[str, tuple[int, dict[str, Any]]] = {
    "auth_error": (
        401,
        {
            "message": "Incorrect API key provided: sk-****. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "billing_error": (
        429,
        {
            "message": "You exceeded your current quota, please check your plan and "
            "billing details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
    ),
    "rate_limit": (
        429,
        {
            "message": "Rate limit reached for requests.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "server_error": (
        500,
        {"message": "The server had an error.", "type": "server_error", "code": None},
    ),
}


BACKGROUND_SCHEMAS = frozenset({"PlaybookAggregationOutput", "embeddings"})
"""What the server's background aggregation asks for (a suite's server got 2 of each
during a stalled run that sent nothing: `make test-all`, 2026-12-07)."""


@dataclass
class StandInState:
    """What the stand-in does next; every field can be changed while it runs."""

    mode: Mode = "ok"
    error_fraction: float = 1.0
    """Share of chat calls that get ``mode``'s error; the rest are answered normally."""
    delay_s: float = 0.0
    style: OutputStyle = "normal"
    forget: list[str] = field(default_factory=list)
    """User turns containing any of these words (any case) are not learned from: the facts
    a model with a worse prompt misses."""
    forget_when: str = ""
    """Forget only in calls whose prompt contains this text (e.g. a candidate's extraction
    prompt); empty: in every call."""
    calls: Counter[str] = field(default_factory=Counter)

    def run_calls(self) -> dict[str, int]:
        """The chat calls except the playbook aggregation, which the server's own scheduler
        makes on its clock (it polls every 10 s and retries deferred work minutes later,
        whatever the client does), and without the embeddings, which that scheduler makes
        too. A test that proves a run made no LLM call compares these: a rerun or a publish
        always makes chat calls (extraction), but a call that only embeds is not seen."""
        return {name: n for name, n in self.calls.items() if name not in BACKGROUND_SCHEMAS}

    def public(self) -> dict[str, Any]:
        """The state as JSON-ready data."""
        data = asdict(self)
        data["calls"] = dict(self.calls)
        return data


class StandInLLM:
    """The stand-in server: start it, steer it, stop it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = StandInState()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Its root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandInLLM:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def configure(self, **changes: Any) -> None:
        """Change mode, error_fraction, delay_s or style. An unknown name or a bad value
        raises ValueError and changes nothing."""
        for name, value in changes.items():
            _check_setting(name, value)
        with self._lock:
            for name, value in changes.items():
                setattr(self.state, name, value)

    def reset(self) -> None:
        """Back to answering normally, with no delay, and zeroed counters."""
        with self._lock:
            self.state = StandInState()

    def count(self, schema: str) -> None:
        """Record one call for a schema name."""
        with self._lock:
            self.state.calls[schema] += 1


def _make_handler(llm: StandInLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the server's own logs say what it asked."""

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(
                    200,
                    {
                        "status": "ok",
                        "active_model": EMBEDDING_MODEL,
                        "configured_model": EMBEDDING_MODEL,
                        "configured_reranker_model": None,
                        "workload": "shared",
                        "reranker_enabled": False,
                        "reranker_ready": False,
                    },
                )
            elif self.path == "/health/model":
                self._json(
                    200,
                    {
                        "model": EMBEDDING_MODEL,
                        "revision": "stand-in",
                        "dimensions": EMBEDDING_DIMENSIONS,
                    },
                )
            elif self.path == "/_control":
                self._json(200, llm.state.public())
            else:
                self._json(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            body = self._read_json()
            if self.path == "/_control":
                try:
                    if body.get("reset"):
                        llm.reset()
                    llm.configure(**{k: v for k, v in body.items() if k != "reset"})
                except ValueError as exc:
                    self._json(400, {"error": str(exc)})
                    return
                self._json(200, llm.state.public())
                return
            if self.path.endswith("/embeddings"):
                texts = body.get("input", [])
                texts = [texts] if isinstance(texts, str) else texts
                llm.count("embeddings")
                data = [
                    {"object": "embedding", "index": i, "embedding": embed(str(t))}
                    for i, t in enumerate(texts)
                ]
                self._json(200, {"object": "list", "data": data, "model": EMBEDDING_MODEL})
                return
            if self.path.endswith("/chat/completions"):
                self._chat(body)
                return
            self._json(404, {"error": f"no route {self.path}"})

        def _chat(self, body: dict[str, Any]) -> None:
            state = llm.state
            if state.delay_s:
                time.sleep(state.delay_s)
            schema = _schema_name(body)
            llm.count(schema or "text")
            prompt = _prompt_text(body)
            if state.mode != "ok" and in_error_share(prompt, state.error_fraction):
                status, error = _ERROR_REPLIES[state.mode]
                self._json(status, {"error": error})
                return
            if state.forget and state.forget_when in prompt:
                prompt = without_turns(prompt, state.forget)
            content = answer(schema, _schema(body), prompt, state.style)
            if body.get("stream"):
                self._stream(body, content)
            else:
                self._json(200, _completion(body, content))

        def _stream(self, body: dict[str, Any], content: str) -> None:
            chunks = [
                _chunk(body, {"role": "assistant", "content": content}, None),
                _chunk(body, {}, "stop"),
            ]
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            raw = payload.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _read_json(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                data = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return {}
            return data if isinstance(data, dict) else {}

        def _json(self, status: int, data: Any) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


def _check_setting(name: str, value: Any) -> None:
    """Raise ValueError naming the setting when it is unknown or its value is not allowed."""
    if name not in _SETTINGS:
        raise ValueError(f"unknown stand-in setting {name!r}: use {', '.join(_SETTINGS)}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(
            f"stand-in {name} must be one of {', '.join(_CHOICES[name])}: got {value!r}"
        )
    if name == "error_fraction" and not _number_within(value, 0.0, 1.0):
        raise ValueError(f"stand-in error_fraction must be a number from 0 to 1: got {value!r}")
    if name == "forget" and not (
        isinstance(value, list) and all(isinstance(w, str) and w.strip() for w in value)
    ):
        raise ValueError(f"stand-in forget must be a list of non-empty words: got {value!r}")
    if name == "forget_when" and not isinstance(value, str):
        raise ValueError(f"stand-in forget_when must be a string: got {value!r}")
    if name == "delay_s" and not _number_within(value, 0.0, math.inf):
        raise ValueError(f"stand-in delay_s must be a number >= 0: got {value!r}")


def _number_within(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def embed(text: str) -> list[float]:
    """A deterministic bag-of-words vector: similar texts get similar vectors."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "big") % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    if norm == 1.0 and not any(vector):
        vector[0] = 1.0
    return [v / norm for v in vector]


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("schema") or {}


def _schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-standin"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "gpt-standin"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
