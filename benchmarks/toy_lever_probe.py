"""A quick probe of a candidate toy model: which prompts bring back a neglected object, blind or from the preview.

    python benchmarks/toy_lever_probe.py                                  # the shipped toy model
    python benchmarks/toy_lever_probe.py --model /tmp/v4 --n 150 --out /tmp/v4_probe.md

Two-object `toy-user-test` queries (env seeds 0..n-1, the env's defaults: T = 20, K = 5 uniform points), each
row a scripted policy of :mod:`agents.toy.scripted`: the query (identity), open-loop rewrites held from the first
refinement point, and neglect controllers (each fix). Per row: the mean ``toy_alignment`` with the paired
difference to identity, and the share of final images showing the query's first / second / both objects in
their colours (the scorer's detection). For identity, how often the step-3 preview already shows an object
missing (:func:`~agents.toy.scripted.objects_forming`) and how often it is still missing at the end: a
controller can only fix what the preview shows and a prompt can still change. A few minutes on 2 cores, against
about 18 for ``toy_headroom.py``: for trying a toy world before measuring its full headroom table.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import report  # benchmarks/report.py, next to this script
from toy_headroom import run  # the headroom benchmark's paired episode runner

from agents.baselines import Identity
from agents.cli import quiet_libraries
from agents.config import make_envs
from agents.toy.scripted import NeglectController, Rewrite, objects_forming, objects_seen
from promptloop_env.toy.grammar import parse, sample_queries
from promptloop_env.toy.model import TOY_GUIDANCE_SCALE, TOY_MODEL_DIR, load_toy_pipeline

ROWS = {
    "identity": lambda: Identity(),
    "open loop: canonical caption": lambda: Rewrite("canonical caption"),
    "open loop: second object named first": lambda: Rewrite("canonical, second object named first"),
    "open loop: first object emphasised": lambda: Rewrite("canonical, first object emphasised"),
    "open loop: second object emphasised": lambda: Rewrite("canonical, second object emphasised"),
    "open loop: second object restated": lambda: Rewrite("canonical, second object restated"),
    "closed loop: reorder until 20 %, from second first": lambda: NeglectController(0.2, second_first=True),
    "closed loop: emphasise until 20 %": lambda: NeglectController(0.2, fix="emphasise"),
    "closed loop: emphasise until 40 %": lambda: NeglectController(0.4, fix="emphasise"),
    "closed loop: restate until 40 %": lambda: NeglectController(0.4, fix="restate"),
}


def candidate_world(model: str, n: int) -> tuple[Any, list[str]]:
    """The env on a candidate toy model (up to 50 episodes at once) and ``n`` two-object `toy-user-test` queries
    (seed 7): what the candidate-model probes run on, with env seeds 0..n-1."""
    pipe = load_toy_pipeline(model, cache=False)
    envs = make_envs(
        "PromptLoop-v0", min(50, n), pipeline=pipe, reward="toy_alignment", guidance_scale=TOY_GUIDANCE_SCALE
    )
    return envs, sample_queries(n, "test", 7, num_objects=2, style="user")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="a toy model folder (the training script's --out)")
    parser.add_argument("--n", type=int, default=150, help="two-object held-out queries")
    parser.add_argument("--out", default=None, help="write the table to this Markdown file")
    args = parser.parse_args()
    quiet_libraries()
    envs, queries = candidate_world(args.model, args.n)
    rows, base, note = [], None, ""
    for name, make in ROWS.items():
        episodes = run(make(), envs, queries)  # env seeds 0..n-1, the last batch padded
        rewards = np.array([e.reward for e in episodes])
        seen = np.array([objects_seen(e.image, parse(e.query)) for e in episodes])
        if base is None:
            base = rewards
            early = np.array([objects_forming(e.previews[0], parse(e.query)) for e in episodes])
            missing_early, missing_final = ~early.all(1), ~seen.all(1)
            note = (
                f"Identity: an object missing in the step-3 preview in {missing_early.mean():.2f} of episodes, in "
                f"the final image in {missing_final.mean():.2f}; of those missing at step 3, "
                f"{(missing_early & missing_final).sum() / max(missing_early.sum(), 1):.2f} still missing at the end."
            )
        delta = report.paired_delta(rewards, base) if rows else ""
        shares = " / ".join(f"{x:.2f}" for x in (seen[:, 0].mean(), seen[:, 1].mean(), seen.all(1).mean()))
        rows.append([name, report.mean_ci(rewards), delta, shares])
        print(rows[-1], flush=True)
    envs.close()
    lines = report.header("Toy world lever probe: what brings a neglected object back")
    lines += [
        f"Model: `{args.model}`. {args.n} two-object `toy-user-test` queries (seed 7), env seeds 0..{args.n - 1}, "
        "T = 20, K = 5 uniform points (steps 3/7/10/13/17), guidance 3.0; open-loop rewrites are held from step 3.",
        "",
    ]
    lines += report.table(
        ["row", "toy_alignment [95% CI]", "vs identity", "first / second / both objects shown"], rows, align="lrrr"
    )
    lines += ["", note]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
