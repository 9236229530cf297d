"""SDXL, SD3 and FLUX backends against their diffusers pipelines, on tiny models built from configs in memory."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401  (registers the ids)
from promptloop_env import PromptLoopEnv
from promptloop_env.backends import (
    FluxBackend,
    ModelNotAvailableError,
    StableDiffusion3Backend,
    StableDiffusionXLBackend,
    make_backend,
    supported_pipelines,
)
from promptloop_env.testing import tiny_flux, tiny_stable_diffusion_3, tiny_stable_diffusion_xl

STEPS = 6
QUERY = "a red circle on the left"
BUILDERS = {
    "sdxl": tiny_stable_diffusion_xl,
    "sdxl-turbo": functools.partial(tiny_stable_diffusion_xl, turbo=True),
    "sd3": tiny_stable_diffusion_3,
    "sd3-no-t5": functools.partial(tiny_stable_diffusion_3, t5=False),
    "flux": tiny_flux,
    "flux-schnell": functools.partial(tiny_flux, guidance_embeds=False),
}
SIZE = dict(height=32, width=32)  # FluxPipeline's default is 128 latents a side; every tiny model draws 32 px


@functools.cache
def tiny(name: str):
    return BUILDERS[name]()


def _env(pipe, **kwargs) -> PromptLoopEnv:
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("num_refinements", 2)
    return PromptLoopEnv(pipeline=pipe, **SIZE, **kwargs)


def _noise(env, seed: int = 1) -> torch.Tensor:
    shape = env.unwrapped.engine.backend.latent_shape()
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed))


def _episode(env, latents, actions, query=QUERY) -> torch.Tensor:
    env.reset(seed=0, options={"query": query, "latents": latents})
    for action in actions:
        *_, terminated, _, _ = env.step(action)
    assert terminated
    return env.unwrapped.engine.final_images[0]


# (tiny model, env / pipeline sampling settings)
PARITY = [
    ("sdxl", dict(guidance_scale=5.0)),  # negative = zeros (force_zeros_for_empty_prompt)
    ("sdxl", dict(guidance_scale=5.0, negative_prompt="blurry")),
    ("sdxl-turbo", dict(guidance_scale=0.0)),  # no CFG; Euler ancestral: stochastic, the env's generator reused
    ("sd3", dict(guidance_scale=5.0, negative_prompt="blurry")),
    ("sd3", dict(guidance_scale=1.0)),
    ("sd3-no-t5", dict(guidance_scale=5.0)),
    ("flux", dict(guidance_scale=3.5)),
    ("flux-schnell", dict(guidance_scale=0.0)),
]


@pytest.mark.parametrize("name,sampling", PARITY, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PARITY)])
def test_query_held_equals_pipeline_and_a_switch_changes_it(name, sampling):
    pipe = tiny(name)
    env = _env(pipe, **sampling)
    latents = _noise(env)
    ours = _episode(env, latents, [QUERY, QUERY])
    generator = torch.Generator().manual_seed(env.unwrapped.engine.traj.generators[0].initial_seed())
    given = latents.clone()
    if name.startswith("flux"):  # FluxPipeline takes packed latents
        given = env.unwrapped.engine.backend.pack(given)
    ref = pipe(
        QUERY, latents=given, num_inference_steps=STEPS, generator=generator, output_type="pt", **SIZE, **sampling
    ).images[0]
    assert (ours - ref).abs().max().item() <= 1e-4
    # A new prompt at the first refinement point changes the image (20x the parity tolerance; the random VAE
    # of a tiny model damps differences, so they stay small in pixels).
    switched = _episode(env, latents, ["a blue square on the right, dark", QUERY])
    assert (switched - ours).abs().max().item() > 2e-3


def _capture(module):
    calls = []

    def hook(mod, args, kwargs, output):
        calls.append((args, kwargs, output[0].detach().clone()))

    return calls, module.register_forward_hook(hook, with_kwargs=True)


def test_sdxl_x0_is_the_epsilon_formula():
    pipe = tiny("sdxl")
    env = _env(pipe, guidance_scale=5.0, num_refinements=1, schedule=[3])
    calls, handle = _capture(pipe.unet)
    try:
        env.reset(seed=0, options={"query": QUERY, "latents": _noise(env)})
    finally:
        handle.remove()
    (model_input, t), _, out = calls[-1]
    eps_uncond, eps_text = out.chunk(2)
    eps = eps_uncond + 5.0 * (eps_text - eps_uncond)
    alpha = env.unwrapped.engine.traj.scheduler.alphas_cumprod[int(t)]
    x_vp = model_input.chunk(2)[1]  # the scaled model input is x_t in variance-preserving form
    expected = (x_vp - (1 - alpha).sqrt() * eps) / alpha.sqrt()
    x0 = env.unwrapped.engine.backend.predict_x0(env.unwrapped.engine.traj)
    assert x0.shape == (1, 4, 16, 16)
    torch.testing.assert_close(x0, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_flow_x0_is_x_minus_sigma_v(name):
    pipe = tiny(name)
    guidance = 5.0 if name == "sd3" else 3.5
    env = _env(pipe, guidance_scale=guidance, num_refinements=1, schedule=[3])
    backend = env.unwrapped.engine.backend
    calls, handle = _capture(pipe.transformer)
    try:
        env.reset(seed=0, options={"query": QUERY, "latents": _noise(env)})
    finally:
        handle.remove()
    _, kwargs, v = calls[-1]
    x = kwargs["hidden_states"]
    if name == "sd3":
        sigma = kwargs["timestep"][0] / 1000
        v_uncond, v_text = v.chunk(2)
        v, x = v_uncond + guidance * (v_text - v_uncond), x.chunk(2)[1]
    else:  # packed; FLUX's transformer takes sigma itself as the timestep
        sigma = kwargs["timestep"][0]
        v, x = backend.unpack(v), backend.unpack(x)
    x0 = backend.predict_x0(env.unwrapped.engine.traj)
    assert x0.shape == (1, 16, 16, 16)  # unpacked for every family
    torch.testing.assert_close(x0, x - sigma * v, atol=1e-4, rtol=1e-4)
    assert len(calls) == 3  # the estimate came from the interval's last call: no extra transformer call


@pytest.mark.parametrize("name", ["sdxl", "sd3", "flux"])
def test_gym_make_and_vector_env_match(name):
    pipe = tiny(name)
    env = gym.make("PromptLoop-v0", pipeline=pipe, num_inference_steps=4, num_refinements=1, **SIZE)
    envs = gym.make_vec("PromptLoop-v0", num_envs=2, pipeline=pipe, num_inference_steps=4, num_refinements=1, **SIZE)
    latents = torch.cat([_noise(env, 1), _noise(env, 2)])
    queries = [QUERY, "a blue square"]
    obs, _ = envs.reset(seed=0, options={"query": queries, "latents": latents})
    assert obs["preview"].shape == (2, 32, 32, 3) and obs["query"] == tuple(queries)
    obs, reward, terminated, _, info = envs.step(["a green star", "a blue square, bright"])
    assert terminated.tolist() == [True, True] and reward.shape == (2,) and np.isfinite(reward).all()
    assert info["image"].shape == (2, 32, 32, 3)
    batched = envs.unwrapped.engine.final_images
    for i in range(2):  # each row of the batch is the single env's trajectory
        single = _episode(env, latents[i : i + 1], [["a green star", "a blue square, bright"][i]], query=queries[i])
        assert (batched[i] - single).abs().max().item() <= 1e-4
    envs.close()


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_preview_kinds_for_16_channel_latents(name):
    pipe = tiny(name)
    channels = 16
    for kind in ("full", "linear", "none"):
        env = _env(pipe, preview=kind, preview_size=24, num_inference_steps=4, num_refinements=1)
        obs, _ = env.reset(seed=0, options={"query": QUERY})
        assert env.unwrapped.engine.backend.latent_shape()[0] == channels
        assert obs["preview"].shape == (24, 24, 3) and obs["preview"].dtype == np.uint8
        assert env.observation_space.contains(obs)
        if kind == "none":
            assert not obs["preview"].any()
        else:
            assert obs["preview"].std() > 0
        obs, *_ = env.step(QUERY)
        assert obs["preview"].shape == (24, 24, 3)
    assert pipe._promptloop_linear_preview.weight.shape == (3, channels)


@pytest.mark.parametrize("name", ["sdxl", "sd3-no-t5", "flux"])
def test_folder_round_trip(name, tmp_path):
    pipe = tiny(name)
    pipe.save_pretrained(tmp_path)
    from_folder = _env(str(tmp_path), device="cpu", guidance_scale=4.0)
    loaded = from_folder.unwrapped.pipeline
    assert type(loaded) is type(pipe) and loaded is not pipe
    if name == "sd3-no-t5":
        assert loaded.text_encoder_3 is None
    from_object = _env(pipe, guidance_scale=4.0)
    latents = _noise(from_object)
    a = _episode(from_folder, latents, ["a green star", QUERY])
    b = _episode(from_object, latents, ["a green star", QUERY])
    assert (a - b).abs().max().item() <= 1e-5


def test_backend_chosen_by_class_and_unsupported_lists_all():
    assert isinstance(make_backend(tiny("sdxl"), num_inference_steps=2), StableDiffusionXLBackend)
    assert isinstance(make_backend(tiny("sd3"), num_inference_steps=2), StableDiffusion3Backend)
    assert isinstance(make_backend(tiny("flux"), num_inference_steps=2, **SIZE), FluxBackend)
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(32,),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D",),
        up_block_types=("UpBlock2D",),
    )
    unconditional = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    with pytest.raises(TypeError, match="No PromptLoop backend for pipeline class DDPMPipeline") as err:
        make_backend(unconditional, num_inference_steps=2)
    for name in ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusion3Pipeline", "FluxPipeline"):
        assert name in str(err.value)
    assert len(supported_pipelines()) == 4


@pytest.mark.parametrize(
    "env_id,model_id",
    [
        ("PromptLoop-SDXL-v0", "stabilityai/stable-diffusion-xl-base-1.0"),
        ("PromptLoop-SDXLTurbo-v0", "stabilityai/sdxl-turbo"),
        ("PromptLoop-SD35-v0", "stabilityai/stable-diffusion-3.5-large"),
        ("PromptLoop-FLUX-v0", "black-forest-labs/FLUX.1-dev"),
    ],
)
def test_registered_ids_offline_without_the_model(env_id, model_id, monkeypatch, tmp_path):
    import huggingface_hub.constants
    import huggingface_hub.file_download as file_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # An empty cache, so that the model is certainly not there even on a machine that has it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(file_download, "get_hf_file_metadata", no_network)
    with pytest.raises(ModelNotAvailableError, match=model_id) as err:
        gym.make(env_id)
    assert "downloads are off" in str(err.value)


def test_registered_settings():
    spec = gym.spec("PromptLoop-SDXLTurbo-v0")
    assert spec.kwargs["num_inference_steps"] == 4 and spec.kwargs["guidance_scale"] == 0.0
    assert spec.kwargs["num_refinements"] == 3 and spec.kwargs["height"] == 512
    expected = [("PromptLoop-SDXL-v0", 50, 5.0), ("PromptLoop-SD35-v0", 28, 3.5), ("PromptLoop-FLUX-v0", 28, 3.5)]
    for env_id, steps, guidance in expected:
        kwargs = gym.spec(env_id).kwargs
        assert (kwargs["num_inference_steps"], kwargs["guidance_scale"], kwargs["height"]) == (steps, guidance, 1024)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_env_torch_dtype_converts_a_float32_pipeline(name):
    pipe = BUILDERS[name]()  # a fresh one: the env converts the object it is given
    env = _env(pipe, torch_dtype=torch.bfloat16, num_inference_steps=4, num_refinements=1)
    assert env.unwrapped.pipeline.vae.dtype == torch.bfloat16
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    env.reset(seed=0, options={"query": QUERY})
    _, reward, terminated, _, info = env.step("a blue square")
    image = env.unwrapped.engine.final_images
    assert terminated and np.isfinite(reward) and torch.isfinite(image).all() and image.std() > 0
    assert info["image"].shape == (32, 32, 3)


@pytest.mark.parametrize("family", ["sd", "sd3"])
def test_mixed_component_dtypes_are_cast_at_the_boundaries(family):
    """float32 text encoders and VAE around a bfloat16 denoiser (a common memory-saving layout) run."""
    from promptloop_env.testing import tiny_stable_diffusion

    pipe = tiny_stable_diffusion() if family == "sd" else tiny_stable_diffusion_3()
    (pipe.unet if family == "sd" else pipe.transformer).to(torch.bfloat16)
    env = _env(pipe, guidance_scale=5.0, num_inference_steps=4, num_refinements=1)
    env.reset(seed=0, options={"query": QUERY})
    env.step(QUERY)
    image = env.unwrapped.engine.final_images
    assert torch.isfinite(image).all() and image.std() > 0


def test_components_on_different_devices_is_a_clear_error():
    pipe = tiny_flux()
    pipe.text_encoder_2.to("meta")
    with pytest.raises(ValueError, match=r"different devices .*text_encoder_2: meta.*pass `device=`"):
        _env(pipe)


def test_flow_families_refuse_a_non_flow_scheduler():
    with pytest.raises(ValueError, match="needs a flow-matching scheduler .* got DDIMScheduler"):
        _env(tiny("flux"), scheduler="ddim")


def test_torch_dtype_must_be_a_dtype():
    with pytest.raises(TypeError, match="torch_dtype must be a torch.dtype .* got 'bfloat17'"):
        _env(tiny("sd3"), torch_dtype="bfloat17")


def _gpu_benchmark(monkeypatch):
    """benchmarks/env_overhead_gpu.py loaded as running it would: with its folder (hence report.py) on the path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "env_overhead_gpu.py"
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location("env_overhead_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_configs_are_the_real_architectures(monkeypatch):
    """The GPU script's configs build SD1.5's and SDXL's parts with their published parameter counts (on the
    meta device: no memory, no time)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from promptloop_env.testing import build_clip_tokenizer

    bench, tokenizer = _gpu_benchmark(monkeypatch), build_clip_tokenizer()

    def count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        assert count(UNet2DConditionModel(**bench.SD15_UNET)) == 859_520_964
        assert count(UNet2DConditionModel(**bench.SDXL_UNET)) == 2_567_463_684
        assert count(AutoencoderKL(**bench.VAE)) == 83_653_863
        assert count(bench._clip(tokenizer, bench.CLIP_L, projection=False)) == 123_060_480
        assert count(bench._clip(tokenizer, bench.CLIP_BIGG, projection=True)) == 694_659_840


def test_gpu_benchmark_smoke_mode(tmp_path, monkeypatch):
    results = _gpu_benchmark(monkeypatch).main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"sd15", "sdxl"}
    for result in results.values():
        assert set(result["median_ratio"]) == {"bare", "K=0", "K=1", "K=3", "K=5"}
        assert all(r > 0 for r in result["median_ratio"].values())
    text = (tmp_path / "env_overhead_gpu_smoke.md").read_text()
    assert "| K=5 |" in text and "1.23" in text  # the paper's SDXL ratio sits next to ours


def test_the_old_name_of_the_test_pipelines_still_imports_with_a_warning():
    import importlib
    import sys

    import promptloop_env.testing as testing

    sys.modules.pop("promptloop_env.tiny", None)
    with pytest.warns(DeprecationWarning, match="promptloop_env.testing"):
        old = importlib.import_module("promptloop_env.tiny")
    assert old.tiny_stable_diffusion is testing.tiny_stable_diffusion
