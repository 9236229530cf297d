"""The ablation's training rows at the scale that learns: one training run per row, toy_learning's batch and queries.

    python benchmarks/toy_learning_ablation.py [--rows one-shot,uniform,blind,uniform-s1,ppo,random] [--updates 200]

``toy_learning.py`` found the scale at which GRPO in the env learns the toy world's one decision (64 episodes per
update on two-object queries, a few hundred updates); the committed ablation (``promptloop bench ablation``) trains
every row with 16 episodes per update and nothing moves. This trains the ablation's rows at toy_learning's scale,
one run of ``--updates`` updates each from the untrained ``toy`` policy, with everything but the row's own setting
the same (queries, batch, lr, KL, seed 0 unless named):

- ``one-shot``: K = 1 at step 0, no preview (the paper's one-shot rewrite, open loop);
- ``uniform`` and ``uniform-s1``: K = 5 at the eval's uniform points (steps 3/7/10/13/17) with previews, seeds 0
  and 1;
- ``blind``: K = 5 uniform points, blank previews in training and eval (no latent feedback);
- ``ppo``: PPO, K = 5 uniform points with previews;
- ``random``: GRPO, K = 5 random points per episode with previews (``promptloop train``'s default schedule).

Each row is evaluated in its own setting (the one-shot row K = 1 at step 0 without previews, the blind row K = 5
with blank previews, the others K = 5 with previews) on the same 400 held-out episodes, sampled and greedy,
paired with identity and with the untrained policy evaluated in the same setting; then the ablation's paired
steps (K = 5 + previews over one-shot and over no previews) and each row's share of the scripted closed loop's
gain. Results are written after every row. Finished runs in ``--work`` and their evaluations are reused, so a
second invocation with more rows only trains and evaluates the new ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  benchmarks/report.py
from toy_learning import BATCH, measure, stage_line, write_pairs  # noqa: E402

from agents.baselines import make_baseline  # noqa: E402
from agents.bench import train_agent  # noqa: E402
from agents.config import load_agent  # noqa: E402
from agents.evaluate import eval_queries, evaluate  # noqa: E402
from agents.toy.scripted import scripted_references  # noqa: E402
from agents.train import make_envs  # noqa: E402
from promptloop_env.toy.grammar import sample_queries  # noqa: E402

UNIFORM = dict(schedule="uniform")
# row key: (label, TrainConfig settings, eval setting)
ROWS = {
    "one-shot": ("GRPO one-shot (K = 1 at step 0, no preview)", dict(num_refinements=1, schedule="0", preview="none"),
                 "one-shot"),
    "uniform": ("GRPO K = 5 + previews, seed 0", UNIFORM, "full"),
    "blind": ("GRPO K = 5, no previews", dict(UNIFORM, preview="none"), "blind"),
    "uniform-s1": ("GRPO K = 5 + previews, seed 1", dict(UNIFORM, seed=1), "full"),
    "ppo": ("PPO K = 5 + previews", dict(UNIFORM, algo="ppo"), "full"),
    "random": ("GRPO K = 5 + previews, random points", {}, "full"),
}  # fmt: skip
SETTINGS = {
    "full": ("K = 5 uniform, previews", dict(num_refinements=5, schedule="uniform", preview="full")),
    "blind": ("K = 5 uniform, blank previews", dict(num_refinements=5, schedule="uniform", preview="none")),
    "one-shot": ("K = 1 at step 0, no preview", dict(num_refinements=1, schedule=[0], preview="none")),
}
MODES = ("sampled", "greedy")


def measured(path: Path, agent: str, envs, queries: list[str], probe: list[str]) -> dict[str, dict]:
    """:func:`toy_learning.measure` of the agent ``agent`` (``"toy"`` or a folder), stored at ``path`` (JSON) and
    read back on the next invocation."""
    if not path.is_file():
        result = measure(load_agent(agent), envs, queries, probe)
        data = {m: {"rewards": v["rewards"].tolist(), "shares": {k: float(x) for k, x in v["shares"].items()}}
                for m, v in result.items()}  # fmt: skip
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    data = json.loads(path.read_text())
    return {m: {"rewards": np.array(v["rewards"]), "shares": v["shares"]} for m, v in data.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {', '.join(ROWS)}")
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

    envs = make_envs("PromptLoop-v0", 50, **SETTINGS["full"][1])
    references = {}
    for label, policy in {"identity (the query)": make_baseline("identity"), **scripted_references()}.items():
        references[label] = evaluate(policy, envs, queries, seed=0).rewards
    envs.close()
    identity = references["identity (the query)"]
    closed_label = [label for label in references if "closed loop" in label][0]
    closed_gain = float((references[closed_label] - identity).mean())
    untrained: dict[str, dict] = {}
    results: dict[str, dict] = {}
    table = [[label, SETTINGS["full"][0], "", report.mean_ci(r), "" if r is identity else
              report.paired_delta(r, identity), "", ""] for label, r in references.items()]  # fmt: skip
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

    def comparisons() -> list[str]:
        out = []
        previews = [k for k in results if ROWS[k][2] == "full"]
        for mode in MODES:
            for k in previews:
                r = results[k][mode]["rewards"]
                for other in ("one-shot", "blind"):
                    if other in results:
                        out.append(
                            f"- {ROWS[k][0]} ({mode}) - {ROWS[other][0]}: "
                            f"{report.paired_delta(r, results[other][mode]['rewards'])}"
                        )
                share = float((r - identity).mean()) / closed_gain
                out.append(f"  - its share of the scripted closed loop's gain over identity ({closed_gain:+.3f}): "
                           f"{share:.0%}")  # fmt: skip
        return out

    def write() -> None:
        lines = report.header("The ablation's rows at the scale that learns")
        lines += [
            f"Training: `promptloop train` from the untrained `toy` policy (GRPO unless named PPO, shared noise per "
            f"group, the algorithm's KL coefficient, LoRA r = 8), 8 queries x G = 8 per update, 4 minibatches, lr "
            f"{args.lr:g}, {args.updates} updates, seed 0 unless named, on the 4,000 two-object "
            "`toy-user-train`-style queries of `toy_learning.py`; each row changes only its own setting. Eval: "
            f"{args.eval_n} held-out `toy-user-test` queries (all kinds), env seeds 0..{args.eval_n - 1}, the same "
            "episodes for every row, each row in its own setting; 'vs untrained' pairs it with the untrained policy "
            "in that setting. Paired 95 % CIs. Shares: of first rewrites (blank preview) of 200 held-out two-object "
            "queries, 'meaning kept / second object first / both'.",
            "",
        ]
        header = ["policy", "eval setting", "mode", "toy_alignment [95% CI]", "vs identity", "vs untrained", "shares"]
        lines += report.table(header, table)
        lines += ["", "## The ablation's steps, paired", "", *comparisons()]
        lines += ["", "## Training", "", *training, "", f"Wall time {(time.perf_counter() - start) / 60:.1f} min."]
        print(report.write(args.out, lines), flush=True)

    for key in keys:
        label, settings, setting = ROWS[key]
        settings = dict(dict(seed=0), **settings)
        run = train_agent(
            key, work, reuse=True, agent="toy", queries=str(pairs_file), **BATCH, lr=args.lr, updates=args.updates,
            checkpoint_every=50, log_images_every=0, **settings,
        )  # fmt: skip
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
        command = (
            f"promptloop train --agent toy --queries pairs.txt --group-size 8 --queries-per-update 8 "
            f"--minibatches 4 --lr {args.lr:g} --updates {args.updates} {flags}"
        )
        training.append(stage_line(key, command, run))
        print(training[-1], flush=True)
        envs = make_envs("PromptLoop-v0", 50, **SETTINGS[setting][1])
        if setting not in untrained:
            path = work / f"untrained-{setting}-{args.eval_n}.json"
            untrained[setting] = measured(path, "toy", envs, queries, probe)
            table.extend(row("untrained (`toy`)", setting, m, untrained[setting], None) for m in MODES)
        results[key] = measured(work / key / f"measure-{args.eval_n}.json", str(run.agent), envs, queries, probe)
        envs.close()
        table.extend(row(label, setting, m, results[key], untrained[setting]) for m in MODES)
        write()


if __name__ == "__main__":
    main()
