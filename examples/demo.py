"""The main job: one PromptLoop episode on the embedded toy world, printed step by step, saved as an image strip.

A small rule-based agent reads each preview with the toy scorer (latent feedback, no learned weights) and
rewrites the prompt: it restates the query and, for every attribute the preview does not show yet, repeats
that attribute's words so they weigh more. The strip shows the preview the agent saw at each refinement point
and, last, the final image; the reward is the toy scorer's alignment of the final image with the query.

    python3 tasks.py demo [--query "a small red circle on the left"] [--seed 0] [--out outputs/demo_strip.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.toy import parse, score
from promptloop_env.toy.grammar import Spec


def emphasise(query: str, spec: Spec, failing: list[str]) -> str:
    """The query, followed by the words of each attribute the preview does not show yet."""
    extra = []
    for name in failing:
        base, _, index = name.partition("_")
        obj = spec.objects[int(index or 0)]
        if base in ("color", "shape", "size"):
            extra.append(f"{obj.size or ''} {obj.color or ''} {obj.shape or ''}".split())
        elif base == "position":
            extra.append(["on", "the", spec.position] if spec.position != "center" else ["in", "the", "center"])
        elif base == "relation":
            extra.append(spec.relation.split())
        elif base == "background":
            extra.append([spec.background, "background"])
    words = list(dict.fromkeys(" ".join(" ".join(e) for e in extra).split()))
    return query if not words else f"{query}, {' '.join(words)}"


def summary(checks: dict[str, bool]) -> str:
    return ", ".join(f"{name} {'ok' if ok else 'NO'}" for name, ok in checks.items())


def strip(frames: list[np.ndarray], scale: int) -> Image.Image:
    """Frames side by side with a 2-pixel gap, each scaled up ``scale`` times (nearest neighbour)."""
    h, w = frames[0].shape[:2]
    canvas = Image.new("RGB", (len(frames) * (w * scale + 2) - 2, h * scale), "white")
    for i, frame in enumerate(frames):
        tile = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (i * (w * scale + 2), 0))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query", default="a small red circle to the left of a blue square on a white background")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps T")
    parser.add_argument("--refinements", type=int, default=5, help="refinement points K")
    parser.add_argument("--out", default="outputs/demo_strip.png")
    args = parser.parse_args()

    spec = parse(args.query)
    env = gym.make(
        "PromptLoop-v0",
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        render_mode="rgb_array_list",
    )
    obs, info = env.reset(seed=args.seed, options={"query": args.query})
    print(f"query: {obs['query']!r}")
    print(
        f"model: the toy world's {type(env.unwrapped.pipeline).__name__}, {args.steps} DDIM steps, "
        f"refinement points {info['refinement_steps']}, reward toy_alignment"
    )
    terminated, k = False, 0
    while not terminated:
        verdict = score(obs["preview"], spec)
        failing = [name for name, ok in verdict.checks.items() if not ok]
        prompt = emphasise(args.query, spec, failing)
        step = info["step"]
        obs, reward, terminated, truncated, info = env.step(prompt)
        k += 1
        print(f"  refinement {k} at step {step:>2} (progress {step / args.steps:.2f})")
        print(f"    preview shows: {summary(verdict.checks)}")
        print(f"    prompt: {obs['prompt']!r}{' (truncated)' if info['prompt_truncated'] else ''}")
    final = score(info["image"], spec)
    print(f"final image shows: {summary(final.checks)}")
    print(f"reward (toy_alignment against the query): {reward:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    strip(env.render(), scale=max(1, 128 // info["image"].shape[0])).save(out)
    print(f"image strip (the {k} previews, then the final image): {out}")


if __name__ == "__main__":
    main()
