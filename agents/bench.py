"""The experiment harness: ``promptloop bench <experiment>``, each writing a Markdown table, a CSV and a plot.

    promptloop bench ablation        --updates 30 --eval-n 100 --out outputs/bench/ablation
    promptloop bench k-sweep         --agent toy --eval-n 100 --out outputs/bench/k_sweep
    promptloop bench overopt         --pairs jpeg_compressibility:toy_alignment --updates 30 --out outputs/bench/overopt
    promptloop bench unseen-backbone --agent runs/toy/agent --out outputs/bench/unseen_backbone

- ``ablation``: the paper's ablation table: the base model (identity: the query at every refinement), the
  untrained policy, and the policy trained with RL (GRPO, :func:`agents.train.train`) as a one-shot rewriter
  (K = 1 at step 0, no preview: it writes one prompt before sampling, as feed-forward refiners do), step-wise
  with K refinements without latent feedback (``preview="none"``), and step-wise with K refinements and
  previews. Agents are evaluated sampled and greedy.
- ``k-sweep``: one policy's reward versus K (K = 0 is the query alone) at uniform points, and versus where K
  points fall (early, middle, late explicit steps; uniform; random).
- ``overopt``: train on one reward while other rewards are scored on the same final images (held-out rewards)
  and the prompts' drift from the query is measured (:mod:`agents.diagnostics`), logged to TensorBoard during
  training (``diagnostics/...``); the table compares the first and last tenth of training and evaluates the
  untrained and trained policies on every reward.
- ``unseen-backbone``: a policy trained on one diffusion model evaluated on others (on the toy world:
  ``PromptLoop-v0`` and ``PromptLoop-ToyB-v0``, a second toy model with another seed and a narrower UNet).

Every row is evaluated on the same held-out queries with the same env seeds (so the same initial noise and,
for random schedules, the same refinement points), reported as the mean reward with a 95 % confidence
interval, and, where the base model ran on the same episodes, the paired difference to it with its own 95 %
interval (``1.96 * std(diff) / sqrt(n)``), which is much tighter than the two intervals side by side.
Sampled rows reseed torch with ``--seed`` first, so a policy's sampled row is the same in every experiment.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .evaluate import EvalResult, ci95, eval_queries, evaluate, paired_interval
from .train import ConfigError, TrainConfig, load_agent, make_envs

__all__ = [
    "EXPERIMENTS",
    "add_bench_parser",
    "paired_delta",
    "run_bench",
    "tb_scalars",
    "train_agent",
]


# ---------------------------------------------------------------------------------------------------------
# Shared pieces: training runs, TensorBoard scalars, statistics, writing table / CSV / plot


@dataclasses.dataclass
class TrainedRun:
    """A training run's agent folder, TensorBoard folder and wall time (NaN when reused from an earlier run)."""

    agent: Path
    tensorboard: Path
    minutes: float


def train_agent(
    name: str, work: str | Path, *, reuse: bool = False, progress: bool = False, **settings: Any
) -> TrainedRun:
    """Train an agent with :func:`agents.train.train` into ``work/name`` (settings: :class:`TrainConfig` fields).

    With ``reuse``, a finished run already in ``work/name`` (its ``agent/`` folder and the same settings in
    ``config.json``) is taken as is; otherwise the folder is cleared first so that its TensorBoard log holds
    this run only.
    """
    from .train import train

    out = Path(work) / name
    config = TrainConfig(**settings, out=str(out))
    config.validate()
    record = out / "bench_run.json"
    if reuse and (out / "agent").is_dir() and (out / "config.json").is_file():
        # config.json holds the resolved config (the algorithm's defaults filled in): compare like with like
        if json.loads((out / "config.json").read_text()) == dataclasses.asdict(config.resolved()):
            minutes = json.loads(record.read_text())["minutes"] if record.is_file() else float("nan")
            return TrainedRun(out / "agent", out / "tensorboard", minutes)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train(config, progress=progress)
    minutes = (time.perf_counter() - start) / 60
    record.write_text(json.dumps({"minutes": minutes}) + "\n")
    return TrainedRun(out / "agent", out / "tensorboard", minutes)


def tb_scalars(folder: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one scalar in a TensorBoard log folder (empty arrays when the tag is absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return np.array([]), np.array([])
    scalars = events.Scalars(tag)
    return np.array([e.step for e in scalars]), np.array([e.value for e in scalars])


def first_last(values: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """Means of the first and the last ``fraction`` of a training curve (at least one point each)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    k = max(int(len(values) * fraction), 1)
    return float(np.mean(values[:k])), float(np.mean(values[-k:]))


def paired_delta(result: EvalResult, base: EvalResult) -> tuple[float, float]:
    """Mean and 95 % CI half-width of ``result - base`` over the same episodes (same queries and env seeds)."""
    if len(result.rewards) != len(base.rewards):
        raise ValueError(f"Paired results need the same episodes; got {len(result.rewards)} and {len(base.rewards)}.")
    mean, low, _ = paired_interval(result.rewards, base.rewards)
    return mean, mean - low


def result_row(result: EvalResult, base: EvalResult | None = None, **labels: Any) -> dict[str, Any]:
    """One table row: ``labels`` then mean, CI, n and (with ``base``) the paired difference to it."""
    row = dict(labels)
    row.update(
        mean=result.mean,
        ci_low=result.mean - result.ci95,
        ci_high=result.mean + result.ci95,
        n=len(result.rewards),
    )
    if base is not None:
        delta, half = paired_delta(result, base)
        row.update(delta_vs_identity=delta, delta_ci_low=delta - half, delta_ci_high=delta + half)
    return row


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts); CI bounds are shown as one ``[low, high]`` cell."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    shown: list[str] = []
    for c in columns:
        if c in ("ci_high", "delta_ci_high"):
            continue
        shown.append({"ci_low": "95% CI", "delta_ci_low": "delta 95% CI"}.get(c, c))
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in rows:
        cells = []
        for c in columns:
            if c in ("ci_high", "delta_ci_high"):
                continue
            if c in ("ci_low", "delta_ci_low"):
                low, high = r.get(c, float("nan")), r.get(c.replace("low", "high"), float("nan"))
                sign = "+" if c == "delta_ci_low" else ""
                cells.append("" if math.isnan(low) else f"[{low:{sign}.4f}, {high:{sign}.4f}]")
            else:
                cells.append(_cell(r.get(c, "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_report(out: Path, name: str, title: str, args: argparse.Namespace, body: Sequence[str]) -> Path:
    """``out/name.md``: title, date, the exact command, the machine, then ``body``."""
    header = [
        f"# {title}",
        "",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Command: `{args.command_line}`  ",
        f"Machine: {platform.machine()} CPU ({_cpu_count()} cores), torch threads {_threads()}; "
        "numbers from a shared CPU are noisy in wall time, not in reward.",
        "",
    ]
    path = out / f"{name}.md"
    path.write_text("\n".join([*header, *body]) + "\n")
    return path


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _threads() -> int:
    return torch.get_num_threads()


def _figure(ncols: int = 1, width: float = 7.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def bar_plot(
    ax: Any, rows: Sequence[dict[str, Any]], label_key: str = "label", title: str = "", base: float | None = None
) -> None:
    """One point per row, top to bottom: the mean with its 95 % CI (grey: no sampling, blue: sampled, orange:
    greedy); ``base`` (default: the first row's mean) as a dotted line."""
    labels = [str(r[label_key]) + (f" ({r['mode']})" if r.get("mode") not in (None, "", "-") else "") for r in rows]
    y = np.arange(len(rows))[::-1]
    palette = {"sampled": "tab:blue", "greedy": "tab:orange"}
    for yi, r in zip(y, rows, strict=True):
        color = palette.get(r.get("mode"), "tab:gray")
        ax.errorbar(
            [r["mean"]],
            [yi],
            xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]],
            fmt="o",
            color=color,
            capsize=3,
        )
    ax.axvline(rows[0]["mean"] if base is None else base, color="tab:gray", linestyle=":", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_xlabel("mean reward (95% CI)")
    ax.set_title(title, fontsize=10)


# ---------------------------------------------------------------------------------------------------------
# Experiments


def _train_settings(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    settings = dict(
        algo="grpo",
        agent=args.base_agent,
        env_id=args.env_id,
        queries=args.train_queries,
        num_inference_steps=args.num_inference_steps,
        num_refinements=args.num_refinements,
        schedule=args.train_schedule,
        queries_per_update=args.queries_per_update,
        group_size=args.group_size,
        minibatches=args.minibatches,
        updates=args.updates,
        lr=args.lr,
        kl_coef=args.kl_coef,
        seed=args.seed,
        checkpoint_every=max(args.updates, 1),
        log_images_every=0,
    )
    settings.update(overrides)
    return settings


def _modes(args: argparse.Namespace) -> list[str]:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("sampled", "greedy")]
    if bad or not modes:
        raise ConfigError(f"--modes {args.modes!r}: expected a comma-separated subset of sampled,greedy.")
    return modes


def _envs(args: argparse.Namespace, env_id: str | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("num_inference_steps", args.num_inference_steps)
    return make_envs(env_id or args.env_id, min(args.num_envs, args.eval_n), **kwargs)


def _eval_agent(
    agent: Any,
    envs: Any,
    queries: list[str],
    args: argparse.Namespace,
    base: EvalResult | None,
    modes: list[str],
    **labels: Any,
) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        torch.manual_seed(args.seed)  # sampled rows: the same sampling stream wherever the row is evaluated
        result = evaluate(agent, envs, queries, seed=args.seed, greedy=mode == "greedy")
        rows.append(result_row(result, base, **labels, mode=mode))
    return rows


def _ablation_runs(args: argparse.Namespace, K: int) -> list[tuple[str, str, dict[str, Any], str]]:
    """``(label, run name, training overrides, eval env)`` of each trained row."""
    seeds = _int_list(args.train_seeds, "--train-seeds")
    if not seeds:
        raise ConfigError(f"--train-seeds {args.train_seeds!r}: give at least one seed.")
    runs = [("RL one-shot rewrite (K = 1 at step 0)", "rl-one-shot", dict(num_refinements=1, schedule="0"), "one-shot")]
    runs[0][2].update(preview="none", seed=seeds[0])
    for seed in seeds:
        suffix = f", seed {seed}" if len(seeds) > 1 else ""
        runs.append(
            (
                f"RL K = {K}, no latent feedback{suffix}",
                f"rl-k-no-preview-s{seed}",
                dict(preview="none", seed=seed),
                "none",
            )
        )
    for seed in seeds:
        suffix = f", seed {seed}" if len(seeds) > 1 else ""
        runs.append(
            (f"RL K = {K} + latent feedback{suffix}", f"rl-k-preview-s{seed}", dict(preview="full", seed=seed), "full")
        )
    if args.ppo:
        runs.append((f"PPO K = {K} + latent feedback", "ppo-k-preview", dict(algo="ppo", seed=seeds[0]), "full"))
    return runs


def run_ablation(args: argparse.Namespace) -> dict[str, Path]:
    """The paper's ablation table on one env: base model, untrained policy, RL one-shot, RL K without and with
    previews (GRPO, one run per ``--train-seeds``), PPO K with previews, and the toy world's scripted references."""
    from .baselines import Identity

    out, work, modes = Path(args.out), Path(args.work), _modes(args)
    queries = eval_queries(args.eval_queries, args.eval_n, args.seed)
    T, K = args.num_inference_steps, args.num_refinements
    eval_env = {
        "full": _envs(args, num_refinements=K, schedule="uniform", preview="full"),
        "none": _envs(args, num_refinements=K, schedule="uniform", preview="none"),
        "one-shot": _envs(args, num_refinements=1, schedule=[0], preview="none"),
    }
    identity = evaluate(Identity(), eval_env["full"], queries, seed=args.seed)
    results: dict[tuple[str, str], EvalResult] = {("base model (identity)", "-"): identity}
    rows = [result_row(identity, identity, label="base model (identity)", mode="-", train_minutes=float("nan"))]

    def add(policy: Any, env_key: str, label: str, minutes: float, policy_modes: list[str]) -> None:
        for mode in policy_modes:
            torch.manual_seed(args.seed)  # sampled rows: the same sampling stream wherever the row is evaluated
            result = evaluate(policy, eval_env[env_key], queries, seed=args.seed, greedy=mode == "greedy")
            results[(label, mode)] = result
            rows.append(result_row(result, identity, label=label, mode=mode, train_minutes=minutes))

    if args.scripted and (args.env_id == "PromptLoop-v0" or args.env_id.startswith("PromptLoop-Toy")):
        from .toy.scripted import scripted_references

        for label, policy in scripted_references().items():
            add(policy, "full", label, float("nan"), ["-"])
    add(load_agent(args.base_agent), "full", f"untrained policy (K = {K})", float("nan"), modes)
    notes = []
    for label, name, overrides, env_key in _ablation_runs(args, K):
        settings = _train_settings(args, **overrides)
        run = train_agent(name, work, reuse=args.reuse, progress=args.progress, **settings)
        add(load_agent(str(run.agent)), env_key, label, run.minutes, modes)
        first, last = first_last(tb_scalars(run.tensorboard, "charts/episodic_return")[1])
        _, speed = tb_scalars(run.tensorboard, "charts/episodes_per_second")
        _, tokens = tb_scalars(run.tensorboard, "charts/tokens_per_second")
        rate = (
            f"; median {np.median(speed):.2f} episodes/s, {np.median(tokens):.0f} agent tokens/s" if len(speed) else ""
        )
        notes.append(
            f"- `{name}` ({label}): {run.minutes:.1f} min of training{rate}; training return {first:.4f} (first "
            f"10 % of updates) -> {last:.4f} (last 10 %)."
        )
    for env in eval_env.values():
        env.close()
    name = "ablation"
    write_csv(out / f"{name}.csv", rows)
    fig, axes = _figure(height=0.35 * len(rows) + 1.5)
    bar_plot(axes[0], rows, title=f"Ablation ({args.env_id}, T = {T}, n = {args.eval_n})")
    fig.savefig(out / f"{name}.png", dpi=120)
    body = [
        f"Eval: {args.eval_n} `{args.eval_queries}` queries, the same env seeds for every row, T = {T}, "
        f"K = {K} uniform refinement points (the one-shot row: K = 1 at step 0, no preview), the env's reward. "
        f"Training: {args.updates} updates of {args.queries_per_update} queries x G = {args.group_size} "
        f"(GRPO unless named PPO), {'the algorithm default' if args.minibatches is None else args.minibatches} "
        f"minibatches, learning rate {args.lr:g}, KL coefficient "
        f"{'the algorithm default' if args.kl_coef is None else f'{args.kl_coef:g}'}, {args.train_schedule} "
        "refinement points, "
        f"on `{args.train_queries}`, from `{args.base_agent}`. 'delta' is the paired "
        "difference to the base model on the same episodes.",
        "",
        markdown_rows(
            rows,
            [
                "label",
                "mode",
                "mean",
                "ci_low",
                "ci_high",
                "n",
                "delta_vs_identity",
                "delta_ci_low",
                "delta_ci_high",
                "train_minutes",
            ],
        ),
        "",
        *notes,
        "",
        *_ablation_comparisons(results, K),
        "",
        f"![ablation]({name}.png)",
    ]
    md = write_report(out, name, "Ablation", args, body)
    return {"markdown": md, "csv": out / f"{name}.csv", "plot": out / f"{name}.png"}


def _ablation_comparisons(results: dict[tuple[str, str], EvalResult], K: int) -> list[str]:
    """Paired differences between the rows the paper's ablation steps compare (same episodes)."""
    lines = ["Paired comparisons (same queries and env seeds; 95 % CIs):", ""]
    with_preview = [key for key in results if key[0].startswith(f"RL K = {K} + latent feedback")]
    without = {key[0].split(", seed")[-1]: key for key in results if key[0].startswith(f"RL K = {K}, no latent")}
    one_shot = [key for key in results if key[0].startswith("RL one-shot")]
    closed = [key for key in results if key[0].startswith("scripted closed loop")]
    identity = results[("base model (identity)", "-")]
    for key in with_preview:
        seed, mode = key[0].split(", seed")[-1], key[1]
        pairs = [("identity", identity)]
        if seed in without and (without[seed][0], mode) in results:
            pairs.append(("no latent feedback", results[(without[seed][0], mode)]))
        pairs += [("one-shot", results[k]) for k in one_shot if k[1] == mode]
        for name, base in pairs:
            delta, half = paired_delta(results[key], base)
            lines.append(f"- {key[0]} ({mode}) - {name}: {delta:+.4f} [{delta - half:+.4f}, {delta + half:+.4f}]")
        if closed:
            gain = results[closed[0]].mean - identity.mean
            share = (results[key].mean - identity.mean) / gain if gain > 0 else float("nan")
            lines.append(f"  - share of the scripted closed-loop gain over identity ({gain:+.4f}): {share:.0%}")
    return lines


def schedules_for(k: int, steps: int) -> dict[str, Any]:
    """Named placements of ``k`` refinement points among ``steps`` denoising steps: early (1..k), middle
    (centred), late (the last k steps), uniform and random."""
    if not 1 <= k <= steps - 1:
        raise ConfigError(f"K = {k} refinement points need 1 <= K <= T - 1 = {steps - 1}.")
    middle = max(1, (steps - k) // 2)
    return {
        "early": list(range(1, k + 1)),
        "middle": list(range(middle, middle + k)),
        "late": list(range(steps - k, steps)),
        "uniform": "uniform",
        "random": "random",
    }


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers such as 0,1,3,5.") from None


def plot_k_sweep(rows: Sequence[dict[str, Any]], path: Path, agent: str, k: int, steps: int) -> None:
    """The k-sweep figure: reward versus K (the K = 0 row as a grey band), and the placements of K points."""
    identity = next(r for r in rows if r["sweep"] == "K" and int(r["k"]) == 0)
    fig, axes = _figure(ncols=2, width=6.0)
    ax = axes[0]
    ax.axhspan(identity["ci_low"], identity["ci_high"], color="tab:gray", alpha=0.2)
    ax.axhline(identity["mean"], color="tab:gray", label="K = 0 (query only)")
    for mode, color in (("sampled", "tab:blue"), ("greedy", "tab:orange")):
        pts = [r for r in rows if r["sweep"] == "K" and r["mode"] == mode]
        if pts:
            ax.errorbar(
                [int(r["k"]) for r in pts],
                [r["mean"] for r in pts],
                yerr=[[r["mean"] - r["ci_low"] for r in pts], [r["ci_high"] - r["mean"] for r in pts]],
                marker="o",
                capsize=3,
                color=color,
                label=mode,
            )
    ax.set_xlabel("K (refinement points, uniform)")
    ax.set_ylabel("mean reward (95% CI)")
    ax.legend(fontsize=8)
    ax.set_title(f"reward vs K ({agent})", fontsize=10)
    bar_plot(
        axes[1],
        [r for r in rows if r["sweep"] == "schedule"],
        label_key="setting",
        title=f"where K = {k} points fall (T = {steps}; dotted: K = 0)",
        base=identity["mean"],
    )
    fig.savefig(path, dpi=120)


def run_k_sweep(args: argparse.Namespace) -> dict[str, Path]:
    """Reward versus K and versus where the refinement points fall, for one policy."""
    from .baselines import Identity

    out, modes = Path(args.out), _modes(args)
    queries = eval_queries(args.eval_queries, args.eval_n, args.seed)
    T = args.num_inference_steps
    ks = _int_list(args.ks, "--ks")
    if not ks or any(not 0 <= k <= T - 1 for k in ks):
        raise ConfigError(f"--ks {args.ks!r}: each K must be in 0..{T - 1} (T = {T}).")
    agent = load_agent(args.agent)
    base_env = _envs(args, num_refinements=1, schedule="uniform")
    identity = evaluate(Identity(), base_env, queries, seed=args.seed)  # K = 0: the query alone
    base_env.close()
    rows = []
    for k in ks:
        if k == 0:
            rows.append(result_row(identity, identity, sweep="K", setting="K = 0 (query only)", k=0, mode="-"))
            continue
        envs = _envs(args, num_refinements=k, schedule="uniform")
        rows += _eval_agent(agent, envs, queries, args, identity, modes, sweep="K", setting=f"K = {k}, uniform", k=k)
        envs.close()
    for label, schedule in schedules_for(args.num_refinements, T).items():
        envs = _envs(args, num_refinements=args.num_refinements, schedule=schedule)
        setting = label if isinstance(schedule, str) else f"{label} ({','.join(map(str, schedule))})"
        rows += _eval_agent(
            agent, envs, queries, args, identity, modes, sweep="schedule", setting=setting, k=args.num_refinements
        )
        envs.close()
    name = "k_sweep"
    write_csv(out / f"{name}.csv", rows)
    plot_k_sweep(rows, out / f"{name}.png", args.agent, args.num_refinements, T)
    body = [
        f"Policy: `{args.agent}`. Eval: {args.eval_n} `{args.eval_queries}` queries, the same env seeds for every row, "
        f"T = {T}, the env's reward. K = 0 is the diffusion model on the query alone (identity). Schedules place "
        f"K = {args.num_refinements} points at the listed 0-based steps (the prompt in force from that step "
        f"on); random draws them "
        "per episode from the env seed (the same for every row). 'delta' is the paired difference to K = 0.",
        "",
        markdown_rows(
            rows,
            [
                "sweep",
                "setting",
                "mode",
                "mean",
                "ci_low",
                "ci_high",
                "n",
                "delta_vs_identity",
                "delta_ci_low",
                "delta_ci_high",
            ],
        ),
        "",
        f"![k-sweep]({name}.png)",
    ]
    md = write_report(out, name, "Reward versus K and refinement placement", args, body)
    return {"markdown": md, "csv": out / f"{name}.csv", "plot": out / f"{name}.png"}


def _pairs(text: str) -> list[tuple[str, list[str]]]:
    from promptloop_env.rewards import reward_names

    pairs = []
    for part in text.split(","):
        train_name, _, heldout = part.strip().partition(":")
        names = [train_name, *[h for h in heldout.split("+") if h]]
        unknown = [n for n in names if n not in reward_names()]
        if unknown or not heldout:
            raise ConfigError(
                f"--pairs {text!r}: expected train:heldout[+heldout2] pairs of registered rewards separated by "
                f"commas (registered: {reward_names()}); unknown: {unknown or 'none'}."
            )
        pairs.append((train_name, names[1:]))
    return pairs


def run_overopt(args: argparse.Namespace) -> dict[str, Path]:
    """Train on one reward, watch held-out rewards and prompt drift; tabulate and plot."""
    from .diagnostics import agent_text_embedder, clip_text_embedder, embedding_similarity, prompt_drift

    out, work, modes = Path(args.out), Path(args.work), _modes(args)
    queries = eval_queries(args.eval_queries, args.eval_n, args.seed)
    untrained = load_agent(args.base_agent)
    embedders = {"agent-embedding similarity": agent_text_embedder(untrained)}
    if args.clip_text == "toy":
        from promptloop_env.toy.model import load_toy_pipeline

        pipe = load_toy_pipeline()
        embedders["CLIP-text similarity (toy model)"] = clip_text_embedder(pipe.text_encoder, pipe.tokenizer)
    pairs = _pairs(args.pairs)
    names = list(dict.fromkeys(n for train_name, heldout in pairs for n in (train_name, *heldout)))
    # Every reward reported as a component of the eval env's reward (only the first one weighs in its total).
    weights = {n: float(i == 0) for i, n in enumerate(names)}
    envs = _envs(args, num_refinements=args.num_refinements, schedule="uniform", reward=weights)

    def eval_rows_of(policy: Any, run_name: str, label: str) -> list[dict[str, Any]]:
        rows = []
        for mode in modes:
            torch.manual_seed(args.seed)
            result = evaluate(policy, envs, queries, seed=args.seed, greedy=mode == "greedy")
            row = {"run": run_name, "policy": label, "mode": mode}
            for component in names:
                values = result.components[component]
                row[component] = float(values.mean())
                row[f"{component} ci95"] = ci95(values)
            row["prompt Jaccard"] = prompt_drift(result.queries, result.prompts)["prompt_jaccard"]
            for embed_label, embed in embedders.items():
                row[embed_label] = embedding_similarity(result.queries, result.prompts, embed)
            rows.append(row)
        return rows

    curve_rows, curves = [], {}
    eval_rows = eval_rows_of(untrained, "-", f"untrained ({args.base_agent})")
    for train_name, heldout in pairs:
        run_name = f"train-{train_name}"
        run = train_agent(
            run_name,
            work,
            reuse=args.reuse,
            progress=args.progress,
            **_train_settings(args, reward=train_name, heldout_rewards=",".join(heldout)),
        )
        tags = {f"train: {train_name}": "charts/episodic_return"}
        tags |= {f"held-out: {h}": f"diagnostics/heldout/{h}" for h in heldout}
        tags |= {
            "prompt drift (1 - Jaccard)": "diagnostics/prompt_drift",
            "agent-embedding similarity": "diagnostics/prompt_embedding_similarity",
        }
        curves[run_name] = {}
        for label, tag in tags.items():
            steps, values = tb_scalars(run.tensorboard, tag)
            curves[run_name][label] = (steps, values)
            first, last = first_last(values)
            curve_rows.append(
                {
                    "run": run_name,
                    "metric": label,
                    "tag": tag,
                    "first_10pct": first,
                    "last_10pct": last,
                    "change": last - first,
                    "updates": len(values),
                }
            )
        eval_rows += eval_rows_of(load_agent(str(run.agent)), run_name, f"trained on {train_name}")
    envs.close()
    name = "overopt"
    write_csv(out / f"{name}.csv", eval_rows)
    write_csv(out / f"{name}_training.csv", curve_rows)
    metrics = list(dict.fromkeys(r["metric"] for r in curve_rows))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(curves), 7.5), layout="constrained")
    grid = fig.subplots(3, len(curves), squeeze=False, sharex="col")
    panels = (("train", "trained reward"), ("held-out", "held-out reward"), ("", "prompt vs query"))
    for col, (run_name, series) in enumerate(curves.items()):
        for row, (prefix, ylabel) in enumerate(panels):
            ax = grid[row][col]
            for i, label in enumerate(metrics):
                in_panel = label.startswith(prefix) if prefix else not label.startswith(("train", "held-out"))
                if not in_panel or label not in series or len(series[label][1]) == 0:
                    continue
                steps, values = series[label]
                window = max(len(values) // 10, 1)  # moving average over a tenth of the run
                ax.plot(steps, values, color=f"C{i}", alpha=0.25, linewidth=0.8)
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1 :], smooth, color=f"C{i}", label=label)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7, loc="best")
        grid[0][col].set_title(run_name, fontsize=10)
        grid[-1][col].set_xlabel("episodes seen")
    fig.savefig(out / f"{name}.png", dpi=120)
    eval_columns = list(dict.fromkeys(k for r in eval_rows for k in r))
    body = [
        f"Training: GRPO from `{args.base_agent}`, {args.updates} updates of {args.queries_per_update} queries x "
        f"G = {args.group_size}, T = {args.num_inference_steps}, K = {args.num_refinements} {args.train_schedule} "
        "points, on "
        f"the reward named "
        "by the run; the held-out rewards score the same final images against the same queries, and the prompt "
        "drift is 1 - the mean Jaccard similarity of each prompt's words with the query's, logged every update "
        "(TensorBoard `diagnostics/heldout/<name>`, `diagnostics/prompt_drift`, "
        "`diagnostics/prompt_embedding_similarity`: cosine of the policy's own mean-pooled input embeddings).",
        "",
        "## During training (first vs last 10 % of updates)",
        "",
        markdown_rows(curve_rows, ["run", "metric", "first_10pct", "last_10pct", "change", "updates"]),
        "",
        f"## Evaluation ({args.eval_n} `{args.eval_queries}` queries, K = {args.num_refinements} uniform, "
        "the same env seeds)",
        "",
        "Each reward's mean with its 95 % CI half-width; similarities of the written prompts to the query "
        "(1.0 = the query itself).",
        "",
        markdown_rows(eval_rows, eval_columns),
        "",
        f"![overopt]({name}.png)",
    ]
    md = write_report(out, name, "Over-optimisation diagnostics", args, body)
    return {
        "markdown": md,
        "csv": out / f"{name}.csv",
        "plot": out / f"{name}.png",
        "training_csv": out / f"{name}_training.csv",
    }


def run_unseen_backbone(args: argparse.Namespace) -> dict[str, Path]:
    """A policy trained on one backbone (``--env-id``) evaluated on every ``--backbones`` env id."""
    from .baselines import Identity

    out, modes = Path(args.out), _modes(args)
    queries = eval_queries(args.eval_queries, args.eval_n, args.seed)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    if args.agent:
        agent_path, minutes = args.agent, float("nan")
    else:
        run = train_agent("rl-k-preview", args.work, reuse=args.reuse, progress=args.progress, **_train_settings(args))
        agent_path, minutes = str(run.agent), run.minutes
    trained = load_agent(agent_path)
    untrained = load_agent(args.base_agent)
    rows = []
    for env_id in backbones:
        envs = _envs(args, env_id, num_refinements=args.num_refinements, schedule="uniform")
        identity = evaluate(Identity(), envs, queries, seed=args.seed)
        seen = "trained on" if env_id == args.env_id else "unseen"
        rows.append(result_row(identity, identity, backbone=env_id, seen=seen, label="identity", mode="-"))
        rows += _eval_agent(
            untrained, envs, queries, args, identity, modes, backbone=env_id, seen=seen, label="untrained policy"
        )
        rows += _eval_agent(
            trained, envs, queries, args, identity, modes, backbone=env_id, seen=seen, label="trained policy"
        )
        envs.close()
    name = "unseen_backbone"
    write_csv(out / f"{name}.csv", rows)
    fig, axes = _figure(ncols=len(backbones), width=5.5, height=0.4 * len(rows) / len(backbones) + 1.5)
    for ax, env_id in zip(axes, backbones, strict=True):
        shown = [r for r in rows if r["backbone"] == env_id]
        bar_plot(ax, shown, title=f"{env_id} ({shown[0]['seen']})")
    fig.savefig(out / f"{name}.png", dpi=120)
    trained_how = (
        f"`{agent_path}`"
        if args.agent
        else f"trained here on `{args.env_id}` ({args.updates} GRPO updates, {minutes:.1f} min)"
    )
    body = [
        f"Trained policy: {trained_how}; untrained: `{args.base_agent}`. Eval on each backbone: {args.eval_n} "
        f"`{args.eval_queries}` queries, the same env seeds, T = {args.num_inference_steps}, K = "
        f"{args.num_refinements} uniform, the "
        "env's reward; 'delta' is the paired difference to identity on the same backbone.",
        "",
        markdown_rows(
            rows,
            [
                "backbone",
                "seen",
                "label",
                "mode",
                "mean",
                "ci_low",
                "ci_high",
                "n",
                "delta_vs_identity",
                "delta_ci_low",
                "delta_ci_high",
            ],
        ),
        "",
        f"![unseen backbone]({name}.png)",
    ]
    md = write_report(out, name, "Generalisation to an unseen backbone", args, body)
    return {"markdown": md, "csv": out / f"{name}.csv", "plot": out / f"{name}.png"}


EXPERIMENTS = {
    "ablation": run_ablation,
    "k-sweep": run_k_sweep,
    "overopt": run_overopt,
    "unseen-backbone": run_unseen_backbone,
}


# ---------------------------------------------------------------------------------------------------------
# Command line


def _common(parser: argparse.ArgumentParser, experiment: str) -> None:
    parser.add_argument(
        "--out",
        default=f"outputs/bench/{experiment.replace('-', '_')}",
        help="folder for the table (.md), the CSV and the plot (.png)",
    )
    parser.add_argument("--work", default=None, help="folder for training runs (default: OUT/runs)")
    parser.add_argument("--env-id", default="PromptLoop-v0", help="the env trained and evaluated on")
    parser.add_argument("--eval-queries", default="toy-user-test", help="held-out prompt set for evaluation")
    parser.add_argument("--eval-n", type=int, default=100, help="held-out queries (one episode each)")
    parser.add_argument("--num-envs", type=int, default=25, help="episodes run at once in evaluation")
    parser.add_argument("--num-inference-steps", type=int, default=20, help="T")
    parser.add_argument("--num-refinements", type=int, default=5, help="refinement points K")
    parser.add_argument("--modes", default="sampled,greedy", help="how agents answer in evaluation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the queries, env seeds and training")
    parser.add_argument("--base-agent", default="toy", help="the untrained policy RL starts from")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")


def _training(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--updates", type=int, default=30, help="GRPO updates per training run")
    parser.add_argument("--queries-per-update", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4, help="GRPO's G")
    parser.add_argument(
        "--minibatches", type=int, default=None, help="gradient steps per update (default: the algorithm's own)"
    )
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="learning rate of the LoRA adapter")
    parser.add_argument(
        "--kl-coef", type=float, default=None, help="KL penalty coefficient (default: the algorithm's own)"
    )
    parser.add_argument("--train-queries", default="toy-user-train")
    parser.add_argument(
        "--train-schedule",
        default="random",
        choices=("random", "uniform"),
        help="where the K refinement points fall in training (random per episode, the paper's; or the eval's)",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs with the same settings in WORK")


def add_bench_parser(sub: Any) -> None:
    """Register ``bench`` and its experiments on the ``promptloop`` command's sub-parsers."""
    parser = sub.add_parser("bench", help="experiments: ablation, k-sweep, overopt, unseen-backbone")
    experiments = parser.add_subparsers(dest="experiment", required=True)
    p = experiments.add_parser("ablation", help="base model / untrained / RL one-shot / RL K no preview / RL K")
    _common(p, "ablation")
    _training(p)
    p.add_argument("--train-seeds", default="0", help="training seeds of the two RL K rows, comma-separated")
    p.add_argument("--ppo", action=argparse.BooleanOptionalAction, default=True, help="the PPO K + previews row")
    p.add_argument(
        "--scripted",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the toy world's scripted open- and closed-loop reference rows",
    )
    p = experiments.add_parser("k-sweep", help="reward versus K and versus where the refinement points fall")
    _common(p, "k-sweep")
    p.add_argument("--agent", default="toy", help="policy: 'toy' or an agent folder (a run's agent/)")
    p.add_argument("--ks", default="0,1,3,5,10", help="values of K (0: the query alone)")
    p = experiments.add_parser("overopt", help="held-out rewards and prompt drift while training on one reward")
    _common(p, "overopt")
    _training(p)
    p.add_argument(
        "--pairs",
        default="jpeg_compressibility:toy_alignment,toy_alignment:jpeg_compressibility",
        help="train:heldout[+heldout2] pairs, comma-separated; one training run each",
    )
    p.add_argument(
        "--clip-text",
        default="toy",
        choices=("toy", "none"),
        help="also measure drift with the toy model's CLIP text encoder",
    )
    p = experiments.add_parser("unseen-backbone", help="a policy trained on one backbone evaluated on others")
    _common(p, "unseen-backbone")
    _training(p)
    p.add_argument("--agent", default=None, help="trained agent folder (default: train one on --env-id)")
    p.add_argument("--backbones", default="PromptLoop-v0,PromptLoop-ToyB-v0", help="env ids to evaluate on")


def run_bench(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the experiment ``args.experiment``; returns the paths of what it wrote."""
    if args.eval_n < 2:
        raise ConfigError(f"--eval-n {args.eval_n}: need at least 2 queries for a confidence interval.")
    if getattr(args, "updates", 1) < 1:
        raise ConfigError(f"--updates {args.updates}: need at least 1.")
    args.out = str(Path(args.out))
    args.work = args.work or str(Path(args.out) / "runs")
    args.command_line = "promptloop " + " ".join(argv) if argv is not None else f"promptloop bench {args.experiment}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return EXPERIMENTS[args.experiment](args)
