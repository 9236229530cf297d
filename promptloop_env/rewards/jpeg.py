"""JPEG (in)compressibility, as in DDPO: the size of the image saved as JPEG at quality 95, in kB."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .base import register_reward


def jpeg_size_kb(images: np.ndarray, quality: int = 95) -> np.ndarray:
    """Size in kB (1000 bytes) of each ``uint8 [H, W, 3]`` image saved as JPEG at ``quality``."""
    sizes = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return np.asarray(sizes, dtype=np.float64)


def jpeg_compressibility(images: np.ndarray, queries: list[str]) -> np.ndarray:
    """Minus the JPEG size in kB: smaller files score higher."""
    return -jpeg_size_kb(images)


def jpeg_incompressibility(images: np.ndarray, queries: list[str]) -> np.ndarray:
    """The JPEG size in kB: larger (more detailed) files score higher."""
    return jpeg_size_kb(images)


register_reward("jpeg_compressibility")(lambda: jpeg_compressibility)
register_reward("jpeg_incompressibility")(lambda: jpeg_incompressibility)
