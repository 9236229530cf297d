"""Previews: the clean estimate x̂0 of a latent shown to the agent as an RGB image.

Four kinds, chosen with ``preview=`` on the environment:

- ``"full"``: the backend's VAE decode of x̂0 (exact, costs one decoder pass per refinement);
- ``"tiny"``: a tiny autoencoder (diffusers ``AutoencoderTiny``, the TAESD family) decodes x̂0: close to the
  full decode at a small fraction of its cost. ``"tiny"`` picks the one made for the pipeline's family
  (:data:`TINY_AUTOENCODERS`: ``madebyollin/taesd`` for SD 1.x/2.x, ``taesdxl``, ``taesd3``, ``taef1``);
  ``"tiny:<model id or folder>"`` names one. It loads from the local Hugging Face cache (or a folder) like any
  ``from_pretrained`` model;
- ``"linear"``: a linear map latent -> RGB (3 x C matrix and a bias, applied per latent pixel and resized),
  fitted by least squares against the pipeline's own VAE (:func:`fit_linear_preview`); nearly free.
  ``"linear:<file.json>"`` loads factors saved by this module's script;
- ``"none"``: a blank (black) image: the no-latent-feedback ablation.

Any callable ``latents [N, C, h, w] -> uint8 [N, H, W, 3]`` can stand in for these. Previews depend only on
the latents (in the backend's scaling: what the denoiser sees) and the pipeline's VAE, so they serve every
family, 4-channel (SD 1.x/2.x, SDXL) and 16-channel (SD3, FLUX) latents alike.

**Where linear factors come from.** We ship no factors for real models: they are fitted from the user's own
VAE on first use, a few seconds on a GPU (synthetic colour fields and rectangles are encoded, they and unit
Gaussian latents are decoded, and the decodes are regressed on the latents), then cached as JSON under
:func:`cache_dir` (``$PROMPTLOOP_CACHE``, else ``$XDG_CACHE_HOME/promptloop``, else ``~/.cache/promptloop``)
under a key made of the VAE's class, config and a fingerprint of its decoder's weights, and reused by every
later run with the same VAE. Fit and save factors explicitly (into the cache, or to a file)::

    python -m promptloop_env.previews --pipeline stable-diffusion-v1-5/stable-diffusion-v1-5 --device cuda
    python -m promptloop_env.previews --pipeline path/to/pipeline --out sd_linear_preview.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BlankPreview",
    "FullDecodePreview",
    "LinearPreview",
    "PREVIEW_KINDS",
    "TINY_AUTOENCODERS",
    "TinyPreview",
    "cache_dir",
    "fit_linear_preview",
    "linear_preview_key",
    "load_tiny_autoencoder",
    "make_preview",
    "tiny_autoencoder_id",
    "to_uint8",
]

PREVIEW_KINDS = ("full", "linear", "none", "tiny")

#: The tiny autoencoder made for each family: (pipeline class name prefix, model id, latent channels).
#: The most specific prefix comes first (``StableDiffusionXL...`` before ``StableDiffusion...``).
TINY_AUTOENCODERS: tuple[tuple[str, str, int], ...] = (
    ("Flux", "madebyollin/taef1", 16),
    ("StableDiffusion3", "madebyollin/taesd3", 16),
    ("StableDiffusionXL", "madebyollin/taesdxl", 4),
    ("StableDiffusion", "madebyollin/taesd", 4),
)

#: Bumped when the fitting procedure changes, so that cached factors of an older fit are not reused.
LINEAR_FIT_VERSION = 1


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
        meta: how the factors were made (the VAE, its cache key, the fitting settings); saved with them.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    size: tuple[int, int]
    rmse: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "linear"

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        if latents.ndim != 4 or latents.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"These linear factors map latents [N, {self.weight.shape[1]}, h, w]; got {tuple(latents.shape)}. "
                "Use factors fitted for this model's VAE (preview='linear' fits them)."
            )
        w = self.weight.to(device=latents.device, dtype=torch.float32)
        b = self.bias.to(device=latents.device, dtype=torch.float32)
        rgb = torch.einsum("oc,nchw->nohw", w, latents.float()) + b[None, :, None, None]
        return to_uint8(rgb, self.size)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        return self(latents)

    def to_json(self) -> dict[str, Any]:
        return {"weight": self.weight.tolist(), "bias": self.bias.tolist(), "rmse": self.rmse, "meta": self.meta}

    def save(self, path: str | os.PathLike) -> None:
        """Write the factors as JSON (atomically: a temporary file, then rename)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, size: tuple[int, int]) -> LinearPreview:
        """Factors written by :meth:`save` (or this module's script), for previews of ``size``."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No linear preview factors at {os.fspath(path)!r}; write them with "
                "`python -m promptloop_env.previews --pipeline ... --out FILE`, or use preview='linear'."
            )
        with open(path) as f:
            data = json.load(f)
        weight = torch.tensor(data["weight"], dtype=torch.float32)
        bias = torch.tensor(data["bias"], dtype=torch.float32)
        if weight.ndim != 2 or weight.shape[0] != 3 or bias.shape != (3,):
            raise ValueError(
                f"{path}: expected 'weight' of shape [3, C] and 'bias' of shape [3]; "
                f"got {tuple(weight.shape)} and {tuple(bias.shape)}."
            )
        return cls(weight, bias, size, float(data.get("rmse", "nan")), dict(data.get("meta", {})))


class BlankPreview:
    """A black image: the agent gets no latent feedback."""

    kind = "none"

    def __init__(self, size: tuple[int, int]):
        self.size = size

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        return np.zeros((len(latents), *self.size, 3), dtype=np.uint8)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        return self(latents)


class TinyPreview:
    """x̂0 decoded by a tiny autoencoder (``diffusers.AutoencoderTiny``), resized to ``size``.

    The tiny autoencoders of the TAESD family decode latents in the denoiser's own scaling (their config has
    ``scaling_factor=1`` and ``shift_factor=0``); the latents are mapped by those factors as diffusers
    pipelines do when such a VAE is swapped in.

    Args:
        autoencoder: an ``AutoencoderTiny`` with as many latent channels as the backend's latents.
        size: output ``(H, W)``.
    """

    kind = "tiny"

    def __init__(self, autoencoder: Any, size: tuple[int, int]):
        self.autoencoder = autoencoder
        self.size = size

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        ae = self.autoencoder
        channels = ae.config.latent_channels
        if latents.ndim != 4 or latents.shape[1] != channels:
            raise ValueError(
                f"The tiny autoencoder decodes latents [N, {channels}, h, w]; got {tuple(latents.shape)}. "
                "Use the tiny autoencoder made for this model family."
            )
        param = next(ae.parameters())
        x = latents.to(device=param.device, dtype=param.dtype) / ae.config.scaling_factor + ae.config.shift_factor
        images = ae.decode(x, return_dict=False)[0]
        return to_uint8((images.float() + 1) / 2, self.size)

    def final(self, images: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        # The final image is already decoded by the full VAE: reuse it (better and free).
        return to_uint8(images, self.size)


def tiny_autoencoder_id(pipeline_class: type, vae_config: Any) -> str:
    """The tiny autoencoder made for a pipeline class (see :data:`TINY_AUTOENCODERS`).

    Raises:
        ValueError: for a family with none, or a Stable Diffusion pipeline whose VAE is not Stable
            Diffusion's (such as the toy model's): then name one with ``preview="tiny:<id or folder>"``.
    """
    names = [cls.__name__ for cls in pipeline_class.__mro__]
    for prefix, model_id, channels in TINY_AUTOENCODERS:
        if any(name.startswith(prefix) for name in names):
            latent_channels = getattr(vae_config, "latent_channels", None)
            sd_like = tuple(getattr(vae_config, "block_out_channels", ())) == (128, 256, 512, 512)
            if latent_channels == channels and sd_like:
                return model_id
            raise ValueError(
                f"preview='tiny' picks {model_id} for {pipeline_class.__name__}, but this pipeline's VAE is not "
                f"that family's (latent_channels={latent_channels}, block_out_channels="
                f"{list(getattr(vae_config, 'block_out_channels', []))}); name a tiny autoencoder trained for "
                "this VAE with preview='tiny:<model id or folder>'."
            )
    raise ValueError(
        f"No tiny autoencoder is known for {pipeline_class.__name__}; known families: "
        f"{', '.join(f'{p}* -> {m}' for p, m, _ in TINY_AUTOENCODERS)}. Name one with "
        "preview='tiny:<model id or folder>', or use preview='linear'."
    )


def load_tiny_autoencoder(
    spec: str | os.PathLike, device: Any = None, dtype: Any = None, local_files_only: bool | None = None
) -> Any:
    """An ``AutoencoderTiny`` from a folder or a model id in the local Hugging Face cache (safetensors only).

    ``local_files_only`` defaults to the ``HF_HUB_OFFLINE`` setting.

    Raises:
        ModelNotAvailableError: naming the id or folder and how to make it available.
    """
    from diffusers import AutoencoderTiny

    from .backends import ModelNotAvailableError

    spec = os.fspath(spec)
    is_folder = os.path.isdir(spec)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        ae = AutoencoderTiny.from_pretrained(
            spec, local_files_only=local_files_only or is_folder, use_safetensors=True, torch_dtype=dtype
        )
    except (OSError, ValueError) as err:
        where = (
            f"the folder {spec!r} holds no AutoencoderTiny with safetensors weights"
            if is_folder
            else f"{spec!r} is not in the local Hugging Face cache"
        )
        raise ModelNotAvailableError(
            f"Could not load the tiny autoencoder for preview='tiny': {where} ({type(err).__name__}). "
            f"Download it once where the hub is reachable (`hf download {spec}`), name a local folder with "
            "preview='tiny:<folder>', or use preview='linear' (fitted from the pipeline's own VAE)."
        ) from err
    return ae.to(device).eval().requires_grad_(False)


def _make_tiny(name: str | None, backend: Any, size: tuple[int, int]) -> TinyPreview:
    pipeline = backend.pipeline
    vae = pipeline.vae
    spec = name or tiny_autoencoder_id(type(pipeline), vae.config)
    # One load per pipeline object and autoencoder, shared by every env over that pipeline.
    loaded = pipeline.__dict__.setdefault("_promptloop_tiny_autoencoders", {})
    if spec not in loaded:
        ae = load_tiny_autoencoder(spec, device=backend.device, dtype=vae.dtype)
        if ae.config.latent_channels != vae.config.latent_channels:
            raise ValueError(
                f"The tiny autoencoder {spec!r} has {ae.config.latent_channels} latent channels; this pipeline's "
                f"VAE has {vae.config.latent_channels}. Use the tiny autoencoder made for this model family."
            )
        loaded[spec] = ae
    return TinyPreview(loaded[spec], size)


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


def _vae_scaling(vae: Any) -> tuple[float, float]:
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return scale, shift


def _fit_size(backend: Any, vae: Any, max_side: int) -> tuple[int, int]:
    """The fitting images' size: the image size, capped at ``max_side`` (the factors act per latent pixel,
    so a smaller image fits the same map for less)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    sides = []
    for name in ("height", "width"):
        side = min(int(getattr(backend, name, None) or max_side), max_side)
        sides.append(max(factor, side // factor * factor))
    return sides[0], sides[1]


@torch.no_grad()
def fit_linear_preview(
    backend: Any, num_images: int = 32, seed: int = 0, batch_size: int = 8, max_side: int = 256
) -> LinearPreview:
    """Fit a :class:`LinearPreview` for ``backend``'s pipeline by least squares against its own VAE.

    The latents are of two kinds, in equal numbers: synthetic images (:func:`_fit_images`) encoded with the
    VAE (latent means, in the denoiser's scaling ``(z - shift) * scale``: realistic structure) and unit
    Gaussian latents (the scale diffusion latents have by construction, which an untrained or unusual VAE's
    encodings may not cover). Both are decoded with the VAE (``z / scale + shift``, as diffusers pipelines
    do), and the decodes (average-pooled to the latent grid) are regressed on the latents with a bias.
    Only ``backend.pipeline.vae`` is used, so any family with an ``AutoencoderKL``-like VAE fits alike.
    Images are at most ``max_side`` pixels a side. Deterministic for a given ``seed``.
    """
    vae = backend.pipeline.vae
    scale, shift = _vae_scaling(vae)
    dtype = vae.dtype
    # fp16 VAEs that need it (SDXL's) are run in float32, as diffusers pipelines do; restored afterwards.
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        run_dtype = next(vae.parameters()).dtype
        device = next(vae.parameters()).device
        generator = torch.Generator().manual_seed(seed)
        height, width = _fit_size(backend, vae, max_side)
        images = _fit_images(num_images, height, width, generator)
        xs, ys = [], []
        for chunk in images.split(batch_size):
            pixels = (chunk * 2 - 1).to(device=device, dtype=run_dtype)
            encoded = (vae.encode(pixels).latent_dist.mean - shift) * scale
            noise = torch.randn(encoded.shape, generator=generator).to(device=device, dtype=run_dtype)
            for latents in (encoded, noise):
                decoded = vae.decode(latents / scale + shift, return_dict=False)[0]
                target = F.adaptive_avg_pool2d((decoded.float() + 1) / 2, latents.shape[-2:]).clamp(0, 1)
                xs.append(latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).cpu())
                ys.append(target.permute(0, 2, 3, 1).reshape(-1, 3).cpu())
    finally:
        if upcast:
            vae.to(dtype)
    x = torch.cat(xs)
    y = torch.cat(ys)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution  # [C + 1, 3]
    rmse = (design @ solution - y.double()).pow(2).mean().sqrt().item()
    weight = solution[:-1].T.float().contiguous()
    bias = solution[-1].float().contiguous()
    meta = {
        "vae": str(getattr(vae.config, "_name_or_path", "") or type(vae).__name__),
        "key": linear_preview_key(vae),
        "num_images": num_images,
        "seed": seed,
        "fit_size": [height, width],
        "fit_version": LINEAR_FIT_VERSION,
    }
    size = (getattr(backend, "height", height), getattr(backend, "width", width))
    return LinearPreview(weight, bias, size, rmse, meta)


def cache_dir() -> Path:
    """Where PromptLoop caches what it computes from a user's models: ``$PROMPTLOOP_CACHE``, else
    ``$XDG_CACHE_HOME/promptloop``, else ``~/.cache/promptloop``."""
    if os.environ.get("PROMPTLOOP_CACHE"):
        return Path(os.environ["PROMPTLOOP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "promptloop"


def linear_preview_key(vae: Any) -> str:
    """The identity of a VAE for cached linear factors: its class, its config (less bookkeeping entries such as
    the path it was loaded from) and a fingerprint of its decoder's first and last weights (so two VAEs of the
    same architecture, a real one and a random one, never share factors)."""
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    digest = hashlib.sha256()
    digest.update(json.dumps([type(vae).__name__, config, LINEAR_FIT_VERSION], sort_keys=True, default=str).encode())
    params = list(vae.decoder.parameters()) if hasattr(vae, "decoder") else list(vae.parameters())
    for tensor in (params[0], params[-1]):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def _linear_cache_path(vae: Any) -> Path:
    return cache_dir() / "linear_previews" / f"{linear_preview_key(vae)}.json"


def _make_linear(name: str | None, backend: Any, size: tuple[int, int]) -> LinearPreview:
    pipeline = backend.pipeline
    if name:
        loaded = LinearPreview.load(name, size)
        if loaded.weight.shape[1] != pipeline.vae.config.latent_channels:
            raise ValueError(
                f"The linear factors {name!r} map {loaded.weight.shape[1]} latent channels; this pipeline's VAE has "
                f"{pipeline.vae.config.latent_channels}. Fit factors for it: preview='linear'."
            )
        return loaded
    # One fit per pipeline object, kept on it so that every env over that pipeline shares it; across runs,
    # the factors are cached on disk under the VAE's identity.
    cached = getattr(pipeline, "_promptloop_linear_preview", None)
    if cached is None:
        path = _linear_cache_path(pipeline.vae)
        if path.is_file():
            cached = LinearPreview.load(path, size)
        else:
            cached = fit_linear_preview(backend)
            path.parent.mkdir(parents=True, exist_ok=True)
            cached.save(path)
        pipeline._promptloop_linear_preview = cached
    return LinearPreview(cached.weight, cached.bias, size, cached.rmse, cached.meta)


def make_preview(spec: Any, backend: Any, size: tuple[int, int]) -> Any:
    """A preview from ``spec``: a kind name (``"full"``, ``"tiny"``, ``"tiny:<id or folder>"``, ``"linear"``,
    ``"linear:<file.json>"``, ``"none"``), a :class:`LinearPreview`, or any callable."""
    if isinstance(spec, str):
        kind, sep, name = spec.partition(":")
        if kind == "full" and not sep:
            return FullDecodePreview(backend.decode, size)
        if kind == "none" and not sep:
            return BlankPreview(size)
        if kind == "linear":
            return _make_linear(name if sep else None, backend, size)
        if kind == "tiny" and (name or not sep):
            return _make_tiny(name or None, backend, size)
        raise ValueError(
            f"Unknown preview {spec!r}; expected one of {', '.join(map(repr, PREVIEW_KINDS))}, "
            "'tiny:<model id or folder>', 'linear:<factors.json>', a LinearPreview, or a callable "
            "latents -> uint8 images."
        )
    if isinstance(spec, LinearPreview):
        return LinearPreview(spec.weight, spec.bias, size, spec.rmse, spec.meta)
    if callable(spec):
        return spec
    raise TypeError(f"preview must be a str, a LinearPreview or a callable; got {type(spec).__name__}.")


def main(argv: list[str] | None = None) -> None:
    """Fit linear latent -> RGB factors for a pipeline's VAE and save them as JSON (by default into the cache
    that ``preview="linear"`` reads, so every later run with this VAE uses them)."""
    from .backends import load_pipeline, make_backend

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--pipeline", default=None, help="pipeline folder or model id (default: the toy model)")
    parser.add_argument("--out", default=None, help="write the JSON factors here (default: the preview cache)")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic images to fit on")
    parser.add_argument("--max-side", type=int, default=256, help="fitting images' largest side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args(argv)
    if args.pipeline is None:
        from .toy.model import load_toy_pipeline

        pipeline = load_toy_pipeline()
        if args.device:
            pipeline = pipeline.to(args.device)
    else:
        dtype = getattr(torch, args.dtype) if args.dtype else None
        pipeline = load_pipeline(args.pipeline, device=args.device, torch_dtype=dtype)
    backend = make_backend(pipeline, num_inference_steps=1)
    preview = fit_linear_preview(backend, num_images=args.num_images, seed=args.seed, max_side=args.max_side)
    out = Path(args.out) if args.out else _linear_cache_path(pipeline.vae)
    out.parent.mkdir(parents=True, exist_ok=True)
    preview.save(out)
    print(f"wrote {out}: rmse {preview.rmse:.4f} on [0, 1] RGB over {args.num_images} images")


if __name__ == "__main__":
    main()
