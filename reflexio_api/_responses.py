"""Turn an HTTP answer (or a transport failure) into a decoded body or a typed error.

Pure functions used by the client.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from reflexio_api.errors import (
    AuthError,
    ClientError,
    ReflexioError,
    TransientError,
    UnexpectedPayload,
    clean_server_text,
)

_RETRYABLE_4XX = frozenset({408, 429})
_RATE_LIMIT = re.compile(r"\d+\s+per\s+(\d+)?\s*(second|minute|hour|day)s?", re.IGNORECASE)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait per a Retry-After header (seconds or HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def rate_limit_window(detail: str) -> float | None:
    """Seconds of the limit window named in a 429 body ("5 per 1 minute" -> 60); else None.

    Reflexio 0.2.32 (slowapi) sends no Retry-After header; the window is the longest wait
    until the limit frees up, so it is a safe retry delay.
    """
    match = _RATE_LIMIT.search(detail)
    if match is None:
        return None
    return float(int(match.group(1) or 1) * _UNIT_SECONDS[match.group(2).lower()])


def transport_error(exc: httpx.RequestError, base_url: str, what: str) -> TransientError:
    """Map a connect/read/timeout failure; says whether the server may have acted."""
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    cause = type(exc).__name__
    if sent:
        advice = (
            "The request may have reached the server: check the server's state before "
            "repeating a write."
        )
    else:
        advice = "Nothing was sent. Check that the server runs and REFLEXIO_URL is right."
    return TransientError(
        f"{what} to Reflexio at {base_url} {kind} ({cause}). {advice}", maybe_applied=sent
    )


def decode(response: httpx.Response, base_url: str, what: str, accept: frozenset[int]) -> Any:
    """Check the status code and decode the JSON body, or raise the matching error."""
    code = response.status_code
    if code not in accept:
        raise status_error(response, base_url, what)
    try:
        return response.json()
    except ValueError:
        kind = _body_kind(response)
        raise UnexpectedPayload(
            f"Reflexio at {base_url} answered {what} (HTTP {code}) with {kind} instead of JSON. "
            "Check that REFLEXIO_URL points at the Reflexio API, not a proxy or web page.",
            field=None,
        ) from None


def status_error(response: httpx.Response, base_url: str, what: str) -> ReflexioError:
    """The error for a non-accepted HTTP status."""
    code = response.status_code
    detail = _detail(response)
    if code == 401:
        if "authorization" in response.request.headers:
            return AuthError(
                f"Reflexio at {base_url} rejected the API key (401). Check REFLEXIO_API_KEY.",
                status_code=code,
            )
        return AuthError(
            f"Reflexio at {base_url} requires authentication (401) and no API key is set. "
            "Set REFLEXIO_API_KEY, or reach a keyless server over loopback without proxy headers.",
            status_code=code,
        )
    if code == 403:
        return AuthError(
            f"Reflexio at {base_url} refused {what} (403: {detail}). If it names the user "
            "agent, something rewrites User-Agent; otherwise check the key's permissions.",
            status_code=code,
        )
    if code >= 500 or code in _RETRYABLE_4XX:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None and code == 429:
            retry_after = rate_limit_window(detail)
        when = f"retry after {retry_after:g} s" if retry_after is not None else "retry later"
        reason = "rate-limited" if code == 429 else "failed on"
        return TransientError(
            f"Reflexio at {base_url} {reason} {what} (HTTP {code}: {detail}); {when}. "
            "If it persists, check the server log.",
            status_code=code,
            retry_after=retry_after,
            maybe_applied=code >= 500,
        )
    if 300 <= code < 400:
        location = response.headers.get("location", "?")
        return ClientError(
            f"Reflexio at {base_url} redirected {what} to {location} (HTTP {code}). "
            "Set REFLEXIO_URL to the final address.",
            status_code=code,
            detail=detail,
        )
    return ClientError(
        f"Reflexio at {base_url} rejected {what} (HTTP {code}): {detail}. "
        "Fix the request; retrying the same request will fail again.",
        status_code=code,
        detail=detail,
    )


def _body_kind(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "")
    if "html" in content_type or response.text.lstrip().lower().startswith(("<!doctype", "<html")):
        return "an HTML page"
    if not response.content:
        return "an empty body"
    return f"a non-JSON body ({content_type or 'no content-type'})"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        kind = _body_kind(response)
        return clean_server_text(response.text, 200) if kind.startswith("a non-JSON") else kind
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "msg"):
            if key in body:
                return clean_server_text(_format_detail(body[key]))
    return clean_server_text(json.dumps(body), 200)


def _format_detail(detail: Any) -> str:
    """FastAPI detail: a string, a list of validation errors, or a dict (never echo `input`)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_format_validation_error(item) for item in detail)
    if isinstance(detail, dict):
        parts = [str(detail[key]) for key in ("error", "message", "hint") if key in detail]
        if isinstance(detail.get("validation_errors"), list):
            parts.append(_format_detail(detail["validation_errors"]))
        return "; ".join(parts) if parts else json.dumps(detail)
    return str(detail)


def _format_validation_error(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", []))
    return f"{location}: {item.get('msg', '?')}" if location else str(item.get("msg", "?"))
