"""Open-loop ("a priori") inference: every prompt of an episode written in one pass before sampling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401  (registers the env ids)
from agents.baselines import Identity
from agents.cli import load_policy, main
from agents.openloop import OpenLoop, refinement_progress
from agents.rollout import collect
from agents.toy import load_toy_policy
from agents.train import ConfigError


def envs_for(n: int, **kwargs):
    return gym.make_vec(
        "PromptLoop-v0", num_envs=n, vectorization_mode="vector_entry_point", num_inference_steps=6,
        num_refinements=3, **kwargs,
    )  # fmt: skip


class Counted:
    """The toy agent, counting its generate() calls and the chats in each."""

    def __init__(self, agent):
        self.agent, self.calls = agent, []

    def generate(self, observations, **kwargs):
        self.calls.append(len(observations) if isinstance(observations, list) else len(observations["query"]))
        return self.agent.generate(observations, **kwargs)


def test_open_loop_writes_all_prompts_in_one_pass_and_the_env_uses_them():
    agent = Counted(load_toy_policy())
    envs = envs_for(2, schedule="random")
    queries = ["a red circle", "a small blue square on the left"]
    torch.manual_seed(0)
    episodes = collect(OpenLoop(agent), envs, queries, [4, 5])
    assert agent.calls == [2 * 3]  # one generate call for the K = 3 refinement points of both episodes
    for episode, query in zip(episodes, queries, strict=True):
        assert episode.query == query and len(episode.turns) == 3 and len(episode.previews) == 3
        assert episode.prompts == [t.prompt for t in episode.turns]  # the env ran the planned prompts
        assert all(not t.image.any() for t in episode.turns)  # written before any preview existed
        assert episode.image.shape == (32, 32, 3) and np.isfinite(episode.reward)
    # The chats carry the query as the prompt in force and each refinement point's progress.
    obs, info = envs.reset(seed=[4, 5], options={"query": queries})
    progress = refinement_progress(obs, info, num_inference_steps=6)
    assert progress == [[s / 6 for s in steps] for steps in info["refinement_steps"]]
    assert refinement_progress(obs, info) == progress  # T read off the observation when not given
    chats = OpenLoop(agent.agent).chats(obs, progress)
    assert [c["prompt"] for c in chats] == [q for q in queries for _ in range(3)]
    assert [float(c["progress"]) for c in chats] == pytest.approx([p for ps in progress for p in ps])
    envs.close()


def test_open_loop_prompts_do_not_depend_on_the_sampling():
    """Greedy open-loop prompts are the same whatever the initial noise: the policy never waits for the env."""
    agent = load_toy_policy()
    envs = envs_for(2)
    queries = ["a red circle", "a green triangle"]
    first = collect(OpenLoop(agent), envs, queries, [0, 1], greedy=True)
    second = collect(OpenLoop(agent), envs, queries, [7, 8], greedy=True)
    assert [e.prompts for e in first] == [e.prompts for e in second]
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    assert all(not t.fallback for e in first for t in e.turns)
    envs.close()


def test_open_loop_specs_and_errors(tmp_path, capsys):
    assert isinstance(load_policy("open-loop:toy"), OpenLoop)
    with pytest.raises(ConfigError, match="open-loop already"):
        load_policy("open-loop:identity")
    with pytest.raises(TypeError, match="MLLMAgent"):
        OpenLoop(Identity())
    code = main(
        ["eval", "--agent", "toy", "--agent", "open-loop:toy", "--eval-n", "2", "--num-envs", "2",
         "--num-inference-steps", "4", "--num-refinements", "2"]
    )  # fmt: skip
    assert code == 0 and "| open-loop:toy |" in capsys.readouterr().out
