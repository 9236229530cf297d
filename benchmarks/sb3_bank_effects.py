"""Which prompt-bank entries change the rewards on the toy world? (Before training an SB3 policy on the bank.)

    python benchmarks/sb3_bank_effects.py [--n 200] [--steps 10] [--refinements 2]

Each entry of :data:`promptloop_env.wrappers.DEFAULT_BANK` (the query, then modifiers appended to it), and the
two prompts that replace the query in the bank of ``examples/sb3_prompt_bank.py``, is used as a fixed policy
(the same entry at every refinement point) on the same held-out ``toy-test`` queries with the same env seeds;
entry 0 (the query unchanged) is the identity baseline. Both rewards are computed on the same final images:
JPEG compressibility (minus the JPEG size in kB) and the toy scorer's alignment with the query. Differences to
identity are paired (same query, same initial noise). The last line is the per-episode oracle: the best entry
for each episode under ``jpeg_compressibility + w * toy_alignment`` (``--weight``), chosen after the fact (an
upper bound that includes luck, not a policy).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import report  # benchmarks/report.py, next to this script

from agents.cli import quiet_libraries
from agents.evaluate import eval_queries, evaluate
from agents.mllm import split_observations
from agents.train import make_envs
from promptloop_env.wrappers import DEFAULT_BANK

#: The bank of examples/sb3_prompt_bank.py: the default bank and two prompts that replace the query.
BANK = (*DEFAULT_BANK, "a small white circle on a white background", "")


class Entry:
    """One bank template at every refinement point."""

    def __init__(self, template: str) -> None:
        self.template = template

    def act(self, observations) -> list[str]:
        return [
            self.template.replace("{query}", o["query"]).replace("{prompt}", o["prompt"])
            for o in split_observations(observations)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10, help="T, denoising steps")
    parser.add_argument("--refinements", type=int, default=2, help="K, uniform refinement points")
    parser.add_argument("--weight", type=float, default=1.0, help="toy_alignment's weight in the oracle row")
    parser.add_argument("--entries", type=int, nargs="*", default=None, help="bank entries to run (default: all)")
    parser.add_argument("--out", default="benchmarks/results/sb3_bank_effects.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_libraries()
    start = time.perf_counter()
    queries = eval_queries("toy-test", args.n, seed=0)
    envs = make_envs(
        "PromptLoop-v0",
        25,
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        schedule="uniform",
        reward={"jpeg_compressibility": 1.0, "toy_alignment": 0.0},  # both parts reported, on the same images
    )
    entries = sorted({0, *(range(len(BANK)) if args.entries is None else args.entries)})  # 0: the paired base
    if entries[-1] >= len(BANK) or entries[0] < 0:
        raise SystemExit(f"--entries must be in [0, {len(BANK)}); got {args.entries}.")
    results = {}
    for i in entries:
        template = BANK[i]
        results[i] = evaluate(Entry(template), envs, queries, seed=0)
        print(i, repr(template), f"{results[i].components['jpeg_compressibility'].mean():.4f}", flush=True)
    jpeg0 = results[0].components["jpeg_compressibility"]
    align0 = results[0].components["toy_alignment"]
    rows = []
    for i in entries:
        template = BANK[i]
        jpeg, align = results[i].components["jpeg_compressibility"], results[i].components["toy_alignment"]
        dj, da = jpeg - jpeg0, align - align0
        rows.append(
            [
                i,
                f"`{template!r}`",
                f"{jpeg.mean():.4f}",
                f"±{report.ci95(jpeg):.4f}",
                f"{dj.mean():+.4f}",
                f"±{report.ci95(dj):.4f}",
                f"{align.mean():.4f}",
                f"{da.mean():+.4f}",
                f"±{report.ci95(da):.4f}",
            ]
        )
    weighted = np.stack(
        [
            results[i].components["jpeg_compressibility"] + args.weight * results[i].components["toy_alignment"]
            for i in entries
        ]
    )
    best_fixed = entries[int(weighted.mean(1).argmax())]
    oracle = weighted.max(0)
    minutes = (time.perf_counter() - start) / 60
    lines = report.header("Prompt-bank entries vs rewards on the toy world")
    lines += [
        f"Run time {minutes:.1f} min. Held-out `toy-test` queries, the same env seeds for every entry, "
        f"T = {args.steps}, K = {args.refinements} uniform refinement points, the entry used at every point. JPEG "
        "size at quality 95 of the 32 x 32 final image.",
        "",
        *report.table(
            [
                "action",
                "bank entry",
                "jpeg_compressibility (-kB)",
                "95% CI",
                "diff to identity",
                "95% CI (paired)",
                "toy_alignment",
                "diff to identity",
                "95% CI (paired)",
            ],
            rows,
        ),
        "",
        f"Weighted reward `jpeg_compressibility + {args.weight:g} * toy_alignment`: identity "
        f"{weighted[0].mean():.4f}, best fixed entry ({best_fixed}) {weighted[entries.index(best_fixed)].mean():.4f}, "
        f"per-episode oracle over the bank {oracle.mean():.4f} (best entry chosen after the fact).",
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
