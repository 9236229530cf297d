"""From what a user passes as ``pipeline=`` to a loaded pipeline, and the defaults of the world it belongs to.

The env accepts ``None`` or ``"toy"``/``"toy-b"`` (the embedded toy world's models), a diffusers pipeline
object, a folder written by ``save_pretrained`` or a model id in the local Hugging Face cache. A model decides
more than the images: the toy world's model comes with its query set, its scorer and its guidance scale
(:func:`world_defaults`). Those defaults follow the pipeline rather than the registration kwargs of
``PromptLoop-v0``, so that ``gym.make("PromptLoop-v0", pipeline=other)`` never grades a non-toy model's
images with the toy scorer or draws toy queries for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from . import load_pipeline

__all__ = [
    "WorldDefaults",
    "as_dtype",
    "default_pipeline",
    "is_toy_pipeline",
    "resolve_pipeline",
    "scheduler_from_name",
    "world_defaults",
]


def default_pipeline() -> Any:
    """The offline default model: the embedded toy world's trained model, shipped in the package (loaded once
    per process and shared by every env that uses it)."""
    from ..toy.model import load_toy_pipeline

    return load_toy_pipeline()


def is_toy_pipeline(pipeline: Any) -> bool:
    """Whether ``pipeline`` names a shipped toy-world model (``None`` is the default one)."""
    from ..toy.model import TOY_PIPELINES

    return pipeline is None or (isinstance(pipeline, str) and pipeline in TOY_PIPELINES)


@dataclass(frozen=True)
class WorldDefaults:
    """What the env uses when the user leaves it unset: the reward, the query set (None: the user passes
    queries) and the guidance scale (None: the pipeline family's own default, SD 7.5, SDXL 5.0, SD3 7.0,
    FLUX 3.5)."""

    reward: str
    prompts: str | None
    guidance_scale: float | None


def world_defaults(pipeline: Any) -> WorldDefaults:
    """The toy world's reward, queries and guidance for its models; otherwise a weight-free reward, no query
    set and the family's guidance."""
    if is_toy_pipeline(pipeline):
        from ..toy.model import TOY_GUIDANCE_SCALE

        return WorldDefaults("toy_alignment", "toy-user-train", TOY_GUIDANCE_SCALE)
    return WorldDefaults("jpeg_compressibility", None, None)


def as_dtype(torch_dtype: Any) -> torch.dtype | None:
    """A ``torch.dtype`` from a dtype or its name (``"bfloat16"``); None stays None."""
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    dtype = getattr(torch, str(torch_dtype), None)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            "torch_dtype must be a torch.dtype (e.g. torch.float16) or the name of one ('bfloat16'); "
            f"got {torch_dtype!r}."
        )
    return dtype


def resolve_pipeline(pipeline: Any, device: Any, torch_dtype: Any, local_files_only: bool | None) -> Any:
    """The pipeline object, loaded when named, on ``device`` in ``torch_dtype`` when either is given.

    A pipeline object is moved in place by ``pipeline.to(device=..., dtype=...)`` (every component, so none is
    left behind on another device or dtype); a shipped toy model is shared by every env of the process, so a
    private copy of it is converted instead.
    """
    torch_dtype = as_dtype(torch_dtype)
    shared = getattr(pipeline, "_promptloop_shared_folder", None)
    if is_toy_pipeline(pipeline) or shared is not None:
        from ..toy.model import TOY_PIPELINES, load_toy_pipeline

        folder = shared or TOY_PIPELINES[pipeline or "toy"]
        pipeline = load_toy_pipeline(folder)
        if torch_dtype is not None and pipeline.dtype != torch_dtype:
            pipeline = load_toy_pipeline(folder, cache=False)  # never convert the instance other envs share
    elif isinstance(pipeline, (str, os.PathLike)):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        pipeline = load_pipeline(pipeline, torch_dtype=torch_dtype, device=device, local_files_only=local_files_only)
        device = torch_dtype = None
    elif not callable(getattr(pipeline, "to", None)) or not hasattr(pipeline, "components"):
        raise TypeError(
            "pipeline must be a diffusers pipeline object, a folder written by save_pretrained, a model id in the "
            f"local Hugging Face cache, or None (the toy model); got {type(pipeline).__name__}."
        )
    if device is not None or torch_dtype is not None:
        pipeline = pipeline.to(device=device, dtype=torch_dtype)
    return pipeline


def scheduler_from_name(name: str, template: Any) -> Any:
    """A diffusers scheduler by short name (``ddim``, ``euler``, ``dpm++``) from ``template``'s config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    classes = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm++": DPMSolverMultistepScheduler}
    if name not in classes:
        raise ValueError(f"Unknown scheduler {name!r}; expected one of {', '.join(map(repr, classes))}.")
    extra = {"algorithm_type": "dpmsolver++"} if name == "dpm++" else {}
    return classes[name].from_config(template.config, **extra)
