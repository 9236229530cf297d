"""Why the toy policy does not learn the toy world's open-loop gain: what it writes, and where the gain lies.

    python benchmarks/toy_policy_probe.py [--agents toy[,folder,...]] [--pairs 300] [--n 150]
        [--out benchmarks/results/toy_policy_probe.md]

The ablation (``promptloop bench ablation``) finds no trained toy policy above identity while a scripted
rewrite gains +0.05. This script measures the two halves of that gap on held-out ``toy-user-test`` queries:

1. **What the policy can write** (each agent, greedy, a blank preview, as at the first refinement point):
   the share of its rewrites that keep the query's meaning (the parsed spec, either pair order), per query
   style and object count.
2. **The one decision that pays** (each agent, sampled at its temperature, torch seed 0): on two-object
   queries, which object's colour the rewrite names first (the query's second object first is the direction
   of the scripted gain); before and after RL, this share shows whether training moved the decision at all.
3. **Where the gain lies** (scripted, no policy): on two-object queries, the prompt in force at each of the
   five uniform refinement points (steps 3/7/10/13/17) is the query (``q``), its canonical caption (``c``) or
   the canonical caption with the second object named first (``s``); paired deltas to identity (``qqqqq``)
   on the same env seeds show which points carry the gain.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch

from agents.baselines import Identity
from agents.config import load_agent, make_envs
from agents.evaluate import evaluate
from agents.mllm import split_observations
from agents.toy.scripted import swapped
from promptloop_env.toy.grammar import COLORS, ParseError, describe, parse, sample_queries

STYLES = ("model", "caption", "user")
PLANS = ("sssss", "sqqqq", "scccc", "cssss", "qssss", "qqsss", "ccccc", "scscs")
POINTS = (3, 7, 10, 13, 17)  # the env's uniform refinement points at T = 20, K = 5


def first_prompt_observations(queries: list[str]) -> list[dict]:
    blank = np.zeros((32, 32, 3), np.uint8)
    return [{"preview": blank, "query": q, "prompt": q, "progress": np.array([0.15], np.float32)} for q in queries]


def rewrites(agent, queries: list[str], greedy: bool) -> list[str]:
    obs = first_prompt_observations(queries)
    return [t.prompt for i in range(0, len(obs), 50) for t in agent.generate(obs[i : i + 50], greedy=greedy)]


def keeps_meaning(query: str, prompt: str) -> bool:
    try:
        spec = parse(prompt)
    except ParseError:
        return False
    return spec in (parse(query), swapped(parse(query)))


def first_colour(query: str, prompt: str) -> str:
    """``"second"`` / ``"first"``: the rewrite names the query's second / first object's colour first; else
    ``"other"`` (another colour, or none)."""
    objects = parse(query).objects
    word = next((w for w in prompt.split() if w in COLORS), None)
    return "second" if word == objects[1].color else "first" if word == objects[0].color else "other"


class Plan:
    """A scripted policy: at the i-th uniform refinement point, the prompt of letter i of ``letters``."""

    def __init__(self, letters: str) -> None:
        self.letters = letters

    def act(self, observations) -> list[str]:
        prompts = []
        for o in split_observations(observations):
            step = int(round(float(np.ravel(o["progress"])[0]) * 20))
            i = POINTS.index(step) if step in POINTS else len(POINTS) - 1
            spec = parse(o["query"])
            choice = self.letters[min(i, len(self.letters) - 1)]
            prompts.append({"q": o["query"], "c": describe(spec), "s": describe(swapped(spec))}[choice])
        return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="toy", help="comma-separated agents: 'toy' or folders")
    parser.add_argument("--n", type=int, default=150, help="queries per style and object count (parts 1 and 2)")
    parser.add_argument("--pairs", type=int, default=300, help="two-object queries for part 3 (0: skip it)")
    parser.add_argument("--out", default="benchmarks/results/toy_policy_probe.md")
    args = parser.parse_args()
    start = time.time()
    agents = [a for a in args.agents.split(",") if a]
    lines = report.header("Toy policy probe: what it writes, and where the open-loop gain lies")

    def held_out(style: str, count: int, n: int, seed: int = 1) -> list[str]:
        pool = sample_queries(40 * n, "test", seed=seed, style=style)
        return [q for q in pool if len(parse(q).objects) == count][:n]

    lines += ["## 1. Rewrites that keep the meaning (greedy, first refinement point, blank preview)", ""]
    cells = [f"{style}, {k} object{'s' * (k > 1)}" for style in STYLES for k in (1, 2)]
    rows = []
    for name in agents:
        agent = load_agent(name)
        row = [name]
        for style in STYLES:
            for count in (1, 2):
                queries = held_out(style, count, args.n)
                prompts = rewrites(agent, queries, greedy=True)
                row.append(f"{np.mean([keeps_meaning(q, p) for q, p in zip(queries, prompts, strict=True)]):.3f}")
        rows.append(row)
    lines += report.table(["agent", *cells], rows, align="l" + "r" * len(cells))
    note = f"{args.n} held-out test-split queries per cell, in each query style (the grammar's `sample_queries`)."
    lines += ["", note, ""]

    lines += ["## 2. Which object a sampled rewrite names first (two-object user-style queries)", ""]
    pairs = held_out("user", 2, args.n, seed=0)
    rows = []
    for name in agents:
        agent = load_agent(name)
        torch.manual_seed(0)
        counts = Counter(first_colour(q, p) for q, p in zip(pairs, rewrites(agent, pairs, greedy=False), strict=True))
        rows.append(
            [name, f"{agent.temperature:g}", *(f"{counts[k] / len(pairs):.3f}" for k in ("second", "first", "other"))]
        )
    lines += report.table(
        ["agent", "temperature", "second object first", "first object first", "another colour"], rows, align="lrrrr"
    )
    lines += [""]

    if args.pairs <= 0:  # parts 1 and 2 only
        lines += [f"Wall time {(time.time() - start) / 60:.1f} min."]
        report.write(args.out, lines)
        return
    lines += ["## 3. Which refinement points carry the open-loop gain (scripted, two-object queries)", ""]
    queries = held_out("user", 2, args.pairs, seed=0)
    envs = make_envs("PromptLoop-v0", 25, schedule="uniform")
    base = evaluate(Identity(), envs, queries, seed=0)
    rows = [["qqqqq (identity)", report.mean_ci(base.rewards), ""]]
    for letters in PLANS:
        result = evaluate(Plan(letters), envs, queries, seed=0)
        rows.append([letters, report.mean_ci(result.rewards), report.paired_delta(result.rewards, base.rewards)])
    envs.close()
    lines += report.table(["prompt at steps 3/7/10/13/17", "toy_alignment [95% CI]", "vs identity"], rows, align="lrr")
    lines += [
        "",
        f"{len(queries)} two-object `toy-user-test` queries, env seeds 0..{len(queries) - 1}, T = 20, K = 5 uniform "
        "points; q = the query, c = its canonical caption, s = the canonical caption with the second object "
        "named first.",
        "",
        f"Wall time {(time.time() - start) / 60:.1f} min.",
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
