"""A pass over profiles holds on a busy server: a snapshot plus the delta of what changed
since the pass began, checked against the statistics (core/delta.py), against a fake that
filters and orders as the server's SQL does and changes while it is listed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.backup import V3_FORMAT, open_backup
from core.delta import DELTA_MARGIN_S
from core.kinds import PROFILES, STATUSES
from core.listing import ListingNotProven
from core.live import LiveRule, Scope
from core.sinks import BackupTarget, Reading, ReadRequest
from reflexio_api import IncompleteListing, ReflexioClient, ReflexioSettings
from tasks import ops
from tests.unit.tasks.live_fake import LiveFake

PAGE = 40


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 40 rows, so a status of a few hundred rows takes many requests."""
    monkeypatch.setattr(ops, "PAGE_SIZE", PAGE)
    monkeypatch.setattr(ops, "MAX_PAGE", PAGE)


def busy_server(seed: int) -> LiveFake:
    fake = LiveFake(seed)
    fake.seed(None, 300)
    fake.seed("pending", 120, same_second=70)
    fake.seed("archived", 400, same_second=150)
    return fake


def read(fake: LiveFake, tmp_path: Path | None = None, **request: object) -> Reading:
    backup = BackupTarget(tmp_path, "http://127.0.0.1:9", "run-1") if tmp_path else None
    client = ReflexioClient(ReflexioSettings(), transport=httpx.MockTransport(fake))
    return ops.read_with(client, PROFILES, ReadRequest(statuses=STATUSES, backup=backup, **request))


def held(reading: Reading) -> dict[str, str]:
    snap = reading.snapshot
    return {i: s for s in STATUSES for i in snap.of(s)}


def changes_until_the_delta(per_request: int):
    """Changes of every kind on every request of the snapshot walk; none once the delta
    listing begins (after the second statistics read)."""

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and "statistics" not in request.url.path:
            for _ in range(per_request):
                fake.random_change()

    return during


@pytest.mark.parametrize("seed", range(12))
def test_a_pass_over_a_server_changing_under_it_reads_it_exactly(seed: int, tmp_path: Path):
    fake = busy_server(seed)
    seeded = set(fake.live())
    fake.during = changes_until_the_delta(per_request=3)
    reading = read(fake, tmp_path, baseline=Scope(), candidate=True)

    truth = fake.truth()
    assert truth.items() <= held(reading).items()  # every row, in the status it is in
    # Beyond them only rows that left during the pass and whose leaving left no trace a
    # listing can see (a deletion; a tombstone of a row the walk had read): seeded rows
    # the walk read before they left. Rows written during the pass that left are dropped.
    extra = set(held(reading)) - set(truth)
    assert extra <= seeded - set(truth)
    assert reading.delta is not None and reading.delta.changed > 0
    # The backup holds every row of the reading in that version (and rows that left, as
    # they were when listed).
    assert reading.backup is not None
    backup = open_backup(reading.backup.manifest_path)
    versions = {r["profile_id"]: r for r in backup.iter_rows()}
    for pid in truth:
        assert (
            versions[pid]["last_modified_timestamp"] == (fake.rows[pid]["last_modified_timestamp"])
        )
        assert (versions[pid].get("status") or None) == (fake.rows[pid]["status"] or None)
    # The frames hold each CURRENT / PENDING row once, in its last version.
    assert reading.baseline is not None and reading.candidate is not None
    assert sorted(reading.baseline["row_id"]) == sorted(reading.snapshot.current)
    assert sorted(reading.candidate["row_id"]) == sorted(reading.snapshot.pending)


def test_the_backup_of_a_pass_with_later_versions_reads_back_the_later_ones(tmp_path: Path):
    fake = busy_server(7)
    moved: list[str] = []

    def archive_a_current_row_mid_walk(fake: LiveFake, request: httpx.Request) -> None:
        if fake.requests == 4:  # the snapshot walk of CURRENT has read the newest rows
            pid = sorted(fake.live(None))[0]  # the newest CURRENT row
            fake.restamp(pid, "archived")
            moved.append(pid)

    fake.during = archive_a_current_row_mid_walk
    reading = read(fake, tmp_path)
    assert moved[0] in reading.snapshot.archived and moved[0] not in reading.snapshot.current
    assert reading.backup is not None
    backup = open_backup(reading.backup.manifest_path)
    assert backup.format == V3_FORMAT and backup.versions == {moved[0]: 2}
    rows = [r for r in backup.iter_rows() if r["profile_id"] == moved[0]]
    assert [r["status"] for r in rows] == ["archived"]  # one version: the later one
    assert backup.counts["current"] == 300 - 1 and backup.counts["archived"] == 400 + 1


@pytest.mark.parametrize("seed", range(8))
def test_changes_during_the_delta_listing_lose_no_row_written_before_it(seed: int):
    fake = busy_server(100 + seed)
    marks: dict[str, int] = {}

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 0 or "statistics" in request.url.path:
            return
        if fake.statistics_reads >= 2 and "delta" not in marks:
            marks["delta"] = fake.requests  # the delta listing begins
        # During the delta, rows written during the pass are not written again (that race
        # makes the count check stop the run: see the next test).
        fake.random_change(old_only_before=marks.get("start"))
        fake.random_change(old_only_before=marks.get("start"))

    marks["start"] = 0
    fake.during = during
    reading = read(fake)
    before_delta = {
        pid: status
        for pid, status in fake.truth().items()
        if fake.written.get(pid, -1) < marks["delta"]
    }
    assert before_delta.items() <= held(reading).items()


def test_a_row_written_during_the_pass_and_again_right_after_the_statistics_stops_safely():
    fake = busy_server(3)
    written: list[str] = []

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and fake.requests == 3:
            written.append(fake.insert(user="quick"))  # learned during the walk's start
        if fake.statistics_reads == 2 and written and written[0] in fake.rows:
            fake.restamp(written[0], "superseded")  # dedup, before the delta lists it

    fake.during = during
    with pytest.raises(ListingNotProven, match=r"current: .* 1 row\(s\) missing"):
        read(fake)


def users_talk(into: str | None, dedup: bool):
    """Live traffic: users talk (CURRENT rows, some learned a few seconds before they are
    written), dedup supersedes rows learned during the pass (`dedup`), rows move into `into`
    (from ARCHIVED or CURRENT). A row that leaves a status during the pass may excuse a
    missing one of that status (core/delta.py: the count check is lenient by the rows that
    left it), so the cut is made where rows only arrive."""

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads != 1 or "statistics" in request.url.path:
            return
        fake.insert(user=f"live{fake.requests % 3}", lag=fake.requests % 4)
        fresh = [pid for pid in fake.live(None) if fake.rows[pid]["user_id"].startswith("live")]
        if dedup and fake.requests % 4 == 0 and fresh:
            fake.restamp(fresh[0], "superseded")
        if fake.requests % 5 == 0:
            source = fake.live("archived" if into is None else None)
            fake.restamp(source[-1], into)

    return during


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("status", ["current", "archived"])
def test_a_listing_cut_by_one_row_is_caught_on_a_busy_server(seed: int, status: str):
    fake = busy_server(200 + seed)
    stored = None if status == "current" else status
    fake.during = users_talk(into=stored, dedup=status != "current")
    # The oldest row: in no delta, and a walk cannot see it cut (every answer lacks it,
    # the probe below the last page too). Cut anywhere else, the walk's probe stops it.
    oldest = sorted(fake.live(stored), key=lambda pid: fake.rows[pid]["last_modified_timestamp"])
    victim = oldest[seed]

    fake.cut = lambda rows: [r for r in rows if r["profile_id"] != victim]
    with pytest.raises(ListingNotProven, match=f"{status}: .* 1 row\\(s\\) missing"):
        read(fake)


def test_answers_cut_by_their_first_row_are_caught(tmp_path: Path):
    fake = busy_server(5)
    fake.during = changes_until_the_delta(per_request=1)
    fake.cut = lambda rows: rows[1:]  # the proxy of tests/integration/test_pipeline_at_size
    with pytest.raises((IncompleteListing, ListingNotProven)):
        read(fake, tmp_path)
    assert not list(tmp_path.glob("*.manifest.json"))  # no finished backup of partial data


def test_a_late_write_stamped_within_the_margin_is_read():
    fake = busy_server(9)
    late: list[str] = []

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and fake.requests == 20:  # the walk is past it
            late.append(fake.insert(user="slow-dedup", lag=DELTA_MARGIN_S - 60))

    fake.during = during
    reading = read(fake)
    assert late[0] in reading.snapshot.current


def test_a_late_write_stamped_before_the_margin_stops_the_run_rather_than_lose_it():
    fake = busy_server(9)

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and fake.requests == 20:
            fake.insert(user="slower-than-the-margin", lag=DELTA_MARGIN_S + 10_000)

    fake.during = during
    with pytest.raises(ListingNotProven, match=r"current: .* 1 row\(s\) missing"):
        read(fake)


def test_expiry_during_the_pass_is_tolerated():
    fake = busy_server(11)
    ttl = fake.live(None)[:30]
    for pid in ttl:  # their TTL runs out during the pass; the statistics stop counting them
        fake.rows[pid]["expiration_timestamp"] = fake.now + 5
    swept = fake.live("archived")[:20]

    def sweep(fake: LiveFake, request: httpx.Request) -> None:
        if fake.requests == 12:  # the daily sweep retires some rows mid-walk
            for pid in ttl[:10]:
                fake.restamp(pid, "expired")

    fake.during = sweep
    for pid in swept:
        fake.rows[pid]["expiration_timestamp"] = fake.now - 10  # expired, not swept yet
    reading = read(fake)
    assert fake.truth().items() <= held(reading).items()
    assert reading.counted is not None
    assert reading.counted.per_status["archived"] == 400 - 20  # as the statistics count


def test_live_rows_are_found_in_the_delta():
    fake = busy_server(13)
    known = frozenset(fake.live())
    new: list[str] = []

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and fake.requests % 5 in (0, 2):
            new.append(fake.insert(user="talker"))  # the first on the walk's first page
        if fake.statistics_reads == 1 and fake.requests == 6:
            fake.restamp(new[0], "pending")  # seen as a live CURRENT row, then not one

    fake.during = during
    reading = read(fake, live=LiveRule(known, rerun_started_at=None))
    assert reading.live is not None and set(reading.live.rows) == set(new[1:])
    assert reading.live.current_ids() == set(new[1:])


def test_a_quiet_server_needs_no_delta_rows():
    fake = busy_server(1)
    reading = read(fake)
    assert held(reading) == fake.truth()
    assert reading.delta is not None and reading.delta.changed == reading.delta.gone == 0


def test_a_row_written_and_gone_during_the_pass_is_dropped(tmp_path: Path):
    fake = busy_server(17)
    fleeting: list[str] = []

    def during(fake: LiveFake, request: httpx.Request) -> None:
        if fake.statistics_reads == 1 and fake.requests == 2:
            fleeting.append(fake.insert(user="fleeting"))  # the walk's first page has it
        if fake.statistics_reads == 1 and fake.requests == 6:
            fake.restamp(fleeting[0], "superseded")  # dedup retires it

    fake.during = during
    reading = read(fake, tmp_path, baseline=Scope())
    assert fleeting[0] not in reading.snapshot.all_ids()
    assert reading.delta is not None and reading.delta.gone == 1
    assert reading.baseline is not None and fleeting[0] not in set(reading.baseline["row_id"])
    assert reading.backup is not None  # the backup keeps it as it was listed
    assert fleeting[0] in {
        r["profile_id"] for r in open_backup(reading.backup.manifest_path).iter_rows()
    }
