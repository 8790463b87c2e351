"""One key per server, however its URL is spelled."""

from core.identity import key_slug, resource_id, server_key, server_slug


def test_server_identity():
    assert resource_id("http://127.0.0.1:8081") == "reflexio.server.127.0.0.1:8081"
    assert resource_id("https://rx.example.com") == "reflexio.server.rx.example.com:443"
    assert server_slug("http://127.0.0.1:8081") == "127-0-0-1-8081"
    assert key_slug("127.0.0.1:8081") == server_slug("http://127.0.0.1:8081")
    assert server_key("http://LOCALHOST:8081/") == server_key("http://localhost:8081")
