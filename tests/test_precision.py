"""Precision and memory options: gradient checkpointing, a bf16 policy with an fp32 env, the diffusion model's
dtype, and clear errors for the combinations that cannot work."""

from __future__ import annotations

import types

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import promptloop_env  # noqa: F401  (registers the env ids)
from agents.grpo import GRPOSettings, grpo_update
from agents.mllm import MLLMAgent
from agents.rollout import annotate, collect
from agents.tiny import tiny_qwen2_vl
from agents.toy import load_toy_policy
from agents.train import ConfigError, TrainConfig, _accelerator, _placement, make_envs, train

WORDS = "a red blue circle square on the left right white background small large".split()


def tiny_agent(checkpointing: bool) -> MLLMAgent:
    model, tokenizer, image_processor = tiny_qwen2_vl(WORDS, num_layers=2)  # seeded: the same weights each time
    agent = MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, max_new_tokens=6)
    if checkpointing:
        agent.enable_gradient_checkpointing()
    torch.manual_seed(3)
    agent.add_lora(r=4)
    with torch.no_grad():  # a non-zero adapter, the same in both agents
        for name, param in agent.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return agent


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    plain, checkpointed = tiny_agent(False), tiny_agent(True)
    rng = np.random.default_rng(0)
    obs = {
        "preview": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        "query": ("a red circle", "a small blue square on the left", "red"),
        "prompt": ("a red circle", "blue", "a large circle"),
        "progress": np.full((3, 1), 0.5, np.float32),
    }
    torch.manual_seed(0)
    turns = plain.generate(obs)
    recomputed = []
    mlp = checkpointed.model.base_model.model.model.language_model.layers[0].mlp
    forward = mlp.forward

    def counted(*args, **kwargs):  # module hooks do not fire in a recomputation: count the calls themselves
        recomputed.append(1)
        return forward(*args, **kwargs)

    mlp.forward = counted
    results = []
    for agent in (plain, checkpointed):
        agent.model.zero_grad()
        scores = agent.score(turns, entropy=True)
        loss = -torch.cat(scores.logprobs).mean() - 0.1 * torch.cat(scores.entropy).mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in agent.model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    assert len(recomputed) == 2  # the layer ran again in the backward pass: checkpointing is on
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=0)
    assert results[0][1].keys() == results[1][1].keys() and results[0][1]
    for name, grad in results[0][1].items():
        assert grad.abs().sum() > 0 or "lora_A" in name
        torch.testing.assert_close(grad, results[1][1][name], atol=1e-6, rtol=1e-5)
    # Generation (no gradients) does not recompute anything and still agrees with scoring.
    recomputed.clear()
    with torch.no_grad():
        again = checkpointed.score(turns).logprobs
    assert len(recomputed) == 1
    for a, b in zip(again, plain.score(turns).logprobs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def small_envs(n: int, **kwargs):
    return gym.make_vec(
        "PromptLoop-v0", num_envs=n, vectorization_mode="vector_entry_point", num_inference_steps=6,
        num_refinements=2, **kwargs,
    )  # fmt: skip


def test_a_bf16_policy_drives_an_fp32_env():
    """The agent only ever sees numpy previews, so a bfloat16 policy and a float32 diffusion model work together."""
    agent = load_toy_policy()
    agent.model.to(torch.bfloat16)
    agent.add_lora(r=4)
    envs = small_envs(4)
    assert envs.unwrapped.engine.backend.dtype == torch.float32
    torch.manual_seed(0)
    episodes = collect(agent, envs, ["a red circle"] * 2 + ["a blue square"] * 2, [0, 1, 2, 3])
    assert all(e.image.dtype == np.uint8 and len(e.turns) == 2 for e in episodes)
    annotate(agent, episodes)
    episodes[0].reward, episodes[1].reward = 1.0, 0.0
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(agent.trainable_parameters(), lr=1e-2)
    metrics = grpo_update(agent, episodes, optimizer, GRPOSettings(group_size=2), np.random.default_rng(0))
    assert np.isfinite(metrics["losses/loss"])
    assert any(not torch.equal(p, before[n]) for n, p in agent.model.named_parameters() if p.requires_grad)
    envs.close()


def test_training_with_bf16_autocast_and_gradient_checkpointing_on_cpu(tiny_run):
    config = tiny_run(
        "r", num_inference_steps=8, num_refinements=1, updates=1, checkpoint_every=10, log_images_every=0,
        mixed_precision="bf16", gradient_checkpointing=True, device="cpu",
        shared_noise=False,  # two seeds per query: the group's rewards differ even if its prompts do not
    )  # fmt: skip
    result = train(config, progress=False)
    assert np.isfinite(result["metrics"]["losses/loss"]) and result["policy"].gradient_checkpointing
    adapter = load_file(str(result["agent"] / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapter.items())  # it learned
    # accelerate keeps one state per process: the next run in this process may use another precision.
    assert _accelerator(TrainConfig(device="cpu")).mixed_precision == "no"


def test_diffusion_dtype_reaches_the_env_without_touching_the_shared_model():
    config = TrainConfig(num_inference_steps=4, num_refinements=1, diffusion_dtype="bfloat16")
    envs = make_envs("PromptLoop-v0", 2, **config.env_kwargs(torch_dtype=getattr(torch, config.diffusion_dtype)))
    assert envs.unwrapped.engine.backend.dtype == torch.bfloat16
    obs, _ = envs.reset(seed=0, options={"query": ["a red circle", "a blue square"]})
    _, reward, terminated, _, _ = envs.step(list(obs["query"]))
    assert obs["preview"].dtype == np.uint8 and terminated.all() and np.isfinite(reward).all()
    envs.close()
    assert small_envs(1).unwrapped.engine.backend.dtype == torch.float32  # the shared default model stays fp32
    from promptloop_env.toy.model import load_toy_pipeline

    shared = load_toy_pipeline()
    converted = small_envs(1, pipeline=shared, torch_dtype="bfloat16")  # the shared instance: a private copy
    assert converted.unwrapped.engine.backend.dtype == torch.bfloat16 and shared.dtype == torch.float32


def test_precision_settings_that_cannot_work_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="fp16.*use bf16"):
        TrainConfig(mixed_precision="fp16", device="cpu").validate()
    with pytest.raises(ConfigError, match="diffusion_dtype='float64'"):
        TrainConfig(diffusion_dtype="float64").validate()
    with pytest.raises(ConfigError, match="diffusion_device='gpu0'"):
        TrainConfig(diffusion_device="gpu0").validate()
    cpu = types.SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16' on CPU"):
            _placement(TrainConfig(mixed_precision="fp16"), cpu)  # device auto resolved to the CPU
        with pytest.raises(ConfigError, match="CUDA is not available"):
            _placement(TrainConfig(diffusion_device="cuda"), cpu)
    three = types.SimpleNamespace(num_processes=3, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="queries_per_update=4 does not split over 3 processes"):
        _placement(TrainConfig(), three)
    local, device, dtype = _placement(TrainConfig(queries_per_update=6, group_size=2, diffusion_dtype="float16"), three)
    assert (local, device, dtype) == (4, torch.device("cpu"), torch.float16)
    with pytest.raises(ConfigError, match="fp16"):
        train(TrainConfig(mixed_precision="fp16", device="cpu", out=str(tmp_path / "x")), progress=False)
    assert not (tmp_path / "x").exists()
