"""A weight-free scorer for the shapes world: which attributes a query states does an image show?

:func:`score` finds the background (the palette background most common along the border), classifies every
pixel to the object colour whose mixing line with the background explains it best (so anti-aliased edges keep
their colour), splits the pixels that are at least half object colour into 8-connected components per colour,
drops specks, and reads each remaining component's colour; its coverage map (how much of each pixel is that
colour) is compared with an ideal circle, square and triangle of the same area and centroid, sharp or blurred,
and the closest one gives the shape, its side the size (small or large) and its box centre the position
(nearest anchor). Two objects' relation comes from their centres (dominant axis). The query's objects are
matched to the detected ones by the assignment that confirms the most attributes. Any image is accepted: one
that shows nothing of the kind (blank, noise) simply fails its checks. Pixel noise (estimated on the border)
widens the colour tolerance.

Run ``python -m promptloop_env.toy.scorer --out benchmarks/results/toy_scorer.md`` to measure how often it
accepts renders of a scene's own spec and rejects renders scored against another spec.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .grammar import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    Object,
    ObjectSpec,
    Scene,
    Spec,
    parse,
    random_scene,
    spec_of,
)
from .renderer import ANCHORS, render

__all__ = ["ATTRIBUTE_KINDS", "Detection", "Verdict", "accuracy", "detect", "robustness", "score", "validate"]

#: Attribute kinds reported by :func:`accuracy` (per-object checks such as ``color_1`` count as ``color``).
ATTRIBUTE_KINDS: tuple[str, ...] = ("color", "shape", "size", "position", "relation", "background", "count")

# Thresholds (distances in RGB units; lengths and areas at 32 px, scaled with the image).
BACKGROUND_TOLERANCE = 80.0  # a border pixel votes for a palette background within this distance
BACKGROUND_QUORUM = 0.5  # ... and the winner needs this fraction of the border
MIN_CONTRAST = 60.0  # colours closer than this to the background cannot be separated from it
RESIDUAL_TOLERANCE = 60.0  # a pixel's distance to the colour's background mixing line (or 3 noise sigmas)
NOISE_SIGMAS = 3.0  # with pixel noise (estimated on the border), tolerances widen to this many sigmas
MIN_ALPHA = 0.5  # a pixel belongs to an object when it is at least half object colour
MIN_AREA = 12.0  # components smaller than this (pixels at 32 px) are noise
OTHER_ALPHA = 0.25  # a pixel at least this much of another colour is left out of an object's coverage map
# Shape: the ideal circle, square or triangle (same area and centroid, sharp or blurred) closest to the object's
# coverage map in least squares; fit = 1 - error / template energy (renders >= 0.96, pixel noise 20: >= 0.73).
# Below MIN_FIT the object is no shape of the grammar ("other").
MIN_FIT = 0.5
# Size from the side of that ideal shape: small 8 (7..9 jittered; measured <= 9.2), large 12 or 14 (11..15
# jittered; measured >= 10.9).
SIZE_THRESHOLD = 10.0
_MAX_MATCHED = 6  # detections (largest first) considered when matching query objects
_IDEAL_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
_TEMPLATE_SUPERSAMPLE = 4
_TEMPLATE_BLURS = (0.0, 0.7, 1.2)  # Gaussian blurs (px at 32) tried on the ideal shapes
_GROW = 3  # the coverage map spans the object's pixels grown by this many pixels (anti-aliased or blurred rim)
_BG_NAMES = tuple(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[n] for n in _BG_NAMES], dtype=np.float64)
_COLOR_NAMES = tuple(COLORS)
_COLOR_RGB = np.array([COLORS[n] for n in _COLOR_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class Detection:
    """An object found in an image: its attributes, box centre ``(x, y)`` and area (pixels at least half
    covered) in pixels, and the measurements behind shape and size: the side of the ideal shape of the same
    area (px at 32) and how well it fits (1.0: perfectly)."""

    color: str
    shape: str
    size: str
    position: str
    x: float
    y: float
    area: int
    side: float = 0.0
    fit: float = 0.0


@dataclass
class Verdict:
    """Per stated attribute (names as :meth:`Spec.attributes`), whether the image confirms it."""

    checks: dict[str, bool]
    background: str | None = None
    detections: tuple[Detection, ...] = field(default=())

    @property
    def all_correct(self) -> bool:
        """Every stated attribute is confirmed."""
        return bool(self.checks) and all(self.checks.values())

    @property
    def fraction(self) -> float:
        """Fraction of the stated attributes that are confirmed."""
        return sum(self.checks.values()) / len(self.checks) if self.checks else 0.0


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.shape[0] < 4 or array.shape[1] < 4:
        raise ValueError(f"score() needs an RGB image [H, W, 3] (H, W >= 4), got shape {array.shape}.")
    array = array[..., :3].astype(np.float64)
    if np.issubdtype(np.asarray(image).dtype, np.floating) and array.size and np.nanmax(array) <= 1.0:
        array = array * 255.0
    return np.nan_to_num(array, nan=0.0, posinf=255.0, neginf=0.0).clip(0.0, 255.0)


def _background(rgb: np.ndarray) -> tuple[str | None, np.ndarray, float]:
    """The palette background most common along the border (None without a quorum), its observed colour
    (median of the border pixels that voted for it) and the pixel noise level (robust standard deviation)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    distance = np.linalg.norm(border[:, None, :] - _BG_RGB[None], axis=-1)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(border)), nearest] < BACKGROUND_TOLERANCE
    votes = np.bincount(nearest[close], minlength=len(_BG_NAMES))
    winner = int(votes.argmax())
    name = _BG_NAMES[winner] if votes[winner] >= BACKGROUND_QUORUM * len(border) else None
    pixels = border[close & (nearest == winner)] if name is not None else border
    colour = np.median(pixels, axis=0)
    sigma = 1.4826 * float(np.median(np.abs(pixels - colour)))
    return name, colour, sigma


def _label(classes: np.ndarray) -> np.ndarray:
    """8-connected components of equal non-negative class; -1 stays -1. Labels are flat pixel indices."""
    h, w = classes.shape
    padded = np.full((h + 2, w + 2), -1, dtype=np.int64)
    padded[1:-1, 1:-1] = classes
    valid = classes >= 0
    big = h * w
    labels = np.where(valid, np.arange(big).reshape(h, w), big)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    same = [valid & (padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == classes) for dy, dx in offsets]
    while True:
        lab = np.full((h + 2, w + 2), big, dtype=np.int64)
        lab[1:-1, 1:-1] = labels
        new = labels.copy()
        for (dy, dx), ok in zip(offsets, same, strict=True):
            np.minimum(new, np.where(ok, lab[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], big), out=new)
        flat = np.append(new.ravel(), big)
        for _ in range(4):  # pointer jumping: follow each label to its own label
            flat[:-1] = np.where(valid.ravel(), flat[flat[:-1]], big)
        new = flat[:-1].reshape(h, w)
        if np.array_equal(new, labels):
            return np.where(valid, labels, -1)
        labels = new


def _coverage(shape: str, side: float, x: float, y: float, h: int, w: int) -> np.ndarray:
    """Coverage [h, w] of an ideal shape (box centre x, y; pixel units) on a grid, by 4x4 supersampling."""
    offsets = (np.arange(_TEMPLATE_SUPERSAMPLE) + 0.5) / _TEMPLATE_SUPERSAMPLE
    gy = (np.arange(h)[:, None] + offsets[None, :]).reshape(-1)[:, None] - y
    gx = (np.arange(w)[:, None] + offsets[None, :]).reshape(-1)[None, :] - x
    half = side / 2
    if shape == "circle":
        inside = gx**2 + gy**2 <= half**2
    elif shape == "square":
        inside = (np.abs(gx) <= half) & (np.abs(gy) <= half)
    else:  # triangle pointing up: the half width grows from 0 at the apex to `half` at the base
        inside = (gy >= -half) & (gy <= half) & (np.abs(gx) <= (gy + half) / 2)
    k = _TEMPLATE_SUPERSAMPLE
    return inside.reshape(h, k, w, k).mean(axis=(1, 3))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (zero outside) of a small 2-D array."""
    if sigma <= 0.0:
        return image

    def matrix(n: int) -> np.ndarray:
        offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
        return np.exp(-0.5 * (offsets / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)

    return matrix(image.shape[0]) @ image @ matrix(image.shape[1]).T


def _measure(cover: np.ndarray, scale: float) -> tuple[str, float, float, float, float]:
    """Shape, equivalent side, box centre (x, y) and fit of one object's coverage map.

    The ideal circle, square and triangle of the map's area and centroid (optionally blurred, as a generated
    image may be) are compared with the map; the closest one (least squares) wins. ``fit`` is one minus its
    squared error relative to the template's energy (1.0: a perfect render).
    """
    h, w = cover.shape
    weights = cover.clip(0.0, 1.0)
    area = float(cover.sum())
    total = float(weights.sum())
    if area <= 0.0 or total <= 0.0:
        return "other", 0.0, w / 2, h / 2, 0.0
    mean_x = float((weights.sum(axis=0) * (np.arange(w) + 0.5)).sum() / total)
    mean_y = float((weights.sum(axis=1) * (np.arange(h) + 0.5)).sum() / total)
    best = ("other", float(np.sqrt(area)), mean_x, mean_y, -np.inf)
    for shape in SHAPES:
        side = float(np.sqrt(area / _IDEAL_FILL[shape]))
        y = mean_y - side / 6 if shape == "triangle" else mean_y  # a triangle's centroid sits s/6 below its box centre
        template = _coverage(shape, side, mean_x, y, h, w)
        for blur in _TEMPLATE_BLURS:
            blurred = _blur(template, blur * scale)
            fit = 1.0 - float(((cover - blurred) ** 2).sum()) / max(float((blurred**2).sum()), 1e-9)
            if fit > best[-1]:
                best = (shape, side, mean_x, y, fit)
    if best[-1] < MIN_FIT:
        best = ("other", *best[1:])
    return best


def detect(image: np.ndarray) -> tuple[str | None, list[Detection]]:
    """The background (palette name, or None when the border shows none) and the objects found in an image."""
    rgb = _as_rgb(image)
    h, w, _ = rgb.shape
    background, bg, sigma = _background(rgb)
    tolerance = max(RESIDUAL_TOLERANCE, NOISE_SIGMAS * sigma)
    scale_x, scale_y = w / 32.0, h / 32.0
    diff = rgb - bg  # [h, w, 3]
    direction = _COLOR_RGB - bg  # [c, 3]
    norm2 = (direction**2).sum(axis=1)
    usable = np.sqrt(norm2) >= MIN_CONTRAST
    alpha = np.einsum("hwk,ck->hwc", diff, direction) / np.maximum(norm2, 1e-9)
    alpha_c = alpha.clip(0.0, 1.0)
    residual = np.linalg.norm(diff[:, :, None, :] - alpha_c[..., None] * direction[None, None], axis=-1)
    residual[:, :, ~usable] = np.inf
    best = residual.argmin(axis=-1)
    best_residual = np.take_along_axis(residual, best[..., None], axis=-1)[..., 0]
    best_alpha = np.take_along_axis(alpha, best[..., None], axis=-1)[..., 0]
    member = (best_residual < tolerance) & (best_alpha >= MIN_ALPHA)
    classes = np.where(member, best, -1)
    labels = _label(classes)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    min_area = MIN_AREA * scale_x * scale_y
    detections: list[Detection] = []
    for label, count in zip(ids, counts, strict=True):
        if count < min_area:
            continue
        c = int(classes.flat[label])
        ys, xs = np.nonzero(labels == label)
        # The object's coverage map: its colour's alpha (not clipped, so that pixel noise averages out) over
        # its box grown by _GROW pixels (so an anti-aliased or blurred rim counts), zero on pixels of other
        # objects or clearly of another colour.
        g = _GROW
        gy0, gy1, gx0, gx1 = (
            max(ys.min() - g, 0),
            min(ys.max() + g + 1, h),
            max(xs.min() - g, 0),
            min(xs.max() + g + 1, w),
        )
        sub = (slice(gy0, gy1), slice(gx0, gx1))
        cover = alpha[sub][..., c].clip(-1.0, 2.0)
        theirs = ((labels[sub] >= 0) & (labels[sub] != label)) | (
            (best[sub] != c) & (best_alpha[sub] >= OTHER_ALPHA) & (best_residual[sub] < tolerance)
        )
        shape, side, x, y, fit = _measure(np.where(theirs, 0.0, cover), np.sqrt(scale_x * scale_y))
        side /= np.sqrt(scale_x * scale_y)
        cx, cy = gx0 + x, gy0 + y
        position = min(ANCHORS, key=lambda p: (ANCHORS[p][0] - cx / scale_x) ** 2 + (ANCHORS[p][1] - cy / scale_y) ** 2)
        detections.append(
            Detection(
                color=_COLOR_NAMES[c],
                shape=shape,
                size="large" if side > SIZE_THRESHOLD else "small",
                position=position,
                x=float(cx),
                y=float(cy),
                area=int(count),
                side=float(side),
                fit=fit,
            )
        )
    detections.sort(key=lambda d: -d.area)
    return background, detections


def _relation(first: Detection, second: Detection) -> str:
    dx, dy = first.x - second.x, first.y - second.y
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _object_checks(wanted: ObjectSpec, found: Detection | None) -> dict[str, bool]:
    return {
        name: found is not None and getattr(found, name) == getattr(wanted, name)
        for name in ("color", "shape", "size")
        if getattr(wanted, name) is not None
    }


def score(image: np.ndarray, query: str | Spec) -> Verdict:
    """Which of the query's stated attributes the image confirms.

    ``query`` is a caption (parsed with :func:`~promptloop_env.toy.grammar.parse`; ``ParseError``
    propagates) or a :class:`Spec`. Works on any RGB image: one without recognisable objects fails its checks.
    """
    spec = parse(query) if isinstance(query, str) else query
    if not isinstance(spec, Spec):
        raise TypeError(f"score() takes a caption or a Spec, got {type(query).__name__}.")
    background, detections = detect(image)
    n = len(spec.objects)
    pool = detections[:_MAX_MATCHED]  # the largest ones; more only matter for the count check
    candidates: list[tuple[Detection, ...]] = list(itertools.permutations(pool, min(n, len(pool))))
    best: dict[str, bool] | None = None
    for chosen in candidates or [()]:
        for order in itertools.permutations(range(n), len(chosen)):
            assigned: list[Detection | None] = [None] * n
            for slot, det in zip(order, chosen, strict=True):
                assigned[slot] = det
            checks: dict[str, bool] = {}
            for i, (wanted, found) in enumerate(zip(spec.objects, assigned, strict=True)):
                for name, ok in _object_checks(wanted, found).items():
                    checks[f"{name}_{i}" if n == 2 else name] = ok
            if spec.position is not None:
                checks["position"] = assigned[0] is not None and assigned[0].position == spec.position
            if spec.relation is not None:
                a, b = assigned
                checks["relation"] = a is not None and b is not None and _relation(a, b) == spec.relation
            if best is None or sum(checks.values()) > sum(best.values()):
                best = checks
            if len(chosen) == n:
                break  # permutations of the detections already cover every order of the slots
    assert best is not None
    if spec.background is not None:
        best["background"] = background == spec.background
    best["count"] = len(detections) == n
    ordered = {name: best[name] for name in spec.attributes()}
    return Verdict(checks=ordered, background=background, detections=tuple(detections))


def _kind(name: str) -> str:
    return name.split("_", 1)[0]


def accuracy(images: Sequence[np.ndarray] | np.ndarray, queries: Sequence[str | Spec]) -> dict[str, float]:
    """Per attribute kind (color, shape, size, position, relation, background, count), the fraction of checks
    the scorer confirms among the queries that state it, plus ``all_correct`` (fraction of images with every
    check confirmed) and ``fraction`` (mean fraction of confirmed checks). Kinds no query states are left out."""
    if len(images) != len(queries):
        raise ValueError(f"{len(images)} images but {len(queries)} queries.")
    hits: dict[str, list[bool]] = {}
    verdicts = [score(image, query) for image, query in zip(images, queries, strict=True)]
    for verdict in verdicts:
        for name, ok in verdict.checks.items():
            hits.setdefault(_kind(name), []).append(ok)
    result = {kind: float(np.mean(hits[kind])) for kind in ATTRIBUTE_KINDS if kind in hits}
    result["all_correct"] = float(np.mean([v.all_correct for v in verdicts])) if verdicts else 0.0
    result["fraction"] = float(np.mean([v.fraction for v in verdicts])) if verdicts else 0.0
    return result


# ---------------------------------------------------------------------------------------------------------
# Validation


def _perturb(scene: Scene, rng: np.random.Generator) -> tuple[str, Scene]:
    """A scene that differs from ``scene`` in exactly one attribute kind (which one is returned)."""

    def other(value, options):
        return str(rng.choice([o for o in options if o != value]))

    objs = list(scene.objects)
    kinds = ["color", "shape", "size", "background", "count", "position" if len(objs) == 1 else "relation"]
    kind = str(rng.choice(kinds))
    i = int(rng.integers(len(objs)))
    if kind in ("color", "shape", "size"):
        obj = objs[i]
        if kind == "color":
            taken = {o.color for o in objs}
            objs[i] = Object(obj.shape, str(rng.choice([c for c in COLORS if c not in taken])), obj.size)
        elif kind == "shape":
            objs[i] = Object(other(obj.shape, SHAPES), obj.color, obj.size)
        else:
            objs[i] = Object(obj.shape, obj.color, other(obj.size, SIZES))
        return kind, Scene(tuple(objs), scene.background, scene.position, scene.relation)
    if kind == "background":
        return kind, Scene(scene.objects, other(scene.background, BACKGROUNDS), scene.position, scene.relation)
    if kind == "position":
        return kind, Scene(scene.objects, scene.background, other(scene.position, POSITIONS))
    if kind == "relation":
        return kind, Scene(scene.objects, scene.background, relation=other(scene.relation, RELATIONS))
    if len(objs) == 1:  # count: add a second object
        extra = Object(str(rng.choice(SHAPES)), other(objs[0].color, COLORS), str(rng.choice(SIZES)))
        return kind, Scene((objs[0], extra), scene.background, relation=str(rng.choice(RELATIONS)))
    return kind, Scene((objs[i],), scene.background, position=str(rng.choice(POSITIONS)))


def validate(n: int = 1000, seed: int = 0) -> dict:
    """How well the scorer separates matching from non-matching image/spec pairs, on jittered renders.

    Returns ``accept_rate`` (renders of random scenes whose own full spec is all-correct), ``reject_rate``
    (renders scored against the spec of a different random scene that are not all-correct),
    ``reject_rate_one_change`` (against a scene that differs in exactly one attribute kind), and
    ``per_attribute`` (accuracy of each attribute kind on the accept set) and ``one_change`` (reject rate per
    changed kind).
    """
    rng = np.random.default_rng(seed)
    accepted, images, specs = [], [], []
    for _ in range(n):
        scene = random_scene(rng)
        image = render(scene, rng=rng)
        images.append(image)
        specs.append(spec_of(scene))
        accepted.append(score(image, specs[-1]).all_correct)
    rejected = []
    for _ in range(n):
        scene, other = random_scene(rng), random_scene(rng)
        while spec_of(other) == spec_of(scene):
            other = random_scene(rng)
        rejected.append(not score(render(scene, rng=rng), spec_of(other)).all_correct)
    by_kind: dict[str, list[bool]] = {}
    for _ in range(n):
        scene = random_scene(rng)
        kind, changed = _perturb(scene, rng)
        by_kind.setdefault(kind, []).append(not score(render(scene, rng=rng), spec_of(changed)).all_correct)
    return {
        "n": n,
        "seed": seed,
        "accept_rate": float(np.mean(accepted)),
        "reject_rate": float(np.mean(rejected)),
        "reject_rate_one_change": float(np.mean([r for rs in by_kind.values() for r in rs])),
        "per_attribute": accuracy(images, specs),
        "one_change": {kind: float(np.mean(by_kind[kind])) for kind in sorted(by_kind)},
    }


def _corruptions() -> dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    def noise(sigma: float):
        return lambda image, rng: np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 255).astype(np.uint8)

    def blur(radius: float):
        return lambda image, rng: np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))

    def cast(sigma: float):
        return lambda image, rng: np.clip(image + rng.normal(0.0, sigma, 3), 0, 255).astype(np.uint8)

    return {
        "pixel noise sd 10": noise(10.0),
        "pixel noise sd 20": noise(20.0),
        "pixel noise sd 30": noise(30.0),
        "Gaussian blur 0.8 px": blur(0.8),
        "Gaussian blur 1.2 px": blur(1.2),
        "blur 0.8 px + noise sd 15": lambda image, rng: noise(15.0)(blur(0.8)(image, rng), rng),
        "colour cast sd 15 per channel": cast(15.0),
        "colour cast sd 25 per channel": cast(25.0),
    }


def robustness(n: int = 250, seed: int = 0) -> dict[str, dict[str, float]]:
    """Accept and reject rates (as in :func:`validate`) on jittered renders with corruptions a generated image
    may show: pixel noise, blur, a global colour cast."""
    result = {}
    for name, corrupt in _corruptions().items():
        rng = np.random.default_rng(seed)
        accepted, rejected = [], []
        for _ in range(n):
            scene = random_scene(rng)
            image = corrupt(render(scene, rng=rng), rng)
            accepted.append(score(image, spec_of(scene)).all_correct)
            other = random_scene(rng)
            while spec_of(other) == spec_of(scene):
                other = random_scene(rng)
            rejected.append(not score(image, spec_of(other)).all_correct)
        result[name] = {"n": n, "accept_rate": float(np.mean(accepted)), "reject_rate": float(np.mean(rejected))}
    return result


def _markdown(result: dict, command: str, seconds: float) -> str:
    lines = [
        "# Toy scorer validation: weight-free verdicts on rendered shapes scenes",
        "",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Command: `{command}`  ",
        f"{result['n']} random scenes per test (seed {result['seed']}), rendered at 32x32 with jitter "
        f"(position +-2 px, size +-1 px); {seconds:.1f} s on CPU.",
        "",
        "| measure | rate |",
        "|---|---:|",
        f"| accept rate (own full spec all-correct) | {result['accept_rate']:.3f} |",
        f"| reject rate (spec of a different random scene not all-correct) | {result['reject_rate']:.3f} |",
        f"| reject rate (spec differing in exactly one attribute kind) | {result['reject_rate_one_change']:.3f} |",
        "",
        "Per-attribute accuracy on the accept set (fraction of stated checks confirmed):",
        "",
        "| attribute | accuracy |",
        "|---|---:|",
    ]
    lines += [f"| {kind} | {value:.4f} |" for kind, value in result["per_attribute"].items()]
    lines += ["", "Reject rate by the attribute kind that was changed:", "", "| changed | reject rate |", "|---|---:|"]
    lines += [f"| {kind} | {value:.3f} |" for kind, value in result["one_change"].items()]
    if result.get("robustness"):
        first = next(iter(result["robustness"].values()))
        lines += [
            "",
            f"Robustness ({first['n']} scenes each, jittered renders then corrupted as a generated image may be):",
            "",
            "| corruption | accept rate | reject rate |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {rates['accept_rate']:.3f} | {rates['reject_rate']:.3f} |"
            for name, rates in result["robustness"].items()
        ]
    lines += [
        "",
        f"Thresholds: colour residual {RESIDUAL_TOLERANCE:g} RGB (or {NOISE_SIGMAS:g} noise sigmas), object pixel "
        f"alpha >= {MIN_ALPHA:g}, min area {MIN_AREA:g} px, shape fit >= {MIN_FIT:g}, small/large side "
        f"{SIZE_THRESHOLD:g} px, background border quorum {BACKGROUND_QUORUM:g} within {BACKGROUND_TOLERANCE:g} RGB "
        "(lengths at 32 px).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the validation as Markdown (and write it to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="scenes per test (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--robustness-n", type=int, default=None, help="scenes per corruption (default n / 4; 0: skip)")
    parser.add_argument("--out", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = validate(args.n, args.seed)
    robustness_n = args.n // 4 if args.robustness_n is None else args.robustness_n
    if robustness_n > 0:
        result["robustness"] = robustness(robustness_n, args.seed)
    seconds = time.perf_counter() - start
    command = "python -m promptloop_env.toy.scorer " + " ".join(sys.argv[1:] if argv is None else argv)
    text = _markdown(result, command.strip(), seconds)
    print(text, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
