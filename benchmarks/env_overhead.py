"""Wall time of one PromptLoop episode relative to one bare diffusers pipeline call with the same model.

Variants, interleaved round by round in one process (the machine is shared and noisy, so each round's
times are turned into ratios to that round's bare call and the medians of the ratios are reported):

- ``bare``: ``pipeline(query, latents=..., num_inference_steps=T, guidance_scale=g)``;
- ``env full / query``: an env episode, K refinements, full VAE-decode previews, the query as every action;
- ``env linear / query``: the same with linear latent->RGB previews;
- ``env none / query``: the same without previews (the engine's bookkeeping alone);
- ``env full / new prompts``: a new, never-seen prompt at every refinement (text encoder runs each time).

The per-part cost comes from the engine's own timers (``env.unwrapped.engine.timings``); "env bookkeeping" is
the episode's wall time minus those parts (Gymnasium wrappers, observation dicts, sanitising, infos).

    python benchmarks/env_overhead.py [--rounds 15] [--steps 20] [--refinements 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import torch

import promptloop_env  # noqa: F401
from promptloop_env.env import default_pipeline

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--refinements", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()

    pipe = default_pipeline()
    query = "a red circle on the left"
    envs = {
        kind: gym.make(
            "PromptLoop-v0",
            pipeline=pipe,
            num_inference_steps=args.steps,
            num_refinements=args.refinements,
            guidance_scale=args.guidance,
            preview=kind,
        )
        for kind in ("full", "linear", "none")
    }
    shape = envs["full"].unwrapped.engine.backend.latent_shape()
    latents = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))

    def bare(r: int) -> None:
        pipe(
            query,
            latents=latents.clone(),
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            output_type="np",
        )

    def episode(kind: str, new_prompts: bool):
        def run(r: int) -> None:
            env = envs[kind]
            env.reset(seed=r, options={"query": query, "latents": latents[0]})
            for k in range(args.refinements):
                env.step(f"{query}, detail {r} {k}" if new_prompts else query)

        return run

    variants = {
        "bare diffusers call": bare,
        "env full / query": episode("full", False),
        "env linear / query": episode("linear", False),
        "env none / query": episode("none", False),
        "env full / new prompts": episode("full", True),
    }
    for fn in variants.values():  # warm-up: caches, lazy inits, the linear preview's fit
        fn(10_000)
    timings_before = {k: dict(env.unwrapped.engine.timings) for k, env in envs.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(r)
            times[name].append(time.perf_counter() - start)

    ratios = {
        name: statistics.median(t / b for t, b in zip(ts, times["bare diffusers call"], strict=True))
        for name, ts in times.items()
    }
    # Per-part costs per episode (mean over the timed episodes of each env; "full" ran two variants).
    episodes = {"full": 2 * args.rounds, "linear": args.rounds, "none": args.rounds}
    parts = {}
    for kind, env in envs.items():
        t = env.unwrapped.engine.timings
        parts[kind] = {k: (t[k] - timings_before[kind][k]) / episodes[kind] for k in t}
    lines = [
        "# Env overhead: one episode vs one bare diffusers call",
        "",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Command: `python benchmarks/env_overhead.py --rounds {args.rounds} --steps {args.steps} "
        f"--refinements {args.refinements}`  ",
        f"Model: the default toy-world model (shipped), DDIM, T = {args.steps}, K = {args.refinements}, "
        f"guidance {args.guidance}, batch 1, 32x32 images.  ",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, CPU. Medians over {args.rounds} interleaved rounds.",
        "",
        "| variant | median time (ms) | median ratio to bare |",
        "|---|---:|---:|",
    ]
    for name, ts in times.items():
        lines.append(f"| {name} | {1000 * statistics.median(ts):.1f} | {ratios[name]:.3f} |")
    lines += [
        "",
        "Per-part cost per episode (ms, engine timers; bookkeeping = episode wall time minus the parts):",
        "",
        "| previews | denoiser | text encoder | preview | final decode | reward | env bookkeeping |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, p in parts.items():
        names = ["env full / query", "env full / new prompts"] if kind == "full" else [f"env {kind} / query"]
        wall = statistics.mean(t for n in names for t in times[n])
        known = sum(v for k, v in p.items() if k != "total")
        lines.append(
            f"| {kind} | {1000 * p['denoiser']:.1f} | {1000 * p['text_encoder']:.2f} | {1000 * p['preview']:.2f} "
            f"| {1000 * p['decode']:.2f} | {1000 * p['reward']:.2f} | {1000 * (wall - known):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "env_overhead.md").write_text(text)
    (OUT / "env_overhead.json").write_text(
        json.dumps({"times_s": times, "median_ratio": ratios, "parts_s": parts, "args": vars(args)}, indent=1)
    )


if __name__ == "__main__":
    main()
