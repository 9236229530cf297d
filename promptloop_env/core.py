"""The engine: a batch of N sampling trajectories advanced from one refinement point to the next.

The single environment is this engine with N = 1 and the vector environment is the same engine with N > 1;
neither adds sampling logic of its own. The engine knows nothing of Gymnasium spaces: it takes strings and
noise, and returns previews, prompts, rewards and the final images.
"""

from __future__ import annotations

import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .backends.base import Backend, Trajectory
from .previews import to_uint8
from .rewards import Reward

__all__ = ["Engine", "MAX_PROMPT_CHARS", "Refinement", "sanitize_prompt"]

#: The action space's documented maximum prompt length in characters. Longer strings are still accepted
#: (and cut to the text encoder's token limit, which is usually the tighter bound).
MAX_PROMPT_CHARS = 1024


def sanitize_prompt(text: str) -> str:
    """Remove control and other non-printing characters; line breaks and tabs become spaces.

    Raises:
        TypeError: when ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"A prompt must be a str; got {type(text).__name__}: {text!r:.80}.")
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\x0b\x0c\x85\u2028\u2029":
            out.append(" ")
        elif category[0] == "C":  # Cc control, Cf format, Cs surrogate, Co private use, Cn unassigned
            continue
        else:
            out.append(ch)
    return "".join(out).strip()


@dataclass
class Refinement:
    """What the engine returns at a refinement point (or at the end of sampling).

    Attributes:
        previews: ``uint8 [N, H, W, 3]``: x̂0 at this point (the final image's preview when ``done``).
        prompts: the prompt in force for each row (the query before the first action).
        progress: ``float32 [N]``: fraction of denoising steps done.
        done: whether sampling has finished (then ``images``, ``rewards`` and ``components`` are set).
        truncated: per row, whether the action just taken was cut to the text encoder's limit.
        images: final ``uint8 [N, H, W, 3]`` images (``done`` only).
        rewards: ``float [N]`` terminal rewards against the queries (``done`` only).
        components: named reward parts, ``{name: float [N]}`` (``done`` only).
    """

    previews: np.ndarray
    prompts: list[str]
    progress: np.ndarray
    done: bool = False
    truncated: list[bool] = field(default_factory=list)
    images: np.ndarray | None = None
    rewards: np.ndarray | None = None
    components: dict[str, np.ndarray] = field(default_factory=dict)


class Engine:
    """Runs N trajectories of one backend, pausing at each refinement point for N new prompts.

    Args:
        backend: the diffusion family's :class:`~promptloop_env.backends.Backend`.
        preview: callable ``latents -> uint8 [N, H, W, 3]`` (see :mod:`promptloop_env.previews`).
        preview_size: ``(H, W)`` of the previews (used for the blank preview of a point at step 0).
        reward: a :class:`~promptloop_env.rewards.Reward`.
        profile: synchronise the device around each timed part so that :attr:`timings` is exact on GPUs.

    Attributes:
        timings: seconds spent per part since construction: ``denoiser`` (UNet calls and scheduler steps),
            ``text_encoder``, ``preview``, ``decode`` (the final image), ``reward``, ``total`` (all engine calls).
    """

    def __init__(
        self,
        backend: Backend,
        preview: Any,
        preview_size: tuple[int, int],
        reward: Reward,
        profile: bool = False,
    ) -> None:
        self.backend = backend
        self.preview = preview
        self.preview_size = tuple(preview_size)
        self.reward = reward
        self.profile = profile
        self.timings: dict[str, float] = dict.fromkeys(
            ("denoiser", "text_encoder", "preview", "decode", "reward", "total"), 0.0
        )
        self.traj: Trajectory | None = None
        self.queries: list[str] = []
        self.prompts: list[str] = []
        self.refinement_steps: list[int] = []
        self.history: list[list[str]] = []
        self.num_actions = 0
        self.done = True
        self.final_images: torch.Tensor | None = None  # float [N, 3, H, W] in [0, 1], for exact comparisons

    # -- helpers ------------------------------------------------------------------------------------------

    @contextmanager
    def _timed(self, part: str):
        if self.profile and self.backend.device.type == "cuda":
            torch.cuda.synchronize(self.backend.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.profile and self.backend.device.type == "cuda":
                torch.cuda.synchronize(self.backend.device)
            self.timings[part] += time.perf_counter() - start

    def _advance(self, prompts: list[str], until: int) -> None:
        traj = self.traj
        assert traj is not None
        steps = until - traj.step
        if steps <= 0:
            return
        with self._timed("text_encoder"):
            cond = self.backend.encode(prompts)
        with self._timed("denoiser"):
            self.backend.denoise(traj, cond, steps)
        if not torch.isfinite(traj.latents).all():
            rows = (~torch.isfinite(traj.latents.flatten(1)).all(1)).nonzero().flatten().tolist()
            raise FloatingPointError(
                f"Non-finite values (NaN or inf) in the latents of rows {rows} after denoising step "
                f"{traj.step - 1} of {traj.num_steps}. This is a numerical failure of the diffusion model or "
                "scheduler (often float16 overflow, or NaN initial latents); try float32 or another scheduler."
            )

    def _observe(self) -> np.ndarray:
        traj = self.traj
        assert traj is not None
        with self._timed("preview"):
            if traj.x0 is None:  # a refinement point at step 0: nothing has been denoised yet
                return np.zeros((len(traj.latents), *self.preview_size, 3), dtype=np.uint8)
            return self.preview(self.backend.predict_x0(traj))

    def _progress(self) -> np.ndarray:
        traj = self.traj
        assert traj is not None
        return np.full(len(traj.latents), traj.step / traj.num_steps, dtype=np.float32)

    def conditioning_texts(self, prompts: list[str]) -> tuple[list[str], list[bool]]:
        """Sanitise prompts and cut them to the text encoder's limit; return them and the cut flags."""
        texts, cuts = [], []
        for prompt in prompts:
            text = sanitize_prompt(prompt)
            over = len(text) > MAX_PROMPT_CHARS
            text, cut = self.backend.fit_prompt(text[:MAX_PROMPT_CHARS])
            texts.append(text)
            cuts.append(over or cut)
        return texts, cuts

    # -- the two calls ------------------------------------------------------------------------------------

    def reset(
        self,
        queries: list[str],
        noise: torch.Tensor,
        generators: list[torch.Generator],
        schedule: list[int],
    ) -> Refinement:
        """Start N trajectories from ``noise`` (unit variance, ``[N, C, h, w]``) and run them under their
        queries up to the first refinement point of ``schedule``."""
        start = time.perf_counter()
        if len(queries) != len(noise) or len(generators) != len(noise):
            raise ValueError(
                f"Got {len(queries)} queries, {len(generators)} generators and {len(noise)} latents; "
                "expected one of each per trajectory."
            )
        expected = self.backend.latent_shape()
        if tuple(noise.shape[1:]) != tuple(expected):
            raise ValueError(
                f"Initial latents have shape {tuple(noise.shape[1:])} per trajectory; this model expects "
                f"{tuple(expected)} (channels, height / VAE factor, width / VAE factor)."
            )
        if not torch.isfinite(noise).all():
            raise ValueError("The initial latents contain NaN or inf; expected finite Gaussian noise.")
        # The query is the user's, whole: the observation and the reward get it sanitised (and at most
        # MAX_PROMPT_CHARS long); only the text that conditions the denoiser is cut to the encoder's limit.
        whole = [sanitize_prompt(q)[:MAX_PROMPT_CHARS] for q in queries]
        check = getattr(self.reward, "check_queries", None)
        if check is not None:  # a query the reward cannot grade fails now, not after all the denoising
            check(whole)
        self.queries = whole
        self.prompts, cut = self.conditioning_texts(queries)
        self.refinement_steps = list(schedule)
        self.history = [[] for _ in queries]
        self.num_actions = 0
        self.done = False
        self.final_images = None
        self.traj = self.backend.start(noise, generators)
        if self.refinement_steps[-1] >= self.traj.num_steps:
            raise ValueError(
                f"Refinement point {self.refinement_steps[-1]} is past the last denoising step "
                f"({self.traj.num_steps - 1})."
            )
        self._advance(self.prompts, self.refinement_steps[0])
        result = Refinement(self._observe(), list(self.prompts), self._progress(), truncated=cut)
        self.timings["total"] += time.perf_counter() - start
        return result

    def refine(self, prompts: list[str]) -> Refinement:
        """Put ``prompts`` in force (one per row) and run to the next refinement point or to the end.

        Raises:
            RuntimeError: if sampling has finished or not started (call ``reset``).
            TypeError: if a prompt is not a ``str``.
        """
        start = time.perf_counter()
        if self.done or self.traj is None:
            raise RuntimeError("The episode has ended (or never started): call reset() before step().")
        if len(prompts) != len(self.prompts):
            raise ValueError(f"Got {len(prompts)} prompts for {len(self.prompts)} trajectories.")
        self.prompts, truncated = self.conditioning_texts(list(prompts))
        for row, prompt in zip(self.history, self.prompts, strict=True):
            row.append(prompt)
        self.num_actions += 1
        last = self.num_actions == len(self.refinement_steps)
        until = self.traj.num_steps if last else self.refinement_steps[self.num_actions]
        self._advance(self.prompts, until)
        if not last:
            result = Refinement(self._observe(), list(self.prompts), self._progress(), truncated=truncated)
        else:
            result = self._finish(truncated)
        self.timings["total"] += time.perf_counter() - start
        return result

    def _finish(self, truncated: list[bool]) -> Refinement:
        traj = self.traj
        assert traj is not None
        self.done = True
        with self._timed("decode"):
            images = self.backend.decode(traj.latents)
            self.final_images = images
            images_u8 = to_uint8(images)
        with self._timed("preview"):
            final = getattr(self.preview, "final", None)  # built-in previews reuse the decoded image
            previews = final(images, traj.latents) if final else self.preview(traj.latents)
        with self._timed("reward"):
            components = self.reward.components(images_u8, self.queries)
            rewards = self.reward.total(components)
        return Refinement(
            previews,
            list(self.prompts),
            self._progress(),
            done=True,
            truncated=truncated,
            images=images_u8,
            rewards=np.asarray(rewards, dtype=np.float64),
            components=components,
        )
