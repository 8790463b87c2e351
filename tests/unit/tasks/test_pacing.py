"""The shared pacer: reads until the slot has decayed, takes it once, goes back to reading
when another process won; a 429 is waited out and the call repeated."""

from __future__ import annotations

import pytest

from reflexio_api import AuthError, TransientError
from tasks.pacing import POLL_S, SharedPacer, paced_call, spacing_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pacer(time: FakeTime, free: list[bool], take: list[bool], **kw) -> SharedPacer:
    frees, takes = iter(free), iter(take)
    return SharedPacer(
        "reflexio-rate-x",
        free=lambda: next(frees),
        take=lambda: next(takes),
        clock=time.clock,
        sleep=time.sleep,
        **kw,
    )


def test_a_free_slot_is_taken_at_once():
    t = FakeTime()
    assert pacer(t, [True], [True]).acquire() == 0
    assert t.slept == []


def test_a_busy_slot_is_read_again_until_it_decays_and_never_taken_early():
    t = FakeTime()
    taken: list[float] = []
    frees = iter([False, False, False, True])

    def take() -> bool:
        taken.append(t.now)
        return True

    p = SharedPacer("x", free=lambda: next(frees), take=take, clock=t.clock, sleep=t.sleep)
    assert p.acquire() == pytest.approx(3 * POLL_S)
    assert taken == [100.0 + 3 * POLL_S], "one attempt to take, after the slot was free"


def test_a_lost_race_goes_back_to_reading():
    t = FakeTime()
    p = pacer(t, [True, False, True], [False, True])
    assert p.acquire() == pytest.approx(2 * POLL_S)


def test_a_turn_that_never_comes_says_which_limit_and_what_to_do():
    t = FakeTime()
    p = SharedPacer("reflexio-rate-x", lambda: False, lambda: True, t.clock, t.sleep, max_wait_s=5)
    with pytest.raises(RuntimeError, match=r"reflexio-rate-x.*deployments\.setup"):
        p.acquire()


def test_a_429_is_waited_out_then_the_call_is_repeated():
    t = FakeTime()
    p = pacer(t, [True, True], [True, True])
    answers = iter([TransientError("429", status_code=429, retry_after=7), "ok"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    done = paced_call(p, call, clock=t.clock)
    assert (done.result, done.rate_limited) == ("ok", 1)
    assert t.slept == [7]


def test_other_errors_are_not_repeated():
    t = FakeTime()
    p = pacer(t, [True], [True])

    def call() -> None:
        raise AuthError("401", status_code=401)

    with pytest.raises(AuthError):
        paced_call(p, call, clock=t.clock)


def test_spacing_keeps_a_margin_over_the_servers_limit():
    assert spacing_for(5) == 13.0
    assert spacing_for(10) == 7.0
