"""Training: one typed config, the loop (rollouts -> reference log-probs/values -> GRPO or PPO update),
TensorBoard logging, atomic checkpoints and exact resume.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .checkpoint import CheckpointError, atomic_folder, load_checkpoint, rng_states, save_checkpoint
from .grpo import GRPOSettings, grpo_update
from .mllm import MLLMAgent
from .ppo import PPOSettings, ppo_update
from .rollout import Episode, annotate, collect

__all__ = ["CheckpointError", "ConfigError", "TrainConfig", "load_agent", "load_checkpoint", "make_envs", "train"]


#: The dtypes the diffusion model can run in (``TrainConfig.diffusion_dtype``).
_DIFFUSION_DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A training or evaluation setting out of range; raised before any work starts."""


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a training run. Command-line flags and config files (YAML/JSON) set the same names."""

    algo: str = _f("grpo", "grpo (the paper's) or ppo (token-level, value head, GAE)")
    agent: str = _f("toy", "the policy to train: 'toy' (the shipped toy policy), a folder or a cached model id")
    env_id: str = _f("PromptLoop-v0", "the Gymnasium id of the environment")
    reward: str | None = _f(None, "reward name for the env (None: the env's default, toy_alignment on the toy world)")
    queries: str = _f(
        "toy-train",
        "training prompt set: toy-train, a text/CSV/JSONL/Parquet file[:column], hf:<dataset>[:column], with "
        "optional ?split=train|eval&eval_fraction=0.1 (see promptloop_env.prompts)",
    )
    num_inference_steps: int = _f(20, "denoising steps T per episode")
    num_refinements: int = _f(5, "refinement points K per episode (the agent acts K times)")
    schedule: str = _f(
        "random", "where the refinement points fall during training: random, uniform, or explicit steps '1,5,9'"
    )
    preview: str = _f(
        "full",
        "what the agent sees: full (VAE decode of x0), tiny (tiny autoencoder; tiny:<id or folder>), linear "
        "(fitted latent->RGB map; linear:<file.json>), none (no latent feedback)",
    )
    one_shot: bool = _f(False, "act at the first refinement only and hold the prompt (feed-forward rewriting)")
    queries_per_update: int = _f(4, "distinct queries per update")
    group_size: int = _f(4, "episodes per query (GRPO's G; PPO runs them as independent episodes)")
    updates: int = _f(40, "number of updates")
    lr: float = _f(1e-3, "AdamW learning rate of the LoRA adapter (and value head)")
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA alpha")
    kl_coef: float | None = _f(
        None,
        "KL penalty coefficient (GRPO: k3 in the loss; PPO: per-token reward); None: the algorithm's default "
        "(GRPO 0.04, PPO 0.05)",
    )
    clip: float = _f(0.2, "ratio clipping range")
    epochs: int | None = _f(None, "passes over each batch of episodes; None: the algorithm's default (GRPO 1, PPO 2)")
    minibatches: int | None = _f(None, "minibatches per pass; None: the algorithm's default (GRPO 1, PPO 2)")
    max_grad_norm: float = _f(1.0, "gradient norm clipping")
    micro_batch_size: int = _f(
        0,
        "episodes per forward pass with gradients; a minibatch is split into micro-batches whose gradients are "
        "accumulated, weighted by tokens (the same update as unsplit, in less memory); 0: the whole minibatch",
    )
    recompute_logprobs: bool = _f(
        False,
        "recompute the sampled tokens' log-probs with a forward pass before the update (as verl does), instead of "
        "keeping generate()'s: for low precision, where the two can differ, or for epochs > 1",
    )
    vf_coef: float = _f(0.5, "PPO: value loss coefficient")
    clip_value: float = _f(0.2, "PPO: value clipping range")
    ent_coef: float = _f(0.0, "PPO: entropy bonus coefficient")
    gamma: float = _f(1.0, "PPO: discount over agent tokens")
    lam: float = _f(0.95, "PPO: GAE lambda")
    temperature: float | None = _f(None, "sampling temperature of the policy (None: the agent's own setting)")
    heldout_rewards: str = _f(
        "",
        "comma-separated reward names also scored on the final images and logged (with the prompts' drift from "
        "the query) under diagnostics/ (see agents.diagnostics); empty: none",
    )
    seed: int = _f(0, "seed of queries, env seeds and sampling")
    out: str = _f("runs/promptloop", "run folder: TensorBoard logs, checkpoints, the final agent")
    checkpoint_every: int = _f(10, "write a checkpoint every N updates (and after the last)")
    keep_checkpoints: int = _f(2, "how many recent checkpoints to keep")
    log_images_every: int = _f(10, "log a preview strip and the final image every N updates (0: never)")
    resume: str | None = _f(None, "continue from a run folder (its latest checkpoint) or a checkpoint folder")
    device: str = _f("auto", "auto, cpu, cuda, ... (through accelerate)")
    mixed_precision: str = _f("no", "no, fp16 or bf16: autocast of the policy (through accelerate); fp16 needs a GPU")
    gradient_checkpointing: bool = _f(
        False, "recompute the policy's activations in the backward pass (less memory, about 1 more forward)"
    )
    diffusion_device: str = _f("auto", "where the diffusion model runs: auto (the policy's device), cpu, cuda:1, ...")
    diffusion_dtype: str = _f("float32", "dtype of the diffusion model: float32, bfloat16 or float16")

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` algorithm setting (``kl_coef``, ``epochs``, ``minibatches``) set to the
        chosen algorithm's own default (:class:`~agents.grpo.GRPOSettings`, :class:`~agents.ppo.PPOSettings`)."""
        defaults = (GRPOSettings if self.algo == "grpo" else PPOSettings)()
        return dataclasses.replace(
            self,
            **{
                name: getattr(defaults, name)
                for name in ("kl_coef", "epochs", "minibatches")
                if getattr(self, name) is None and hasattr(defaults, name)
            },
        )

    def algorithm_settings(self) -> GRPOSettings | PPOSettings:
        """The algorithm's settings: its own defaults, overridden by the config's fields of the same names
        that are set (so ``--algo ppo`` gets PPO's epochs, minibatches and KL coefficient)."""
        settings_class = GRPOSettings if self.algo == "grpo" else PPOSettings
        shared = {f.name for f in dataclasses.fields(settings_class)} & {f.name for f in dataclasses.fields(self)}
        return settings_class(**{name: getattr(self, name) for name in shared if getattr(self, name) is not None})

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every setting out of range."""
        if self.algo in ("grpo", "ppo"):
            self = self.resolved()  # check the values the run will use
        problems = []
        if self.algo not in ("grpo", "ppo"):
            problems.append(f"algo={self.algo!r} (expected 'grpo' or 'ppo')")
        if not self.lr > 0:
            problems.append(f"lr={self.lr} (must be > 0)")
        if self.algo == "grpo" and self.group_size < 2:
            problems.append(f"group_size={self.group_size} (GRPO compares episodes of one query: >= 2)")
        if self.group_size < 1 or self.queries_per_update < 1 or self.updates < 1:
            problems.append("group_size, queries_per_update and updates must be >= 1")
        if self.num_inference_steps < 2:
            problems.append(f"num_inference_steps={self.num_inference_steps} (must be >= 2)")
        if not 1 <= self.num_refinements <= self.num_inference_steps - 1:
            problems.append(
                f"num_refinements={self.num_refinements} (refinement points fall in steps 1..T-1: at most "
                f"num_inference_steps - 1 = {self.num_inference_steps - 1}, at least 1)"
            )
        if self.schedule not in ("random", "uniform"):
            try:
                steps = self.schedule_steps()
            except ValueError:
                steps = None
            if (
                steps is None
                or len(steps) != self.num_refinements
                or not all(0 <= s < self.num_inference_steps for s in steps)
            ):
                problems.append(
                    f"schedule={self.schedule!r} (expected 'random', 'uniform' or {self.num_refinements} "
                    f"comma-separated steps in 0..{self.num_inference_steps - 1})"
                )
        kind, sep, name = self.preview.partition(":")
        if not (kind in ("full", "none") and not sep or kind in ("linear", "tiny") and (name or not sep)):
            problems.append(
                f"preview={self.preview!r} (expected 'full', 'tiny', 'tiny:<model id or folder>', 'linear', "
                "'linear:<factors.json>' or 'none')"
            )
        for name in ("kl_coef", "vf_coef", "ent_coef"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} (must be >= 0)")
        if not 0 < self.clip < 1 or not self.clip_value > 0:
            problems.append(f"clip={self.clip} (in (0, 1)), clip_value={self.clip_value} (> 0)")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            problems.append(f"gamma={self.gamma}, lam={self.lam} (each in [0, 1])")
        if self.epochs < 1 or self.minibatches < 1 or self.lora_r < 1 or self.max_grad_norm <= 0:
            problems.append("epochs, minibatches, lora_r must be >= 1 and max_grad_norm > 0")
        if self.micro_batch_size < 0:
            problems.append(f"micro_batch_size={self.micro_batch_size} (must be >= 0; 0: no micro-batching)")
        if self.minibatches > self.queries_per_update * self.group_size:
            problems.append(f"minibatches={self.minibatches} exceeds the episodes per update")
        if self.temperature is not None and not self.temperature > 0:
            problems.append(f"temperature={self.temperature} (must be > 0)")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1 or self.log_images_every < 0:
            problems.append("checkpoint_every and keep_checkpoints must be >= 1, log_images_every >= 0")
        if self.heldout_rewards:
            from promptloop_env.rewards import reward_names

            unknown = [n for n in map(str.strip, self.heldout_rewards.split(",")) if n not in reward_names()]
            if unknown:
                problems.append(f"heldout_rewards has unknown names {unknown} (registered: {reward_names()})")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            problems.append(f"mixed_precision={self.mixed_precision!r} (expected no, fp16 or bf16)")
        elif self.mixed_precision == "fp16" and self.device == "cpu":
            problems.append("mixed_precision='fp16' with device='cpu' (fp16 autocast needs a GPU; use bf16 on CPU)")
        if self.diffusion_dtype not in _DIFFUSION_DTYPES:
            expected = ", ".join(_DIFFUSION_DTYPES)
            problems.append(f"diffusion_dtype={self.diffusion_dtype!r} (expected one of {expected})")
        if self.diffusion_device != "auto":
            try:
                torch.device(self.diffusion_device)
            except RuntimeError:
                problems.append(f"diffusion_device={self.diffusion_device!r} (expected auto, cpu, cuda, cuda:1, ...)")
        if problems:
            raise ConfigError("Invalid training config: " + "; ".join(problems) + ".")

    def schedule_steps(self) -> list[int]:
        """An explicit schedule as a list of steps (``ValueError`` for random/uniform or bad text)."""
        return [int(part) for part in self.schedule.split(",")]

    @property
    def num_envs(self) -> int:
        return self.queries_per_update * self.group_size

    def env_kwargs(self, **overrides: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            num_inference_steps=self.num_inference_steps,
            num_refinements=self.num_refinements,
            schedule=self.schedule if self.schedule in ("random", "uniform") else self.schedule_steps(),
            preview=self.preview,
        )
        if self.reward is not None:
            kwargs["reward"] = self.reward
        kwargs.update(overrides)
        return kwargs


def load_agent(spec: str, *, trainable: bool = False, **settings: Any) -> MLLMAgent:
    """``"toy"``: the shipped toy policy; anything else: :meth:`MLLMAgent.from_pretrained` (a trained agent's
    adapter is loaded trainable with ``trainable=True``, so training continues on it)."""
    if spec == "toy":
        from .toy import load_toy_policy

        agent = load_toy_policy(**settings)
        agent.base = "toy"  # portable: resolved to the installed package's weights when loaded
        return agent
    return MLLMAgent.from_pretrained(spec, trainable=trainable, **settings)


def make_envs(env_id: str, num_envs: int, **kwargs: Any) -> Any:
    """A vector env of ``num_envs`` sub-envs (one denoiser call per step for all of them)."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Logging helpers


def strip(episode: Episode, min_height: int = 128) -> np.ndarray:
    """The episode's previews and final image side by side (uint8 H x W(K+1) x 3), small images enlarged
    (nearest neighbour) to ``min_height`` so they can be seen in TensorBoard."""
    frames = [*episode.previews, episode.image]
    height = max(min_height, *(f.shape[0] for f in frames))
    from PIL import Image

    resized = [np.asarray(Image.fromarray(f).resize((height, height), Image.NEAREST)) for f in frames]
    return np.concatenate(resized, axis=1)


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
    if config.minibatches > max(local, 1):
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
