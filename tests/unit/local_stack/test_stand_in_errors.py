"""The stand-in fails a stable share of calls (error_fraction) and refuses bad settings."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from local_stack.stand_in_answers import conversation_fails, in_error_share
from local_stack.stand_in_llm import StandInLLM, StandInState


def lines(user: int) -> list[str]:
    """One user's turns."""
    return [f"I am customer {user} and I like tea.", f"My order number is {user * 7}."]


def extraction_prompt(user: int, order: slice = slice(None)) -> str:
    """A profile-extraction prompt over one user's turns, as the server renders them."""
    turns = "assistant: ```Noted.```\n".join(f"user: ```{t}```\n" for t in lines(user)[order])
    return f"[User Interactions to Analyze]\n{turns}"


def chat(user: int) -> dict:
    return {
        "model": "gpt-standin",
        "messages": [{"role": "user", "content": extraction_prompt(user)}],
        "response_format": {"json_schema": {"name": "StructuredProfilesOutput"}},
    }


@pytest.fixture(scope="module")
def running() -> Iterator[StandInLLM]:
    started = StandInLLM().start()
    yield started
    started.stop()


@pytest.fixture
def llm(running: StandInLLM) -> StandInLLM:
    running.reset()
    return running


def test_the_share_is_close_to_the_fraction_and_nested():
    prompts = [extraction_prompt(u) for u in range(2000)]
    chosen = {f: {p for p in prompts if in_error_share(p, f)} for f in (0.0, 0.3, 0.45, 1.0)}
    assert len(chosen[0.0]) == 0 and len(chosen[1.0]) == len(prompts)
    assert abs(len(chosen[0.3]) / len(prompts) - 0.3) < 0.03
    assert abs(len(chosen[0.45]) / len(prompts) - 0.45) < 0.03
    assert chosen[0.3] < chosen[0.45]  # a larger fraction only adds failing calls


def test_every_call_about_one_conversation_is_chosen_alike():
    """The key is the user turns in any order: the same conversation in another prompt (a
    should-run check, stored profiles listed first, turns reordered) fails or succeeds with
    it, and a test can tell from a user's lines alone whether their calls fail."""
    for user in range(200):
        chosen = in_error_share(extraction_prompt(user), 0.3)
        other = (
            f"[Existing Profiles]\n[likes coffee]\n{extraction_prompt(user, slice(None, None, -1))}"
        )
        assert in_error_share(f"{other}\nAnswer true or false.", 0.3) == chosen
        assert conversation_fails(lines(user), 0.3) == chosen


def test_a_fraction_of_users_gets_the_error_reply_every_time(llm: StandInLLM):
    llm.configure(mode="rate_limit", error_fraction=0.3)
    with httpx.Client(base_url=f"{llm.base_url}/v1") as client:
        first = {u: client.post("/chat/completions", json=chat(u)) for u in range(40)}
        again = {u: client.post("/chat/completions", json=chat(u)).status_code for u in range(40)}
    failed = {u for u, r in first.items() if r.status_code != 200}
    assert {first[u].status_code for u in failed} == {429}
    assert {first[u].json()["error"]["code"] for u in failed} == {"rate_limit_exceeded"}
    assert {u for u, status in again.items() if status != 200} == failed
    assert failed == {u for u in range(40) if in_error_share(extraction_prompt(u), 0.3)}
    assert 0 < len(failed) < 40
    assert all(
        "profiles" in first[u].json()["choices"][0]["message"]["content"]
        for u in first
        if u not in failed
    )


def test_an_error_mode_alone_still_fails_every_call(llm: StandInLLM):
    llm.configure(mode="auth_error")
    with httpx.Client(base_url=f"{llm.base_url}/v1") as client:
        assert {client.post("/chat/completions", json=chat(u)).status_code for u in range(10)} == {
            401
        }
    llm.reset()
    assert (llm.state.mode, llm.state.error_fraction) == ("ok", 1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "unknown stand-in setting 'colour': use mode, error_fraction"),
        ({"mode": "teapot"}, "stand-in mode must be one of ok, auth_error, .*got 'teapot'"),
        ({"style": "loud"}, "stand-in style must be one of normal, .*got 'loud'"),
        ({"error_fraction": 1.5}, "error_fraction must be a number from 0 to 1: got 1.5"),
        ({"error_fraction": "half"}, "error_fraction must be a number from 0 to 1"),
        ({"delay_s": -1}, "delay_s must be a number >= 0: got -1"),
        ({"forget": "vegetarian"}, "forget must be a list of non-empty words"),
        ({"forget": [""]}, "forget must be a list of non-empty words"),
        ({"forget_when": None}, "forget_when must be a string: got None"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(llm: StandInLLM, changes, message):
    with pytest.raises(ValueError, match=message):
        llm.configure(**{"mode": "billing_error", **changes})
    assert llm.state.mode == "ok"


def _profiles(llm: StandInLLM, prompt: str) -> list[str]:
    body = {**chat(3), "messages": [{"role": "user", "content": prompt}]}
    reply = httpx.post(f"{llm.base_url}/v1/chat/completions", json=body, timeout=10).json()
    content = reply["choices"][0]["message"]["content"]
    return [p["content"] for p in json.loads(content)["profiles"]]


def test_forget_drops_the_turns_with_those_words_only_when_the_prompt_says_so(llm: StandInLLM):
    llm.configure(forget=["ORDER"], forget_when="Leave out orders.")

    plain = _profiles(llm, extraction_prompt(3))
    told = _profiles(llm, "Leave out orders.\n" + extraction_prompt(3))

    assert plain == lines(3)
    assert told == lines(3)[:1]


def test_run_calls_leave_out_only_the_servers_background_aggregation() -> None:
    state = StandInState()
    state.calls.update(
        {"StructuredProfilesOutput": 1, "PlaybookAggregationOutput": 2, "embeddings": 2}
    )
    assert state.run_calls() == {"StructuredProfilesOutput": 1}
