"""GRPO for prompt-writing agents: the paper's algorithm (token-level, group-relative, no value head).

For each query the trainer runs G episodes (different seeds; during training, random refinement points).
An episode's advantage is its reward minus the mean of its group, divided by the group's standard deviation
(plus ``eps``); every agent token of the episode, in all its turns, gets that advantage. The loss per token is
the clipped-ratio surrogate plus ``kl_coef`` times the k3 estimate of KL(pi || pi_ref)
(``exp(ref - logp) - (ref - logp) - 1``), averaged over all tokens of the minibatch (token-level averaging).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .rollout import Episode

__all__ = ["GRPOSettings", "group_advantages", "grpo_loss", "grpo_update"]


@dataclass
class GRPOSettings:
    """The GRPO part of the training config (see :class:`agents.config.TrainConfig` for help strings)."""

    group_size: int = 4
    kl_coef: float = 0.04
    clip: float = 0.2
    epochs: int = 1
    minibatches: int = 1
    max_grad_norm: float = 1.0
    eps: float = 1e-4
    micro_batch_size: int = 0


def micro_batches(batch: np.ndarray, size: int) -> list[np.ndarray]:
    """``batch`` (episode indices) in consecutive micro-batches of at most ``size`` episodes (0: one)."""
    if size <= 0 or size >= len(batch):
        return [batch]
    return [batch[i : i + size] for i in range(0, len(batch), size)]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """``(r - group mean) / (group std + eps)`` for rewards laid out as consecutive groups of ``group_size``
    (sample standard deviation; a group whose rewards are all equal gets advantage 0)."""
    if group_size < 2 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size} (group_size must be >= 2).")
    groups = rewards.view(-1, group_size)
    advantages = (groups - groups.mean(dim=1, keepdim=True)) / (groups.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    kl_coef: float,
) -> dict[str, torch.Tensor]:
    """Token-level GRPO loss (mean over tokens) and its parts; all arguments are per-token tensors."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    surrogate = torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip, 1 + clip))
    ref_gap = ref_logprobs - logprobs
    kl = ref_gap.exp() - ref_gap - 1
    loss = (-surrogate + kl_coef * kl).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
    return {
        "loss": loss,
        "policy_loss": -surrogate.mean(),
        "kl": kl.mean(),
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


def grpo_update(
    agent: Any,
    episodes: Sequence[Episode],
    optimizer: torch.optim.Optimizer,
    settings: GRPOSettings,
    generator: np.random.Generator,
    backward: Any = None,
    clip_grad_norm: Any = None,
) -> dict[str, float]:
    """One GRPO update on a batch of annotated episodes (reference log-probs filled), in groups of
    ``settings.group_size`` consecutive episodes of the same query.

    ``backward`` and ``clip_grad_norm`` default to torch's; the trainer passes accelerate's (loss scaling,
    gradients averaged over processes).
    """
    backward = backward or (lambda loss: loss.backward())
    clip_grad_norm = clip_grad_norm or torch.nn.utils.clip_grad_norm_
    rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float32)
    advantages = group_advantages(rewards, settings.group_size, settings.eps)
    stats: dict[str, list[float]] = {k: [] for k in ("loss", "policy_loss", "kl", "approx_kl", "clipfrac")}
    params = agent.trainable_parameters()
    for _ in range(settings.epochs):
        order = generator.permutation(len(episodes))
        for batch in np.array_split(order, min(settings.minibatches, len(episodes))):
            # Gradient accumulation over micro-batches of episodes, each loss weighted by its share of the
            # minibatch's tokens, so the summed gradient is the one of the unsplit token mean.
            total = sum(episodes[i].num_tokens for i in batch)
            optimizer.zero_grad()
            parts: dict[str, float] = dict.fromkeys(stats, 0.0)
            for micro in micro_batches(batch, settings.micro_batch_size):
                turns = [t for i in micro for t in episodes[i].turns]
                logprobs = torch.cat(agent.score(turns).logprobs)
                device = logprobs.device
                losses = grpo_loss(
                    logprobs,
                    torch.cat([episodes[i].tokens("logprobs") for i in micro]).to(device),
                    torch.cat([episodes[i].tokens("ref_logprobs") for i in micro]).to(device),
                    torch.cat([advantages[i].expand(episodes[i].num_tokens) for i in micro]).to(device),
                    settings.clip,
                    settings.kl_coef,
                )
                weight = len(logprobs) / total
                backward(losses["loss"] * weight)
                for key in stats:
                    parts[key] += float(losses[key].detach()) * weight
            clip_grad_norm(params, settings.max_grad_norm)
            optimizer.step()
            for key in stats:
                stats[key].append(parts[key])
    metrics = {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
    metrics["objective/advantage_std"] = float(advantages.std())
    return metrics
