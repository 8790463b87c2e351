"""One key per server, however its URL is spelled."""

import pytest

from core.identity import key_slug, resource_id, server_key, server_slug


def test_server_identity():
    assert resource_id("http://127.0.0.1:8081") == "reflexio.server.127.0.0.1:8081"
    assert resource_id("https://rx.example.com") == "reflexio.server.rx.example.com:443"
    assert server_slug("http://127.0.0.1:8081") == "127-0-0-1-8081"
    assert key_slug("127.0.0.1:8081") == server_slug("http://127.0.0.1:8081")


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:8081",
        "http://127.0.0.1:8081/",
        "http://LOCALHOST:8081",
        "http://localhost.:8081/api/",
        "http://[::1]:8081",
        "http://127.0.1.1:8081?x=1",
        "http://user@127.0.0.1:8081",
    ],
)
def test_spellings_of_one_loopback_server_share_a_key(spelling):
    assert server_key(spelling) == "127.0.0.1:8081"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://RX.example.com", "https://rx.example.com:443/"),
        ("http://rx.example.com", "http://rx.example.com:80"),
        ("http://[2001:DB8::0001]:8081", "http://[2001:db8::1]:8081"),
    ],
)
def test_default_ports_host_case_and_ip_forms_are_one_server(one, other):
    assert server_key(one) == server_key(other)


def test_different_servers_keep_different_keys():
    keys = {
        server_key(u)
        for u in (
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8082",
            "http://rx.example.com",
            "https://rx.example.com",
            "http://10.0.0.5:8081",
        )
    }
    assert len(keys) == 5
