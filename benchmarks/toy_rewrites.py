"""How much can a prompt change help on the toy world? Fixed rewrites and rule-based preview readers.

    python benchmarks/toy_rewrites.py [--n 400] [--out benchmarks/results/toy_rewrites.md]

The headroom a learned prompt policy could find: each policy below runs on the same held-out toy queries with
the same env seeds as ``benchmarks/learning_toy.py`` (T = 20, K = 5 uniform refinement points, reward
``toy_alignment``). Text-only rewrites (no preview): the query (identity), its canonical caption
(``describe``, what the toy policy was supervised to write), the canonical caption without position or
relation words (which the toy model ignores), the query said twice, the canonical caption plus each object's
colour and shape again. Preview readers (rules over the toy scorer's verdict on the preview, no learning):
"emphasise" appends the words of every attribute the preview does not show yet (the demo's agent);
"re-roll" keeps the prompt while the preview shows the object attributes right and otherwise switches
between the query and its canonical caption (a different conditioning, so a different trajectory).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from agents.cli import _quiet_libraries  # noqa: E402
from agents.evaluate import eval_queries, evaluate, markdown_table  # noqa: E402
from agents.mllm import split_observations  # noqa: E402
from agents.train import make_envs  # noqa: E402
from promptloop_env.toy import parse, score  # noqa: E402
from promptloop_env.toy.grammar import describe  # noqa: E402


class Rewrite:
    """The same text function of the query at every refinement."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def act(self, observations) -> list[str]:
        return [self.fn(o["query"]) for o in split_observations(observations)]


def without_place(query: str) -> str:
    return describe(dataclasses.replace(parse(query), position=None, relation=None))


def repeat_objects(query: str) -> str:
    spec = parse(query)
    return describe(spec) + ", " + ", ".join(f"{o.color} {o.shape}" for o in spec.objects)


class Emphasise:
    def act(self, observations) -> list[str]:
        from demo import emphasise

        prompts = []
        for o in split_observations(observations):
            spec = parse(o["query"])
            failing = [name for name, ok in score(o["preview"], spec).checks.items() if not ok]
            prompts.append(emphasise(o["query"], spec, failing))
        return prompts


class Reroll:
    def act(self, observations) -> list[str]:
        prompts = []
        for o in split_observations(observations):
            spec = parse(o["query"])
            checks = score(o["preview"], spec).checks
            wrong = [n for n, ok in checks.items() if not ok and n.split("_")[0] in ("color", "shape", "size")]
            if not wrong:
                prompts.append(o["prompt"])
            else:
                prompts.append(describe(spec) if o["prompt"] == o["query"] else o["query"])
        return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--out", default="benchmarks/results/toy_rewrites.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries()
    queries = eval_queries("toy-test", args.n, seed=0)
    envs = make_envs("PromptLoop-v0", 25, schedule="uniform")
    policies = {
        "identity (the query)": Rewrite(lambda q: q),
        "canonical caption (describe)": Rewrite(lambda q: describe(parse(q))),
        "canonical, no position/relation words": Rewrite(without_place),
        "the query twice": Rewrite(lambda q: f"{q}, {q}"),
        "canonical + colour and shape again": Rewrite(repeat_objects),
        "preview reader: emphasise what is missing": Emphasise(),
        "preview reader: re-roll when wrong": Reroll(),
    }
    results = {}
    for name, policy in policies.items():
        results[name] = evaluate(policy, envs, queries, seed=0)
        print(name, f"{results[name].mean:.4f}", flush=True)
    lines = [
        f"# Prompt headroom on the toy world ({datetime.date.today().isoformat()})",
        "",
        f"`python benchmarks/toy_rewrites.py --n {args.n}`: held-out `toy-test` queries, the same env seeds for every"
        " policy (those of `benchmarks/learning_toy.py`), T = 20, K = 5 uniform refinement points,"
        " reward `toy_alignment`.",
        "",
        markdown_table(results),
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
