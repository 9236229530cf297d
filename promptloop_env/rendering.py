"""Pictures of a trajectory: the previews of an episode as one strip image or an animated GIF (PIL only).

The frames are what ``render()`` returns with ``render_mode="rgb_array_list"`` (every preview of the episode and
the final image) or the ``preview`` observations collected by hand. For an MP4, use Gymnasium's
``RecordVideo`` (needs ``moviepy``) on an env made with ``render_mode="rgb_array"``.

```python
>>> import gymnasium as gym
>>> import promptloop_env
>>> from promptloop_env.rendering import preview_strip
>>> env = gym.make("PromptLoop-v0", num_inference_steps=6, num_refinements=2, render_mode="rgb_array_list")
>>> _ = env.reset(seed=0)
>>> for _ in range(2):
...     _ = env.step("a red circle")
>>> preview_strip(env.render()).shape
(32, 104, 3)

```
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["preview_strip", "save_gif"]


def _frames(frames: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    frames = list(frames)
    if not frames:
        raise ValueError("No frames: expected at least one uint8 [H, W, 3] image (render() of an episode).")
    out = []
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"Frame {i} has shape {frame.shape} and dtype {frame.dtype}; expected uint8 [H, W, 3].")
        if out and frame.shape != out[0].shape:
            raise ValueError(f"Frame {i} has shape {frame.shape}, frame 0 {out[0].shape}; expected one size.")
        out.append(frame)
    return out


def _scaled(frame: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(frame)
    if scale != 1:
        image = image.resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    return image


def preview_strip(frames: Sequence[np.ndarray] | np.ndarray, scale: int = 1, gap: int = 4) -> np.ndarray:
    """The frames side by side, left to right, ``gap`` white pixels apart, each enlarged ``scale`` times
    (nearest neighbour): ``uint8 [H * scale, n * W * scale + (n - 1) * gap, 3]``.

    Raises:
        ValueError: for no frames, frames that are not ``uint8 [H, W, 3]`` or of different sizes, or a bad
            ``scale`` or ``gap``.
    """
    if int(scale) < 1 or int(gap) < 0:
        raise ValueError(f"scale must be >= 1 and gap >= 0; got scale={scale}, gap={gap}.")
    images = [np.asarray(_scaled(f, int(scale))) for f in _frames(frames)]
    height, width = images[0].shape[:2]
    strip = np.full((height, len(images) * width + (len(images) - 1) * gap, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        strip[:, i * (width + gap) : i * (width + gap) + width] = image
    return strip


def save_gif(
    frames: Sequence[np.ndarray] | np.ndarray, path: str | os.PathLike, fps: float = 2.0, scale: int = 4
) -> None:
    """Write the frames as an animated GIF that loops, ``fps`` frames per second, each enlarged ``scale``
    times (nearest neighbour: the toy model's 32 x 32 previews are small).

    Raises:
        ValueError: for no frames, frames that are not ``uint8 [H, W, 3]`` of one size, or ``fps <= 0``.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}.")
    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1; got {scale}.")
    images = [_scaled(f, int(scale)) for f in _frames(frames)]
    images[0].save(
        os.fspath(path),
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
    )
