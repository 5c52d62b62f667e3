"""The sample catalog and the demo's inference traffic (deterministic for a seed).

Outputs come in four kinds: ``quote`` (a verbatim passage inside framing text),
``edit`` (a lightly edited passage), ``mixed`` (passages of two works of different
holders) and ``unrelated`` (text that draws on no registered work).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from producers.events import InferenceEvent

SAMPLE_CATALOG = Path(__file__).resolve().parent / "data" / "sample_catalog.json"

UNRELATED = [
    "To reset your router, hold the power button for ten seconds and wait for the status light to blink green.",
    "The quarterly revenue grew eight percent, driven mostly by subscription renewals in the enterprise segment.",
    "Preheat the oven to 220 degrees, toss the potatoes with olive oil and salt, and roast them for forty minutes.",
    "A Python list comprehension builds a new list by applying an expression to each item of an iterable.",
    "Our support team is available on weekdays; please include your order number when you open a ticket.",
    "Photosynthesis converts light energy into chemical energy stored in glucose inside the chloroplasts.",
    "The marathon route closes three downtown streets on Sunday morning, so plan for detours near the river.",
    "Kubernetes restarts a container when its liveness probe fails several times in a row.",
    "Compound interest means the interest earned each year is added to the principal for the next year.",
    "The new smartphone has a larger battery, a brighter display and a camera that handles low light better.",
    "Drink water regularly during hot weather, and rest in the shade if you start to feel dizzy.",
    "The database migration adds an index on the customer id column to speed up the monthly report.",
    "Tomatoes grow best with six to eight hours of direct sunlight and consistent watering at the roots.",
    "The airline allows one carry-on bag and one personal item that fits under the seat in front of you.",
    "Machine learning models are evaluated on a held-out test set that was never used during training.",
    "The city council approved funding for two new bicycle lanes and a pedestrian bridge over the rail yard.",
    "Use a strong, unique password for every account and turn on two-factor authentication where offered.",
    "The recipe serves four; double the spices if you prefer a hotter curry.",
    "Solar panels on the warehouse roof now cover about a third of the building's electricity use.",
    "The meeting is moved to Thursday at three; the agenda covers hiring, budget and the product roadmap.",
]
FRAMES = [
    ("Here is the passage you asked about:", "Let me know if you want a summary."),
    ("Sure, the text reads as follows.", "It is one of the best-known openings in English literature."),
    ("As requested, the excerpt:", "I hope this helps with your essay."),
    ("The relevant lines are these:", "Would you like the next paragraph too?"),
]
EDITS = {"very": "really", "little": "small", "large": "big", "great": "huge", "said": "remarked",
         "house": "home", "man": "fellow", "old": "aged", "long": "lengthy", "began": "started",
         "quite": "rather", "never": "not ever", "most": "the most", "upon": "on", "whilst": "while"}

KIND_WEIGHTS = {"quote": 35, "edit": 15, "mixed": 10, "unrelated": 40}
# the contract of each event, by a uniform draw: dollars mostly, some euros and yen
CONTRACTS = [(0.65, "standard-2026"), (0.75, "standard-eu-2026"), (0.85, "standard-jp-2026"), (1.0, "research-2026")]
YEN_PER_DOLLAR = 150  # a JPY event bills about what a USD one does


def _contract(draw: float) -> str:
    return next(contract for upto, contract in CONTRACTS if draw < upto)


@dataclass(frozen=True)
class PlannedEvent:
    kind: str
    planted: tuple[str, ...]  # work ids the output draws on
    event: InferenceEvent


def load_catalog(path: Path = SAMPLE_CATALOG) -> dict[str, Any]:
    return json.loads(Path(path).read_text())  # type: ignore[no-any-return]


def _passage(rng: random.Random, text: str, words: int) -> str:
    tokens = text.split()
    words = min(words, len(tokens))
    start = rng.randrange(0, len(tokens) - words + 1)
    return " ".join(tokens[start : start + words])


def light_edit(rng: random.Random, passage: str, swap: float = 0.8, drop: float = 0.2,
               droppable: tuple[str, ...] = ("the", "a", "and")) -> str:
    """``passage`` with words swapped for synonyms (EDITS, each with probability
    ``swap``) and some short words dropped (probability ``drop``)."""
    out = []
    for token in passage.split():
        bare = re.sub(r"\W", "", token).lower()
        if bare in EDITS and rng.random() < swap:
            token = token.lower().replace(bare, EDITS[bare])
        elif bare in droppable and rng.random() < drop:
            continue
        out.append(token)
    return " ".join(out)


def plan_events(catalog: dict[str, Any], count: int, seed: int = 7,
                start: datetime | None = None) -> list[PlannedEvent]:
    rng = random.Random(seed)
    works = catalog["works"]
    start = start or datetime(2026, 11, 20, tzinfo=UTC)
    kinds = list(KIND_WEIGHTS)
    weights = list(KIND_WEIGHTS.values())
    planned = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        opening, closing = rng.choice(FRAMES)
        planted: tuple[str, ...] = ()
        if kind in ("quote", "edit"):
            work = rng.choice(works)
            passage = _passage(rng, work["text"], rng.randint(50, 90))
            if kind == "edit":
                passage = light_edit(rng, passage)
            text = f"{opening} {passage} {closing}"
            planted = (work["work_id"],)
        elif kind == "mixed":
            first = rng.choice(works)
            second = rng.choice([w for w in works if w["holder_id"] != first["holder_id"]])
            text = (f"{opening} {_passage(rng, first['text'], 60)} Compare it with another opening: "
                    f"{_passage(rng, second['text'], 60)} {closing}")
            planted = (first["work_id"], second["work_id"])
        else:
            text = " ".join(rng.sample(UNRELATED, rng.randint(2, 5)))
        by_revenue = rng.random() < 0.8
        revenue = rng.randint(50_000, 500_000)
        contract = _contract(rng.random())
        tokens_in, tokens_out = rng.randint(100, 2000), rng.randint(20_000, 200_000)
        event = InferenceEvent(
            event_id=f"demo-{seed}-{i:06d}",
            occurred_at=(start + timedelta(minutes=7 * i)).isoformat(),
            provider=rng.choice(["acme-ai", "nimbus-labs"]),
            model_name=rng.choice(["acme-chat-large", "acme-chat-small", "nimbus-writer"]),
            model_revision="2026-10-01",
            contract_id=contract,
            output_text=text,
            metadata={"demo_kind": kind, "planted": list(planted)},
            revenue_micros=revenue * YEN_PER_DOLLAR if by_revenue and contract == "standard-jp-2026" else
            revenue if by_revenue else None,
            input_tokens=None if by_revenue else tokens_in,
            output_tokens=None if by_revenue else tokens_out,
        )
        planned.append(PlannedEvent(kind, planted, event))
    return planned
