"""The backend protocol: what the engine needs from a diffusion family, and nothing of Gymnasium."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class Trajectory:
    """The state of a batch of N sampling trajectories that advance in lockstep.

    Attributes:
        latents: the current noisy latents ``x_t``, ``[N, C, h, w]``, in the scheduler's own scaling.
        timesteps: every timestep of the sampling pass, one denoiser call each.
        step: how many denoising steps are done (the index into ``timesteps`` of the next one).
        x0: the clean estimate from the latest denoiser call (``None`` before the first), ``[N, C, h, w]``.
        scheduler: this trajectory's own scheduler instance (schedulers are stateful).
        generators: one ``torch.Generator`` per row, for stochastic schedulers.
        extra: family-specific state.
    """

    latents: torch.Tensor
    timesteps: torch.Tensor
    scheduler: Any
    generators: list[torch.Generator]
    step: int = 0
    x0: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


@runtime_checkable
class Backend(Protocol):
    """A diffusion family behind the five calls the engine makes.

    A backend owns the pipeline's components and its sampling settings (guidance, negative prompt, image
    size); the engine owns the loop between refinement points.
    """

    pipeline: Any
    device: torch.device

    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one initial latent for the configured image size."""
        ...

    def fit_prompt(self, prompt: str) -> tuple[str, bool]:
        """Cut ``prompt`` to the text encoder's token limit; return it and whether it was cut."""
        ...

    def encode(self, prompts: list[str]) -> Any:
        """Conditioning for a batch of prompts (cached by prompt string)."""
        ...

    def start(self, noise: torch.Tensor, generators: list[torch.Generator]) -> Trajectory:
        """A new trajectory from unit-variance initial noise ``[N, C, h, w]``."""
        ...

    def denoise(self, traj: Trajectory, cond: Any, steps: int) -> None:
        """Advance ``traj`` by ``steps`` denoiser calls under ``cond``; keep the last call's x̂0."""
        ...

    def predict_x0(self, traj: Trajectory) -> torch.Tensor:
        """The latest clean estimate (no extra denoiser call)."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (in the trajectory's scaling) -> images ``[N, 3, H, W]`` in ``[0, 1]``."""
        ...


# -- helpers the families share ---------------------------------------------------------------------------


class LatentBackend:
    """What every family's backend does alike: hand out the clean estimate its last denoiser call kept, and decode
    latents with its VAE (:func:`vae_decode`). Backends set ``self.vae``."""

    vae: Any

    def predict_x0(self, traj: Trajectory) -> torch.Tensor:
        """The latest clean estimate (no extra denoiser call)."""
        if traj.x0 is None:
            raise RuntimeError("No clean estimate yet: the trajectory has not taken a denoising step.")
        return traj.x0

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[N, C, h, w]`` (in the diffusion model's scaling) -> images ``[N, 3, H, W]`` in ``[0, 1]``."""
        return vae_decode(self.vae, latents)


class PromptCache:
    """Per-prompt text encodings, least recently used dropped beyond ``size``.

    ``encode_batch(prompts)`` returns a tuple of tensors with one row per prompt (for example the hidden
    states ``[n, L, D]`` and a pooled embedding ``[n, P]``); calling the cache returns the same tuple for any
    list of prompts, encoding only the ones it has not seen.
    """

    def __init__(self, encode_batch: Callable[[list[str]], tuple[torch.Tensor, ...]], size: int = 4096) -> None:
        self.encode_batch = encode_batch
        self.size = int(size)
        self._rows: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, ...]:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._rows]
        if missing:
            parts = self.encode_batch(missing)
            for i, prompt in enumerate(missing):
                self._rows[prompt] = tuple(part[i] for part in parts)
        rows = []
        for prompt in prompts:
            self._rows.move_to_end(prompt)
            rows.append(self._rows[prompt])
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)
        return tuple(torch.stack(column) for column in zip(*rows, strict=True))


def fit_to_limit(prompt: str, fits: Callable[[str], bool]) -> tuple[str, bool]:
    """The longest prefix of ``prompt`` for which ``fits`` holds (ending on a word when one is close), and
    whether it was cut."""
    if fits(prompt):
        return prompt, False
    lo, hi = 0, len(prompt)  # invariant: prompt[:lo] fits, prompt[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(prompt[:mid]):
            lo = mid
        else:
            hi = mid
    cut = prompt[:lo]
    space = cut.rfind(" ")
    if space > 0 and lo - space < 24:
        cut = cut[:space]
    return cut.rstrip(), True


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` with the tokenizer's special tokens, untruncated."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids)


def module_components(pipeline: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's ``torch.nn.Module`` components that hold parameters, by name."""
    components = getattr(pipeline, "components", {}) or {}
    return {
        name: module
        for name, module in components.items()
        if isinstance(module, torch.nn.Module) and next(module.parameters(), None) is not None
    }


def check_devices(pipeline: Any) -> None:
    """Raise when the pipeline's components sit on different devices (which would fail or, with some
    kernels, silently copy every step); pipelines under accelerate offloading hooks are left to the hooks.

    Raises:
        ValueError: listing each component's device and how to fix it.
    """
    modules = module_components(pipeline)
    if any(hasattr(m, "_hf_hook") for m in modules.values()):
        return
    devices = {name: next(m.parameters()).device for name, m in modules.items()}
    if len({(d.type, d.index if d.type != "cpu" else None) for d in devices.values()}) > 1:
        listing = ", ".join(f"{name}: {device}" for name, device in devices.items())
        raise ValueError(
            f"The pipeline's components are on different devices ({listing}); expected all on one device. "
            "Move the pipeline with `pipeline.to(device)` or pass `device=` to the environment."
        )


def vae_decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents in the diffusion model's scaling -> images ``[N, 3, H, W]`` in ``[0, 1]``, as the pipelines do:
    ``latents * std / scaling + mean`` when the VAE has per-channel statistics, else
    ``latents / scaling_factor + shift_factor``; a float16 VAE marked ``force_upcast`` decodes in float32."""
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        c = latents.shape[1]
        mean = torch.tensor(mean).view(1, c, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(std).view(1, c, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / config.scaling_factor + mean
    else:
        latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    upcast = vae.dtype == torch.float16 and getattr(config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        parameter = next(vae.parameters())
        image = vae.decode(latents.to(device=parameter.device, dtype=parameter.dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
    return (image.float() / 2 + 0.5).clamp(0, 1)
