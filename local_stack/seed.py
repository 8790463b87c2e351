"""A few realistic conversations to publish into a fresh server, so there is something to
regenerate. Published with learning forced and awaited, so CURRENT rows exist afterwards."""

from __future__ import annotations

import httpx

SEED_USER_AGENT = "reflexio-pipelines-seed/0.1"

CONVERSATIONS: dict[str, list[str]] = {
    "alice": [
        "I'm Alice, a data engineer in Berlin. I mostly write Python and SQL.",
        "Please keep answers short; I prefer bullet points over long paragraphs.",
        "My team deploys on Fridays, so remind me about freeze windows.",
        "I use PostgreSQL 16 at work and DuckDB for local analysis.",
    ],
    "bob": [
        "Hi, Bob here. I'm vegetarian and I love hiking in the Alps on weekends.",
        "No steak suggestions please, I told you I am vegetarian.",
        "I have a dog called Pixel who comes on every hike.",
        "I work as a primary-school teacher and finish at three.",
    ],
    "carol": [
        "Carol speaking: I run a small bakery and need help with my invoices.",
        "Always show amounts in euros, my accountant works in euros.",
        "The bakery opens at six, so I only have time in the afternoon.",
        "I am allergic to hazelnuts, which matters for my recipes.",
    ],
    "dave": [
        "I'm Dave, a nurse working night shifts, so I read messages in the morning.",
        "Explain medical terms plainly, I share these notes with patients.",
        "I am studying for a critical-care certificate this winter.",
        "I live in Leeds and cycle to the hospital.",
    ],
    "erin": [
        "Erin here, I teach high-school physics and use Linux at home.",
        "I prefer examples with real numbers and units, not abstract symbols.",
        "My students are sixteen and most of them find vectors hard.",
        "I write my worksheets in LaTeX.",
    ],
    "frank": [
        "Frank. I'm learning Spanish and travel to Madrid every spring.",
        "Reply in simple Spanish when I write in Spanish, please.",
        "I am a retired engineer and like detailed technical answers.",
        "My granddaughter Lucia is learning Spanish with me.",
    ],
}


def synthetic_users(n: int) -> dict[str, list[str]]:
    """N users cycling through the seed conversations, each renamed (id and first line)."""
    names = list(CONVERSATIONS)
    users: dict[str, list[str]] = {}
    for i in range(n):
        base = names[i % len(names)]
        lines = list(CONVERSATIONS[base])
        lines[0] = f"{lines[0]} (customer number {i})"
        users[f"{base}-{i:03d}"] = lines
    return users


def conversation_turns(lines: list[str]) -> list[dict[str, str]]:
    """User lines interleaved with short assistant replies."""
    turns: list[dict[str, str]] = []
    for line in lines:
        turns.append({"role": "user", "content": line})
        turns.append({"role": "assistant", "content": "Understood, I will keep that in mind."})
    return turns


def seed(
    base_url: str,
    users: dict[str, list[str]] | None = None,
    sources: tuple[str, ...] = ("chat",),
    agent_version: str = "v1",
    api_key: str | None = None,
    learn: bool = True,
) -> list[str]:
    """Publish each user's conversation, its lines dealt out over the sources (so a rerun
    over all interactions sees what each source saw); return the request ids. With
    ``learn`` False the interactions are only stored (no LLM call: the server defers
    learning until a window fills), for a rerun to learn from later."""
    headers = {"User-Agent": SEED_USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request_ids: list[str] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=300) as client:
        for index, source in enumerate(sources):
            for user_id, all_lines in (users or CONVERSATIONS).items():
                lines = all_lines[index :: len(sources)] or all_lines
                response = client.post(
                    "/api/publish_interaction",
                    params={"wait_for_response": "true"} if learn else {},
                    json={
                        "user_id": user_id,
                        "session_id": f"{user_id}-{source}-1",
                        "source": source,
                        "agent_version": agent_version,
                        "force_extraction": learn,
                        "interaction_data_list": conversation_turns(lines),
                    },
                )
                response.raise_for_status()
                body = response.json()
                if not body.get("success"):
                    raise RuntimeError(f"seeding {user_id}/{source} failed: {body}")
                request_ids.append(body["request_id"])
    return request_ids
