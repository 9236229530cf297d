"""Does GRPO in the env teach the toy policy what is left to learn? A long run on two-object queries.

    python benchmarks/toy_learning.py [--updates 200] [--stages 2] [--eval-n 400] [--out FILE.md]

What is left to learn on toy world v5 is one decision: naming a two-object query's second object first in the
first rewrite (``toy_turns.md``). The untrained toy policy makes it at random (about half of sampled rewrites),
and in the env it carries a tenth of the GRPO signal from which the same trainer learns it in a few dozen updates
on a clean reward (``grpo_clean_signal.md``); the ablation's 100-update runs of 16 episodes did not move it.
This spends what that estimate says it needs: ``promptloop train`` at its defaults (GRPO, K = 5 random refinement
points, previews, one initial noise per group, lr 1e-3, KL 0.04) but with 64 episodes per update (8 queries x
G = 8, four minibatches) on two-object user-style train queries only (the one kind of query the decision exists
for; 4,000 distinct ones, written to the run folder), in ``--stages`` stages of ``--updates`` updates, each
stage continuing the previous stage's adapter with a fresh optimizer and the next seed (so each stage is an
ordinary ``promptloop train --agent <previous agent>`` run, resumable on its own).

After each stage: the paired evaluation every other row of the project uses (400 held-out ``toy-user-test``
queries of every kind, env seeds 0..399, K = 5 uniform points, sampled and greedy) against the untrained policy
and identity, and the share of first rewrites of 200 held-out two-object queries that name the second object
first (``grpo_clean_signal.shares``, sampled and greedy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  benchmarks/report.py
from grpo_clean_signal import shares  # noqa: E402

from agents.baselines import make_baseline  # noqa: E402
from agents.bench import first_last, tb_scalars, train_agent  # noqa: E402
from agents.config import load_agent  # noqa: E402
from agents.evaluate import eval_queries, evaluate  # noqa: E402
from agents.train import make_envs  # noqa: E402
from promptloop_env.toy.grammar import sample_queries  # noqa: E402

BATCH = dict(group_size=8, queries_per_update=8, minibatches=4)  # 64 episodes per update, 4 gradient steps


def write_pairs(work: Path) -> Path:
    """The 4,000 distinct two-object user-style train queries every run here trains on, as a query file."""
    pairs = list(dict.fromkeys(sample_queries(4000, "train", 0, drop=0.2, num_objects=2, style="user")))
    path = work / "pairs.txt"
    path.write_text("\n".join(pairs) + "\n")
    return path


def measure(agent, envs, queries: list[str], probe: list[str]) -> dict[str, dict]:
    """Sampled and greedy rewards on the eval episodes (one sampling stream for every agent), and the shares."""
    out = {}
    for mode in ("sampled", "greedy"):
        torch.manual_seed(0)
        result = evaluate(agent, envs, queries, seed=0, greedy=mode == "greedy")
        out[mode] = {"rewards": result.rewards, "shares": shares(agent, probe, greedy=mode == "greedy")}
    return out


def stage_line(label: str, command: str, run) -> str:
    """One training run's line: wall time, throughput, training return and KL from its TensorBoard log."""
    _, returns = tb_scalars(run.tensorboard, "charts/episodic_return")
    _, eps = tb_scalars(run.tensorboard, "charts/episodes_per_second")
    _, tokens = tb_scalars(run.tensorboard, "charts/tokens_per_second")
    _, kl = tb_scalars(run.tensorboard, "objective/kl")
    first, last = first_last(returns)
    return (
        f"- {label} (`{command}`): {run.minutes:.1f} min; median {np.median(eps):.2f} episodes/s, "
        f"{np.median(tokens):.0f} agent tokens/s; training return {first:.3f} (first 10 % of updates) -> "
        f"{last:.3f} (last 10 %); k3 KL to the untrained policy: median {np.median(kl):.2f}, max {np.max(kl):.2f}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200, help="updates per stage")
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--eval-n", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--work", default="runs/toy_learning", help="folder of the training runs")
    parser.add_argument("--out", default="benchmarks/results/toy_learning.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pairs_file = write_pairs(work)
    pairs = pairs_file.read_text().splitlines()
    probe = sample_queries(200, "test", 1, num_objects=2, style="user")  # grpo_clean_signal --measure's queries
    queries = eval_queries("toy-user-test", args.eval_n, seed=0)
    envs = make_envs("PromptLoop-v0", 50)

    identity = evaluate(make_baseline("identity"), envs, queries, seed=0).rewards
    rows = {"untrained (`toy`)": measure(load_agent("toy"), envs, queries, probe)}
    print("untrained", {m: r["rewards"].mean() for m, r in rows["untrained (`toy`)"].items()}, flush=True)
    training = []
    agent_spec = "toy"
    for stage in range(1, args.stages + 1):
        run = train_agent(
            f"stage{stage}", work, agent=agent_spec, queries=str(pairs_file), **BATCH, lr=args.lr,
            updates=args.updates, seed=stage - 1, checkpoint_every=50, log_images_every=0,
        )  # fmt: skip
        command = (
            f"promptloop train --agent {'toy' if stage == 1 else f'<stage {stage - 1}>/agent'} --queries pairs.txt "
            f"--group-size 8 --queries-per-update 8 --minibatches 4 --lr {args.lr:g} --updates {args.updates} "
            f"--seed {stage - 1}"
        )
        agent_spec = str(run.agent)
        training.append(stage_line(f"stage {stage}", command, run))
        print(training[-1], flush=True)
        total = args.updates * stage
        rows[f"GRPO, {total} updates ({stage} stage{'s' if stage > 1 else ''})"] = measure(
            load_agent(agent_spec), envs, queries, probe
        )
    envs.close()

    base = rows["untrained (`toy`)"]
    table = [["identity (the query)", "", report.mean_ci(identity), "", "", ""]]
    for label, result in rows.items():
        for mode in ("sampled", "greedy"):
            r, s = result[mode]["rewards"], result[mode]["shares"]
            table.append(
                [
                    label,
                    mode,
                    report.mean_ci(r),
                    report.paired_delta(r, identity),
                    "" if result is base else report.paired_delta(r, base[mode]["rewards"]),
                    f"{s['keep']:.2f} / {s['second']:.2f} / {s['both']:.2f}",
                ]
            )
    lines = report.header("GRPO in the env on the toy world's one decision")
    lines += [
        f"Training: `promptloop train` defaults (GRPO, K = 5 random refinement points, full previews, shared noise "
        f"per group, KL 0.04, LoRA r = 8) with 8 queries x G = 8 per update, 4 minibatches, lr {args.lr:g}, on "
        f"{len(pairs)} distinct two-object `toy-user-train`-style queries; {args.stages} stage(s) of "
        f"{args.updates} updates, each continuing the last. Eval: {args.eval_n} held-out `toy-user-test` queries "
        f"(all kinds), env seeds 0..{args.eval_n - 1}, K = 5 uniform points, the same episodes for every row; "
        "paired 95 % CIs. Shares: of first rewrites (blank preview) of 200 held-out two-object queries, 'meaning "
        "kept / second object first / both'.",
        "",
    ]
    lines += report.table(["policy", "mode", "toy_alignment [95% CI]", "vs identity", "vs untrained", "shares"], table)
    lines += ["", "## Training", "", *training, "", f"Wall time {(time.perf_counter() - start) / 60:.1f} min."]
    print(report.write(args.out, lines))


if __name__ == "__main__":
    main()
