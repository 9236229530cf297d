"""Rewards of the embedded toy world, graded by its weight-free scorer against the query."""

from __future__ import annotations

import numpy as np

from .base import register_reward


def toy_alignment(images: np.ndarray, queries: list[str]) -> np.ndarray:
    """Fraction of the query's stated attributes (colour, shape, size, position or relation, count,
    background) that the toy scorer confirms in the image. Raises ``ParseError`` for a query outside the
    shapes grammar, naming the words it could not parse."""
    from ..toy.scorer import score

    return np.asarray([score(image, query).fraction for image, query in zip(images, queries, strict=True)])


def toy_all_correct(images: np.ndarray, queries: list[str]) -> np.ndarray:
    """1.0 when the toy scorer confirms every stated attribute of the query, else 0.0."""
    from ..toy.scorer import score

    return np.asarray([float(score(image, query).all_correct) for image, query in zip(images, queries, strict=True)])


def _check_query(query: str) -> None:
    from ..toy.grammar import parse

    parse(query)


# The env checks queries at reset with these, so a query outside the grammar fails before any denoising.
toy_alignment.check_query = _check_query  # type: ignore[attr-defined]
toy_all_correct.check_query = _check_query  # type: ignore[attr-defined]

register_reward("toy_alignment")(lambda: toy_alignment)
register_reward("toy_all_correct")(lambda: toy_all_correct)
