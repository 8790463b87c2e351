"""Who a Reflexio server is: one key per server, however its URL is spelled."""

from __future__ import annotations

from urllib.parse import urlsplit


def server_key(url: str) -> str:
    """`host:port` of a Reflexio URL (the default port filled in), e.g. '127.0.0.1:8081'."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def server_slug(url: str) -> str:
    """The server key made safe for artifact keys and limit names: lowercase, digits, dashes."""
    return key_slug(server_key(url))


def key_slug(key: str) -> str:
    """A server key ('127.0.0.1:8081') as a slug ('127-0-0-1-8081')."""
    return "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-")


def resource_id(url: str) -> str:
    """Event resource id of a server: 'reflexio.server.<host:port>'."""
    return f"reflexio.server.{server_key(url)}"
