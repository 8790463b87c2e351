"""Backups on S3 (an S3-compatible server on loopback: moto's server mode), end to end on the
real Reflexio server: a profile regeneration with backup_dir="s3://..." (credentials from
the environment) leaves its backup in the bucket and prunes the server's old backups; the
restore reads it back through a RemoteFileSystem block (credentials from the block)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import fsspec
import pytest
from moto.server import ThreadedMotoServer
from prefect.filesystems import RemoteFileSystem

from core.backup import open_backup
from core.identity import server_slug
from flows.profile_regeneration import profile_regeneration
from flows.restore import restore_profiles
from tests.integration.pipeline_helpers import profile_rows

pytestmark = pytest.mark.integration

BUCKET = "reflexio-backups"
PREFIX = f"s3://{BUCKET}/nightly"
CREDENTIALS = {"key": "testing-key", "secret": "testing-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on a free loopback port, with one empty bucket."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = fsspec.filesystem(
        "s3", skip_instance_cache=True, client_kwargs={"endpoint_url": endpoint}, **CREDENTIALS
    )
    fs.mkdir(BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem(
        "s3", skip_instance_cache=True, client_kwargs={"endpoint_url": s3_endpoint}, **CREDENTIALS
    )


def _rows(url: str) -> dict[str, tuple[str | None, str, str]]:
    return {
        r["profile_id"]: (r["status"], r["user_id"], r["content"])
        for r in profile_rows(url, "current", "archived")
    }


def test_regeneration_backs_up_to_s3_prunes_and_restore_reads_it_back(
    seeded_stack, prefect_api, s3_endpoint, bucket, monkeypatch
):
    url = seeded_stack.url
    slug = server_slug(url)
    folder = f"{BUCKET}/nightly"
    old = f"profiles-{slug}-20200101T000000Z-0a0a0a0a"
    only_playbooks = f"user_playbooks-{slug}-20200101T000000Z-0b0b0b0b"
    other_server = "profiles-10-9-8-7-8081-20200101T000000Z-0c0c0c0c"
    for stem in (old, only_playbooks, other_server):
        for suffix in (".jsonl.gz", ".manifest.json"):
            bucket.pipe_file(f"{folder}/{stem}{suffix}", b"{}")
    before = _rows(url)

    for name, value in {
        **{"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"},
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    state = profile_regeneration(reflexio_url=url, backup_dir=PREFIX, return_state=True)
    assert state.is_completed(), state.message
    regen = state.result()
    assert regen.backup is not None and regen.backup.startswith(f"{PREFIX}/profiles-{slug}-")
    assert f"{PREFIX}/" in regen.message
    stem = regen.backup.rsplit("/", 1)[1].removesuffix(".manifest.json")

    bucket.invalidate_cache()
    names = {path.rsplit("/", 1)[1] for path in bucket.ls(folder)}
    assert {f"{stem}.jsonl.gz", f"{stem}.manifest.json", f"{stem}.touched.json.gz"} <= names
    assert not {n for n in names if n.startswith(old)}, "an old backup of this server is pruned"
    assert f"{only_playbooks}.manifest.json" in names, "the newest (only) playbook backup stays"
    assert f"{other_server}.manifest.json" in names, "another server's backups are not pruned"
    backed_up = {r["profile_id"] for r in open_backup(regen.backup).iter_rows()}
    assert backed_up == before.keys()
    assert _rows(url) != before

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    RemoteFileSystem(
        basepath=PREFIX, settings={**CREDENTIALS, "client_kwargs": {"endpoint_url": s3_endpoint}}
    ).save("it-s3-backups", overwrite=True)
    backup_file = f"block:it-s3-backups/{stem}.manifest.json"
    state = restore_profiles(
        backup_file=backup_file,
        reflexio_url=url,
        records_dir="block:it-s3-backups",
        assume_no_erasures=True,  # nobody was erased: there is no record to read,
        return_state=True,
    )

    assert state.is_completed(), state.message
    assert state.message.startswith(f"Restored from {backup_file}, checked by id")
    assert _rows(url) == before, "every backed-up row is back, as it was"
