"""Token-level PPO for prompt-writing agents (the RLHF form of PPO, applied to PromptLoop episodes).

An episode is one sequence of agent tokens: the answers of all its turns, in order (the chat tokens between
them are context, never trained). Per token, the reward is ``-kl_coef * (log pi_old - log pi_ref)``, and the
episode's terminal reward is added on its last token. A value head estimates the return before each token;
advantages come from GAE over the sequence (``gamma`` 1, ``lambda`` 0.95 by default) and are whitened over the
batch. The update is clipped-ratio policy loss + clipped value loss - entropy bonus, in minibatches of
episodes for a few epochs, with gradient clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .grpo import micro_batches
from .rollout import Episode

__all__ = ["PPOSettings", "gae", "ppo_losses", "ppo_update", "token_rewards", "whiten"]


@dataclass
class PPOSettings:
    """The PPO part of the training config (see :class:`agents.config.TrainConfig` for help strings)."""

    kl_coef: float = 0.05
    clip: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 0.95
    epochs: int = 2
    minibatches: int = 2
    max_grad_norm: float = 1.0
    micro_batch_size: int = 0


def token_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, reward: float, kl_coef: float) -> torch.Tensor:
    """Per-token rewards of one episode: the KL penalty on every token, the task reward on the last one."""
    rewards = -kl_coef * (logprobs - ref_logprobs)
    rewards[-1] += reward
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates over one token sequence (the value after the last token is 0)."""
    advantages = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        next_value = values[t + 1] if t + 1 < len(rewards) else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages


def whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance (population variance); a single element becomes 0."""
    return (x - x.mean()) / (x.var(unbiased=False) + eps).sqrt()


def ppo_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip: float,
    clip_value: float,
) -> dict[str, torch.Tensor]:
    """Clipped policy loss, clipped value loss (both means over tokens) and the diagnostics."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    clipped_values = old_values + (values - old_values).clamp(-clip_value, clip_value)
    value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # the k3 estimator, as in CleanRL
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
    return {"policy_loss": policy_loss, "value_loss": value_loss, "approx_kl": approx_kl, "clipfrac": clipfrac}


def ppo_update(
    agent: Any,
    episodes: Sequence[Episode],
    optimizer: torch.optim.Optimizer,
    settings: PPOSettings,
    generator: np.random.Generator,
    backward: Any = None,
    clip_grad_norm: Any = None,
) -> dict[str, float]:
    """One PPO update on a batch of annotated episodes (reference log-probs and values filled).

    ``backward`` and ``clip_grad_norm`` default to torch's; the trainer passes accelerate's. Advantages are
    whitened over ``episodes`` (in a multi-process run: over each process's share).
    """
    backward = backward or (lambda loss: loss.backward())
    clip_grad_norm = clip_grad_norm or torch.nn.utils.clip_grad_norm_
    old_logprobs, old_values, advantages, returns = [], [], [], []
    for episode in episodes:
        logprobs, ref, values = episode.tokens("logprobs"), episode.tokens("ref_logprobs"), episode.tokens("values")
        rewards = token_rewards(logprobs, ref, episode.reward, settings.kl_coef)
        adv = gae(rewards, values, settings.gamma, settings.lam)
        old_logprobs.append(logprobs)
        old_values.append(values)
        advantages.append(adv)
        returns.append(adv + values)
    flat_adv = whiten(torch.cat(advantages))
    sizes = [len(a) for a in advantages]
    advantages = list(flat_adv.split(sizes))

    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
    params = agent.trainable_parameters()
    for _ in range(settings.epochs):
        order = generator.permutation(len(episodes))
        for batch in np.array_split(order, min(settings.minibatches, len(episodes))):
            # Gradient accumulation over micro-batches, each weighted by its share of the minibatch's tokens.
            total = sum(len(old_logprobs[i]) for i in batch)
            optimizer.zero_grad()
            parts: dict[str, float] = dict.fromkeys(stats, 0.0)
            for micro in micro_batches(batch, settings.micro_batch_size):
                turns = [t for i in micro for t in episodes[i].turns]
                scores = agent.score(turns, values=True, entropy=True)
                device = scores.logprobs[0].device
                losses = ppo_losses(
                    torch.cat(scores.logprobs),
                    torch.cat([old_logprobs[i] for i in micro]).to(device),
                    torch.cat([advantages[i] for i in micro]).to(device),
                    torch.cat(scores.values),
                    torch.cat([old_values[i] for i in micro]).to(device),
                    torch.cat([returns[i] for i in micro]).to(device),
                    settings.clip,
                    settings.clip_value,
                )
                losses["entropy"] = torch.cat(scores.entropy).mean()
                loss = (
                    losses["policy_loss"]
                    + settings.vf_coef * losses["value_loss"]
                    - settings.ent_coef * losses["entropy"]
                )
                weight = sum(len(lp) for lp in scores.logprobs) / total
                backward(loss * weight)
                for key in stats:
                    parts[key] += float(losses[key].detach()) * weight
            clip_grad_norm(params, settings.max_grad_norm)
            optimizer.step()
            for key in stats:
                stats[key].append(parts[key])
    all_returns, all_values = torch.cat(returns), torch.cat(old_values)
    variance = all_returns.var(unbiased=False)
    explained = float("nan") if variance == 0 else float(1 - (all_returns - all_values).var(unbiased=False) / variance)
    metrics = {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
    metrics["losses/explained_variance"] = explained
    return metrics
