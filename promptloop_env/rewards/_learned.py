"""What the learned rewards share: finding weights, reading them, devices, input checks, batching, the MLP head.

Nothing heavy is imported at module level: ``transformers`` and ``huggingface_hub`` are imported when a learned
reward is built, so ``import promptloop_env`` stays light and a missing package is reported by the reward that
needs it, with the extra to install and the model it was loading.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "EXTRA",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "LearnedReward",
    "RatingHead",
    "hub_file",
    "load_state_dict",
    "load_pretrained",
    "require",
    "resolve_device",
    "resolve_dtype",
]

#: The pip extra that installs what the learned rewards import beyond the core dependencies.
EXTRA = 'pip install "promptloop[rewards]"'

#: The image normalisation of OpenAI's CLIP, which BLIP, open_clip's LAION models and PickScore reuse.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def require(module: str, reward: str, model_id: str) -> Any:
    """Import ``module`` for ``reward``, or say which extra installs it and which model the reward loads.

    Raises:
        ImportError: naming the reward, the model id, the missing package and the pip command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"Reward {reward!r} (model {model_id}) needs the package {module.split('.')[0]!r}, which is not "
            f"installed: {EXTRA}"
        ) from err


def _offline() -> bool:
    hub = require("huggingface_hub.constants", "learned rewards", "any")
    return bool(hub.HF_HUB_OFFLINE)


def _missing(reward: str, repo_id: str, filename: str | None, err: BaseException | None = None) -> FileNotFoundError:
    what = f"{filename!r} of the Hugging Face model {repo_id!r}" if filename else f"the Hugging Face model {repo_id!r}"
    where = " (HF_HUB_OFFLINE is set, so only the local cache is read)" if _offline() else ""
    command = f"hf download {repo_id}" + (f" {filename}" if filename else "")
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return FileNotFoundError(
        f"Reward {reward!r} needs {what}, which is not available{where}{detail}. Make it available with "
        f"`{command}` on a machine with access to the Hub (it lands in the Hugging Face cache), or pass the "
        f"path of a local copy."
    )


def _not_local(reward: str, repo_or_path: str | os.PathLike) -> None:
    """A Hub id is ``name`` or ``namespace/name``; anything else that does not exist is a wrong local path."""
    text = str(repo_or_path)
    if os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        raise FileNotFoundError(f"Reward {reward!r}: no file or folder at {text!r} (and it is not a Hub model id).")


def hub_file(reward: str, repo_or_path: str | os.PathLike, filename: str) -> Path:
    """The local path of ``filename``: inside ``repo_or_path`` if that is a folder, the file itself if it is one,
    else from the Hugging Face cache (downloaded only when ``HF_HUB_OFFLINE`` is unset).

    Raises:
        FileNotFoundError: naming the model id, the file and the ``hf download`` command that fetches it.
    """
    path = Path(repo_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / filename).is_file():
            return path / filename
        raise FileNotFoundError(f"Reward {reward!r}: no {filename!r} in the folder {str(path)!r}.")
    _not_local(reward, repo_or_path)
    hub = require("huggingface_hub", reward, str(repo_or_path))
    try:
        return Path(hub.hf_hub_download(str(repo_or_path), filename, local_files_only=_offline()))
    except (OSError, ValueError) as err:  # huggingface_hub's not-found errors derive from these
        raise _missing(reward, str(repo_or_path), filename, err) from err


def load_pretrained(reward: str, loader: Callable[..., Any], repo_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``loader(repo_or_path, local_files_only=..., **kwargs)`` (a ``from_pretrained``), with the reward's error
    when the model is neither a local folder nor in the cache."""
    local = Path(repo_or_path).is_dir()
    if not local:
        _not_local(reward, repo_or_path)
    try:
        return loader(str(repo_or_path), local_files_only=local or _offline(), **kwargs)
    except OSError as err:
        if local:
            raise
        raise _missing(reward, str(repo_or_path), None, err) from err


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors, or a torch pickle read with ``weights_only=True`` (never
    arbitrary code). A ``{"state_dict": ...}`` wrapper and a DataParallel ``module.`` prefix are removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{str(path)!r} holds objects other than tensors, which are not loaded (weights_only=True, so that a "
                f"checkpoint cannot run code). Save its state dict alone, or as safetensors, and pass that file."
            ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` (a ``torch.dtype`` or its name), or float16 on a GPU and float32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
            raise ValueError(f"dtype {dtype!r} is not a floating-point torch dtype (float32, float16, bfloat16).")
        return resolved
    return dtype


class RatingHead(nn.Module):
    """The linear MLP of the LAION improved aesthetic predictor, which ImageReward reuses as its head.

    ``Linear(d, 1024) -> Linear(1024, 128) -> Linear(128, 64) -> Linear(64, 16) -> Linear(16, 1)`` with dropout
    between the first four (no nonlinearity: the upstream ReLUs are commented out). The dropouts keep the
    upstream state-dict keys (``layers.0``, ``layers.2``, ``layers.4``, ``layers.6``, ``layers.7``); in eval mode
    they do nothing.
    """

    def __init__(self, input_size: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, d] -> [N]``."""
        return self.layers(features).squeeze(-1)


def check_images(reward: str, images: Any, queries: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``images`` as ``uint8 [N, H, W, 3]`` and ``queries`` as ``N`` strings, or a clear error."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"Reward {reward!r} takes images of shape [N, H, W, 3]; got shape {array.shape}.")
    if array.dtype != np.uint8:
        raise TypeError(f"Reward {reward!r} takes uint8 images (0..255); got dtype {array.dtype}.")
    if isinstance(queries, str):
        raise TypeError(f"Reward {reward!r} takes a list of N queries, not a single string.")
    queries = list(queries)
    if len(queries) != len(array) or not all(isinstance(q, str) for q in queries):
        raise ValueError(
            f"Reward {reward!r} needs one query string per image: {len(array)} images, {len(queries)} queries."
        )
    return array, queries


class LearnedReward:
    """A frozen reward model scoring ``uint8 [N, H, W, 3]`` images against their queries, in batches.

    Subclasses set ``name`` and implement ``_score(images, queries) -> torch.Tensor [n]`` for one batch; this
    class checks the inputs, runs the batches under ``torch.inference_mode`` and returns ``float64 [N]``. The
    registry wraps it in its output checks (shape, finiteness), as it does every reward.

    Args:
        device: where the model runs (default: the GPU when there is one, else the CPU).
        dtype: the model's dtype (default: float16 on a GPU, float32 on the CPU); heads run in float32.
        batch_size: images per forward pass.
    """

    name = "learned"
    #: the model id a user would look up, for ``repr`` and errors
    model_id = ""

    def __init__(
        self, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, batch_size: int = 16
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)

    def _place(self, module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
        """``module`` frozen, in eval mode (no dropout), on the reward's device and dtype."""
        module.requires_grad_(False)
        return module.to(device=self.device, dtype=dtype or self.dtype).eval()

    def _score(self, images: np.ndarray, queries: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: np.ndarray, queries: list[str]) -> np.ndarray:
        images, queries = check_images(self.name, images, queries)
        scores = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                scores.append(self._score(images[start:stop], queries[start:stop]).float().cpu())
        if not scores:
            return np.zeros(0, dtype=np.float64)
        return torch.cat(scores).numpy().astype(np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r}, device={str(self.device)!r}, dtype={self.dtype})"


def pixel_values(processor: Any, images: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``images`` through a transformers image processor (resize, crop, rescale, normalise) as a tensor."""
    out = processor(images=list(images), return_tensors="pt")["pixel_values"]
    return out.to(device=device, dtype=dtype)


def clip_image_processor(size: int, **kwargs: Any) -> Any:
    """A CLIP image processor: shortest side to ``size`` (bicubic), centre crop ``size``, OpenAI mean and std."""
    transformers = require("transformers", "learned rewards", "any")
    return transformers.CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        resample=3,  # PIL bicubic, as the upstream torchvision Resize
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        **kwargs,
    )


def features(output: Any) -> torch.Tensor:
    """The projected embedding of ``get_image_features``/``get_text_features`` (a tensor in transformers 4,
    an output with ``pooler_output`` in transformers 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def clip_embeddings(model: Any, tokenizer: Any, images: torch.Tensor, queries: list[str]) -> tuple[torch.Tensor, ...]:
    """L2-normalised float32 image and text embeddings of a transformers ``CLIPModel``."""
    length = model.config.text_config.max_position_embeddings
    text = tokenizer(queries, padding=True, truncation=True, max_length=length, return_tensors="pt").to(images.device)
    image_embeds = features(model.get_image_features(pixel_values=images)).float()
    text_embeds = features(
        model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    ).float()
    return (torch.nn.functional.normalize(image_embeds, dim=-1), torch.nn.functional.normalize(text_embeds, dim=-1))
