"""Does a prompt change mid-sampling still matter? The switch-point curve of the toy model.

For pairs of one-object queries A and B that differ only in colour, sample with A and switch to B at step k
(k = 0 .. T; k = T never switches), from the same initial noise, and grade the final image's colour with the
toy scorer: the fraction that shows B's colour, A's colour, or neither. This is the curve that tells a
policy when its words still count.

    python benchmarks/toy_switch.py [--pairs 100] [--steps 20]
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import promptloop_env  # noqa: F401
from promptloop_env.toy.grammar import COLORS, Object, Scene, caption, parse, random_scene
from promptloop_env.toy.scorer import score

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pairs = []
    while len(pairs) < args.pairs:
        scene = random_scene(rng, num_objects=1)
        other = [c for c in COLORS if c != scene.objects[0].color]
        obj = scene.objects[0]
        scene_b = Scene((Object(obj.shape, str(rng.choice(other)), obj.size),), scene.background, scene.position)
        pairs.append((caption(scene, rng), caption(scene_b, rng)))
    n = args.pairs
    noise = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(args.seed))
    rows = []
    for k in range(args.steps + 1):
        schedule = [min(k, args.steps - 1)]
        envs = gym.make_vec(
            "PromptLoop-v0", num_envs=n, num_inference_steps=args.steps, num_refinements=1, schedule=schedule
        )
        envs.reset(seed=args.seed, options={"query": [a for a, _ in pairs], "latents": noise})
        # k = T: the last refinement point is T - 1; keep A there, so nothing switches.
        actions = [a if k == args.steps else b for a, b in pairs]
        _, _, _, _, info = envs.step(actions)
        follows_b = follows_a = 0
        for image, (a, b) in zip(info["image"], pairs, strict=True):
            color_a, color_b = parse(a).objects[0].color, parse(b).objects[0].color
            follows_b += score(image, f"a {color_b} {parse(b).objects[0].shape}").checks["color"]
            follows_a += score(image, f"a {color_a} {parse(a).objects[0].shape}").checks["color"]
        rows.append((k, follows_b / n, follows_a / n))
        print(rows[-1], flush=True)
    lines = [
        "# Toy world: when does a prompt change still matter?",
        "",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Command: `python benchmarks/toy_switch.py --pairs {args.pairs} --steps {args.steps} --seed {args.seed}`  ",
        f"{n} pairs of one-object queries differing only in colour; query A for steps 0..k-1, B from step k "
        f"(k = {args.steps}: A throughout); same initial noise for every k; colour graded by the toy scorer.",
        "",
        "| switch step k | follows B's colour | keeps A's colour |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {k} | {b:.2f} | {a:.2f} |" for k, b, a in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "toy_switch.md").write_text(text)


if __name__ == "__main__":
    main()
