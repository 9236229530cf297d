"""The main job: one PromptLoop episode, printed step by step and saved as an image strip.

A simple rule-based agent adds one detail to the prompt at each refinement point. The strip shows the preview
the agent saw at each point (x̂0 of the current latent) and, last, the final image.

    python3 tasks.py demo [--query "a red circle"] [--seed 0] [--out outputs/demo_strip.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)

DETAILS = ["vivid colours", "sharp", "simple background", "high quality", "detailed", "bright"]


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
    parser.add_argument("--query", default="a red circle on the left", help="the user's query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps T")
    parser.add_argument("--refinements", type=int, default=5, help="refinement points K")
    parser.add_argument("--reward", default="jpeg_compressibility")
    parser.add_argument("--out", default="outputs/demo_strip.png")
    args = parser.parse_args()

    env = gym.make(
        "PromptLoop-v0",
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        reward=args.reward,
        render_mode="rgb_array_list",
    )
    obs, info = env.reset(seed=args.seed, options={"query": args.query})
    print(f"query: {obs['query']!r}")
    print(
        f"model: {type(env.unwrapped.pipeline).__name__} (the offline default), {args.steps} steps, "
        f"refinement points {info['refinement_steps']}"
    )
    terminated, k = False, 0
    while not terminated:
        prompt = f"{obs['prompt']}, {DETAILS[k % len(DETAILS)]}"
        step = info["step"]
        obs, reward, terminated, truncated, info = env.step(prompt)
        cut = " (truncated)" if info["prompt_truncated"] else ""
        print(f"  refinement {k + 1} at step {step:>2} (progress {step / args.steps:.2f}): {obs['prompt']!r}{cut}")
        k += 1
    print(f"reward ({args.reward}, against the query): {reward:.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    strip(env.render(), scale=max(1, 128 // info["image"].shape[0])).save(out)
    print(f"image strip (the {k} previews, then the final image): {out}")


if __name__ == "__main__":
    main()
