"""Bad input gets a clear error, and any str action is accepted."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptloop_env import MAX_PROMPT_CHARS, PromptLoopEnv, PromptLoopVectorEnv, sanitize_prompt
from promptloop_env.backends import ModelNotAvailableError, make_backend


@pytest.fixture
def env(pipeline):
    return PromptLoopEnv(pipeline=pipeline, num_inference_steps=4, num_refinements=2)


@pytest.mark.parametrize("action", [None, 3, b"bytes", ["a list"], np.array(["x"])])
def test_non_str_action_is_a_type_error(env, action):
    env.reset(seed=0)
    with pytest.raises(TypeError, match="expects the new prompt as a str"):
        env.step(action)


def test_step_before_reset_and_after_end(env):
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step("a cat")
    env.reset(seed=0)
    env.step("a")
    env.step("b")
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step("c")
    env.reset(seed=0)  # and reset recovers
    env.step("a")


def test_vector_bad_actions(pipeline):
    envs = PromptLoopVectorEnv(num_envs=2, pipeline=pipeline, num_inference_steps=4, num_refinements=1)
    with pytest.raises(ResetNeeded):
        envs.step(["a", "b"])
    envs.reset(seed=0)
    with pytest.raises(TypeError, match="list or tuple of 2"):
        envs.step(["only one"])
    with pytest.raises(TypeError, match="must be a str"):
        envs.step(["ok", 5])


def test_unknown_names_list_the_valid_ones(pipeline):
    with pytest.raises(ValueError, match="jpeg_compressibility"):
        PromptLoopEnv(pipeline=pipeline, reward="aesthetics-9000")
    with pytest.raises(ValueError, match="'uniform', 'random'"):
        PromptLoopEnv(pipeline=pipeline, schedule="cosine")
    with pytest.raises(ValueError, match="'full', 'linear', 'none'"):
        PromptLoopEnv(pipeline=pipeline, preview="sharp")
    with pytest.raises(ValueError, match="'ddim', 'euler', 'dpm\\+\\+'"):
        PromptLoopEnv(pipeline=pipeline, scheduler="heun")
    with pytest.raises(ValueError, match="render_mode"):
        PromptLoopEnv(pipeline=pipeline, render_mode="human")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_refinements=0), "num_refinements must be in 1..19"),
        (dict(num_refinements=20), "num_refinements must be in 1..19"),
        (dict(num_refinements=2, schedule=[5, 3]), "strictly increasing"),
        (dict(num_refinements=2, schedule=[3, 20]), "strictly increasing step indices in 0..19"),
        (dict(num_refinements=3, schedule=[1, 2]), "has 2 points but num_refinements is 3"),
        (dict(num_inference_steps=1), "at least 2"),
    ],
)
def test_bad_schedules(pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PromptLoopEnv(pipeline=pipeline, **kwargs)


def test_unsupported_pipeline_lists_supported():
    with pytest.raises(TypeError, match="Supported: StableDiffusionPipeline"):
        make_backend(object(), num_inference_steps=4)


def test_nan_initial_latents_and_bad_shape(env):
    latents = torch.zeros(4, 16, 16)
    latents[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        env.reset(seed=0, options={"latents": latents})
    with pytest.raises(ValueError, match=r"expects \(4, 16, 16\)"):
        env.reset(seed=0, options={"latents": torch.zeros(4, 8, 8)})
    with pytest.raises(TypeError, match="options\\['query'\\] must be a str"):
        env.reset(seed=0, options={"query": 42})


def test_nan_during_sampling_is_an_error_not_a_black_image(pipeline):
    env = PromptLoopEnv(pipeline=pipeline, num_inference_steps=6, num_refinements=2)
    env.reset(seed=0)
    # A numerical failure inside the denoiser (as float16 overflow would cause) from now on.
    handle = pipeline.unet.register_forward_hook(lambda module, args, out: (out[0] * float("nan"),))
    try:
        with pytest.raises(FloatingPointError, match="Non-finite values"):
            env.step("a cat")
    finally:
        handle.remove()


def test_control_characters_removed_and_long_prompts_truncated(env):
    env.reset(seed=0)
    obs, _, _, _, info = env.step("a red\ncircle\x00\x07 with\tstripes\u200b")
    assert obs["prompt"] == "a red circle with stripes" and info["prompt_truncated"] is False
    long = " ".join(["purple"] * 200)
    obs, _, _, _, info = env.step(long)
    assert info["prompt_truncated"] is True
    assert long.startswith(obs["prompt"]) and 0 < len(obs["prompt"]) < len(long)
    tokenizer = env.pipeline.tokenizer
    assert len(tokenizer(obs["prompt"]).input_ids) <= tokenizer.model_max_length
    assert info["prompts"][1] == obs["prompt"]


def test_over_long_string_is_cut_to_the_space_limit(env):
    env.reset(seed=0)
    obs, *_, info = env.step("x" * (3 * MAX_PROMPT_CHARS))
    assert info["prompt_truncated"] and len(obs["prompt"]) <= MAX_PROMPT_CHARS


def test_empty_prompt_is_the_unconditional_prompt(pipeline):
    env = PromptLoopEnv(pipeline=pipeline, num_inference_steps=4, num_refinements=1, guidance_scale=3.0)
    env.reset(seed=0)
    obs, *_ = env.step("")
    assert obs["prompt"] == ""
    backend = env.engine.backend
    assert torch.equal(backend.encode([""]), backend.encode([backend.negative_prompt]))


def test_sanitize_prompt_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        sanitize_prompt(None)


def test_missing_model_id_names_the_id():
    with pytest.raises(ModelNotAvailableError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        gym.make("PromptLoop-SD15-v0", local_files_only=True)
    with pytest.raises(ModelNotAvailableError, match="no-such/model"):
        PromptLoopEnv(pipeline="no-such/model", local_files_only=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400))
def test_any_unicode_action_never_crashes(pipeline, text):
    env = PromptLoopEnv(pipeline=pipeline, num_inference_steps=2, num_refinements=1, preview="none")
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(text)
    assert terminated and np.isfinite(reward)
    assert obs["prompt"] == sanitize_prompt(obs["prompt"])
