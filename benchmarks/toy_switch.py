"""When does a prompt change stop mattering? Switch curves of the toy model, per attribute.

For pairs of queries A and B in the model's own dialect, sample with A and switch to B at step k (k = 0 .. T;
k = T never switches), from the same initial noise, and grade the final image with the toy scorer:

- colour, shape, size, position: one-object queries A and B that differ only in that attribute; the curve
  is the fraction of images showing B's value (and A's);
- object presence: a two-object query A whose second object the model neglects sometimes, and B, the same
  scene with that object named first (what the closed-loop controller writes); the curve is the fraction of
  images in which that object is present (A alone gives the neglect rate).

    python benchmarks/toy_switch.py [--pairs 100] [--steps 20]
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import numpy as np
import report  # benchmarks/report.py, next to this script
import torch

import promptloop_env  # noqa: F401
from agents.toy.scripted import objects_seen, swapped
from promptloop_env.toy.grammar import COLORS, POSITIONS, SHAPES, SIZES, describe, random_scene, spec_of
from promptloop_env.toy.scorer import score

ATTRIBUTES = {"color": tuple(COLORS), "shape": SHAPES, "size": SIZES, "position": POSITIONS}


def pairs_for(attribute: str, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = []
    while len(pairs) < n:
        if attribute == "presence":
            spec = spec_of(random_scene(rng, num_objects=2))
            pairs.append((describe(spec), describe(swapped(spec))))
            continue
        spec = spec_of(random_scene(rng, num_objects=1))
        obj = spec.objects[0]
        current = spec.position if attribute == "position" else getattr(obj, attribute)
        other = str(rng.choice([v for v in ATTRIBUTES[attribute] if v != current]))
        if attribute == "position":
            spec_b = dataclasses.replace(spec, position=other)
        else:
            spec_b = dataclasses.replace(spec, objects=(dataclasses.replace(obj, **{attribute: other}),))
        pairs.append((describe(spec), describe(spec_b)))
    return pairs


def follows(image: np.ndarray, attribute: str, query: str) -> bool:
    """Whether the image shows the query's value of ``attribute`` (presence: the query's first object)."""
    from promptloop_env.toy import parse

    spec = parse(query)
    if attribute == "presence":
        return objects_seen(image, spec)[0]
    return bool(score(image, spec).checks[attribute])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/toy_switch.md")
    args = parser.parse_args()
    n, steps = args.pairs, args.steps
    ks = sorted({0, 1, 2, 3, 5, 7, 10, 13, 15, 17, steps})
    noise = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(args.seed))
    curves: dict[str, list[tuple[int, float, float]]] = {}
    envs = {}
    for attribute in (*ATTRIBUTES, "presence"):
        pairs = pairs_for(attribute, n, np.random.default_rng(args.seed))
        curve = []
        for k in ks:
            point = min(k, steps - 1)
            if point not in envs:
                envs[point] = gym.make_vec(
                    "PromptLoop-v0", num_envs=n, num_inference_steps=steps, num_refinements=1, schedule=[point]
                )
            env = envs[point]
            env.reset(seed=args.seed, options={"query": [a for a, _ in pairs], "latents": noise})
            actions = [a if k == steps else b for a, b in pairs]  # k = T: keep A to the end
            _, _, _, _, info = env.step(actions)
            if attribute == "presence":  # B names A's second object first: is that object there?
                b_share = np.mean(
                    [follows(img, attribute, b) for img, (_, b) in zip(info["image"], pairs, strict=True)]
                )
                a_share = float("nan")
            else:
                b_share = np.mean(
                    [follows(img, attribute, b) for img, (_, b) in zip(info["image"], pairs, strict=True)]
                )
                a_share = np.mean(
                    [follows(img, attribute, a) for img, (a, _) in zip(info["image"], pairs, strict=True)]
                )
            curve.append((k, float(b_share), float(a_share)))
            print(attribute, curve[-1], flush=True)
        curves[attribute] = curve
    lines = report.header("Toy world: when does a prompt change stop mattering?")
    lines += [
        f"{n} pairs per attribute of queries in the model's dialect (`describe`); query A for steps 0..k-1, B from "
        f"step k (k = {steps}: A throughout); the same initial noise for every k; graded by the toy scorer. "
        "Colour, shape, size, position: one-object pairs differing only there (cells: follows B / keeps A). "
        "Presence: A a two-object query, B the same scene with A's second object named first (cells: that "
        "object is present; at k = T this is 1 - the neglect rate under A).",
        "",
    ]
    header = ["switch step k", *ATTRIBUTES, "presence"]
    rows = []
    for i, k in enumerate(ks):
        cells = [str(k)]
        for attribute in ATTRIBUTES:
            _, b, a = curves[attribute][i]
            cells.append(f"{b:.2f} / {a:.2f}")
        cells.append(f"{curves['presence'][i][1]:.2f}")
        rows.append(cells)
    lines += report.table(header, rows)
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
