"""The ablation's training rows at the scale that learns: one training run per row, toy_learning's batch and queries.

    python benchmarks/toy_learning_ablation.py [--rows one-shot,uniform,random,blind] [--updates 200]

``toy_learning.py`` found the scale at which GRPO in the env learns the toy world's one decision (64 episodes per
update on two-object queries, a few hundred updates); the committed ablation (``promptloop bench ablation``) trains
every row with 16 episodes per update and nothing moves. This trains the ablation's GRPO rows at toy_learning's
scale, one run of ``--updates`` updates each from the untrained ``toy`` policy, with everything but the row's own
setting the same (queries, batch, lr, KL, seed 0):

- ``one-shot``: K = 1 at step 0, no preview (the paper's one-shot rewrite, open loop);
- ``random``: K = 5 random points per episode with previews (``promptloop train``'s default);
- ``blind``: K = 5 random points, blank previews in training and eval (no latent feedback);
- ``uniform``: K = 5 at the eval's uniform points (steps 3/7/10/13/17) with previews: a trainer choice, not a paper
  row; ``toy_turns.md`` puts the lever at the first point, which the random schedule spreads over two.

Each row is evaluated in its own setting (the one-shot row K = 1 at step 0 without previews, the blind row K = 5
with blank previews, the others K = 5 with previews) on the same 400 held-out episodes, sampled and greedy, paired
with identity and with the untrained policy evaluated in the same setting. Results are written after every row;
a second invocation reuses the finished runs in ``--work``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  benchmarks/report.py
from toy_learning import BATCH, measure, stage_line, write_pairs  # noqa: E402

from agents.baselines import make_baseline  # noqa: E402
from agents.bench import train_agent  # noqa: E402
from agents.config import load_agent  # noqa: E402
from agents.evaluate import eval_queries, evaluate  # noqa: E402
from agents.train import make_envs  # noqa: E402
from promptloop_env.toy.grammar import sample_queries  # noqa: E402

# row key: (label, TrainConfig settings, eval setting)
ROWS = {
    "one-shot": ("GRPO one-shot (K = 1 at step 0, no preview)", dict(num_refinements=1, schedule="0", preview="none"),
                 "one-shot"),
    "random": ("GRPO K = 5, random points, previews (default)", {}, "full"),
    "blind": ("GRPO K = 5, random points, no previews", dict(preview="none"), "blind"),
    "uniform": ("GRPO K = 5, uniform points, previews", dict(schedule="uniform"), "full"),
}  # fmt: skip
SETTINGS = {
    "full": ("K = 5 uniform, previews", dict(num_refinements=5, schedule="uniform", preview="full")),
    "blind": ("K = 5 uniform, blank previews", dict(num_refinements=5, schedule="uniform", preview="none")),
    "one-shot": ("K = 1 at step 0, no preview", dict(num_refinements=1, schedule=[0], preview="none")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="one-shot,uniform,random,blind", help=f"comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-n", type=int, default=400)
    parser.add_argument("--work", default="runs/toy_learning_ablation", help="folder of the training runs")
    parser.add_argument("--out", default="benchmarks/results/toy_learning_ablation.md")
    args = parser.parse_args()
    keys = args.rows.split(",")
    if unknown := [k for k in keys if k not in ROWS]:
        parser.error(f"unknown rows {unknown} (expected some of {', '.join(ROWS)})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pairs_file = write_pairs(work)
    probe = sample_queries(200, "test", 1, num_objects=2, style="user")
    queries = eval_queries("toy-user-test", args.eval_n, seed=0)

    untrained: dict[str, dict] = {}
    identity = None
    table: list[list[str]] = []
    training: list[str] = []

    def row(label: str, setting: str, mode: str, result: dict, base: dict | None) -> list[str]:
        r, s = result[mode]["rewards"], result[mode]["shares"]
        return [
            label,
            SETTINGS[setting][0],
            mode,
            report.mean_ci(r),
            report.paired_delta(r, identity),
            "" if base is None else report.paired_delta(r, base[mode]["rewards"]),
            f"{s['keep']:.2f} / {s['second']:.2f} / {s['both']:.2f}",
        ]

    def write() -> None:
        lines = report.header("The ablation's GRPO rows at the scale that learns")
        lines += [
            f"Training: `promptloop train` from the untrained `toy` policy, GRPO, shared noise per group, KL 0.04, "
            f"LoRA r = 8, 8 queries x G = 8 per update, 4 minibatches, lr {args.lr:g}, {args.updates} updates, "
            f"seed 0, on the 4,000 two-object `toy-user-train`-style queries of `toy_learning.py`; each row changes "
            f"only its refinement setting. Eval: {args.eval_n} held-out `toy-user-test` queries (all kinds), env "
            f"seeds 0..{args.eval_n - 1}, the same episodes for every row, each row in its own setting; 'vs "
            "untrained' pairs it with the untrained policy in that setting. Paired 95 % CIs. Shares: of first "
            "rewrites (blank preview) of 200 held-out two-object queries, 'meaning kept / second object first / "
            "both'.",
            "",
        ]
        header = ["policy", "eval setting", "mode", "toy_alignment [95% CI]", "vs identity", "vs untrained", "shares"]
        lines += report.table(header, table)
        lines += ["", "## Training", "", *training, "", f"Wall time {(time.perf_counter() - start) / 60:.1f} min."]
        print(report.write(args.out, lines), flush=True)

    for key in keys:
        label, settings, setting = ROWS[key]
        run = train_agent(
            key, work, reuse=True, agent="toy", queries=str(pairs_file), **BATCH, lr=args.lr, updates=args.updates,
            seed=0, checkpoint_every=50, log_images_every=0, **settings,
        )  # fmt: skip
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
        command = (
            f"promptloop train --agent toy --queries pairs.txt --group-size 8 --queries-per-update 8 "
            f"--minibatches 4 --lr {args.lr:g} --updates {args.updates} --seed 0 {flags}".rstrip()
        )
        training.append(stage_line(key, command, run))
        print(training[-1], flush=True)
        envs = make_envs("PromptLoop-v0", 50, **SETTINGS[setting][1])
        if identity is None:
            identity = evaluate(make_baseline("identity"), envs, queries, seed=0).rewards
            table.append(["identity (the query)", "", "", report.mean_ci(identity), "", "", ""])
        if setting not in untrained:
            untrained[setting] = measure(load_agent("toy"), envs, queries, probe)
            table.extend(row("untrained (`toy`)", setting, m, untrained[setting], None) for m in ("sampled", "greedy"))
        result = measure(load_agent(str(run.agent)), envs, queries, probe)
        envs.close()
        table.extend(row(label, setting, m, result, untrained[setting]) for m in ("sampled", "greedy"))
        write()


if __name__ == "__main__":
    main()
