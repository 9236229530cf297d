"""Baseline policies with the agent interface: ``act(observations) -> list[str]``, one prompt per observation.

- :class:`Identity`: the query at every refinement (the unrefined diffusion model);
- :class:`FixedSuffix`: the query plus a fixed suffix (the hand-written "magic words" of prompt engineering);
- :class:`OneShot`: another policy acts once, at an episode's first refinement point, and its prompt is held
  for the rest of the episode: the feed-forward prompt refiners of prior work, which never see a preview;
- :class:`RandomBank`: a prompt drawn at random from a bank (``{query}`` in a bank entry is the query).

``observations`` is a single env's observation, a vector env's batched observation, or a list of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .mllm import split_observations

__all__ = ["BASELINES", "FixedSuffix", "Identity", "OneShot", "Policy", "RandomBank", "make_baseline"]


@runtime_checkable
class Policy(Protocol):
    """Anything that writes one prompt per observation."""

    def act(self, observations: Any) -> list[str]: ...


class Identity:
    """Keep the user's query as the prompt."""

    def act(self, observations: Any) -> list[str]:
        return [str(o["query"]) for o in split_observations(observations)]


class FixedSuffix:
    """The query followed by ``suffix`` (default: a generic quality phrase)."""

    def __init__(self, suffix: str = ", high quality, detailed") -> None:
        if not isinstance(suffix, str):
            raise TypeError(f"suffix must be a str, got {type(suffix).__name__}.")
        self.suffix = suffix

    def act(self, observations: Any) -> list[str]:
        return [str(o["query"]) + self.suffix for o in split_observations(observations)]


class OneShot:
    """``policy`` writes the prompt at the first refinement point of each episode; later ones keep it.

    Turns are counted per row of the observations: an observation whose ``progress`` is not past the previous
    one of its row starts a new episode (progress only grows within an episode), so the first refinement
    point is recognised even when the policy's prompt equals the query.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._progress: dict[int, float] = {}

    def first(self, observations: Any) -> np.ndarray:
        """Which observations are at their episode's first refinement point (updates the turn count)."""
        first = []
        for row, o in enumerate(split_observations(observations)):
            progress = float(np.ravel(o["progress"])[0])
            first.append(row not in self._progress or progress <= self._progress[row])
            self._progress[row] = progress
        return np.array(first, dtype=bool)

    def act(self, observations: Any) -> list[str]:
        observations = split_observations(observations)
        prompts = [str(o["prompt"]) for o in observations]
        first = np.flatnonzero(self.first(observations))
        if len(first):
            for i, prompt in zip(first, self.policy.act([observations[i] for i in first]), strict=True):
                prompts[i] = prompt
        return prompts


class RandomBank:
    """A prompt drawn uniformly from ``bank`` at every refinement; ``{query}`` in an entry is the query."""

    def __init__(self, bank: Sequence[str], seed: int | None = None) -> None:
        if isinstance(bank, str) or not bank or not all(isinstance(b, str) for b in bank):
            raise ValueError(f"bank must be a non-empty sequence of str prompts, got {bank!r:.80}.")
        self.bank = list(bank)
        self.rng = np.random.default_rng(seed)

    def act(self, observations: Any) -> list[str]:
        return [
            self.bank[int(self.rng.integers(len(self.bank)))].replace("{query}", str(o["query"]))
            for o in split_observations(observations)
        ]


#: Baselines by name, for ``promptloop eval --agent <name>``.
BASELINES = {
    "identity": Identity,
    "suffix": FixedSuffix,
    "random-bank": lambda: RandomBank(
        ["{query}", "{query}, high quality", "{query}, vivid colours", "{query}, simple background"], seed=0
    ),
}


def make_baseline(name: str) -> Policy:
    """A baseline by name (see :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"Unknown baseline {name!r}; choose one of {sorted(BASELINES)}.")
    return BASELINES[name]()
