"""Does reading the previews beat every blind timing of the same rewrite? A probe of a candidate toy model.

    python benchmarks/toy_closed_loop_probe.py                                    # the shipped toy model
    python benchmarks/toy_closed_loop_probe.py --model /tmp/v6 --n 200 --out /tmp/v6_probe.md

The paper's two ablation steps (previews over none, five refinements over one) need a world where the right
prompt depends on what a preview shows. On toy world v5 it does not (``toy_turns.md``): the one lever, naming a
pair's second object first, pays most when written blind at the first refinement point. This probe asks the
question of any candidate model, on two-object held-out user-style queries (env defaults: T = 20, K = 5 uniform
points at steps 3/7/10/13/17): blind rows write the canonical caption with the second object named first at a
fixed set of refinement points (``toy_turns.SecondFirstAt``: one-shot, every point, alternating, ...), closed-loop
rows are :class:`~agents.toy.scripted.NeglectController` (names first the object a preview shows missing or drawn
in the other's colour, until a share of sampling). The headline is the best closed-loop row minus the best blind
row, the blind row chosen on the same episodes (which favours the blind side: a lower bound of what seeing adds
over any of these timings). Also: how often identity's step-3 and step-7 previews show an object missing, and
how often it is still missing at the end. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import report  # benchmarks/report.py, next to this script
from toy_headroom import run  # the headroom benchmark's paired episode runner
from toy_lever_probe import candidate_world
from toy_turns import K, SecondFirstAt

from agents.cli import quiet_libraries
from agents.toy.scripted import NeglectController, objects_forming, objects_seen
from promptloop_env.toy.grammar import parse
from promptloop_env.toy.model import TOY_MODEL_DIR

BLIND: dict[str, frozenset[int] | None] = {
    "identity (the query)": None,
    "blind: canonical caption": frozenset(),
    "blind: second first at every point": frozenset(range(K)),
    "blind: second first at point 0 only": frozenset({0}),
    "blind: second first at points 0 and 1": frozenset({0, 1}),
    "blind: second first at points 0, 2, 4": frozenset({0, 2, 4}),
    "blind: second first at points 1 and 3": frozenset({1, 3}),
    "blind: second first from point 1 on": frozenset(range(1, K)),
    "blind: second first from point 2 on": frozenset(range(2, K)),
}
CLOSED: dict[str, Callable[[], Any]] = {
    "closed loop: until 20 % (step 3)": lambda: NeglectController(0.2),
    "closed loop: until 40 % (steps 3, 7)": lambda: NeglectController(0.4),
    "closed loop: until 55 % (steps 3, 7, 10)": lambda: NeglectController(0.55),
    "closed loop: until 70 % (steps 3-13)": lambda: NeglectController(0.7),
    "closed loop: until 40 %, from second first": lambda: NeglectController(0.4, second_first=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="a toy model folder (the training script's --out)")
    parser.add_argument("--n", type=int, default=200, help="two-object held-out queries")
    parser.add_argument("--out", default=None, help="write the table to this Markdown file")
    args = parser.parse_args()
    quiet_libraries()
    envs, queries = candidate_world(args.model, args.n)
    makers: dict[str, Callable[[], Any]] = {name: (lambda p=p: SecondFirstAt(p)) for name, p in BLIND.items()}
    makers.update(CLOSED)
    rewards: dict[str, np.ndarray] = {}
    shown: dict[str, np.ndarray] = {}
    note = ""
    for name, make in makers.items():
        episodes = run(make(), envs, queries)  # env seeds 0..n-1, the last batch padded
        rewards[name] = np.array([e.reward for e in episodes])
        shown[name] = np.array([objects_seen(e.image, parse(e.query)) for e in episodes])
        if not note:
            final = ~shown[name].all(1)
            parts = []
            for point, step in ((0, 3), (1, 7)):
                early = ~np.array([objects_forming(e.previews[point], parse(e.query)) for e in episodes]).all(1)
                parts.append(
                    f"in the step-{step} preview {early.mean():.2f} (of those, still missing at the end: "
                    f"{(early & final).sum() / max(early.sum(), 1):.2f})"
                )
            note = (
                f"Identity: an object missing (or drawn in the other's colour) {'; '.join(parts)}; in the final "
                f"image {final.mean():.2f}."
            )
        print(name, f"{rewards[name].mean():.3f}", flush=True)
    envs.close()
    identity = rewards["identity (the query)"]
    blind = [name for name in BLIND if BLIND[name] is not None]
    best_blind = max(blind, key=lambda name: rewards[name].mean())
    best_closed = max(CLOSED, key=lambda name: rewards[name].mean())
    rows = []
    for name, r in rewards.items():
        seen = shown[name]
        rows.append(
            [
                name,
                report.mean_ci(r),
                "" if name == "identity (the query)" else report.paired_delta(r, identity),
                report.paired_delta(r, rewards[best_blind]) if name in CLOSED else "",
                " / ".join(f"{x:.2f}" for x in (seen[:, 0].mean(), seen[:, 1].mean(), seen.all(1).mean())),
            ]
        )
    lines = report.header("Toy world closed-loop probe: does seeing beat every blind timing?")
    lines += [
        f"Model: `{args.model}`. {args.n} two-object `toy-user-test` queries (seed 7), env seeds 0..{args.n - 1}, "
        "T = 20, K = 5 uniform points (steps 3/7/10/13/17), guidance 3.0. Blind rows: the canonical caption, the "
        "second object named first at the listed refinement points (0 = step 3). Paired 95 % CIs.",
        "",
    ]
    lines += report.table(
        ["row", "toy_alignment [95% CI]", "vs identity", "vs best blind", "first / second / both objects shown"],
        rows,
        align="lrrrr",
    )
    lines += [
        "",
        f"Best blind row (chosen on these episodes): {best_blind}; best closed-loop row: {best_closed}, "
        f"{report.paired_delta(rewards[best_closed], rewards[best_blind])} over it.",
        "",
        note,
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
