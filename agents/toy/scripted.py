"""Scripted policies of the toy world: fixed rewrites (open loop) and a preview-reading controller (closed loop).

They measure how much a prompt can gain on the toy world before any learning is asked to find it
(``benchmarks/toy_headroom.py``) and are the reference rows of the ablation. Each is an ordinary policy with
``act(observations) -> list[str]``: it sees what any agent sees (the query, the prompt in force, the
progress and the preview), never the final image.

- :data:`REWRITES`: the documented rule set of text-only rewrites of a query; :class:`Rewrite` holds one at
  every refinement point (the open-loop policy: what it writes does not depend on what it sees).
- :class:`NeglectController`: writes the query in the model's own dialect (:func:`describe`) and, while the
  image can still change, reads the preview with the scorer's colour model (:func:`colour_mass`): when an object
  of a two-object query is missing (or drawn in the other's colour), it names that object first, the position
  the shipped toy model draws most reliably (or, ``fix="restate"``, names it again:
  :func:`~promptloop_env.toy.grammar.restate`; ``fix="emphasise"``, doubles its colour word:
  :func:`~promptloop_env.toy.grammar.emphasise`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from promptloop_env.toy.grammar import COLORS, ParseError, Spec, describe, emphasise, parse, restate
from promptloop_env.toy.scorer import MIN_CONTRAST, RESIDUAL_TOLERANCE, detect

from ..mllm import split_observations

__all__ = [
    "REFERENCE_CONTROLLER",
    "REFERENCE_RULE",
    "REWRITES",
    "NeglectController",
    "Rewrite",
    "colour_mass",
    "objects_forming",
    "objects_seen",
    "scripted_references",
    "swapped",
]

#: The inverse of each relation: "A left of B" is "B right of A".
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above", None: None}


def swapped(spec: Spec) -> Spec:
    """The same scene with the second object named first (relation inverted); a one-object spec unchanged."""
    if len(spec.objects) != 2:
        return spec
    return dataclasses.replace(spec, objects=spec.objects[::-1], relation=INVERSE[spec.relation])


def _safe(fn: Callable[[Spec, str], str]) -> Callable[[str], str]:
    """A rewrite of a query through its parse; a query outside the grammar is kept as it is."""

    def rewrite(query: str) -> str:
        try:
            spec = parse(query)
        except ParseError:
            return query
        return fn(spec, query)

    rewrite.__name__ = fn.__name__
    return rewrite


#: The open-loop rule set: name -> text function of the query. The best one is chosen on train queries.
REWRITES: dict[str, Callable[[str], str]] = {
    "the query": lambda q: q,
    "canonical caption": _safe(lambda s, q: describe(s)),
    "canonical, second object named first": _safe(lambda s, q: describe(swapped(s))),
    "canonical, first object restated": _safe(lambda s, q: restate(s, 0) if len(s.objects) == 2 else describe(s)),
    "canonical, second object restated": _safe(lambda s, q: restate(s, 1) if len(s.objects) == 2 else describe(s)),
    "canonical, first object emphasised": _safe(lambda s, q: emphasise(s, 0) if len(s.objects) == 2 else describe(s)),
    "canonical, second object emphasised": _safe(lambda s, q: emphasise(s, 1) if len(s.objects) == 2 else describe(s)),
    "canonical, objects restated": _safe(
        lambda s, q: describe(s) + ", " + ", ".join(f"{o.color} {o.shape}" for o in s.objects)
    ),
    "canonical, no background": _safe(lambda s, q: describe(dataclasses.replace(s, background=None))),
    "the query twice": lambda q: f"{q}, {q}",
    "query then canonical": _safe(lambda s, q: f"{q}, {describe(s)}"),
}


class Rewrite:
    """An open-loop policy: the same text function of the query at every refinement point."""

    def __init__(self, rule: str | Callable[[str], str]) -> None:
        if isinstance(rule, str):
            if rule not in REWRITES:
                raise ValueError(f"Unknown rewrite {rule!r}; expected one of {', '.join(map(repr, REWRITES))}.")
            rule = REWRITES[rule]
        self.rule = rule

    def act(self, observations: Any) -> list[str]:
        return [self.rule(o["query"]) for o in split_observations(observations)]


def objects_seen(image: np.ndarray, spec: Spec) -> list[bool]:
    """For each object of ``spec``, whether the image shows an object of its colour (the scorer's detection:
    for final images and late previews)."""
    _, detections = detect(np.asarray(image))
    colors = {d.color for d in detections}
    return [o.color in colors for o in spec.objects]


def colour_mass(preview: np.ndarray, color: str) -> float:
    """How many pixels' worth of ``color`` a (blurry, early) preview shows: each pixel's share of the colour
    along its mixing line with the background (the scorer's colour model, without its component and size
    rules, which a preview early in sampling does not meet yet)."""
    rgb = np.asarray(preview, dtype=np.float64)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    direction = np.asarray(COLORS[color], dtype=np.float64) - background
    norm2 = float((direction**2).sum())
    if norm2 < MIN_CONTRAST**2:  # the colour cannot be told from this background
        return 0.0
    diff = rgb - background
    alpha = diff @ direction / norm2
    residual = np.linalg.norm(diff - alpha[..., None] * direction, axis=-1)
    member = (residual < RESIDUAL_TOLERANCE) & (alpha > 0.3)
    scale = 32 * 32 / (rgb.shape[0] * rgb.shape[1])  # in pixels at 32 x 32
    return float(np.clip(alpha, 0.0, 1.0)[member].sum() * scale)


def objects_forming(preview: np.ndarray, spec: Spec, min_mass: float = 4.0) -> list[bool]:
    """For each object of ``spec``, whether an early preview shows at least ``min_mass`` pixels of its colour."""
    return [colour_mass(preview, o.color) >= min_mass for o in spec.objects]


class NeglectController:
    """A closed-loop scripted policy: the model's dialect, plus a fix for the object a preview shows missing.

    At every refinement point with ``progress <= act_until`` it reads the preview (:func:`objects_forming`,
    at least ``min_mass`` pixels of each object's colour): for a two-object query where exactly one object is
    missing (neglected, or drawn in the other's colour), the prompt becomes the fix for that object:

    - ``fix="reorder"`` (the shipped toy world, v2): the canonical caption with the missing object named first
      (the relation inverted);
    - ``fix="restate"`` (the toy world v3 attempt, ``benchmarks/results/toy_world_v3.md``): the canonical
      caption naming the missing object again at the end (:func:`~promptloop_env.toy.grammar.restate`);
    - ``fix="emphasise"``: the canonical caption with the missing object's colour word doubled in place
      (:func:`~promptloop_env.toy.grammar.emphasise`).

    When both objects show, the prompt in force is kept. The starting prompt is the canonical caption (with
    ``second_first``: the query's second object named first). Past ``act_until`` the prompt is held. Queries
    outside the grammar are passed through unchanged.
    """

    FIXES = ("reorder", "restate", "emphasise")

    def __init__(
        self,
        act_until: float = 0.5,
        min_mass: float = 4.0,
        second_first: bool = False,
        fix: str = "reorder",
    ) -> None:
        if fix not in self.FIXES:
            raise ValueError(f"Unknown fix {fix!r}; expected one of {', '.join(map(repr, self.FIXES))}.")
        self.act_until = float(act_until)
        self.min_mass = float(min_mass)
        self.second_first = bool(second_first)
        self.fix = fix

    def _fixed(self, spec: Spec, missing: int) -> str:
        if self.fix == "restate":
            return restate(spec, missing)
        if self.fix == "emphasise":
            return emphasise(spec, missing)
        return describe(spec) if missing == 0 else describe(swapped(spec))

    def act(self, observations: Any) -> list[str]:
        prompts = []
        for o in split_observations(observations):
            try:
                spec = parse(o["query"])
            except ParseError:
                prompts.append(o["prompt"])
                continue
            start = describe(swapped(spec)) if self.second_first else describe(spec)
            if len(spec.objects) != 2:
                prompts.append(start)
                continue
            fixes = [self._fixed(spec, 0), self._fixed(spec, 1)]
            prompt = o["prompt"] if o["prompt"] in (start, *fixes) else start
            if float(np.ravel(o["progress"])[0]) <= self.act_until:
                seen = objects_forming(o["preview"], spec, self.min_mass)
                if seen == [True, False]:
                    prompt = fixes[1]
                elif seen == [False, True]:
                    prompt = fixes[0]
            prompts.append(prompt)
        return prompts


#: The open-loop rule and the closed-loop setting ``benchmarks/toy_headroom.py`` chose on train queries for the
#: shipped toy model (``benchmarks/results/toy_headroom.md``): the references beside learned policies.
REFERENCE_RULE = "canonical, second object named first"
REFERENCE_CONTROLLER: dict[str, Any] = dict(act_until=0.2, second_first=True)


def scripted_references() -> dict[str, Rewrite | NeglectController]:
    """The toy world's scripted reference policies by row label: the best open-loop rewrite and the
    closed-loop controller, as chosen on train queries for the shipped model (:data:`REFERENCE_RULE`,
    :data:`REFERENCE_CONTROLLER`). Used by ``promptloop bench ablation --scripted`` and the demo."""
    return {
        f"scripted open loop: {REFERENCE_RULE}": Rewrite(REFERENCE_RULE),
        "scripted closed loop: neglect controller": NeglectController(**REFERENCE_CONTROLLER),
    }
