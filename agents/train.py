"""Training: the loop (rollouts -> reference log-probs/values -> GRPO or PPO update) in CleanRL's shape, with
TensorBoard logging; the config is in :mod:`agents.config`, checkpoints in :mod:`agents.checkpoint`.

    from agents.train import TrainConfig, train
    train(TrainConfig(algo="grpo", updates=40, out="runs/toy"))

or ``promptloop train --algo grpo --updates 40 --out runs/toy`` (see :mod:`agents.cli`). The agent reaches the
env only through ``gymnasium.make_vec`` / ``reset`` / ``step``. Update ``u`` draws its queries and seeds from
``numpy.random.default_rng([seed, u])``, and the sampling RNG (torch's) is saved in every checkpoint, so a run
resumed from update ``u`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, atomic_folder, load_checkpoint, rng_states, save_checkpoint
from .config import ConfigError, TrainConfig, load_agent, make_envs
from .grpo import grpo_update
from .ppo import ppo_update
from .rollout import Episode, annotate, collect

__all__ = ["CheckpointError", "ConfigError", "TrainConfig", "load_agent", "load_checkpoint", "make_envs", "train"]


# ---------------------------------------------------------------------------------------------------------
# Logging helpers


def strip(episode: Episode, min_height: int = 128) -> np.ndarray:
    """The episode's previews and final image side by side, small images enlarged (nearest neighbour) to at
    least ``min_height`` pixels so they can be seen in TensorBoard."""
    from promptloop_env.rendering import preview_strip

    frames = [*episode.previews, episode.image]
    return preview_strip(frames, scale=max(1, -(-min_height // frames[0].shape[0])))


def _config_markdown(config: TrainConfig) -> str:
    rows = ["| setting | value | help |", "|---|---|---|"]
    for f in dataclasses.fields(config):
        rows.append(f"| {f.name} | {getattr(config, f.name)!r} | {f.metadata.get('help', '')} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------
# The loop


def _accelerator(config: TrainConfig) -> Any:
    """accelerate's Accelerator for this run. Its state is one per process: a second run in the same process with
    another precision (a notebook, a test suite) starts a fresh single-process state instead of failing."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    settings = dict(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)
    try:
        return Accelerator(**settings)
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        if PartialState().num_processes > 1:
            raise ConfigError(
                f"mixed_precision={config.mixed_precision!r} differs from the launcher's setting ({error}); give the "
                "same value to `accelerate launch --mixed_precision` and to the run's config."
            ) from error
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**settings)


def _placement(config: TrainConfig, accelerator: Any) -> tuple[int, Any, torch.dtype]:
    """This process's episodes per update, and the diffusion model's device and dtype; :class:`ConfigError` for
    settings the processes or devices cannot serve."""
    processes = accelerator.num_processes
    problems = []
    if config.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        # accelerate would silently run fp16 "mixed precision" on CPU in float32.
        problems.append("mixed_precision='fp16' on CPU (fp16 autocast needs a GPU; use bf16 or no)")
    if config.queries_per_update % processes:
        problems.append(
            f"queries_per_update={config.queries_per_update} does not split over {processes} processes (each process "
            "runs whole GRPO groups: use a multiple of the number of processes)"
        )
    local = config.num_envs // processes
    if config.resolved().minibatches > max(local, 1):
        problems.append(f"minibatches={config.minibatches} exceeds the {local} episodes per process and update")
    device = accelerator.device if config.diffusion_device == "auto" else torch.device(config.diffusion_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"diffusion_device={config.diffusion_device!r} but CUDA is not available")
    if problems:
        raise ConfigError("Invalid training config: " + "; ".join(problems) + ".")
    return local, device, getattr(torch, config.diffusion_dtype)


def _shard(items: list[Any], accelerator: Any) -> list[Any]:
    """This process's consecutive share of an update's episodes (whole GRPO groups, since groups are consecutive
    and the share is a multiple of the group size)."""
    size = len(items) // accelerator.num_processes
    return items[accelerator.process_index * size : (accelerator.process_index + 1) * size]


def _global_metrics(metrics: dict[str, float], rewards: np.ndarray, accelerator: Any) -> dict[str, float]:
    """Metrics over all processes: rewards gathered, rates summed, everything else averaged (every process runs
    the same number of episodes, so the mean of the processes' means is the mean over all episodes)."""
    if accelerator.num_processes == 1:
        return metrics
    names = sorted(metrics)
    local = torch.tensor([metrics[name] for name in names], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum").cpu()
    merged = {name: float(value) / accelerator.num_processes for name, value in zip(names, total, strict=True)}
    for name in ("charts/episodes_per_second", "charts/tokens_per_second"):
        if name in merged:
            merged[name] *= accelerator.num_processes
    everyone = accelerator.gather(torch.as_tensor(rewards, dtype=torch.float64, device=accelerator.device)).cpu()
    merged["charts/episodic_return"] = merged["objective/scores"] = float(everyone.mean())
    return merged


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last update's metrics (``metrics``), the run's paths
    (``agent``: the saved agent's folder, ``tensorboard``, ``out``) and the trained agent object (``policy``).

    Under ``accelerate launch --num_processes N`` every process runs its own envs on its share of each
    update's episodes (update ``u``'s queries and seeds are drawn as in a single process, then split by
    process index, whole GRPO groups per process), gradients are averaged over processes, metrics are gathered,
    and the main process alone writes TensorBoard, checkpoints and the final agent.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from promptloop_env.prompts import make_prompt_source

    config.validate()
    config = config.resolved()  # the algorithm's defaults filled in: what config.json and TensorBoard show
    out = Path(config.out)
    accelerator = _accelerator(config)
    local, diffusion_device, diffusion_dtype = _placement(config, accelerator)
    main = accelerator.is_main_process
    torch.manual_seed(config.seed)
    overrides = {} if config.temperature is None else {"temperature": config.temperature}
    agent = load_agent(config.agent, trainable=True, **overrides)
    if agent.top_p < 1.0:
        raise ConfigError(
            f"The agent samples with top_p={agent.top_p}: nucleus sampling draws from a truncated distribution while "
            "the trainers store log-probs of the full one, so the ratio would be wrong. Train with top_p=1.0."
        )
    # Mixed precision is for the policy only: the diffusion model and the reward keep their own dtypes.
    agent.autocast = accelerator.autocast
    if config.gradient_checkpointing:
        agent.enable_gradient_checkpointing()
    agent.add_lora(r=config.lora_r, alpha=config.lora_alpha)
    if config.algo == "ppo":
        agent.add_value_head()
    agent.model.to(accelerator.device)
    if agent.value_head is not None:
        agent.value_head.to(accelerator.device)
    # The training forward runs through accelerate's wrappers (DistributedDataParallel with several processes).
    agent.distribute(accelerator.prepare)
    optimizer = accelerator.prepare(torch.optim.AdamW(agent.trainable_parameters(), lr=config.lr))
    if accelerator.num_processes > 1:
        # The same initial weights everywhere (seeded above), but each process samples its own answers.
        torch.manual_seed(int(np.random.SeedSequence([config.seed, accelerator.process_index]).generate_state(1)[0]))
    start = load_checkpoint(config.resume, agent, optimizer, accelerator.process_index) if config.resume else 0
    if start >= config.updates:
        raise ConfigError(
            f"The checkpoint at {config.resume} already has {start} updates (config.updates={config.updates})."
        )

    source = make_prompt_source(config.queries)
    env_kwargs = config.env_kwargs(device=diffusion_device)
    if diffusion_dtype != torch.float32:
        env_kwargs["torch_dtype"] = diffusion_dtype
    envs = make_envs(config.env_id, local, **env_kwargs)
    update_fn = grpo_update if config.algo == "grpo" else ppo_update
    settings = config.algorithm_settings()

    writer = None
    if main:  # one TensorBoard writer and one checkpoint writer: the main process
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        # Events after the checkpoint (from an interrupted run) are dropped; the checkpoint's own point is kept.
        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start * config.num_envs + 1 if start else None)
        if start == 0:
            writer.add_text("config", _config_markdown(config))
    metrics: dict[str, float] = {}
    if config.heldout_rewards:  # over-optimisation diagnostics (agents.diagnostics)
        from .diagnostics import agent_text_embedder, episode_diagnostics, make_heldout_rewards

        heldout, embed = make_heldout_rewards(config.heldout_rewards), agent_text_embedder(agent)
    bar = tqdm(
        range(start, config.updates), initial=start, total=config.updates, disable=not (progress and main),
        desc="updates",
    )  # fmt: skip
    for update in bar:
        rng = np.random.default_rng([config.seed, update])
        distinct = [source(rng) for _ in range(config.queries_per_update)]
        queries = _shard([q for q in distinct for _ in range(config.group_size)], accelerator)
        if config.shared_noise:  # one initial noise per query, the same for its group
            seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=config.queries_per_update)]
            seeds = _shard([s for s in seeds for _ in range(config.group_size)], accelerator)
        else:
            seeds = _shard([int(s) for s in rng.integers(0, 2**31 - 1, size=config.num_envs)], accelerator)

        t0 = time.perf_counter()
        episodes = collect(agent, envs, queries, seeds, one_shot=config.one_shot)
        t1 = time.perf_counter()
        annotate(agent, episodes, values=config.algo == "ppo", logprobs=config.recompute_logprobs)
        metrics = update_fn(
            agent, episodes, optimizer, settings, rng,
            backward=accelerator.backward, clip_grad_norm=accelerator.clip_grad_norm_,
        )  # fmt: skip
        t2 = time.perf_counter()

        rewards = np.array([e.reward for e in episodes])
        tokens = sum(e.num_tokens for e in episodes)
        turns = [t for e in episodes for t in e.turns]
        metrics.update(
            {
                "charts/episodic_return": float(rewards.mean()),
                "objective/scores": float(rewards.mean()),
                "objective/kl": float(
                    np.mean([(e.tokens("logprobs") - e.tokens("ref_logprobs")).sum() for e in episodes])
                ),
                "charts/fallback_rate": float(np.mean([t.fallback for t in turns])),
                "charts/response_length": tokens / max(len(turns), 1),
                "charts/episodes_per_second": len(episodes) / (t2 - t0),
                "charts/tokens_per_second": tokens / (t2 - t0),
                "charts/rollout_seconds": t1 - t0,
                "charts/update_seconds": t2 - t1,
            }
        )
        for name in episodes[0].components:
            metrics[f"rewards/{name}"] = float(np.mean([e.components.get(name, np.nan) for e in episodes]))
        if config.heldout_rewards:
            metrics.update(episode_diagnostics(episodes, heldout, embed))
        metrics = _global_metrics(metrics, rewards, accelerator)
        step = (update + 1) * config.num_envs  # episodes seen (all processes)
        if writer is not None:
            for name, value in metrics.items():
                if math.isfinite(value):
                    writer.add_scalar(name, value, step)
            if config.log_images_every and (update + 1) % config.log_images_every == 0:
                writer.add_image("episode/previews_and_image", strip(episodes[0]), step, dataformats="HWC")
                prompts = "\n".join(f"{i}. {p}" for i, p in enumerate(episodes[0].prompts))
                writer.add_text("episode/prompts", f"query: {episodes[0].query}\n\n{prompts}", step)
        bar.set_postfix(ret=f"{metrics['charts/episodic_return']:.3f}", kl=f"{metrics['objective/kl']:.3f}")
        if (update + 1) % config.checkpoint_every == 0 or update + 1 == config.updates:
            states = rng_states(accelerator)  # every process takes part in the gather
            if main:
                state: dict[str, Any] = {"config": dataclasses.asdict(config)}
                if accelerator.num_processes > 1:
                    state["num_processes"] = accelerator.num_processes
                save_checkpoint(out, update + 1, agent, optimizer, state, states, keep=config.keep_checkpoints)
            accelerator.wait_for_everyone()  # nobody runs ahead of (or reads) a checkpoint being written
    envs.close()
    if main:
        writer.close()
        with atomic_folder(out / "agent") as folder:
            agent.save_pretrained(folder)
    accelerator.wait_for_everyone()
    return {
        "metrics": metrics,
        "agent": out / "agent",
        "tensorboard": out / "tensorboard",
        "out": out,
        "policy": agent,
    }
