"""Prompt sources: where an episode's query comes from when ``reset`` does not name one."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_QUERIES", "PROMPT_SETS", "PromptSource", "make_prompt_source", "toy_queries"]

#: Named prompt sets: the toy grammar's train split and its held-out split (a fixed hash of the full scene).
PROMPT_SETS = ("toy-train", "toy-test")

DEFAULT_QUERIES: tuple[str, ...] = (
    "a red circle",
    "a blue square on the left",
    "a small yellow triangle",
    "a green tree next to a house",
    "a black cat",
    "a white bird in the sky",
    "a large orange star",
    "a purple flower",
)

PromptSource = Callable[[np.random.Generator], str]


def toy_queries(split: str = "train", drop: float = 0.3) -> PromptSource:
    """Queries of the toy grammar: a random scene of ``split`` captioned with a random phrasing, each
    optional attribute left out with probability ``drop`` (so queries leave things for a prompt to add)."""
    from .toy.grammar import caption, random_scene, spec_of, split_of

    def draw(rng: np.random.Generator) -> str:
        while True:
            scene = random_scene(rng)
            if split_of(spec_of(scene)) == split:
                return caption(scene, rng, drop=drop)

    return draw


def make_prompt_source(spec: Sequence[str] | str | os.PathLike | PromptSource | None) -> PromptSource:
    """A function ``rng -> query`` from a named set (``"toy-train"``, ``"toy-test"``), a list of queries, a
    text file (one per line) or a callable.

    Raises:
        ValueError: for an empty list or file; FileNotFoundError for a missing file.
    """
    if spec is None:
        spec = DEFAULT_QUERIES
    if isinstance(spec, str) and spec in PROMPT_SETS:
        return toy_queries(spec.removeprefix("toy-"))
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompts={os.fspath(spec)!r} is not a file; expected a text file with one query per line, "
                f"a named set ({', '.join(PROMPT_SETS)}), a list of queries, or a callable rng -> query."
            )
        queries = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not queries:
            raise ValueError(f"The prompt file {os.fspath(spec)!r} has no non-empty lines.")
        return _choice(queries)
    if callable(spec):
        return spec
    queries = list(spec)
    if not queries or not all(isinstance(q, str) for q in queries):
        raise ValueError("prompts must be a non-empty list of strings, a text file path, or a callable.")
    return _choice(queries)


def _choice(queries: list[str]) -> PromptSource:
    def draw(rng: np.random.Generator) -> str:
        return queries[int(rng.integers(len(queries)))]

    draw.queries = queries  # type: ignore[attr-defined]
    return draw
