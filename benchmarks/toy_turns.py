"""Which refinement point carries the toy world's lever? Scripted rules that name a two-object query's second
object first at some refinement points and not at others.

    python benchmarks/toy_turns.py [--n 400] [--out benchmarks/results/toy_turns.md]

The one prompt decision that pays on the toy world is naming a two-object query's second object first
(``toy_headroom.md``: 0.926 against the canonical caption's 0.842), because the toy model neglects the object it
is told second. This asks *when* that decision must be made. Each row is an open-loop policy that writes the
canonical caption (:func:`~promptloop_env.toy.grammar.describe`) at every refinement point, with the second
object named first (:func:`~agents.toy.scripted.swapped`) at the points its row lists (by index: 0 is the
first refinement point). Rows are paired (the same ``toy-user-test`` queries and env seeds) and run under the
env's two schedules: ``uniform`` (steps 3/7/10/13/17, the eval default) and ``random`` (five distinct steps in
1..19 per episode, drawn from the env seed: ``promptloop train``'s default).

If the second object named first at the first point alone matches it at every point, a policy that sees
previews has nothing to read them for on this lever. A third setting, ``one-shot`` (K = 1 at step 0: the
ablation's one-shot row), writes the rewrite from the first step, with no steps under the query before it:
whether the lever needs that time structure (the first object laid out under the query, the second named first
after it) or pays for a rewrite that acts once, at the start.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import report  # benchmarks/report.py, next to this script
from toy_headroom import run  # the headroom benchmark's paired episode runner

from agents.evaluate import eval_queries
from agents.mllm import split_observations
from agents.toy.scripted import swapped
from agents.train import make_envs
from promptloop_env.toy.grammar import ParseError, describe, parse

K = 5


class SecondFirstAt:
    """The canonical caption, with the second object named first at the refinement points in ``points``.

    The point's index is counted from the calls: :func:`agents.rollout.collect` steps every sub-env of a batch
    in lockstep, ``k`` calls per episode, so call ``c`` is point ``c % k``. ``points=None``: the query itself.
    """

    def __init__(self, points: frozenset[int] | None, k: int = K) -> None:
        self.points = points
        self.k = k
        self.calls = 0

    def act(self, observations: Any) -> list[str]:
        point = self.calls % self.k
        self.calls += 1
        prompts = []
        for o in split_observations(observations):
            query = str(o["query"])
            try:
                spec = parse(query)
            except ParseError:
                prompts.append(query)
                continue
            if self.points is None:
                prompts.append(query)
            else:
                prompts.append(describe(swapped(spec) if point in self.points else spec))
        return prompts


ROWS: dict[str, frozenset[int] | None] = {
    "identity (the query)": None,
    "canonical caption at every point": frozenset(),
    "second object first at every point": frozenset(range(K)),
    "second object first at point 0 only": frozenset({0}),
    "second object first at point 1 only": frozenset({1}),
    "second object first at point 2 only": frozenset({2}),
    "second object first at points 3 and 4 only": frozenset({3, 4}),
    "second object first at points 0 and 1": frozenset({0, 1}),
    "second object first from point 1 on": frozenset(range(1, K)),
}
#: The ablation's one-shot setting (K = 1 at step 0): the rewrite is in force from the first step.
ONE_SHOT_ROWS: dict[str, frozenset[int] | None] = {
    "identity (the query)": None,
    "canonical caption at every point": frozenset(),
    "second object first at every point": frozenset({0}),
}
SCHEDULES = {  # name: (env settings, rows, K, where the points fall)
    "uniform": (dict(schedule="uniform"), ROWS, K, "steps 3/7/10/13/17"),
    "random": (dict(schedule="random"), ROWS, K, "five distinct steps in 1..19 per episode"),
    "one-shot": (
        dict(num_refinements=1, schedule=[0]),
        ONE_SHOT_ROWS,
        1,
        "K = 1 at step 0, the ablation's one-shot row: the rewrite is in force from the first step",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="held-out test queries")
    parser.add_argument("--num-envs", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/toy_turns.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    test = eval_queries("toy-user-test", args.n, seed=0)
    pairs = np.array([len(parse(q).objects) == 2 for q in test])
    results: dict[str, dict[str, np.ndarray]] = {}
    for schedule, (settings, rows, k, _) in SCHEDULES.items():
        envs = make_envs("PromptLoop-v0", args.num_envs, **settings)
        results[schedule] = {}
        for label, points in rows.items():
            rewards = np.array([e.reward for e in run(SecondFirstAt(points, k), envs, test)])
            results[schedule][label] = rewards
            print(f"{schedule:8s} {label}: {rewards.mean():.4f}", flush=True)
        envs.close()

    lines = report.header("Toy world: which refinement point carries the lever")
    lines += [
        f"`PromptLoop-v0` (T = 20, K = {K}, guidance 3.0, reward `toy_alignment`); {args.n} held-out "
        f"`toy-user-test` queries (seed 0; {pairs.sum()} of them name two objects), env seeds 0..{args.n - 1}, the "
        "same for every row and schedule (under `random` the env seed also draws the points). Each row writes the "
        "canonical caption at every refinement point, with the second object named first at the points listed "
        "(0 = the first point). Paired 95 % CIs (normal approximation over per-episode differences); the last "
        "column is over the two-object queries only.",
        "",
    ]
    every = "second object first at every point"
    for schedule, rows in results.items():
        canonical = rows["canonical caption at every point"]
        table = []
        for label, r in rows.items():
            table.append(
                [
                    label,
                    report.mean_ci(r),
                    "" if label == "canonical caption at every point" else report.paired_delta(r, canonical),
                    "" if label == every else report.paired_delta(r, rows[every]),
                    "" if label == every else report.paired_delta(r[pairs], rows[every][pairs]),
                ]
            )
        points = SCHEDULES[schedule][3]
        lines += [f"## Schedule `{schedule}` ({points})", ""]
        lines += report.table(
            [
                "row",
                "toy_alignment [95% CI]",
                "vs canonical at every point",
                "vs second object first at every point",
                "the same, two-object queries",
            ],
            table,
        )
        lines.append("")
    lines.append(f"Wall time {(time.perf_counter() - start) / 60:.1f} min.")
    print(report.write(args.out, lines))


if __name__ == "__main__":
    main()
