"""The learned rewards on their real checkpoints: do they load, do they prefer the right caption, how fast are they,
and (where the upstream package is installed) do they agree with it.

Needs the models in the Hugging Face cache (see docs/rewards.md, "Where the weights come from") and, for the
timings that matter, a GPU. Not run on this project's machines (no hub access, no GPU); nothing is written to
benchmarks/results/ until it is run.

- caption preference: toy-world scenes rendered at 512 px; each image is scored against its own caption and the
  caption of another scene. The fraction of pairs where the own caption wins (chance 0.5; ``aesthetic`` ignores
  the query, so it is reported as n/a);
- throughput: images per second scoring batches of ``--batch`` 512 px images, median of ``--rounds`` timed
  rounds after one warm-up;
- agreement with upstream: ``ImageReward`` (the ``image-reward`` package, on a transformers it still runs on),
  ``hpsv2`` (the ``hpsv2`` package) and torchmetrics' ``clip_score`` (= CLIPScore with w = 100), each on the
  same images and captions: the largest absolute difference, when the package imports.

    python benchmarks/learned_rewards.py [--rewards imagereward hpsv2 ...] [--pairs 32] [--batch 16] [--rounds 5]
        [--device cuda] [--dtype float16] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch
from PIL import Image

from promptloop_env.rewards import make_reward
from promptloop_env.toy.grammar import caption, random_scene
from promptloop_env.toy.renderer import render

OUT = Path(__file__).parent / "results"
NAMES = ["imagereward", "hpsv2", "pickscore", "aesthetic", "clipscore"]


def scenes(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """``n`` rendered scenes (512 px), their captions, and the caption of a different scene for each."""
    rng = np.random.default_rng(seed)
    drawn = [random_scene(rng) for _ in range(n)]
    images = np.stack([render(s, size=512) for s in drawn])
    own = [caption(s, rng) for s in drawn]
    other = own[1:] + own[:1]
    return images, own, other


def upstream(name: str, images: np.ndarray, queries: list[str], device: str) -> np.ndarray | None:
    """The upstream package's scores, or None when it is not installed (or fails to import)."""
    try:
        if name == "imagereward":
            import ImageReward as RM

            model = RM.load("ImageReward-v1.0", device=device)
            return np.asarray([model.score(q, Image.fromarray(im)) for im, q in zip(images, queries, strict=True)])
        if name == "hpsv2":
            import hpsv2

            return np.asarray(
                [
                    hpsv2.score(Image.fromarray(im), q, hps_version="v2.1")[0]
                    for im, q in zip(images, queries, strict=True)
                ]
            )
        if name == "clipscore":
            from torchmetrics.functional.multimodal import clip_score

            return np.asarray(
                [
                    float(clip_score(torch.from_numpy(im).permute(2, 0, 1), q, "openai/clip-vit-large-patch14")) / 40
                    for im, q in zip(images, queries, strict=True)
                ]
            )  # torchmetrics: 100 * max(cos, 0); ours: 2.5 * max(cos, 0)
    except ImportError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewards", nargs="+", default=NAMES, choices=NAMES)
    parser.add_argument("--pairs", type=int, default=32, help="scenes scored against own and other caption")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/learned_rewards.md")
    args = parser.parse_args()

    images, own, other = scenes(args.pairs)
    rows = []
    for name in args.rewards:
        start = time.perf_counter()
        reward = make_reward(name, device=args.device, dtype=args.dtype, batch_size=args.batch)
        load_s = time.perf_counter() - start
        model = reward.fn
        s_own, s_other = reward(images, own), reward(images, other)
        preference = "n/a" if name == "aesthetic" else f"{float(np.mean(s_own > s_other)):.2f}"
        batch = images[: args.batch]
        reward(batch, own[: args.batch])  # warm-up
        times = []
        for _ in range(args.rounds):
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            reward(batch, own[: args.batch])
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        reference = upstream(name, images[:8], own[:8], str(model.device))
        agreement = "not installed" if reference is None else f"{np.abs(reference - s_own[:8]).max():.2e}"
        rows.append(
            (
                name,
                f"{s_own.mean():.4f} +- {s_own.std():.4f}",
                preference,
                f"{len(batch) / statistics.median(times):.1f}",
                f"{load_s:.1f}",
                agreement,
                f"{model.device} {model.dtype}",
            )
        )
        print(rows[-1], flush=True)
        del reward, model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    lines = report.header("Learned rewards on their real checkpoints")
    lines += [
        f"{args.pairs} toy-world scenes at 512 px; 'own caption wins' is the fraction scored higher against their "
        f"own caption than another scene's (chance 0.5). Throughput: batches of {args.batch}, median of "
        f"{args.rounds} rounds.",
        "",
        *report.table(
            [
                "reward",
                "score on own caption (mean +- std)",
                "own caption wins",
                "images/s",
                "load s",
                "max abs diff to upstream",
                "device, dtype",
            ],
            rows,
        ),
    ]
    report.write(OUT / "learned_rewards.md" if args.write else None, lines)


if __name__ == "__main__":
    main()
