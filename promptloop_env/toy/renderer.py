"""Renders a shapes-grammar :class:`~promptloop_env.toy.grammar.Scene` to an anti-aliased RGB image.

Geometry is defined at 32x32 pixels and scaled proportionally for other sizes. One object is centred at the
anchor of its position (left x=8, right x=24, top y=8, bottom y=24, center (16, 16)); small objects are 8 px
across, large ones 14 px. Two objects lie on y=16 at x=9 and x=23 ("left of"/"right of") or on x=16 at y=9 and
y=23 ("above"/"below"), large ones 12 px across so that they never touch. Triangles point up.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from .grammar import BACKGROUNDS, COLORS, Object, Scene

__all__ = [
    "ANCHORS",
    "OBJECT_SIZES",
    "PAIR_SIZES",
    "POSITION_JITTER",
    "SIZE_JITTER",
    "layout",
    "render",
]

#: Centre (x, y) of a single object per position, at 32 px.
ANCHORS: dict[str, tuple[float, float]] = {
    "left": (8.0, 16.0),
    "right": (24.0, 16.0),
    "top": (16.0, 8.0),
    "bottom": (16.0, 24.0),
    "center": (16.0, 16.0),
}
#: Side of the bounding box of a single object / of each of two objects, at 32 px.
OBJECT_SIZES: dict[str, float] = {"small": 8.0, "large": 14.0}
PAIR_SIZES: dict[str, float] = {"small": 8.0, "large": 12.0}
#: Jitter (at 32 px) applied when ``render`` gets an rng: uniform in +-POSITION_JITTER / +-SIZE_JITTER.
POSITION_JITTER = 2.0
SIZE_JITTER = 1.0
_PAIR_NEAR, _PAIR_FAR = 9.0, 23.0
_MARGIN = 0.5  # the object's box stays at least this far inside the image (px at 32)
_HALF_GAP = 1.0  # two objects each stay this far from the mid line (a gap of at least 2 px at 32)
_SUPERSAMPLE = 4


def layout(scene: Scene, rng: np.random.Generator | None = None) -> list[tuple[float, float, float]]:
    """``(x, y, side)`` of each object's bounding box centre and side, in 32-px units (jittered with rng)."""
    if not isinstance(scene, Scene):
        raise TypeError(f"layout() takes a Scene, got {type(scene).__name__}.")
    boxes: list[tuple[float, float, float]] = []
    if len(scene.objects) == 1:
        x, y = ANCHORS[scene.position]
        boxes.append((x, y, OBJECT_SIZES[scene.objects[0].size]))
    else:
        near, far = (16.0, _PAIR_NEAR), (16.0, _PAIR_FAR)
        horizontal = scene.relation in ("left of", "right of")
        first_near = scene.relation in ("left of", "above")
        centres = [(p[1], p[0]) if horizontal else p for p in ((near, far) if first_near else (far, near))]
        for (x, y), obj in zip(centres, scene.objects, strict=True):
            boxes.append((x, y, PAIR_SIZES[obj.size]))
    if rng is None:
        return boxes
    horizontal = scene.relation in ("left of", "right of")
    jittered = []
    for x0, y0, side0 in boxes:
        side = side0 + rng.uniform(-SIZE_JITTER, SIZE_JITTER)
        x = x0 + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
        y = y0 + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
        lo, hi = _MARGIN + side / 2, 32.0 - _MARGIN - side / 2
        x, y = float(np.clip(x, lo, hi)), float(np.clip(y, lo, hi))
        if len(boxes) == 2:  # keep each object in its own half along the relation axis
            if (x0 if horizontal else y0) < 16.0:
                axis_lo, axis_hi = lo, 16.0 - _HALF_GAP - side / 2
            else:
                axis_lo, axis_hi = 16.0 + _HALF_GAP + side / 2, hi
            if horizontal:
                x = float(np.clip(x, axis_lo, axis_hi))
            else:
                y = float(np.clip(y, axis_lo, axis_hi))
        jittered.append((x, y, float(side)))
    return jittered


def _draw(draw: ImageDraw.ImageDraw, obj: Object, x: float, y: float, side: float, scale: float) -> None:
    s = scale * _SUPERSAMPLE
    half = side / 2
    x0, x1, y0, y1 = (x - half) * s, (x + half) * s, (y - half) * s, (y + half) * s
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([round(x0), round(y0), round(x1) - 1, round(y1) - 1], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([round(x0), round(y0), round(x1) - 1, round(y1) - 1], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(x * s, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    else:  # pragma: no cover - Object validates its shape
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(
    scene: Scene,
    size: int = 32,
    rng: np.random.Generator | None = None,
    hidden: tuple[int, ...] = (),
    leaked: tuple[int, ...] = (),
) -> np.ndarray:
    """The scene as a uint8 ``[size, size, 3]`` image, anti-aliased (drawn at 4x, box-downsampled).

    Deterministic for ``rng=None``; with an rng, each object moves by up to +-2 px and its side changes by up
    to +-1 px (at 32 px; scaled for other sizes), staying inside the image and, for two objects, apart.
    The objects whose indices are in ``hidden`` are laid out but not drawn (the training data's captions
    that name an object the image does not show: what teaches the toy model to neglect it sometimes). The
    objects whose indices are in ``leaked`` are drawn in the *other* object's colour (attribute leakage: the
    caption says a blue square, the image shows a red one beside the red circle).
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"render() takes a Scene, got {type(scene).__name__}.")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}.")
    size = int(size)
    scale = size / 32.0
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for i, (obj, (x, y, side)) in enumerate(zip(scene.objects, layout(scene, rng), strict=True)):
        if i in leaked and len(scene.objects) == 2:
            obj = dataclasses.replace(obj, color=scene.objects[1 - i].color)
        if i not in hidden:
            _draw(draw, obj, x, y, side, scale)
    return np.asarray(image.resize((size, size), Image.BOX), dtype=np.uint8).copy()
