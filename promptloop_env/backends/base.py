"""The backend protocol: what the engine needs from a diffusion family, and nothing of Gymnasium."""

from __future__ import annotations

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
