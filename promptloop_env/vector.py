"""``PromptLoopVectorEnv``: N sampling trajectories in one batch (the engine with N > 1).

Sub-envs advance in lockstep: every denoising step is one denoiser call for the whole batch, each row under
its own prompt. Because they share one loop, all sub-envs of an episode share its refinement points (with
``schedule="random"`` the points are drawn from sub-env 0's generator, so sub-env 0 matches a single env with
the same seed) and all episodes end together. Autoreset is gymnasium's ``NEXT_STEP`` mode: the ``step`` after
the one that terminated the episode starts new episodes (its actions are ignored).

Sub-env i matches a single env seeded ``seed + i`` up to floating-point rounding: the same prompts and
refinement points, final images to 1e-5, previews (uint8) within one level, since batched convolutions sum
in another order (see ``docs/concepts.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .env import _as_latents, _check_options, _check_seed, _Episodes

__all__ = ["PromptLoopVectorEnv"]


class PromptLoopVectorEnv(_Episodes, VectorEnv):
    """N PromptLoop trajectories advanced together; see :class:`~promptloop_env.env.PromptLoopEnv` for the
    arguments, spaces and rewards, which are the same per sub-env.

    Observations are batched: ``preview`` is ``uint8 [N, H, W, 3]``, ``progress`` ``float32 [N, 1]``, and the
    text fields are tuples of N strings; actions are a sequence of N strings. Infos are gymnasium's vector
    infos (a key per field, with ``_key`` masks).
    """

    metadata: dict[str, Any] = {
        "render_modes": ["rgb_array", "rgb_array_list"],
        "render_fps": 2,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        pipeline: Any = None,
        num_inference_steps: int = 20,
        num_refinements: int = 5,
        schedule: str | Sequence[int] = "uniform",
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        preview: str | Callable[..., np.ndarray] = "full",
        preview_size: int | tuple[int, int] | None = None,
        reward: Any = None,
        prompts: Any = None,
        scheduler: str | None = None,
        render_mode: str | None = None,
        device: Any = None,
        torch_dtype: Any = None,
        local_files_only: bool | None = None,
        profile: bool = False,
        text_cache_size: int | None = None,
        check_memory: bool = True,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1; got {num_envs!r}.")
        self.num_envs = int(num_envs)
        self._setup(
            num_envs=self.num_envs,
            pipeline=pipeline,
            num_inference_steps=num_inference_steps,
            num_refinements=num_refinements,
            schedule=schedule,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            preview=preview,
            preview_size=preview_size,
            reward=reward,
            prompts=prompts,
            scheduler=scheduler,
            render_mode=render_mode,
            device=device,
            torch_dtype=torch_dtype,
            local_files_only=local_files_only,
            profile=profile,
            text_cache_size=text_cache_size,
            check_memory=check_memory,
        )
        self.single_observation_space = self._single_observation_space
        self.single_action_space = self._single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._autoreset = False

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start N episodes. ``seed``: an int (sub-env i gets ``seed + i``) or one seed per sub-env.
        ``options``: ``"query"`` (a str for all, or N strings) and ``"latents"`` (``[N, C, h, w]``)."""
        if seed is not None:
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
                seeds = [_check_seed(seed) + i for i in range(self.num_envs)]
            elif isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str):
                seeds = [_check_seed(s) for s in seed]
            else:
                raise TypeError(f"seed must be an int, one int per sub-env, or None; got {type(seed).__name__}.")
            if len(seeds) != self.num_envs:
                raise ValueError(f"Got {len(seeds)} seeds for {self.num_envs} sub-envs.")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
            self._np_random, self._np_random_seed = self._rngs[0], seeds[0]
        options = _check_options(options)
        queries = options.get("query")
        if queries is None or isinstance(queries, str):
            queries = [queries] * self.num_envs
        if not isinstance(queries, (Sequence, np.ndarray)):
            raise TypeError(
                f"options['query'] must be a str or a sequence of {self.num_envs} str; got {type(queries).__name__}."
            )
        if len(queries) != self.num_envs:
            raise ValueError(f"options['query'] has {len(queries)} queries for {self.num_envs} sub-envs.")
        latents = options.get("latents")
        if latents is not None:
            latents = _as_latents(latents)
            if latents.ndim != 4 or len(latents) != self.num_envs:
                raise ValueError(f"options['latents'] has {len(latents)} rows for {self.num_envs} sub-envs.")
        starts = [
            self._start(rng, q, None if latents is None else latents[i])
            for i, (rng, q) in enumerate(zip(self._rngs, queries, strict=True))
        ]
        result = self.engine.reset(
            [s[0] for s in starts],
            torch.cat([s[1] for s in starts]),
            [s[2] for s in starts],
            starts[0][3],  # one denoising loop: every sub-env uses sub-env 0's refinement points
        )
        self._autoreset = False
        self._frames = [[] for _ in range(self.num_envs)]
        self._record(result)
        return self._batch(self._observations(result)), self._batch_infos(self._infos(result))

    def step(self, actions: Sequence[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not isinstance(actions, (Sequence, np.ndarray)) or isinstance(actions, str) or len(actions) != self.num_envs:
            raise TypeError(
                f"actions must be a list or tuple of {self.num_envs} str prompts (one per sub-env, in order); got "
                f"{type(actions).__name__}: {actions!r:.80}."
            )
        for i, action in enumerate(actions):
            if not isinstance(action, str):
                raise TypeError(f"Sub-env {i}'s action must be a str (the new prompt); got {type(action).__name__}.")
        zeros = np.zeros(self.num_envs, dtype=bool)
        if self._autoreset:  # NEXT_STEP autoreset: this step starts the next episodes
            obs, infos = self.reset()
            return obs, np.zeros(self.num_envs), zeros, zeros.copy(), infos
        if self.engine.done:
            raise ResetNeeded("The episodes have not started: call reset() before step().")
        result = self.engine.refine(list(actions))
        self._record(result)
        if result.done:
            self._autoreset = True
            rewards = result.rewards.astype(np.float64)
        else:
            rewards = np.zeros(self.num_envs)
        terminated = np.full(self.num_envs, result.done)
        return (
            self._batch(self._observations(result)),
            rewards,
            terminated,
            zeros,
            self._batch_infos(self._infos(result)),
        )

    def render(self) -> tuple[Any, ...] | None:
        if self.render_mode == "rgb_array":
            return tuple(frames[-1] if frames else None for frames in self._frames)
        if self.render_mode == "rgb_array_list":
            out = tuple(self._frames)
            self._frames = [[] for _ in range(self.num_envs)]
            return out
        return None

    def _batch(self, observations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "preview": np.stack([o["preview"] for o in observations]),
            "query": tuple(o["query"] for o in observations),
            "prompt": tuple(o["prompt"] for o in observations),
            "progress": np.stack([o["progress"] for o in observations]),
        }

    def _batch_infos(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, info in enumerate(infos):
            out = self._add_info(out, info, i)
        return out
