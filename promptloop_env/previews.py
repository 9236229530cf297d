"""Previews: the clean estimate x̂0 of a latent shown to the agent as an RGB image.

Three kinds, chosen with ``preview=`` on the environment:

- ``"full"``: the backend's VAE decode of x̂0 (exact, costs one decoder pass per refinement);
- ``"linear"``: a per-backend linear map latent -> RGB (3 x C matrix and a bias, applied per latent pixel and
  resized), fitted by least squares against VAE decodes (:func:`fit_linear_preview`; run this module as a
  script to fit one for a pipeline and save it); nearly free;
- ``"none"``: a blank (black) image: the no-latent-feedback ablation.

Any callable ``latents [N, C, h, w] -> uint8 [N, H, W, 3]`` can stand in for these.

Fit and save linear factors for a pipeline (a folder or a cached model id)::

    python -m promptloop_env.previews --pipeline path/to/pipeline --out sd_linear_preview.json
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BlankPreview",
    "FullDecodePreview",
    "LinearPreview",
    "PREVIEW_KINDS",
    "fit_linear_preview",
    "make_preview",
    "to_uint8",
]

PREVIEW_KINDS = ("full", "linear", "none")


def to_uint8(images: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """``[N, 3, H, W]`` floats in ``[0, 1]`` -> ``uint8 [N, H', W', 3]`` (resized when ``size`` differs)."""
    images = images.float()
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    out = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()


class FullDecodePreview:
    """x̂0 decoded by the backend's VAE, resized to ``size``."""

    kind = "full"

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], size: tuple[int, int]):
        self.decode = decode
        self.size = size

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        return to_uint8(self.decode(latents), self.size)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        # The final image is already decoded: reuse it instead of decoding again.
        return to_uint8(images, self.size)


@dataclass
class LinearPreview:
    """RGB = ``weight @ latent + bias`` per latent pixel, upsampled to ``size``.

    Attributes:
        weight: ``[3, C]``; bias: ``[3]``; both map latents in the backend's scaling to RGB in ``[0, 1]``.
        size: output ``(H, W)``.
        rmse: the fit's root-mean-square error on ``[0, 1]`` RGB against the VAE decodes it was fitted to.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    size: tuple[int, int]
    rmse: float = float("nan")

    kind = "linear"

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        w = self.weight.to(device=latents.device, dtype=torch.float32)
        b = self.bias.to(device=latents.device, dtype=torch.float32)
        rgb = torch.einsum("oc,nchw->nohw", w, latents.float()) + b[None, :, None, None]
        return to_uint8(rgb, self.size)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        return self(latents)

    def to_json(self) -> dict[str, Any]:
        return {"weight": self.weight.tolist(), "bias": self.bias.tolist(), "rmse": self.rmse}

    def save(self, path: str | os.PathLike) -> None:
        """Write the factors as JSON (atomically: a temporary file, then rename)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, size: tuple[int, int]) -> LinearPreview:
        with open(path) as f:
            data = json.load(f)
        weight = torch.tensor(data["weight"], dtype=torch.float32)
        bias = torch.tensor(data["bias"], dtype=torch.float32)
        if weight.ndim != 2 or weight.shape[0] != 3 or bias.shape != (3,):
            raise ValueError(
                f"{path}: expected 'weight' of shape [3, C] and 'bias' of shape [3]; "
                f"got {tuple(weight.shape)} and {tuple(bias.shape)}."
            )
        return cls(weight, bias, size, float(data.get("rmse", "nan")))


class BlankPreview:
    """A black image: the agent gets no latent feedback."""

    kind = "none"

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        return np.zeros((len(latents), *self.size, 3), dtype=np.uint8)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        return self(latents)


def _fit_images(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Synthetic fitting images in ``[0, 1]``: smooth random colour fields with solid rectangles on top."""
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    images = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    for i in range(n):
        for _ in range(3):
            h0, w0 = (torch.randint(0, s // 2, (1,), generator=generator).item() for s in (height, width))
            dh, dw = (torch.randint(s // 8 + 1, s // 2 + 1, (1,), generator=generator).item() for s in (height, width))
            images[i, :, h0 : h0 + dh, w0 : w0 + dw] = torch.rand(3, 1, 1, generator=generator)
    return images


@torch.no_grad()
def fit_linear_preview(backend: Any, num_images: int = 32, seed: int = 0, batch_size: int = 8) -> LinearPreview:
    """Fit a :class:`LinearPreview` for ``backend`` by least squares against its VAE decodes.

    The latents are of two kinds, in equal numbers: synthetic images encoded with the backend's VAE (latent
    means, in the backend's scaling: realistic structure) and unit Gaussian latents (the scale diffusion
    latents have by construction, which an untrained or unusual VAE's encodings may not cover). Both are
    decoded, and the decodes (average-pooled to the latent grid) are regressed on the latents with a bias.
    Deterministic for a given ``seed``.
    """
    vae = backend.vae
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    generator = torch.Generator().manual_seed(seed)
    images = _fit_images(num_images, backend.height, backend.width, generator)
    xs, ys = [], []
    batches = []
    for chunk in images.split(batch_size):
        pixels = (chunk * 2 - 1).to(device=backend.device, dtype=vae.dtype)
        latents = (vae.encode(pixels).latent_dist.mean - shift) * scale
        batches.append(latents)
        noise = torch.randn(latents.shape, generator=generator).to(device=backend.device, dtype=vae.dtype)
        batches.append(noise)
    for latents in batches:
        decoded = backend.decode(latents).float()
        target = F.adaptive_avg_pool2d(decoded, latents.shape[-2:])
        xs.append(latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).cpu())
        ys.append(target.permute(0, 2, 3, 1).reshape(-1, 3).cpu())
    x = torch.cat(xs)
    y = torch.cat(ys)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution  # [C + 1, 3]
    rmse = (design @ solution - y.double()).pow(2).mean().sqrt().item()
    weight = solution[:-1].T.float().contiguous()
    bias = solution[-1].float().contiguous()
    return LinearPreview(weight, bias, (backend.height, backend.width), rmse)


def make_preview(spec: Any, backend: Any, size: tuple[int, int]) -> Any:
    """A preview from ``spec``: a kind name, a :class:`LinearPreview`, or any callable."""
    if isinstance(spec, str):
        if spec == "full":
            return FullDecodePreview(backend.decode, size)
        if spec == "none":
            return BlankPreview(size)
        if spec == "linear":
            # One fit per pipeline object, kept on it so that every env over that pipeline shares it.
            cached = getattr(backend.pipeline, "_promptloop_linear_preview", None)
            if cached is None:
                cached = fit_linear_preview(backend)
                backend.pipeline._promptloop_linear_preview = cached
            return LinearPreview(cached.weight, cached.bias, size, cached.rmse)
        raise ValueError(
            f"Unknown preview {spec!r}; expected one of {', '.join(map(repr, PREVIEW_KINDS))}, "
            "a LinearPreview, or a callable latents -> uint8 images."
        )
    if isinstance(spec, LinearPreview):
        return LinearPreview(spec.weight, spec.bias, size, spec.rmse)
    if callable(spec):
        return spec
    raise TypeError(f"preview must be a str, a LinearPreview or a callable; got {type(spec).__name__}.")


def main(argv: list[str] | None = None) -> None:
    """Fit linear latent -> RGB factors for a pipeline and save them as JSON."""
    from .backends import load_pipeline, make_backend

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--pipeline", default=None, help="pipeline folder or model id (default: the env's default)")
    parser.add_argument("--out", required=True, help="where to write the JSON factors")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic images to fit on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.pipeline is None:
        from .tiny import tiny_stable_diffusion

        pipeline = tiny_stable_diffusion()
    else:
        pipeline = load_pipeline(args.pipeline, device=args.device)
    backend = make_backend(pipeline, num_inference_steps=1)
    preview = fit_linear_preview(backend, num_images=args.num_images, seed=args.seed)
    preview.save(args.out)
    print(f"wrote {args.out}: rmse {preview.rmse:.4f} on [0, 1] RGB over {args.num_images} images")


if __name__ == "__main__":
    main()
