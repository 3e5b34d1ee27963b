"""The labels the bot needs in every repository it is installed on (a label must exist to be applied)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.triggers import BENCH_LABEL, LABEL_PREFIX, parse_label

#: GitHub's limits on label names and descriptions.
MAX_NAME = 50
MAX_DESCRIPTION = 100
COLOR = "5319e7"
BENCH_COLOR = "0e8a16"


@dataclass(frozen=True)
class LabelSpec:
    name: str
    color: str
    description: str


def _describe(preset: str) -> str:
    """`plan-opus impl-kimi` → "Archon: plan with opus, implement with kimi"."""
    request = parse_label(LABEL_PREFIX + preset)
    words = {"plan": "plan", "impl": "implement", "explore": "explore", "eval": "evaluate"}
    parts = [f"{words[role]} with {alias}" for role, alias in request.models.items()]  # type: ignore[union-attr]
    if request.workflow:  # type: ignore[union-attr]
        parts.append(f"workflow {request.workflow}")  # type: ignore[union-attr]
    return ("Archon: " + ", ".join(parts))[:MAX_DESCRIPTION]


def label_specs(presets: Iterable[str]) -> list[LabelSpec]:
    """`archon:bench` plus one label per preset. Invalid presets raise, naming the preset."""
    specs = [LabelSpec(BENCH_LABEL, BENCH_COLOR, "Archon: benchmark plan × implement model pairings")]
    for preset in presets:
        name = LABEL_PREFIX + preset.strip()
        if len(name) > MAX_NAME:
            raise ValueError(f"label preset {preset!r} is longer than GitHub's {MAX_NAME} characters")
        specs.append(LabelSpec(name, COLOR, _describe(preset)))
    return specs
