"""Rewards, previews, schedules and pipeline loading, each on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptloop_env import PromptLoopEnv
from promptloop_env.backends import load_pipeline, make_backend
from promptloop_env.previews import LinearPreview, fit_linear_preview, make_preview
from promptloop_env.rewards import WeightedSum, as_reward, make_reward, register_reward, reward_names
from promptloop_env.rewards.jpeg import jpeg_size_kb
from promptloop_env.schedules import draw_schedule


def _images(seed=0):
    rng = np.random.default_rng(seed)
    flat = np.full((2, 32, 32, 3), 120, dtype=np.uint8)
    noisy = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    return flat, noisy


def test_jpeg_rewards_follow_ddpo():
    flat, noisy = _images()
    comp, incomp = make_reward("jpeg_compressibility"), make_reward("jpeg_incompressibility")
    assert (comp(flat, ["q"] * 2) > comp(noisy, ["q"] * 2)).all()
    assert np.allclose(incomp(noisy, ["q"] * 2), -comp(noisy, ["q"] * 2))
    # Quality 95, size in kB (1000 bytes): a 32x32 noise image is a few kB.
    assert 1.0 < jpeg_size_kb(noisy)[0] < 10.0
    assert {"jpeg_compressibility", "jpeg_incompressibility"} <= set(reward_names())


def test_reward_output_is_checked():
    flat, _ = _images()
    with pytest.raises(ValueError, match="'short' returned shape \\(1,\\); expected \\(2,\\)"):
        as_reward(lambda i, q: np.zeros(1), "short")(flat, ["a", "b"])
    with pytest.raises(ValueError, match="non-finite"):
        make_reward(lambda i, q: np.array([0.0, np.nan]))(flat, ["a", "b"])


def test_registry_and_weighted_sum():
    @register_reward("test_brightness")
    def factory():
        return lambda images, queries: images.mean(axis=(1, 2, 3))

    flat, noisy = _images()
    total = make_reward({"test_brightness": 2.0, "jpeg_incompressibility": 1.0})
    assert isinstance(total, WeightedSum)
    parts = total.components(noisy, ["q", "q"])
    assert np.allclose(total(noisy, ["q", "q"]), 2 * parts["test_brightness"] + parts["jpeg_incompressibility"])
    with pytest.raises(ValueError, match="Unknown reward"):
        make_reward({"nope": 1.0})


def test_schedules():
    rng = np.random.default_rng(0)
    assert draw_schedule("uniform", 5, 20, rng) == [3, 7, 10, 13, 17]
    assert draw_schedule("uniform", 19, 20, rng) == list(range(1, 20))
    for _ in range(50):
        points = draw_schedule("random", 4, 10, rng)
        assert points == sorted(set(points)) and points[0] >= 1 and points[-1] <= 9
    assert draw_schedule((0, 4), 2, 10, rng) == [0, 4]


def test_linear_preview_fit_is_close_to_the_vae(pipeline):
    backend = make_backend(pipeline, num_inference_steps=4)
    fitted = fit_linear_preview(backend, num_images=16)
    assert fitted.weight.shape == (3, 4) and fitted.bias.shape == (3,)
    # On fresh latents the linear preview tracks the full decode much better than a constant guess would.
    x = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    full = make_preview("full", backend, (16, 16))(x).astype(float)
    linear = make_preview(fitted, backend, (16, 16))(x).astype(float)
    err_linear = np.abs(full - linear).mean()
    err_const = np.abs(full - full.mean(axis=(0, 1, 2))).mean()
    assert err_linear < err_const


def test_linear_preview_save_load(tmp_path, pipeline):
    backend = make_backend(pipeline, num_inference_steps=4)
    fitted = fit_linear_preview(backend, num_images=8)
    fitted.save(tmp_path / "f.json")
    loaded = LinearPreview.load(tmp_path / "f.json", (8, 8))
    assert torch.allclose(loaded.weight, fitted.weight) and loaded.size == (8, 8)
    (tmp_path / "bad.json").write_text('{"weight": [[1, 2]], "bias": [0, 0, 0]}')
    with pytest.raises(ValueError, match="expected 'weight' of shape \\[3, C\\]"):
        LinearPreview.load(tmp_path / "bad.json", (8, 8))


def test_preview_script_writes_factors(tmp_path):
    from promptloop_env.previews import main

    main(["--out", str(tmp_path / "tiny.json"), "--num-images", "8"])
    assert LinearPreview.load(tmp_path / "tiny.json", (4, 4)).weight.shape == (3, 4)


def test_from_pretrained_folder_gives_the_same_episode(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path / "tiny-sd")
    assert list((tmp_path / "tiny-sd" / "unet").glob("*.safetensors"))
    loaded = load_pipeline(tmp_path / "tiny-sd")
    assert type(loaded).__name__ == "StableDiffusionPipeline"

    def episode(pipe):
        env = PromptLoopEnv(pipeline=pipe, num_inference_steps=5, num_refinements=2)
        env.reset(seed=3, options={"query": "a green tree"})
        env.step("a green tree, vivid")
        *_, info = env.step("a large green tree")
        return env.engine.final_images

    by_path = PromptLoopEnv(pipeline=str(tmp_path / "tiny-sd"), num_inference_steps=5, num_refinements=2)
    assert by_path.pipeline is not pipeline
    assert torch.allclose(episode(pipeline), episode(loaded), atol=1e-6)
