"""SB3/RLlib adapters (numeric actions and observations), Gymnasium's standard wrappers, videos and GIFs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image

import promptloop_env  # noqa: F401  (registers the env ids)
from promptloop_env.rendering import preview_strip, save_gif
from promptloop_env.wrappers import (
    DEFAULT_BANK,
    NumericObservation,
    PromptBankAction,
    TokenAction,
    default_vocabulary,
    make_sb3_env,
)

# The smallest real episodes: the shipped toy model, 2 or 3 denoising steps.
FAST = dict(num_inference_steps=2, num_refinements=1)
CHEAP = dict(FAST, preview="linear")  # the nearly free preview, for the checkers and the PPO run
TWO = dict(num_inference_steps=3, num_refinements=2)
QUERY = "a red circle on the left"


def _prompts(env: gym.Env, actions: list) -> list[str]:
    env.reset(seed=0, options={"query": QUERY})
    info: dict = {}
    for action in actions:
        *_, info = env.step(action)
    return info["prompts"]


def test_prompt_bank_action_fills_the_query_and_the_prompt_in_force():
    env = PromptBankAction(gym.make("PromptLoop-v0", **TWO), bank=["{query}", "{query}, big", "{prompt}!", "fixed"])
    assert env.action_space == spaces.Discrete(4)
    assert _prompts(env, [1, 2]) == [f"{QUERY}, big", f"{QUERY}, big!"]
    assert _prompts(env, [np.int64(3), np.array([0])]) == ["fixed", QUERY]
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "1", [0, 1]):
        with pytest.raises(ValueError, match="integer in"):
            env.step(bad)
    with pytest.raises(ValueError, match="non-empty"):
        PromptBankAction(env.env, bank=[])
    with pytest.raises(TypeError, match="PromptLoopEnv"):
        PromptBankAction(gym.make("CartPole-v1"))


def test_default_bank_starts_with_the_identity():
    env = PromptBankAction(gym.make("PromptLoop-v0", **FAST))
    assert DEFAULT_BANK[0] == "{query}" and env.action_space.n == len(DEFAULT_BANK)
    assert _prompts(env, [0]) == [QUERY]
    assert _prompts(env, [1]) == [QUERY + ", on a black background"]


def test_token_action_appends_or_replaces_with_vocabulary_words():
    words = ["big", "white", "background"]
    env = TokenAction(gym.make("PromptLoop-v0", **TWO), vocabulary=words, length=3)
    assert env.action_space == spaces.MultiDiscrete([4, 4, 4])
    assert env.decode(np.array([2, 0, 3])) == "white background"
    assert _prompts(env, [np.array([1, 0, 0]), np.zeros(3, dtype=np.int64)]) == [f"{QUERY} big", QUERY]
    env = TokenAction(gym.make("PromptLoop-v0", **FAST), vocabulary=words, length=2, mode="replace")
    assert _prompts(env, [np.array([3, 1])]) == ["background big"]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="out of range"):
        env.step(np.array([4, 0]))
    with pytest.raises(ValueError, match="2 integers"):
        env.step(np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="duplicate"):
        TokenAction(env.env, vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="mode"):
        TokenAction(env.env, mode="prepend")
    assert TokenAction(env.env).vocabulary == default_vocabulary()


def test_numeric_observation_encodes_previews_and_text():
    # A query outside the toy grammar (", red" names no shape): graded by a reward that takes any text.
    base = gym.make("PromptLoop-v0", reward=lambda images, queries: np.zeros(len(images)), **TWO)
    vocabulary = ["red", "circle", "left", "blue"]
    env = NumericObservation(base, text="bow", vocabulary=vocabulary, preview_size=(40, 36))
    obs, _ = env.reset(seed=0, options={"query": QUERY + ", red"})
    assert env.observation_space.contains(obs)
    assert obs["preview"].shape == (3, 40, 36) and obs["preview"].dtype == np.uint8
    # "a red circle on the left, red": red x2, circle, left; "a", "on", "the" unknown.
    np.testing.assert_array_equal(obs["query"], [2, 1, 1, 0, 3])
    np.testing.assert_array_equal(obs["prompt"], obs["query"])
    obs, *_ = env.step("blue circle")
    np.testing.assert_array_equal(obs["prompt"], [0, 1, 0, 1, 0])
    assert obs["progress"].dtype == np.float32 and 0 < obs["progress"][0] < 1

    ids = NumericObservation(base, keys=("query", "progress"), text="ids", vocabulary=vocabulary, max_words=4)
    obs, _ = ids.reset(seed=0, options={"query": QUERY})
    assert set(obs) == {"query", "progress"} and ids.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["query"], [1, 2, 3, 1])  # a(unknown) red circle on(unknown), cut at 4

    preview_only = NumericObservation(base, keys=("preview",))
    obs, _ = preview_only.reset(seed=0)
    raw, _ = base.reset(seed=0)
    assert preview_only.observation_space == spaces.Box(0, 255, (3, 32, 32), np.uint8)
    np.testing.assert_array_equal(obs, raw["preview"].transpose(2, 0, 1))
    with pytest.raises(ValueError, match="keys"):
        NumericObservation(base, keys=("preview", "image"))
    with pytest.raises(ValueError, match="text"):
        NumericObservation(base, text="onehot")


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(keys=("preview",), action="tokens", text="ids", mode="replace")],
    ids=["bank-bow-dict", "tokens-preview-box"],
)
def test_wrapped_env_passes_sb3_and_gymnasium_checkers(kwargs):
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_sb3_env(**CHEAP, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env)
        gym_check_env(env, skip_render_check=True)
    # The one expected warning: gymnasium notes that the checked env is wrapped.
    unexpected = [str(w.message) for w in caught if "different from the unwrapped" not in str(w.message)]
    assert unexpected == []


def test_batched_sb3_vec_env_matches_sb3_make_vec_env():
    from stable_baselines3.common.env_util import make_vec_env

    from promptloop_env.sb3 import PromptLoopSB3VecEnv

    queries = ["a red circle", "a blue square on a white background"]
    batched = PromptLoopSB3VecEnv(2, **TWO)
    dummy = make_vec_env(make_sb3_env, n_envs=2, env_kwargs=TWO)
    assert batched.observation_space == dummy.observation_space and batched.action_space == dummy.action_space
    for venv in (batched, dummy):
        venv.seed(7)
        venv.set_options([{"query": q} for q in queries])
    obs = [batched.reset(), dummy.reset()]
    assert obs[0]["query"].shape == (2, len(default_vocabulary()) + 1)
    for actions in (np.array([1, 0]), np.array([2, 5])):
        (o1, r1, d1, i1), (o2, r2, d2, i2) = batched.step(actions), dummy.step(actions)
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_allclose(r1, r2, atol=1e-6)
        for key in o1:  # one batched denoiser call vs two: the same up to float rounding
            np.testing.assert_allclose(o1[key].astype(float), o2[key].astype(float), atol=2)
    assert d1.all()
    assert (
        [i["prompts"] for i in i1]
        == [i["prompts"] for i in i2]
        == [
            [f"{queries[0]}, on a black background", f"{queries[0]}, on a white background"],
            [queries[1], queries[1] + ", small"],
        ]
    )
    np.testing.assert_array_equal(i1[0]["terminal_observation"]["progress"], [1.0])
    assert o1["progress"][0, 0] < 1  # the next episodes have started, as SB3 expects


def test_public_codecs_and_one_spec_behind_both_sb3_entry_points():
    from promptloop_env import sb3, wrappers

    assert wrappers.make_sb3_env is sb3.make_sb3_env  # moved to sb3, still importable from its old place
    options = dict(action="tokens", length=2, mode="replace", keys=("preview", "query"), text="ids", **FAST)
    spec = sb3.NumericEnvSpec.from_kwargs(**options)
    assert spec.action == "tokens" and spec.length == 2 and dict(spec.env_kwargs) == FAST
    venv, env = sb3.PromptLoopSB3VecEnv(2, **options), sb3.make_sb3_env(**options)
    assert venv.numeric_spec == spec
    assert venv.action_space == env.action_space == spec.action_codec().space
    assert venv.observation_space == env.observation_space == spec.observation_codec((32, 32)).space
    venv.close()
    env.close()
    with pytest.raises(ValueError, match="'bank' or 'tokens'"):
        sb3.NumericEnvSpec(action="words")

    # The codecs work without an env; a text's word ids, less one, are the token action that spells it.
    vocabulary = ["red", "circle"]
    words = wrappers.ObservationCodec((32, 32), keys=("query",), text="ids", vocabulary=vocabulary, max_words=2)
    ids = words.encode({"query": "red circle"})["query"]
    tokens = wrappers.TokenCodec(vocabulary, length=2, mode="append")
    assert tokens.decode(ids - 1) == "red circle"
    assert tokens.prompt(ids - 1, QUERY, "unused") == f"{QUERY} red circle"
    assert wrappers.PromptBankCodec().prompt(1, QUERY, "unused") == QUERY + ", on a black background"
    assert wrappers.OBSERVATION_KEYS == NumericObservation.KEYS


def test_short_ppo_run_on_the_batched_vec_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from promptloop_env.sb3 import PromptLoopSB3VecEnv

    venv = VecMonitor(PromptLoopSB3VecEnv(4, **CHEAP))
    model = PPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps == 64
    assert len(model.ep_info_buffer) == 64  # K = 1: every step ends an episode
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (4,) and all(venv.action_space.contains(a) for a in action)


def test_gymnasium_sync_vector_env_with_the_adapters():
    envs = gym.make_vec(
        "PromptLoop-v0", num_envs=2, vectorization_mode="sync", wrappers=[PromptBankAction, NumericObservation], **FAST
    )
    obs, _ = envs.reset(seed=0)
    assert obs["preview"].shape == (2, 3, 32, 32)
    _, reward, terminated, _, _ = envs.step(np.array([0, 1]))
    assert terminated.all() and reward.shape == (2,)


def test_standard_wrappers_episode_statistics_and_time_limit():
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("PromptLoop-v0", **TWO))
    env.reset(seed=0)
    env.step(QUERY)
    _, reward, terminated, _, info = env.step(QUERY)
    assert terminated and info["episode"]["l"] == 2 and info["episode"]["r"] == pytest.approx(reward)

    env = gym.wrappers.TimeLimit(PromptBankAction(gym.make("PromptLoop-v0", **TWO)), max_episode_steps=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(0)
    assert truncated and not terminated and reward == 0.0
    env.reset(seed=1)  # a new episode starts cleanly after the cut


def test_resizing_the_preview_inside_the_dict():
    base = gym.make("PromptLoop-v0", **FAST)
    size = (48, 48)
    space = spaces.Dict({**base.observation_space.spaces, "preview": spaces.Box(0, 255, (*size, 3), np.uint8)})

    def resize(obs):
        return {**obs, "preview": np.asarray(Image.fromarray(obs["preview"]).resize(size, Image.BILINEAR))}

    env = gym.wrappers.TransformObservation(base, resize, space)
    obs, _ = env.reset(seed=0)
    assert obs["preview"].shape == (48, 48, 3) and obs["query"] == base.unwrapped.engine.queries[0]
    obs, *_ = env.step("a red circle")
    assert obs["preview"].shape == (48, 48, 3)


def test_gymnasium_resize_observation_on_the_preview():
    pytest.importorskip("cv2", reason="gymnasium's ResizeObservation needs opencv-python")
    base = gym.make("PromptLoop-v0", **FAST)
    env = gym.wrappers.TransformObservation(base, lambda obs: obs["preview"], base.observation_space["preview"])
    env = gym.wrappers.ResizeObservation(env, (64, 64))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and env.observation_space.contains(obs)


def test_record_video_writes_an_mp4(tmp_path):
    pytest.importorskip("moviepy")
    env = gym.make("PromptLoop-v0", render_mode="rgb_array", **TWO)
    env = gym.wrappers.RecordVideo(env, str(tmp_path), episode_trigger=lambda e: True, disable_logger=True)
    env.reset(seed=0)
    env.step(QUERY)
    env.step(QUERY)
    env.close()
    videos = list(tmp_path.glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0


def test_render_list_to_gif_and_strip(tmp_path):
    env = gym.make("PromptLoop-v0", render_mode="rgb_array_list", **TWO)
    env.reset(seed=0)
    env.step(QUERY)
    _, _, _, _, info = env.step(QUERY)
    frames = env.render()
    assert len(frames) == 3  # the preview at each of K = 2 points and the final image
    np.testing.assert_array_equal(frames[-1], info["image"])
    save_gif(frames, tmp_path / "episode.gif", fps=4, scale=2)
    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (64, 64)
    strip = preview_strip(frames, gap=2)
    assert strip.shape == (32, 3 * 32 + 2 * 2, 3)
    np.testing.assert_array_equal(strip[:, -32:], frames[-1])
    with pytest.raises(ValueError, match="No frames"):
        save_gif([], tmp_path / "empty.gif")
    with pytest.raises(ValueError, match="uint8"):
        preview_strip([np.zeros((4, 4, 3), dtype=np.float32)])


def _rllib_example(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "rllib_prompt_bank.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)


def test_rllib_example_says_what_is_missing_without_ray():
    try:
        import ray.rllib  # noqa: F401
    except ImportError:
        out = _rllib_example("--iterations", "1")
        assert out.returncode != 0 and 'pip install "ray[rllib]"' in out.stderr
    else:
        pytest.skip("ray[rllib] is installed here")


def test_rllib_example_trains_and_evaluates():
    pytest.importorskip("ray.rllib", reason="the RLlib example needs ray[rllib] (see examples/rllib_prompt_bank.py)")
    out = _rllib_example("--iterations", "1", "--batch", "32", "--eval-n", "4", "--steps", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "iteration 1: episode_return_mean" in out.stdout and "paired difference of the reward" in out.stdout


@pytest.mark.parametrize("module", ["promptloop_env.wrappers", "promptloop_env.rendering", "promptloop_env.sb3"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
