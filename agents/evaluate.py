"""Evaluation: run policies (agents or baselines) over a fixed prompt set and tabulate their rewards.

Every policy sees the same queries with the same env seeds (so the same initial noise and refinement
points); the table reports the mean reward with a 95 % confidence interval (normal approximation,
``1.96 * std / sqrt(n)``) and the mean of each reward component.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rollout import collect

__all__ = ["EvalResult", "ci95", "evaluate", "eval_queries", "markdown_table", "paired_interval"]


def ci95(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of the normal-approximation 95 % confidence interval of the mean, ``1.96 * sd / sqrt(n)``
    (NaN for fewer than two values). The one CI of the project: evaluations, the harness, benchmarks, examples."""
    x = np.asarray(values, dtype=np.float64)
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def paired_interval(
    values: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the per-episode differences ``values - baseline`` with their 95 % CI (:func:`ci95`);
    the episodes must be paired (same query, same env seed, in the same order)."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"A paired comparison needs the same episodes in the same order; got shapes {a.shape} and {b.shape}. "
            "Pass the per-episode values of one set of queries and seeds for both."
        )
    d = a - b
    m, h = float(d.mean()), ci95(d)
    return m, m - h, m + h


@dataclass
class EvalResult:
    """Per-episode rewards and reward components of one policy (and each episode's query and prompts)."""

    rewards: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)
    fallback_rate: float = float("nan")
    queries: list[str] = field(default_factory=list)
    prompts: list[list[str]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(self.rewards.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the 95 % confidence interval of the mean (:func:`ci95`)."""
        return ci95(self.rewards)


def eval_queries(spec: str | Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` queries from a prompt set (a named set such as ``"toy-test"``, a file, or a list), fixed by ``seed``."""
    from promptloop_env.prompts import make_prompt_source

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    source = make_prompt_source(spec)
    rng = np.random.default_rng(seed)
    return [source(rng) for _ in range(n)]


def evaluate(
    policy: Any,
    envs: Any,
    queries: Sequence[str],
    *,
    seed: int = 0,
    one_shot: bool = False,
    greedy: bool = False,
) -> EvalResult:
    """Run ``policy`` on every query, ``envs.num_envs`` episodes at a time; the env seed of query i is
    ``seed + i`` (the same for every policy evaluated with the same arguments)."""
    n = envs.num_envs
    rewards: list[float] = []
    components: dict[str, list[float]] = {}
    fallbacks: list[bool] = []
    episode_queries: list[str] = []
    prompts: list[list[str]] = []
    for start in range(0, len(queries), n):
        chunk = list(queries[start : start + n])
        real = len(chunk)
        chunk += [chunk[-1]] * (n - real)  # pad the last batch; the padding episodes are dropped
        seeds = [seed + start + i for i in range(n)]
        episodes = collect(policy, envs, chunk, seeds, one_shot=one_shot, greedy=greedy)[:real]
        for episode in episodes:
            rewards.append(episode.reward)
            episode_queries.append(episode.query)
            prompts.append(episode.prompts)
            fallbacks += [t.fallback for t in episode.turns]
            for name, value in episode.components.items():
                components.setdefault(name, []).append(value)
    return EvalResult(
        np.array(rewards),
        {k: np.array(v) for k, v in components.items()},
        float(np.mean(fallbacks)) if fallbacks else float("nan"),
        episode_queries,
        prompts,
    )


def markdown_table(results: Mapping[str, EvalResult], baseline: str | None = None) -> str:
    """One row per policy: mean reward +- 95 % CI, n, each component's mean, the agent's fallback rate.

    ``baseline``: the label of one of ``results``; a column then gives every other policy's paired difference
    from it with its 95 % CI (:func:`paired_interval`: the results must come from the same queries and env seeds,
    as :func:`evaluate` with one ``queries`` and ``seed`` gives them)."""
    if baseline is not None and baseline not in results:
        raise ValueError(f"baseline={baseline!r} is not one of the results ({', '.join(map(repr, results))}).")
    names = sorted({c for r in results.values() for c in r.components})
    header = ["policy", "mean reward", "95% CI", "n", *names, "fallback rate"]
    if baseline is not None:
        header.insert(4, f"vs {baseline} (paired)")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, result in results.items():
        paired = []
        if baseline is not None:
            paired = [""]
            if label != baseline:
                m, lo, hi = paired_interval(result.rewards, results[baseline].rewards)
                paired = [f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"]
        cells = [
            label,
            f"{result.mean:.4f}",
            f"[{result.mean - result.ci95:.4f}, {result.mean + result.ci95:.4f}]",
            str(len(result.rewards)),
            *paired,
            *(f"{result.components[c].mean():.4f}" if c in result.components else "" for c in names),
            "" if math.isnan(result.fallback_rate) else f"{result.fallback_rate:.3f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
