"""Previews for real latent spaces: tiny autoencoders (4 and 16 channels) and linear factors cached per VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from promptloop_env import PromptLoopEnv
from promptloop_env.backends import ModelNotAvailableError, make_backend
from promptloop_env.previews import (
    LinearPreview,
    TinyPreview,
    cache_dir,
    linear_preview_key,
    make_preview,
    tiny_autoencoder_id,
    to_uint8,
)


def small_tiny_autoencoder(latent_channels: int, seed: int = 0):
    """An ``AutoencoderTiny`` of the TAESD architecture, narrowed, with random (seeded) weights."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(
        latent_channels=latent_channels,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).eval()


@pytest.fixture
def backend(pipeline):
    pipeline.__dict__.pop("_promptloop_tiny_autoencoders", None)
    pipeline.__dict__.pop("_promptloop_linear_preview", None)
    yield make_backend(pipeline, num_inference_steps=4)
    pipeline.__dict__.pop("_promptloop_tiny_autoencoders", None)
    pipeline.__dict__.pop("_promptloop_linear_preview", None)


def test_tiny_preview_from_a_folder_decodes_like_the_autoencoder(backend, tmp_path):
    ae = small_tiny_autoencoder(4)
    ae.save_pretrained(tmp_path / "taesd-small")
    preview = make_preview(f"tiny:{tmp_path / 'taesd-small'}", backend, (24, 20))
    assert isinstance(preview, TinyPreview)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = to_uint8((ae.decode(latents).sample + 1) / 2, (24, 20))
    out = preview(latents)
    assert out.shape == (2, 24, 20, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError, match=r"decodes latents \[N, 4, h, w\]"):
        preview(torch.zeros(1, 16, 8, 8))


def test_tiny_preview_in_an_episode(pipeline, tmp_path):
    small_tiny_autoencoder(4).save_pretrained(tmp_path / "taesd-small")
    env = PromptLoopEnv(pipeline=pipeline, num_inference_steps=6, num_refinements=2,
                        preview=f"tiny:{tmp_path / 'taesd-small'}", preview_size=16)  # fmt: skip
    obs, _ = env.reset(seed=0)
    assert obs["preview"].shape == (16, 16, 3) and env.observation_space.contains(obs)
    _, _, terminated, _, info = env.step("a cat")
    _, _, terminated, _, info = env.step("a dog")
    assert terminated and info["image"].shape == (32, 32, 3)
    pipeline.__dict__.pop("_promptloop_tiny_autoencoders", None)


def test_tiny_preview_16_channels():
    ae = small_tiny_autoencoder(16, seed=1)
    preview = TinyPreview(ae, (32, 32))
    latents = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = to_uint8((ae.decode(latents).sample + 1) / 2, (32, 32))
    out = preview(latents)
    assert out.shape == (3, 32, 32, 3) and np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError, match=r"decodes latents \[N, 16, h, w\]; got \(1, 4, 8, 8\)"):
        preview(torch.zeros(1, 4, 8, 8))


def test_tiny_preview_channel_mismatch_and_missing_model(backend, tmp_path):
    small_tiny_autoencoder(16).save_pretrained(tmp_path / "taef1-small")
    with pytest.raises(ValueError, match="has 16 latent channels; this pipeline's VAE has 4"):
        make_preview(f"tiny:{tmp_path / 'taef1-small'}", backend, (16, 16))
    with pytest.raises(ModelNotAvailableError, match="not in the local Hugging Face cache.*hf download"):
        make_preview("tiny:promptloop-tests/no-such-taesd", backend, (16, 16))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="holds no AutoencoderTiny"):
        make_preview(f"tiny:{tmp_path / 'empty'}", backend, (16, 16))
    # The toy-sized pipeline's VAE is not Stable Diffusion's: no default tiny autoencoder for it.
    with pytest.raises(ValueError, match="picks madebyollin/taesd for StableDiffusionPipeline.*tiny:<model id"):
        make_preview("tiny", backend, (16, 16))
    with pytest.raises(ValueError, match="Unknown preview 'tiny:'"):
        make_preview("tiny:", backend, (16, 16))


def test_tiny_autoencoder_chosen_by_family():
    from diffusers import (
        AutoencoderKL,
        FluxPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
    )

    sd_vae = type("Config", (), dict(latent_channels=4, block_out_channels=[128, 256, 512, 512]))
    flux_vae = type("Config", (), dict(latent_channels=16, block_out_channels=[128, 256, 512, 512]))
    assert tiny_autoencoder_id(StableDiffusionPipeline, sd_vae) == "madebyollin/taesd"
    assert tiny_autoencoder_id(StableDiffusionXLPipeline, sd_vae) == "madebyollin/taesdxl"
    assert tiny_autoencoder_id(StableDiffusionXLImg2ImgPipeline, sd_vae) == "madebyollin/taesdxl"
    assert tiny_autoencoder_id(StableDiffusion3Pipeline, flux_vae) == "madebyollin/taesd3"
    assert tiny_autoencoder_id(FluxPipeline, flux_vae) == "madebyollin/taef1"
    with pytest.raises(ValueError, match="latent_channels=4"):
        tiny_autoencoder_id(FluxPipeline, sd_vae)
    with pytest.raises(ValueError, match="No tiny autoencoder is known for AutoencoderKL"):
        tiny_autoencoder_id(AutoencoderKL, sd_vae)


def test_linear_factors_are_cached_per_vae_and_reused(backend, pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLOOP_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    first = make_preview("linear", backend, (16, 16))
    path = tmp_path / "cache" / "linear_previews" / f"{linear_preview_key(pipeline.vae)}.json"
    assert path.is_file() and first.meta["key"] == linear_preview_key(pipeline.vae)
    # A new process (no factors on the pipeline object) reads the file instead of fitting: prove it by
    # changing the file's bias.
    data = json.loads(path.read_text())
    data["bias"] = [0.25, 0.5, 0.75]
    path.write_text(json.dumps(data))
    pipeline.__dict__.pop("_promptloop_linear_preview")
    reused = make_preview("linear", backend, (16, 16))
    assert torch.equal(reused.bias, torch.tensor([0.25, 0.5, 0.75])) and torch.equal(reused.weight, first.weight)
    # The key follows the weights, not only the architecture; and survives a save / load.
    from diffusers import AutoencoderKL

    vae_path = tmp_path / "vae"
    pipeline.vae.save_pretrained(vae_path)
    assert linear_preview_key(AutoencoderKL.from_pretrained(vae_path)) == linear_preview_key(pipeline.vae)
    torch.manual_seed(123)
    other = AutoencoderKL.from_config(pipeline.vae.config)
    assert linear_preview_key(other) != linear_preview_key(pipeline.vae)


def test_linear_factors_from_a_file(backend, tmp_path):
    factors = LinearPreview(torch.eye(3, 4), torch.zeros(3), (8, 8))
    factors.save(tmp_path / "f.json")
    preview = make_preview(f"linear:{tmp_path / 'f.json'}", backend, (8, 8))
    x = torch.rand(1, 4, 8, 8)
    assert np.array_equal(preview(x), to_uint8(x[:, :3], (8, 8)))
    LinearPreview(torch.zeros(3, 16), torch.zeros(3), (8, 8)).save(tmp_path / "f16.json")
    with pytest.raises(ValueError, match="map 16 latent channels; this pipeline's VAE has 4"):
        make_preview(f"linear:{tmp_path / 'f16.json'}", backend, (8, 8))
    with pytest.raises(FileNotFoundError, match="No linear preview factors"):
        make_preview(f"linear:{tmp_path / 'nope.json'}", backend, (8, 8))


def test_linear_preview_tracks_the_decode_of_the_toy_models_clean_estimates():
    """On x̂0 of real trajectories of the (trained) toy model, not the fitting data, the linear preview is closer
    to the full decode than the best constant image. (Only somewhat: the toy VAE's 8 x 8 x 4 latents of sharp
    shapes are far from linear in RGB; see benchmarks/results/preview_cost.md.)"""
    from promptloop_env.toy.model import load_toy_pipeline

    backend = make_backend(load_toy_pipeline(), num_inference_steps=10)
    fitted = make_preview("linear", backend, (32, 32))
    full = make_preview("full", backend, (32, 32))
    cond = backend.encode(["a red circle", "a blue square on the left"])
    noise = torch.randn(2, *backend.latent_shape(), generator=torch.Generator().manual_seed(3))
    traj = backend.start(noise, [torch.Generator().manual_seed(i) for i in range(2)])
    errors, constants = [], []
    for _ in range(3):
        backend.denoise(traj, cond, 3)
        x0 = backend.predict_x0(traj)
        exact, approx = full(x0).astype(float), fitted(x0).astype(float)
        errors.append(np.sqrt(((exact - approx) ** 2).mean()))
        constants.append(np.sqrt(((exact - exact.mean(axis=(0, 1, 2))) ** 2).mean()))
    assert all(e < 0.95 * c for e, c in zip(errors, constants, strict=True)), (errors, constants)
