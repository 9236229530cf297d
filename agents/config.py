"""The training run's settings: one typed config (:class:`TrainConfig`), its checks, and what a run builds from it
(the agent, :func:`load_agent`; the vector env, :func:`make_envs`). Command-line flags and config files (YAML/JSON)
set the same names (see :mod:`agents.cli`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch

from .grpo import GRPOSettings
from .mllm import MLLMAgent
from .ppo import PPOSettings

__all__ = ["ConfigError", "TrainConfig", "load_agent", "make_envs"]


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
        "toy-user-train",
        "training prompt set: toy-user-train (users' style), toy-train, a text/CSV/JSONL/Parquet "
        "file[:column], hf:<dataset>[:column], with optional ?split=train|eval&eval_fraction=0.1 "
        "(see promptloop_env.prompts)",
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
    shared_noise: bool = _f(
        True,
        "the episodes of one query start from the same initial noise, so their rewards differ by the prompts "
        "alone (as DanceGRPO shares noise within a group); False: a seed per episode",
    )
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
        defaults = (PPOSettings if self.algo == "ppo" else GRPOSettings)()
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
