"""Trajectories per second: one vector env of N sub-envs vs N single-env episodes run one after another.

Both run the same work (N episodes of T steps with K refinements, full previews, a new prompt per sub-env at
every refinement); the vector env makes one denoiser call per step for the whole batch. Rounds are
interleaved and the medians reported, with the ratio vector / sequential of trajectories per second.

    python benchmarks/vector_scaling.py [--rounds 5] [--sizes 1 4 16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import report  # benchmarks/report.py, next to this script

import promptloop_env  # noqa: F401
from promptloop_env.env import default_pipeline

OUT = Path(__file__).parent / "results"
QUERIES = ["a red circle", "a blue square on the left", "a small yellow triangle", "a black cat"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--refinements", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT, help="folder of vector_scaling.md and .json")
    args = parser.parse_args()
    pipe = default_pipeline()
    common = dict(pipeline=pipe, num_inference_steps=args.steps, num_refinements=args.refinements)
    single = gym.make("PromptLoop-v0", **common)
    vectors = {n: gym.make_vec("PromptLoop-v0", num_envs=n, **common) for n in args.sizes}

    def run_single(n: int, r: int) -> None:
        for i in range(n):
            single.reset(seed=r * 100 + i, options={"query": QUERIES[i % 4]})
            for k in range(args.refinements):
                single.step(f"{QUERIES[i % 4]}, variant {k}")

    def run_vector(n: int, r: int) -> None:
        envs = vectors[n]
        envs.reset(seed=r * 100, options={"query": [QUERIES[i % 4] for i in range(n)]})
        for k in range(args.refinements):
            envs.step([f"{QUERIES[i % 4]}, variant {k}" for i in range(n)])

    for n in args.sizes:  # warm-up
        run_single(1, 0)
        run_vector(n, 0)
    results = {n: {"vector": [], "sequential": []} for n in args.sizes}
    for r in range(1, args.rounds + 1):
        for n in args.sizes:
            for name, fn in (("vector", run_vector), ("sequential", run_single)):
                start = time.perf_counter()
                fn(n, r)
                results[n][name].append(n / (time.perf_counter() - start))
    lines = report.header("Vector env scaling: trajectories per second")
    lines += [
        f"Model: the default toy-world model (shipped), DDIM, T = {args.steps}, K = {args.refinements}, guidance 3.0, "
        f"full previews, a new prompt per sub-env at every refinement. CPU. Medians over {args.rounds} interleaved "
        "rounds.",
        "",
    ]
    summary, rows = {}, []
    for n, res in results.items():
        ratio = statistics.median(v / s for v, s in zip(res["vector"], res["sequential"], strict=True))
        summary[n] = {k: statistics.median(v) for k, v in res.items()} | {"ratio": ratio}
        rows.append([n, f"{summary[n]['vector']:.2f}", f"{summary[n]['sequential']:.2f}", f"{ratio:.2f}x"])
    lines += report.table(
        ["N", "vector env (traj/s)", "N single envs in sequence (traj/s)", "ratio"], rows, align="rrrr"
    )
    report.write(args.out / "vector_scaling.md", lines)
    (args.out / "vector_scaling.json").write_text(
        json.dumps({"raw": results, "median": summary, "args": {**vars(args), "out": str(args.out)}}, indent=1)
    )


if __name__ == "__main__":
    main()
