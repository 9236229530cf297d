"""Open-loop ("a priori") inference: the agent writes the prompts for all K refinement points before sampling.

Closed-loop inference (the default) interleaves the two models: at each refinement point the env stops, the
agent reads the preview and writes the next prompt, and the diffusion model waits for it, K times per episode.
In open-loop inference the agent writes every prompt of the episode in one batched ``generate`` call, from the
query alone, before the first denoising step; the env then runs the whole trajectory with those prompts
without waiting for the agent.

Each of the K turns is the chat the agent would see at that refinement point, minus what sampling would have
told it: a blank preview (what ``preview="none"`` shows), the query as the prompt in force, and the refinement
point's progress, so the agent can still write step-aware prompts. The K turns of all episodes go through the
model as one batch, so the policy costs one generation instead of K sequential ones, and nothing the policy
does depends on the env any more (the two could run on different devices, or the prompts be cached).

    from agents.openloop import OpenLoop
    episodes = collect(OpenLoop(agent), envs, queries, seeds)      # or evaluate(OpenLoop(agent), ...)

``promptloop eval --agent open-loop:runs/x/agent`` evaluates an agent this way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .mllm import MLLMAgent, Turn, split_observations

__all__ = ["OPEN_LOOP_PREFIX", "OpenLoop", "refinement_progress"]

#: ``promptloop eval --agent open-loop:<agent>`` evaluates ``<agent>`` open-loop.
OPEN_LOOP_PREFIX = "open-loop:"


def refinement_progress(
    observations: Any, info: Mapping[str, Any], num_inference_steps: int | None = None
) -> list[list[float]]:
    """The progress (fraction of denoising done) at each refinement point of each episode, from a reset's
    observation and info (``info["refinement_steps"]``; ``num_inference_steps`` T, else derived from the
    first refinement point's ``step / progress``)."""
    observations = split_observations(observations)
    steps = info["refinement_steps"]
    steps = [steps] if len(observations) == 1 and np.ndim(steps[0]) == 0 else list(steps)
    result = []
    for observation, episode_steps, first in zip(observations, steps, np.atleast_1d(info["step"]), strict=True):
        total = num_inference_steps
        if total is None:
            progress = float(np.asarray(observation["progress"]).reshape(-1)[0])
            if progress <= 0:
                raise ValueError(
                    "The first refinement point is at step 0, so the number of denoising steps cannot be read off "
                    "the observation; pass num_inference_steps."
                )
            total = round(int(first) / progress)
        result.append([int(s) / total for s in episode_steps])
    return result


class OpenLoop:
    """An :class:`~agents.mllm.MLLMAgent` run open-loop: :meth:`plan` writes all K prompts of every episode in
    one batched pass before sampling; :func:`agents.rollout.collect` then steps the env with them.

    Args:
        agent: the trained agent (its sampling settings apply).
    """

    def __init__(self, agent: MLLMAgent) -> None:
        if not hasattr(agent, "generate"):
            raise TypeError(
                f"OpenLoop needs an agent with generate() (an MLLMAgent), got {type(agent).__name__}; baselines "
                "that ignore previews are open-loop already."
            )
        self.agent = agent

    def chats(self, observations: Any, progress: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
        """The observations the agent answers, K per episode in episode order: a blank preview, the query as
        the prompt in force, and each refinement point's progress."""
        chats = []
        for observation, points in zip(split_observations(observations), progress, strict=True):
            blank = np.zeros_like(np.asarray(observation["preview"], dtype=np.uint8))
            query = str(observation["query"])
            for p in points:
                chats.append({"preview": blank, "query": query, "prompt": query, "progress": np.float32(p)})
        return chats

    def plan(
        self,
        observations: Any,
        info: Mapping[str, Any],
        *,
        num_inference_steps: int | None = None,
        greedy: bool = False,
    ) -> list[list[Turn]]:
        """Every episode's K turns (prompt, tokens, log-probs), from the observation and info of ``reset``,
        in one ``generate`` call over all episodes' refinement points."""
        progress = refinement_progress(observations, info, num_inference_steps)
        turns = self.agent.generate(self.chats(observations, progress), greedy=greedy)
        plans, start = [], 0
        for points in progress:
            plans.append(turns[start : start + len(points)])
            start += len(points)
        return plans
