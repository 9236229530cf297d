"""Where the K refinement points fall among the T denoising steps.

A refinement point is a 0-based denoising step index ``r``: the agent acts after steps ``0 .. r-1`` are done
(seeing the clean estimate from step ``r-1``) and its prompt is in force from step ``r`` on. Steps before the
first point use the query itself. ``"uniform"`` and ``"random"`` place points in ``1 .. T-1`` so the agent
always has a preview to look at; an explicit list may include ``0`` (the agent then acts before sampling,
seeing a blank preview, as feed-forward prompt rewriters do).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SCHEDULE_KINDS", "Schedule", "draw_schedule", "validate_schedule"]

SCHEDULE_KINDS = ("uniform", "random")

Schedule = str | Sequence[int]


def validate_schedule(schedule: Schedule, num_refinements: int, num_steps: int) -> Schedule:
    """Check ``schedule`` against K and T once, at construction; return it normalised.

    Raises:
        ValueError: naming what was wrong and what is expected.
    """
    if num_steps < 2:
        raise ValueError(f"num_inference_steps must be at least 2; got {num_steps}.")
    if isinstance(schedule, str):
        if schedule not in SCHEDULE_KINDS:
            raise ValueError(
                f"Unknown schedule {schedule!r}; expected one of {', '.join(map(repr, SCHEDULE_KINDS))} "
                "or a list of step indices."
            )
        if not 1 <= num_refinements <= num_steps - 1:
            raise ValueError(
                f"num_refinements must be in 1..{num_steps - 1} (refinement points fall in steps "
                f"1..{num_steps - 1} of {num_steps}); got {num_refinements}."
            )
        return schedule
    points = [int(p) for p in schedule]
    if len(points) != num_refinements:
        raise ValueError(
            f"The explicit schedule {points} has {len(points)} points but num_refinements is {num_refinements}."
        )
    if not points or points != sorted(set(points)) or points[0] < 0 or points[-1] > num_steps - 1:
        raise ValueError(
            f"An explicit schedule must be strictly increasing step indices in 0..{num_steps - 1}; got {points}."
        )
    return tuple(points)


def draw_schedule(schedule: Schedule, num_refinements: int, num_steps: int, rng: np.random.Generator) -> list[int]:
    """The refinement points of one episode (``rng`` is used only by ``"random"``)."""
    if schedule == "uniform":
        # K points equally spaced strictly inside the T steps: round(k T / (K + 1)), k = 1..K.
        return [int(round(k * num_steps / (num_refinements + 1))) for k in range(1, num_refinements + 1)]
    if schedule == "random":
        # As in the paper's training: K distinct steps drawn uniformly per episode.
        points = rng.choice(np.arange(1, num_steps), size=num_refinements, replace=False)
        return sorted(int(p) for p in points)
    return list(schedule)
