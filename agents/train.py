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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .checkpoint import atomic_folder, atomic_write_text
from .grpo import GRPOSettings, grpo_update
from .mllm import MLLMAgent
from .ppo import PPOSettings, ppo_update
from .rollout import Episode, annotate, collect

__all__ = ["CheckpointError", "ConfigError", "TrainConfig", "load_agent", "load_checkpoint", "make_envs", "train"]


class ConfigError(ValueError):
    """A training or evaluation setting out of range; raised before any work starts."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or unreadable."""


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
    kl_coef: float = _f(0.04, "KL penalty coefficient (GRPO: k3 in the loss; PPO: per-token reward)")
    clip: float = _f(0.2, "ratio clipping range")
    epochs: int = _f(1, "passes over each batch of episodes")
    minibatches: int = _f(1, "minibatches per pass")
    max_grad_norm: float = _f(1.0, "gradient norm clipping")
    vf_coef: float = _f(0.5, "PPO: value loss coefficient")
    clip_value: float = _f(0.2, "PPO: value clipping range")
    ent_coef: float = _f(0.0, "PPO: entropy bonus coefficient")
    gamma: float = _f(1.0, "PPO: discount over agent tokens")
    lam: float = _f(0.95, "PPO: GAE lambda")
    temperature: float | None = _f(None, "sampling temperature of the policy (None: the agent's own setting)")
    seed: int = _f(0, "seed of queries, env seeds and sampling")
    out: str = _f("runs/promptloop", "run folder: TensorBoard logs, checkpoints, the final agent")
    checkpoint_every: int = _f(10, "write a checkpoint every N updates (and after the last)")
    keep_checkpoints: int = _f(2, "how many recent checkpoints to keep")
    log_images_every: int = _f(10, "log a preview strip and the final image every N updates (0: never)")
    resume: str | None = _f(None, "continue from a run folder (its latest checkpoint) or a checkpoint folder")
    device: str = _f("auto", "auto, cpu, cuda, ... (through accelerate)")
    mixed_precision: str = _f("no", "no, fp16 or bf16 (through accelerate)")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every setting out of range."""
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
            if steps is None or len(steps) != self.num_refinements or not all(
                0 <= s < self.num_inference_steps for s in steps
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
        if self.minibatches > self.queries_per_update * self.group_size:
            problems.append(f"minibatches={self.minibatches} exceeds the episodes per update")
        if self.temperature is not None and not self.temperature > 0:
            problems.append(f"temperature={self.temperature} (must be > 0)")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1 or self.log_images_every < 0:
            problems.append("checkpoint_every and keep_checkpoints must be >= 1, log_images_every >= 0")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            problems.append(f"mixed_precision={self.mixed_precision!r} (expected no, fp16 or bf16)")
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
# Checkpoints


def _checkpoint_dir(out: Path, update: int) -> Path:
    return out / "checkpoints" / f"update_{update:06d}"


def save_checkpoint(
    out: Path, update: int, agent: MLLMAgent, optimizer: torch.optim.Optimizer, config: TrainConfig
) -> Path:
    """Write the adapter, value head, optimizer and RNG state after ``update`` updates, atomically."""
    from safetensors.torch import save_file

    target = _checkpoint_dir(out, update)
    with atomic_folder(target) as folder:
        agent.model.save_pretrained(str(folder / "adapter"))
        if agent.value_head is not None:
            save_file(agent.value_head.state_dict(), str(folder / "value_head.safetensors"))
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(folder / "rng.safetensors"))
        (folder / "state.json").write_text(
            json.dumps({"update": update, "config": dataclasses.asdict(config)}, indent=2)
        )
    atomic_write_text(out / "checkpoints" / "latest", target.name + "\n")
    kept = sorted((out / "checkpoints").glob("update_*"))
    for old in kept[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (its ``checkpoints/latest``) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "state.json").exists():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.exists():
        candidate = path / "checkpoints" / latest.read_text().strip()
        if (candidate / "state.json").exists():
            return candidate
    raise CheckpointError(
        f"No checkpoint at {path}: expected a run folder with checkpoints/latest or a checkpoint folder with "
        "state.json (written by `promptloop train`)."
    )


def load_checkpoint(path: str | Path, agent: MLLMAgent, optimizer: torch.optim.Optimizer) -> int:
    """Restore adapter, value head, optimizer and RNG state; return the number of updates done."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = find_checkpoint(path)
    try:
        state = json.loads((folder / "state.json").read_text())
        adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(agent.model, adapter)
        if agent.value_head is not None:
            agent.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise CheckpointError(f"Checkpoint {folder} is incomplete or unreadable: {error}") from error
    return int(state["update"])


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


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last update's metrics and the run's paths."""
    from accelerate import Accelerator
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from promptloop_env.prompts import make_prompt_source

    config.validate()
    out = Path(config.out)
    accelerator = Accelerator(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)
    torch.manual_seed(config.seed)
    overrides = {} if config.temperature is None else {"temperature": config.temperature}
    agent = load_agent(config.agent, trainable=True, **overrides)
    agent.add_lora(r=config.lora_r, alpha=config.lora_alpha)
    if config.algo == "ppo":
        agent.add_value_head()
    agent.model.to(accelerator.device)
    if agent.value_head is not None:
        agent.value_head.to(accelerator.device)
    optimizer = accelerator.prepare(torch.optim.AdamW(agent.trainable_parameters(), lr=config.lr))
    start = load_checkpoint(config.resume, agent, optimizer) if config.resume else 0
    if start >= config.updates:
        raise ConfigError(
            f"The checkpoint at {config.resume} already has {start} updates (config.updates={config.updates})."
        )

    source = make_prompt_source(config.queries)
    # The diffusion model runs where the policy does (accelerate's device).
    envs = make_envs(config.env_id, config.num_envs, **config.env_kwargs(device=accelerator.device))
    # The algorithm's settings are the config's fields of the same names.
    settings_class, update_fn = (GRPOSettings, grpo_update) if config.algo == "grpo" else (PPOSettings, ppo_update)
    shared = {f.name for f in dataclasses.fields(settings_class)} & {f.name for f in dataclasses.fields(config)}
    settings = settings_class(**{name: getattr(config, name) for name in shared})

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    writer = SummaryWriter(str(out / "tensorboard"), purge_step=start * config.num_envs if start else None)
    if start == 0:
        writer.add_text("config", _config_markdown(config))
    metrics: dict[str, float] = {}
    bar = tqdm(range(start, config.updates), initial=start, total=config.updates, disable=not progress, desc="updates")
    for update in bar:
        rng = np.random.default_rng([config.seed, update])
        distinct = [source(rng) for _ in range(config.queries_per_update)]
        queries = [q for q in distinct for _ in range(config.group_size)]
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=config.num_envs)]

        t0 = time.perf_counter()
        with accelerator.autocast():
            episodes = collect(agent, envs, queries, seeds, one_shot=config.one_shot)
            t1 = time.perf_counter()
            annotate(agent, episodes, values=config.algo == "ppo")
            metrics = update_fn(agent, episodes, optimizer, settings, rng, backward=accelerator.backward)
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
        step = (update + 1) * config.num_envs  # episodes seen
        for name, value in metrics.items():
            if math.isfinite(value):
                writer.add_scalar(name, value, step)
        if config.log_images_every and (update + 1) % config.log_images_every == 0:
            writer.add_image("episode/previews_and_image", strip(episodes[0]), step, dataformats="HWC")
            prompts = "\n".join(f"{i}. {p}" for i, p in enumerate(episodes[0].prompts))
            writer.add_text("episode/prompts", f"query: {episodes[0].query}\n\n{prompts}", step)
        bar.set_postfix(ret=f"{rewards.mean():.3f}", kl=f"{metrics['objective/kl']:.3f}")
        if (update + 1) % config.checkpoint_every == 0 or update + 1 == config.updates:
            save_checkpoint(out, update + 1, agent, optimizer, config)
    writer.close()
    envs.close()
    with atomic_folder(out / "agent") as folder:
        agent.save_pretrained(folder)
    return {"metrics": metrics, "agent": out / "agent", "tensorboard": out / "tensorboard", "out": out}
