"""Who a Reflexio server is: one key per server, however its URL is spelled."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


def _host(hostname: str) -> str:
    """The host as one spelling: lowercase (urlsplit does that), no trailing dot, an IP in
    its canonical form, and every loopback name (`localhost`, 127.x.y.z, ::1) as 127.0.0.1.
    Merging loopback names errs on the safe side: a lock shared by two servers only makes
    one wait, a lock split between two spellings of one server lets both write."""
    host = hostname.rstrip(".")
    if host == "localhost":
        return LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return LOOPBACK if address.is_loopback else str(address)


def server_key(url: str) -> str:
    """`host:port` of a Reflexio URL, e.g. '127.0.0.1:8081': the default port of the scheme
    filled in; path, query, user info and trailing slash ignored; the host normalised."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{_host(parts.hostname or '')}:{port}"


def server_slug(url: str) -> str:
    """The server key made safe for artifact keys and limit names: lowercase, digits, dashes."""
    return key_slug(server_key(url))


def key_slug(key: str) -> str:
    """A server key ('127.0.0.1:8081') as a slug ('127-0-0-1-8081')."""
    return "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-")


def resource_id(url: str) -> str:
    """Event resource id of a server: 'reflexio.server.<host:port>'."""
    return f"reflexio.server.{server_key(url)}"
