"""What a careless user hits: pickling, observation spaces with any text, queries checked at reset, whole queries."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import promptloop_env  # noqa: F401  (registers the env ids)

FAST = dict(num_inference_steps=4, num_refinements=2)


def test_env_pickles_and_resets_like_the_original():
    for prompts in (None, ["a red circle", "a blue square on the left"]):
        env = gym.make("PromptLoop-v0", prompts=prompts, **FAST)
        copy = pickle.loads(pickle.dumps(env))
        a, _ = env.reset(seed=5)
        b, _ = copy.reset(seed=5)
        assert a["query"] == b["query"] and np.array_equal(a["preview"], b["preview"])
        ra = env.step(a["query"])[0]
        rb = copy.step(b["query"])[0]
        assert np.array_equal(ra["preview"], rb["preview"])


def _zeros(images, queries):
    return np.zeros(len(images))


@pytest.mark.parametrize("vector", [False, True])
def test_observations_are_in_the_observation_space_for_any_text(vector):
    texts = ["a red circle 🙂", "赤い円", "tab\there", "ünïcödé", "", "x" * 3000, "\x00\x1b[31m", "a\u200bb"]
    rng = np.random.default_rng(0)
    if vector:
        env = gym.make_vec("PromptLoop-v0", num_envs=2, reward=_zeros, **FAST)
        space = env.observation_space
    else:
        env = gym.make("PromptLoop-v0", reward=_zeros, **FAST)
        space = env.observation_space
    for episode in range(4):
        query = texts[episode]
        obs, _ = env.reset(seed=episode, options={"query": [query, query] if vector else query})
        assert space.contains(obs), obs["query"]
        done = False
        while not done:
            action = [str(rng.choice(texts)), str(rng.choice(texts))] if vector else str(rng.choice(texts))
            obs, _, terminated, truncated, _ = env.step(action)
            assert space.contains(obs), (obs["query"], obs["prompt"])
            done = bool(np.all(terminated | truncated))
    assert space.contains(space.sample())


def test_a_query_the_reward_cannot_grade_fails_at_reset():
    env = gym.make("PromptLoop-v0", **FAST)
    with pytest.raises(ValueError, match=r"Query 0 \('a cat on a sofa'\).*toy_alignment.*unknown words"):
        env.reset(seed=0, options={"query": "a cat on a sofa"})
    obs, _ = env.reset(seed=0, options={"query": "a red circle"})  # the env is still usable
    envs = gym.make_vec("PromptLoop-v0", num_envs=3, **FAST)
    with pytest.raises(ValueError, match=r"Query 1 \(''\)"):
        envs.reset(seed=0, options={"query": ["a red circle", "", "a blue square"]})
    envs.reset(seed=0, options={"query": ["a red circle", "a green circle", "a blue square"]})
    envs.step(["a red circle"] * 3)


def test_the_query_is_kept_whole_and_only_the_conditioning_is_cut():
    seen = []

    def record(images, queries):
        seen.extend(queries)
        return np.zeros(len(images))

    long_query = "a red circle on the left on a white background, " * 16
    env = gym.make("PromptLoop-v0", reward=record, **FAST)
    obs, info = env.reset(seed=0, options={"query": long_query})
    assert obs["query"] == long_query.strip()
    assert len(obs["prompt"]) < len(obs["query"]) and info["prompt_truncated"]
    for _ in range(2):
        obs, *_ = env.step(obs["prompt"])
    assert seen == [long_query.strip()]


ASYNC_AFTER_TORCH = """
import torch, gymnasium as gym, numpy as np
import promptloop_env
x = torch.randn(256, 256)
(x @ x).sum()  # torch's thread pool runs in the parent, as in any notebook
torch.nn.functional.layer_norm(torch.randn(64, 128), (128,))
kwargs = dict(num_inference_steps=4, num_refinements=2)
envs = gym.make_vec("PromptLoop-v0", num_envs=2, vectorization_mode="async", **kwargs)
obs, _ = envs.reset(seed=0)
envs.step(list(obs["query"]))
envs.close()
from stable_baselines3.common.vec_env import SubprocVecEnv
from promptloop_env.wrappers import make_sb3_env
venv = SubprocVecEnv([lambda: make_sb3_env(**kwargs)] * 2, start_method="fork")
venv.reset()
venv.step(np.zeros(2, dtype=int))
venv.close()
print("done")
"""


def test_async_vector_envs_work_after_torch_ran_in_the_parent():
    import subprocess
    import sys

    # A fresh interpreter (the test process's own state is not the point); a hang is the failure mode.
    out = subprocess.run(
        [sys.executable, "-c", ASYNC_AFTER_TORCH], capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]


def test_sizes_are_checked_at_construction():
    with pytest.raises(ValueError, match="height must be an int >= 8"):
        gym.make("PromptLoop-v0", height=0)
    with pytest.raises(ValueError, match="num_inference_steps=1000 is more than DDIMScheduler can run"):
        gym.make("PromptLoop-v0", num_inference_steps=1000, num_refinements=1)
    gym.make("PromptLoop-v0", num_inference_steps=999, num_refinements=1)  # the most it can run
    with pytest.raises(MemoryError, match="check_memory=False"):
        gym.make_vec("PromptLoop-v0", num_envs=10**7)
    with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
        gym.make_vec("PromptLoop-v0", num_envs=2.5)
    env = gym.make("PromptLoop-v0", text_cache_size=3)
    assert env.unwrapped.engine.backend._cache.size == 3


def test_bad_arguments_get_errors_that_name_them():
    env = gym.make("PromptLoop-v0", **FAST)
    with pytest.raises(TypeError, match="options=.*must be a dict"):
        env.reset(options=["a red circle"])
    with pytest.raises(ValueError, match=r"Unknown reset option\(s\) \['qeury'\]"):
        env.reset(options={"qeury": "a red circle"})
    obs, _ = env.reset(seed=np.int64(3))  # numpy integer seeds work
    again, _ = env.reset(seed=3)
    assert np.array_equal(obs["preview"], again["preview"])
    for latents, kind in [
        (np.zeros((4, 8, 8), np.complex64), TypeError),
        (np.zeros((4, 8, 8), np.int64), TypeError),
        (np.zeros((4, 8, 8), bool), TypeError),
        (np.float32(1.0), ValueError),
    ]:
        with pytest.raises(kind, match=r"options\['latents'\]"):
            env.reset(options={"latents": latents})
    envs = gym.make_vec("PromptLoop-v0", num_envs=2, **FAST)
    envs.reset(seed=np.int32(0))
    for actions in ({"a", "b"}, {"x": "a", "y": "b"}, None, 3):
        with pytest.raises(TypeError, match="actions must be a list or tuple of 2 str"):
            envs.step(actions)
    with pytest.raises(TypeError, match="Sub-env 1's action must be a str"):
        envs.step(["a red circle", None])
    envs.step(["a red circle", "a blue square"])  # still usable after the refusals


def test_making_the_default_env_prints_nothing():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    code = (
        "import gymnasium as gym, promptloop_env\n"
        "env = gym.make('PromptLoop-v0'); env.reset(seed=0)\n"
        "from diffusers.utils import logging as d; assert d.is_progress_bar_enabled()  # the user's setting is kept\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == "" and out.stderr == "", out.stderr[-2000:]
