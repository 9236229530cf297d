"""Rollouts: run a policy on a PromptLoop vector env, through the Gymnasium API only, and keep the episodes.

Every sub-env runs one episode; a :class:`Episode` holds its query, the agent's turns (observation image,
chat tokens, answer tokens, sampling log-probs; the trainers add reference log-probs and values), the
prompt history, the final image and the terminal reward with its components. Only the agent's own answer
tokens are ever trained: the chat tokens (image placeholders, query, prompt in force) are context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .mllm import Turn

__all__ = ["Episode", "annotate", "collect"]


@dataclass
class Episode:
    """One finished episode of one sub-env."""

    query: str
    seed: int
    turns: list[Turn] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    previews: list[np.ndarray] = field(default_factory=list)
    image: np.ndarray | None = None
    reward: float = 0.0
    components: dict[str, float] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(len(t.response_ids) for t in self.turns)

    def tokens(self, name: str) -> torch.Tensor:
        """A per-token field of the agent's turns (``"logprobs"``, ``"ref_logprobs"``, ``"values"``), all
        turns concatenated in order: the episode as one sequence of agent tokens."""
        return torch.cat([getattr(t, name) for t in self.turns])


def collect(
    policy: Any,
    envs: Any,
    queries: Sequence[str],
    seeds: Sequence[int],
    *,
    one_shot: bool = False,
    greedy: bool = False,
) -> list[Episode]:
    """Run one episode per sub-env of ``envs`` (a PromptLoop vector env) with these queries and seeds.

    ``policy`` is an :class:`~agents.mllm.MLLMAgent` (its turns are recorded) or anything with
    ``act(observations) -> list[str]`` (a baseline). ``one_shot``: the policy acts at the first refinement
    point only and its prompt is held for the rest of the episode (the feed-forward setting). A policy with
    ``plan(observations, info, ...)`` (:class:`~agents.openloop.OpenLoop`) writes all prompts at reset and the
    env is stepped with them (open-loop inference); its turns are recorded too.
    """
    n = envs.num_envs
    if len(queries) != n or len(seeds) != n:
        raise ValueError(f"collect() needs one query and one seed per sub-env ({n}); got {len(queries)}, {len(seeds)}.")
    episodes = [Episode(query=str(q), seed=int(s)) for q, s in zip(queries, seeds, strict=True)]
    obs, info = envs.reset(seed=[int(s) for s in seeds], options={"query": list(queries)})
    records = hasattr(policy, "generate")
    # Open-loop policies (agents.openloop.OpenLoop) write every prompt of the episode now, before sampling.
    plan = (
        policy.plan(obs, info, num_inference_steps=getattr(envs, "num_inference_steps", None), greedy=greedy)
        if hasattr(policy, "plan")
        else None
    )
    turn = 0
    while True:
        for episode, preview in zip(episodes, obs["preview"], strict=True):
            episode.previews.append(np.asarray(preview))
        if one_shot and turn > 0:
            actions = [str(p) for p in obs["prompt"]]
        elif plan is not None:
            for episode, planned in zip(episodes, plan, strict=True):
                episode.turns.append(planned[turn])
            actions = [planned[turn].prompt for planned in plan]
        elif records:
            turns = policy.generate(obs, greedy=greedy)
            for episode, t in zip(episodes, turns, strict=True):
                episode.turns.append(t)
            actions = [t.prompt for t in turns]
        else:
            actions = list(policy.act(obs))
        obs, rewards, terminated, truncated, info = envs.step(actions)
        turn += 1
        if np.all(terminated | truncated):
            break
    components = info.get("reward_components", {})
    for i, episode in enumerate(episodes):
        episode.reward = float(rewards[i])
        episode.image = np.asarray(info["image"][i])
        episode.prompts = [str(p) for p in info["prompts"][i]]
        episode.components = {k: float(v[i]) for k, v in components.items() if not k.startswith("_")}
    return episodes


@torch.no_grad()
def annotate(
    agent: Any, episodes: Sequence[Episode], *, values: bool = False, logprobs: bool = False, batch_size: int = 64
) -> None:
    """Fill every turn's reference log-probs (adapter disabled) and, with ``values``, the value head's values;
    with ``logprobs``, replace the sampling log-probs by a forward pass of the current policy (the "old"
    log-probs of the update, as verl recomputes them)."""
    turns = [t for e in episodes for t in e.turns]
    for start in range(0, len(turns), batch_size):
        chunk = turns[start : start + batch_size]
        if logprobs:
            for t, lp in zip(chunk, agent.score(chunk).logprobs, strict=True):
                t.logprobs = lp.detach().float().cpu()
        reference = agent.reference(chunk)
        for t, r in zip(chunk, reference, strict=True):
            t.ref_logprobs = r.detach().cpu()
        if values:
            for t, v in zip(chunk, agent.score(chunk, values=True).values, strict=True):
                t.values = v.detach().float().cpu()
