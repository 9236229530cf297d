"""The env's denoising loop against diffusers' own StableDiffusionPipeline, on tiny models."""

from __future__ import annotations

import pytest
import torch

from promptloop_env import PromptLoopEnv

CASES = [
    ("ddim", "epsilon"),
    ("euler", "epsilon"),
    ("dpm++", "epsilon"),
    ("ddim", "v_prediction"),
    ("euler", "v_prediction"),
    ("dpm++", "v_prediction"),
]
STEPS = 8


def _run_env(env: PromptLoopEnv, query: str, latents: torch.Tensor, actions: list[str]) -> torch.Tensor:
    env.reset(seed=0, options={"query": query, "latents": latents})
    for action in actions:
        *_, terminated, _, _ = env.step(action)
    assert terminated
    return env.engine.final_images[0]


@pytest.mark.parametrize("scheduler,prediction", CASES)
@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_query_held_equals_pipeline(make_pipeline, scheduler, prediction, guidance):
    pipe = make_pipeline(scheduler, prediction)
    env = PromptLoopEnv(
        pipeline=pipe,
        num_inference_steps=STEPS,
        num_refinements=3,
        guidance_scale=guidance,
        negative_prompt="blurry" if guidance > 1 else None,
    )
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    query = "a red circle on the left"
    ours = _run_env(env, query, latents, [query] * 3)
    ref = pipe(
        query,
        latents=latents.clone(),
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        negative_prompt="blurry" if guidance > 1 else None,
        output_type="pt",
    ).images[0]
    assert (ours - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("scheduler,prediction", CASES[:3])
def test_prompt_switch_equals_pipeline_callback(make_pipeline, scheduler, prediction):
    """Switching to B at step k = diffusers with callback_on_step_end swapping the joined embeddings."""
    pipe = make_pipeline(scheduler, prediction)
    query, prompt_b, k = "a red circle", "a blue square on the right", 3
    env = PromptLoopEnv(pipeline=pipe, num_inference_steps=STEPS, num_refinements=1, schedule=[k])
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    ours = _run_env(env, query, latents, [prompt_b])

    cond_b, uncond = pipe.encode_prompt(prompt_b, pipe.device, 1, True)
    joined_b = torch.cat([uncond, cond_b])

    def swap(pipeline, i, t, kwargs):
        return {"prompt_embeds": joined_b} if i == k - 1 else {}

    ref = pipe(
        query,
        latents=latents.clone(),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="pt",
        callback_on_step_end=swap,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    ).images[0]
    assert (ours - ref).abs().max().item() <= 1e-4
    # And the switch matters: holding the query gives a different image.
    held = _run_env(env, query, latents, [query])
    assert (held - ours).abs().max().item() > 5e-3  # 50x the parity tolerance


def test_x0_comes_from_the_last_denoiser_call(pipeline):
    """The preview is x̂0 of the interval's last step: no extra UNet call (T calls per episode)."""
    env = PromptLoopEnv(pipeline=pipeline, num_inference_steps=STEPS, num_refinements=3)
    calls = []
    handle = pipeline.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        obs, info = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(obs["query"])
    finally:
        handle.remove()
    assert len(calls) == STEPS
