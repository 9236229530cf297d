"""Diffusion backends: one module per family behind the :class:`Backend` protocol, chosen by pipeline class."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .base import Backend, Trajectory, check_devices
from .flow import FluxBackend, StableDiffusion3Backend
from .sdxl import StableDiffusionXLBackend
from .stable_diffusion import StableDiffusionBackend

__all__ = [
    "Backend",
    "FluxBackend",
    "ModelNotAvailableError",
    "StableDiffusion3Backend",
    "StableDiffusionBackend",
    "StableDiffusionXLBackend",
    "Trajectory",
    "load_pipeline",
    "make_backend",
    "supported_pipelines",
]


class ModelNotAvailableError(OSError):
    """A pipeline folder or model id that cannot be loaded (not in the local cache, offline)."""


def _sd_classes() -> tuple[type, ...]:
    from diffusers import StableDiffusionPipeline

    return (StableDiffusionPipeline,)


def _sdxl_classes() -> tuple[type, ...]:
    from diffusers import StableDiffusionXLPipeline

    return (StableDiffusionXLPipeline,)


def _sd3_classes() -> tuple[type, ...]:
    from diffusers import StableDiffusion3Pipeline

    return (StableDiffusion3Pipeline,)


def _flux_classes() -> tuple[type, ...]:
    from diffusers import FluxPipeline

    return (FluxPipeline,)


# (name shown to users, the classes it accepts, the backend factory). A pipeline is matched by isinstance, so a
# subclass of a listed pipeline gets its family's backend.
_FAMILIES: list[tuple[str, Callable[[], tuple[type, ...]], Callable[..., Any]]] = [
    ("StableDiffusionPipeline (Stable Diffusion 1.x / 2.x)", _sd_classes, StableDiffusionBackend),
    ("StableDiffusionXLPipeline (SDXL, SDXL-turbo)", _sdxl_classes, StableDiffusionXLBackend),
    ("StableDiffusion3Pipeline (SD3, SD3.5)", _sd3_classes, StableDiffusion3Backend),
    ("FluxPipeline (FLUX.1-dev, FLUX.1-schnell)", _flux_classes, FluxBackend),
]


def supported_pipelines() -> list[str]:
    """Names of the pipeline classes that have a backend."""
    return [name for name, _, _ in _FAMILIES]


def make_backend(pipeline: Any, **sampling: Any) -> Backend:
    """The backend for ``pipeline``'s class, configured with ``sampling`` (steps, guidance, size, ...).

    ``guidance_scale=None`` (or absent) leaves each family its pipeline's default.

    Raises:
        TypeError: for a pipeline class without a backend, listing the supported ones.
        ValueError: when the pipeline's components are on different devices.
    """
    if sampling.get("guidance_scale", 0) is None:
        sampling = {k: v for k, v in sampling.items() if k != "guidance_scale"}
    for _, classes, factory in _FAMILIES:
        if isinstance(pipeline, classes()):
            check_devices(pipeline)
            return factory(pipeline, **sampling)
    raise TypeError(
        f"No PromptLoop backend for pipeline class {type(pipeline).__name__}. "
        f"Supported: {', '.join(supported_pipelines())}."
    )


def _load_options(spec: str, local_files_only: bool) -> dict[str, Any]:
    """``from_pretrained`` options for the pipeline class named in ``spec``'s ``model_index.json``: safetensors
    only; no safety checker for pipelines that take one; ``None`` for a component the folder does not have
    (``save_pretrained`` leaves out ``None`` components such as SD3's optional T5, and diffusers then needs
    them named)."""
    import diffusers
    from diffusers import DiffusionPipeline

    options: dict[str, Any] = {"use_safetensors": True}
    config = DiffusionPipeline.load_config(spec, local_files_only=local_files_only)
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None:
        return options
    expected, _ = cls._get_signature_keys(cls)
    if "safety_checker" in expected:
        options.update(safety_checker=None, requires_safety_checker=False)
    optional = set(getattr(cls, "_optional_components", []))
    for name in expected:
        saved = config.get(name)
        if name not in optional and (saved is None or (isinstance(saved, list) and saved[0] is None)):
            options[name] = None
    return options


def load_pipeline(
    spec: str | os.PathLike,
    *,
    torch_dtype: Any = None,
    device: str | None = None,
    local_files_only: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Load a diffusers pipeline from a local folder or a model id in the Hugging Face cache.

    Weights load from safetensors only (``use_safetensors=True``); the safety checker is not loaded (the
    environment never calls it); a component the folder lacks (SD3 saved without its T5) loads as ``None``.
    ``local_files_only`` defaults to the ``HF_HUB_OFFLINE`` setting.

    Raises:
        ModelNotAvailableError: naming the folder or id and how to make it available.
    """
    from diffusers import DiffusionPipeline

    spec = os.fspath(spec)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    is_folder = os.path.isdir(spec)
    try:
        options = _load_options(spec, local_files_only or is_folder)
        options.update(kwargs)
        if torch_dtype is not None:
            options["torch_dtype"] = torch_dtype
        pipeline = DiffusionPipeline.from_pretrained(spec, local_files_only=local_files_only or is_folder, **options)
    except (OSError, ValueError) as err:
        if is_folder:
            raise ModelNotAvailableError(
                f"Could not load a diffusers pipeline from the folder {spec!r}: {err}. Expected a folder "
                "written by `pipeline.save_pretrained(...)` with safetensors weights."
            ) from err
        raise ModelNotAvailableError(
            f"The diffusion model {spec!r} is not available offline: it is not in the local Hugging Face cache "
            f"({'downloads are off' if local_files_only else 'and downloading it failed'}: "
            f"{type(err).__name__}). Download it once where the hub is reachable (`hf download {spec}`), "
            "or pass a local folder or a pipeline object as `pipeline=`."
        ) from err
    if device is not None:
        pipeline = pipeline.to(device)
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    return pipeline
