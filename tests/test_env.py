"""PromptLoop-v0 as a Gymnasium environment: API conformance, seeding, episodes, rendering."""

from __future__ import annotations

import doctest

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import promptloop_env
from promptloop_env import PromptLoopEnv, PromptLoopVectorEnv


def small_env(pipeline, **kwargs) -> PromptLoopEnv:
    kwargs.setdefault("num_inference_steps", 6)
    kwargs.setdefault("num_refinements", 2)
    return PromptLoopEnv(pipeline=pipeline, **kwargs)


def run_episode(env, seed, actions, query=None):
    obs, info = env.reset(seed=seed, options=None if query is None else {"query": query})
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
    assert terminated and not truncated
    return observations, rewards, info


def test_registered_and_check_env(pipeline):
    assert "PromptLoop-v0" in gym.registry and "PromptLoop-SD15-v0" in gym.registry
    env = gym.make("PromptLoop-v0", pipeline=pipeline, num_inference_steps=6, num_refinements=2)
    assert env.unwrapped.pipeline is pipeline
    check_env(env.unwrapped, skip_render_check=True)


def test_check_env_with_render(pipeline):
    check_env(small_env(pipeline, render_mode="rgb_array"))


def test_episode_structure(pipeline):
    env = small_env(pipeline, num_inference_steps=10, num_refinements=3)
    obs, info = env.reset(seed=3, options={"query": "a red circle"})
    assert env.observation_space.contains(obs)
    assert info["refinement_steps"] == [2, 5, 8] and info["step"] == 2
    assert obs["prompt"] == obs["query"] == "a red circle"
    assert obs["progress"][0] == pytest.approx(0.2)
    rewards = []
    for i, action in enumerate(["p one", "p two", "p three"]):
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert obs["prompt"] == action and obs["query"] == "a red circle"
        assert terminated == (i == 2) and not truncated
    assert rewards[:2] == [0.0, 0.0] and rewards[2] != 0.0
    assert info["prompts"] == ["p one", "p two", "p three"]
    assert info["image"].shape == (32, 32, 3) and info["image"].dtype == np.uint8
    assert obs["progress"][0] == 1.0
    # The terminal reward is the reward of the final image against the ORIGINAL query.
    assert rewards[2] == pytest.approx(env._reward(info["image"][None], ["a red circle"])[0])
    assert info["reward_components"] == {"jpeg_compressibility": rewards[2]}


def test_same_seed_same_episode_different_seed_differs(pipeline):
    env = small_env(pipeline, schedule="random")
    actions = ["a cat", "a dog"]
    obs_a, rew_a, info_a = run_episode(env, 7, actions)
    obs_b, rew_b, info_b = run_episode(env, 7, actions)
    obs_c, rew_c, info_c = run_episode(env, 8, actions, query=obs_a[0]["query"])
    assert info_a["refinement_steps"] == info_b["refinement_steps"]
    for a, b in zip(obs_a, obs_b, strict=True):
        assert np.array_equal(a["preview"], b["preview"]) and a["query"] == b["query"]
    assert np.array_equal(info_a["image"], info_b["image"]) and rew_a == rew_b
    assert not np.array_equal(info_a["image"], info_c["image"])


def test_options_latents_fix_the_noise(pipeline):
    env = small_env(pipeline)
    latents = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0))
    _, _, info_a = run_episode_with(env, 1, latents)
    _, _, info_b = run_episode_with(env, 2, latents)
    assert np.array_equal(info_a["image"], info_b["image"])  # different seeds, same noise: same image


def run_episode_with(env, seed, latents):
    env.reset(seed=seed, options={"query": "a tree", "latents": latents})
    for action in ["a tree", "a tree"]:
        out = env.step(action)
    return out[0], out[1], out[4]


def test_random_schedule_draws_per_episode(pipeline):
    env = small_env(pipeline, num_inference_steps=20, num_refinements=5, schedule="random")
    schedules = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        points = info["refinement_steps"]
        assert len(points) == 5 and points == sorted(set(points)) and 1 <= points[0] and points[-1] <= 19
        schedules.add(tuple(points))
    assert len(schedules) > 1


def test_explicit_schedule_with_step_zero_gives_blank_preview(pipeline):
    env = small_env(pipeline, num_refinements=2, schedule=[0, 3])
    obs, info = env.reset(seed=0)
    assert info["step"] == 0 and not obs["preview"].any() and obs["progress"][0] == 0.0
    obs, *_ = env.step("a cat")
    assert obs["preview"].any()


@pytest.mark.parametrize("mode", ["full", "linear", "none"])
def test_preview_kinds_and_size(pipeline, mode):
    env = small_env(pipeline, preview=mode, preview_size=(24, 20))
    obs, _ = env.reset(seed=0)
    assert obs["preview"].shape == (24, 20, 3) and env.observation_space.contains(obs)
    assert obs["preview"].any() == (mode != "none")


def test_render_modes(pipeline):
    env = small_env(pipeline, render_mode="rgb_array_list", preview_size=16)
    _, _, info = run_episode(env, 0, ["a", "b"])
    frames = env.render()
    assert len(frames) == 3 and all(f.shape == (32, 32, 3) for f in frames)
    assert np.array_equal(frames[-1], info["image"])
    env = small_env(pipeline, render_mode="rgb_array")
    _, _, info = run_episode(env, 0, ["a", "b"])
    assert np.array_equal(env.render(), info["image"])


def test_prompt_sources(pipeline, tmp_path):
    path = tmp_path / "queries.txt"
    path.write_text("a red circle\n\na blue square\n")
    env = small_env(pipeline, prompts=str(path))
    seen = {env.reset(seed=s)[0]["query"] for s in range(12)}
    assert seen == {"a red circle", "a blue square"}
    env = small_env(pipeline, prompts=lambda rng: f"query {int(rng.integers(3))}")
    assert env.reset(seed=0)[0]["query"].startswith("query ")


def test_reward_callable_and_weighted_sum(pipeline):
    def brightness(images, queries):
        return images.mean(axis=(1, 2, 3)) / 255

    env = small_env(pipeline, reward={"jpeg_compressibility": 1.0, "jpeg_incompressibility": 0.5})
    _, rewards, info = run_episode(env, 0, ["a", "b"])
    parts = info["reward_components"]
    assert rewards[-1] == pytest.approx(parts["jpeg_compressibility"] + 0.5 * parts["jpeg_incompressibility"])
    env = small_env(pipeline, reward=brightness)
    _, rewards, info = run_episode(env, 0, ["a", "b"])
    assert rewards[-1] == pytest.approx(info["image"].mean() / 255)


def test_vector_env_spaces_and_parity_with_single(pipeline):
    queries = ["a red circle", "a blue square", "a cat"]
    actions = [["x one", "y one", "z one"], ["x two", "y two", "z two"]]
    envs = gym.make_vec("PromptLoop-v0", num_envs=3, pipeline=pipeline, num_inference_steps=6, num_refinements=2)
    assert isinstance(envs.unwrapped, PromptLoopVectorEnv)
    single = small_env(pipeline)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    obs, info = envs.reset(seed=10, options={"query": queries})
    assert envs.observation_space.contains(obs)
    trace = [obs]
    for step_actions in actions:
        obs, reward, terminated, truncated, info = envs.step(step_actions)
        trace.append(obs)
    assert terminated.all() and not truncated.any()
    final = envs.unwrapped.engine.final_images
    for i in range(3):
        s_obs, s_rew, s_info = run_episode(single, 10 + i, [a[i] for a in actions], query=queries[i])
        for v, s in zip(trace, s_obs, strict=True):
            assert single.observation_space.contains({k: (x[i] if k != "progress" else x[i]) for k, x in v.items()})
            assert np.abs(v["preview"][i].astype(int) - s["preview"].astype(int)).max() <= 1
            assert v["prompt"][i] == s["prompt"]
        assert (final[i] - single.engine.final_images[0]).abs().max().item() <= 1e-5
        assert reward[i] == pytest.approx(s_rew[-1], abs=1e-3)
        assert info["prompts"][i] == s_info["prompts"]
    # NEXT_STEP autoreset: the step after termination starts new episodes.
    obs, reward, terminated, truncated, info = envs.step(["ignored"] * 3)
    assert not terminated.any() and (reward == 0).all() and obs["progress"][0][0] < 1


def test_vector_random_schedule_is_shared_and_matches_sub_env_0(pipeline):
    envs = PromptLoopVectorEnv(
        num_envs=2, pipeline=pipeline, num_inference_steps=12, num_refinements=3, schedule="random"
    )
    _, info = envs.reset(seed=4)
    single = small_env(pipeline, num_inference_steps=12, num_refinements=3, schedule="random")
    _, s_info = single.reset(seed=4)
    assert list(info["refinement_steps"][0]) == list(info["refinement_steps"][1]) == s_info["refinement_steps"]


def test_env_docstring_examples_run():
    from promptloop_env import env as env_module

    result = doctest.testmod(env_module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_package_exports():
    assert promptloop_env.PromptLoopEnv is PromptLoopEnv


def test_environment_reference_is_generated_from_the_docstring():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    check = subprocess.run([sys.executable, "docs/gen_reference.py", "--check"], cwd=root)
    assert check.returncode == 0, "docs/environment.md is stale: run `python docs/gen_reference.py`"
