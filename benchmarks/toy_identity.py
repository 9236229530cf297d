"""Per-attribute accuracy of the identity policy (the query as every prompt) on held-out toy queries.

Runs ``PromptLoop-v0`` on the shipped toy model (T = 20, K = 5, guidance 3.0) as a vector env over held-out
queries, one-object and two-object separately, each written in the model's own dialect (``describe``, every
attribute stated: does the model follow each word class?) and in users' style (``user_query``: how much the
dialect costs), grades the final images with the toy scorer, and writes a table and a sample grid (the first
32 one-object and 32 two-object images in the model's dialect).

    python benchmarks/toy_identity.py [--n 250] [--batch 50]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import report  # benchmarks/report.py, next to this script
from PIL import Image

import promptloop_env  # noqa: F401
from promptloop_env.toy.grammar import sample_queries
from promptloop_env.toy.scorer import accuracy

OUT = Path(__file__).parent / "results"


def run(queries: list[str], batch: int, seed: int) -> np.ndarray:
    envs = gym.make_vec("PromptLoop-v0", num_envs=batch, num_inference_steps=20, num_refinements=5)
    images = []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        obs, _ = envs.reset(seed=seed + start, options={"query": chunk})
        terminated = np.zeros(batch, dtype=bool)
        while not terminated.all():
            obs, _, terminated, _, info = envs.step(list(obs["query"]))
        images.append(np.stack(info["image"]))
    return np.concatenate(images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=250, help="queries per group (one-object, two-object)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    groups = {
        "one object, model's dialect": sample_queries(args.n, "test", seed=args.seed, num_objects=1, style="model"),
        "two objects, model's dialect": sample_queries(
            args.n, "test", seed=args.seed + 1, num_objects=2, style="model"
        ),
        "one object, users' style": sample_queries(args.n, "test", seed=args.seed, num_objects=1, style="user"),
        "two objects, users' style": sample_queries(args.n, "test", seed=args.seed + 1, num_objects=2, style="user"),
    }
    results, grids = {}, []
    for name, queries in groups.items():
        images = run(queries, args.batch, args.seed)
        results[name] = accuracy(images, queries)
        if "dialect" in name:
            grids.append(images[:32])
    keys = sorted({k for r in results.values() for k in r})
    lines = report.header("Toy world: the identity policy on held-out queries")
    lines += [
        f"`PromptLoop-v0` defaults (the shipped toy model, DDIM T = 20, K = 5, guidance 3.0), the query as every "
        f"action, {args.n} held-out queries per group: in the model's dialect (`describe`, every attribute "
        "stated) and in users' style (`user_query`: rare synonyms and word orders, sizes and background left out "
        "at 20 %), graded by the toy scorer; each cell is the fraction confirmed among the queries that state the "
        "attribute. Chance: position 0.2, relation 0.25.",
        "",
        *report.table(
            ["group", *keys],
            [[name, *(f"{r[k]:.3f}" if k in r else "-" for k in keys)] for name, r in results.items()],
            align="l" + "r" * len(keys),
        ),
    ]
    lines += ["", "Sample grid (model's dialect; rows 1-4: one object, rows 5-8: two objects): `toy_identity_grid.png`"]
    report.write(OUT / "toy_identity.md", lines)
    tiles = np.concatenate(grids)
    grid = tiles.reshape(8, 8, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(256, 256, 3)
    Image.fromarray(grid).resize((512, 512), Image.NEAREST).save(OUT / "toy_identity_grid.png")


if __name__ == "__main__":
    main()
