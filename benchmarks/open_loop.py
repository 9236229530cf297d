"""Open-loop ("a priori") vs closed-loop inference with the shipped toy policy: time per episode and reward.

    python benchmarks/open_loop.py [--n 200] [--latency-n 40] [--out benchmarks/results/open_loop.md]

Both modes run the same held-out ``toy-test`` queries with the same env seeds (T = 20, K = 5 uniform refinement
points, full previews, reward ``toy_alignment``) and the same sampling seeds. Closed-loop: the agent reads the
preview at each refinement point, K generate calls per batch, the env waiting for each. Open-loop
(:class:`agents.openloop.OpenLoop`): one generate call writes all K prompts of every episode of the batch before
sampling, from the query alone. The two modes run interleaved, batch by batch. Time is measured in two
settings: one episode at a time (latency; the first ``--latency-n`` queries) and ``--num-envs`` episodes per
vector-env batch (throughput); policy time is the time spent in ``generate``, env time the rest of the batch;
per-episode times are batch times / batch size, medians over batches. Reward: mean and 95 % CI over the
``--n`` queries of the batched run, and identity (no policy) on the same queries and seeds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch

from agents.baselines import Identity
from agents.cli import quiet_libraries
from agents.evaluate import eval_queries, evaluate
from agents.openloop import OpenLoop
from agents.rollout import collect
from agents.toy import load_toy_policy
from agents.train import make_envs
from promptloop_env.toy.grammar import describe, parse

ROOT = Path(__file__).resolve().parents[1]


class Timed:
    """The agent with the time spent in each ``generate`` call recorded."""

    def __init__(self, agent) -> None:
        self.agent, self.seconds = agent, 0.0

    def generate(self, observations, **kwargs):
        start = time.perf_counter()
        try:
            return self.agent.generate(observations, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


MODES = ("closed-loop", "open-loop")


def run(agent, envs, queries: list[str], seed: int) -> dict[str, dict]:
    """Every query once per mode, ``envs.num_envs`` at a time, the two modes interleaved batch by batch (in
    alternating order, so that load changes on a shared machine hit both alike), each batch with the same env
    seeds and sampling seed in both modes; per-batch policy/env seconds and per-episode rewards."""
    timed = Timed(agent)
    policies = {"closed-loop": timed, "open-loop": OpenLoop(timed)}
    out = {mode: {"policy": [], "env": [], "rewards": [], "canonical": []} for mode in MODES}
    n = envs.num_envs
    for index, start in enumerate(range(0, len(queries), n)):
        chunk = list(queries[start : start + n])
        real = len(chunk)
        chunk += [chunk[-1]] * (n - real)
        for mode in MODES if index % 2 == 0 else MODES[::-1]:
            torch.manual_seed(seed + start)
            timed.seconds = 0.0
            t0 = time.perf_counter()
            episodes = collect(policies[mode], envs, chunk, [seed + start + i for i in range(n)])
            total = time.perf_counter() - t0
            r = out[mode]
            r["policy"].append(timed.seconds / n)
            r["env"].append((total - timed.seconds) / n)
            r["rewards"] += [e.reward for e in episodes[:real]]
            r["canonical"] += [t.prompt == describe(parse(e.query)) for e in episodes[:real] for t in e.turns]
    return {
        mode: {
            "policy": np.array(r["policy"]),
            "env": np.array(r["env"]),
            "rewards": np.array(r["rewards"]),
            "canonical": float(np.mean(r["canonical"])),
        }
        for mode, r in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="held-out queries for the reward (batched run)")
    parser.add_argument("--latency-n", type=int, default=40, help="queries run one at a time for the latency")
    parser.add_argument("--num-envs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "open_loop.md"))
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    agent = load_toy_policy()
    queries = eval_queries("toy-test", args.n, args.seed)
    env_kwargs = dict(num_inference_steps=20, num_refinements=5, schedule="uniform", preview="full")
    results: dict[tuple[str, int], dict] = {}
    for batch, subset in ((1, queries[: args.latency_n]), (args.num_envs, queries)):
        envs = make_envs("PromptLoop-v0", batch, **env_kwargs)
        run(agent, envs, subset[:batch], args.seed)  # warm-up: caches, allocator, first calls
        for mode, r in run(agent, envs, subset, args.seed).items():
            results[(mode, batch)] = r
            print(f"{mode} batch {batch}: policy {np.median(r['policy']):.4f} s, env {np.median(r['env']):.4f} s")
        if batch == args.num_envs:  # the same queries and seeds with no policy at all
            identity = evaluate(Identity(), envs, queries, seed=args.seed)
        envs.close()

    time_rows = []
    for (mode, batch), r in results.items():
        policy, env = float(np.median(r["policy"])), float(np.median(r["env"]))
        total = float(np.median(r["policy"] + r["env"]))
        time_rows.append([mode, batch, f"{policy:.4f}", f"{env:.4f}", f"{total:.4f}", len(r["policy"])])
    speed = {
        batch: float(np.median(results[("closed-loop", batch)]["policy"] + results[("closed-loop", batch)]["env"]))
        / float(np.median(results[("open-loop", batch)]["policy"] + results[("open-loop", batch)]["env"]))
        for batch in (1, args.num_envs)
    }
    policy_speed = {
        batch: float(np.median(results[("closed-loop", batch)]["policy"]))
        / float(np.median(results[("open-loop", batch)]["policy"]))
        for batch in (1, args.num_envs)
    }
    reward_rows = []
    for mode in ("closed-loop", "open-loop"):
        rewards = results[(mode, args.num_envs)]["rewards"]
        mean, low, high = report.interval(rewards)
        canonical = f"{results[(mode, args.num_envs)]['canonical']:.3f}"
        reward_rows.append([mode, f"{mean:.4f}", f"[{low:.4f}, {high:.4f}]", len(rewards), canonical])
    mean, low, high = report.interval(identity.rewards)
    reward_rows.append(
        ["identity (the query, no policy)", f"{mean:.4f}", f"[{low:.4f}, {high:.4f}]", len(identity.rewards), ""]
    )
    closed, open_ = (results[(m, args.num_envs)]["rewards"] for m in ("closed-loop", "open-loop"))
    diff, low, high = report.paired_interval(open_, closed)
    if low <= 0 <= high:
        verdict = "The confidence interval of the difference includes 0: no measurable reward difference here."
    else:
        verdict = f"{'Open' if diff > 0 else 'Closed'}-loop scored higher here, outside the noise."
    lines = report.header("Open-loop vs closed-loop inference on the toy world")
    lines += [
        "Timings: the two modes ran interleaved batch by batch (alternating which went first) in one process, so "
        "the ratios are the numbers to read (under load, absolute times are noisy: see the load average above), "
        "and the env time, the same work in both modes, shows how much noise there is.",
        "",
        "The shipped toy policy (`agents/toy`, sampled at its temperature 1.5), held-out `toy-test` queries, the "
        "same env seeds and sampling seeds for both modes, T = 20 denoising steps, K = 5 uniform refinement points, "
        "full previews, reward `toy_alignment`. Closed-loop: the agent reads the preview at each refinement point "
        "(K `generate` calls per batch, the env waiting for each). Open-loop: `agents.openloop.OpenLoop`, one "
        "`generate` call writes the K prompts of every episode of the batch before sampling (blank preview, the "
        "query as the prompt in force, each point's progress), then the env runs the trajectory with them. Policy "
        "time = time in `generate`; env time = the rest of the batch (denoising, previews, reward); per-episode "
        "time = batch time / episodes per batch; medians over batches.",
        "",
        "## Time per episode",
        "",
        *report.table(
            ["mode", "episodes per batch", "policy s/episode", "env s/episode", "total s/episode", "batches"],
            time_rows,
        ),
        "",
        f"Total time, closed-loop / open-loop: {speed[1]:.2f}x one episode at a time, {speed[args.num_envs]:.2f}x "
        f"with {args.num_envs} episodes per batch. Policy time alone: {policy_speed[1]:.2f}x and "
        f"{policy_speed[args.num_envs]:.2f}x.",
        "",
        f"## Reward ({args.n} held-out queries, {args.num_envs} episodes per batch)",
        "",
        *report.table(
            ["mode", "mean reward", "95% CI", "n", "prompts that are the query's canonical caption"], reward_rows
        ),
        "",
        "Open-loop minus closed-loop, paired over the same queries and seeds (95 % CI): "
        f"{report.paired_delta(open_, closed, digits=4)}.",
        "",
        f"{verdict} The toy policy was supervised to rewrite a query into its canonical caption (the last column: "
        "how often a prompt it wrote is exactly that), not to read previews. Closed-loop, each turn rewrites the "
        "prompt in force, i.e. the previous turn's sampled answer (temperature 1.5), so a sampling slip can carry "
        "over the K turns; open-loop, every turn rewrites the query itself. A policy that never learned to read "
        "previews has little to gain from the feedback open-loop gives up; for one that did, that feedback is the "
        "point of PromptLoop and what the mode trades for speed. See also [toy_rewrites](toy_rewrites.md) for what "
        "fixed rewrites of the query score.",
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
