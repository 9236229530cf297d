"""``PromptLoop-v0``: one text-to-image sampling trajectory as a Gymnasium environment (the engine with N = 1)."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from PIL import Image

from ._quiet import quiet_loading
from .backends import make_backend
from .backends.resolve import default_pipeline, resolve_pipeline, scheduler_from_name, world_defaults
from .core import MAX_PROMPT_CHARS, Engine, Refinement
from .previews import make_preview
from .prompts import make_prompt_source
from .rewards import make_reward
from .schedules import draw_schedule, validate_schedule

__all__ = ["PRINTABLE", "PromptLoopEnv", "PromptText", "default_pipeline"]

#: The Text spaces' sampling charset: printable ASCII without the control whitespace (tabs, line breaks).
PRINTABLE = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")


_LINE_BREAKS = "\t\n\r\x0b\x0c\x85\u2028\u2029"


class PromptText(spaces.Text):
    """A ``Text`` space of prompts as the env keeps them: any Unicode text without control, format or other
    non-printing characters (what :func:`~promptloop_env.core.sanitize_prompt` leaves), up to ``max_length``
    characters. ``sample()`` draws printable ASCII (``PRINTABLE``); ``contains`` accepts every string the env
    can return, emoji and CJK included, which a charset-bound ``Text`` cannot declare."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=PRINTABLE, seed=seed)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, str)
            and self.min_length <= len(x) <= self.max_length
            and not any(unicodedata.category(c)[0] == "C" or c in _LINE_BREAKS for c in x)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.min_length, self.max_length))

    def __repr__(self) -> str:
        return f"PromptText({self.min_length}, {self.max_length}, printable Unicode)"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, PromptText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )


def _check_timesteps(backend: Any, num_steps: int) -> None:
    """Refuse at construction a step count the scheduler cannot run (e.g. 1000 steps of a 1000-timestep DDIM
    with ``steps_offset=1`` reaches timestep 1000, an IndexError at the first step)."""
    scheduler = getattr(backend, "scheduler", None)
    if scheduler is None or "FlowMatch" in type(scheduler).__name__:
        return  # flow schedulers take their sigmas from the backend; any count of at least 2 works
    probe = type(scheduler).from_config(scheduler.config)
    limit = getattr(scheduler.config, "num_train_timesteps", None)
    try:
        probe.set_timesteps(num_steps)
        ok = limit is None or int(max(probe.timesteps)) < limit
    except Exception as error:  # noqa: BLE001  (the scheduler's own complaint, reworded below)
        ok, limit = False, f"{limit} ({error})"
    if not ok:
        raise ValueError(
            f"num_inference_steps={num_steps} is more than {type(scheduler).__name__} can run over its {limit} "
            "training timesteps (with its timestep spacing and offset); use fewer steps."
        )


def _available_memory() -> float:
    """Bytes of memory available now (Linux ``/proc/meminfo``; elsewhere psutil, else unknown: inf)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        return float("inf")


#: Rough bytes per sub-env that do not depend on the image: gymnasium's per-env spaces and generators.
_PER_ENV_BYTES = 60e3


def _check_memory(num_envs: int, backend: Any, preview_size: tuple[int, int]) -> None:
    """Refuse a batch whose rough peak memory (float images and the VAE decoder's full-resolution activations,
    previews, latents, per-env bookkeeping) exceeds what is available, before anything is allocated."""
    height, width = int(getattr(backend, "height", 0)), int(getattr(backend, "width", 0))
    vae = getattr(getattr(backend, "pipeline", None), "vae", None)
    channels = (getattr(getattr(vae, "config", None), "block_out_channels", None) or (128,))[0]
    itemsize = 4 if getattr(backend, "dtype", torch.float32) == torch.float32 else 2
    per_env = (
        _PER_ENV_BYTES + height * width * (3 * 4 + 3 * channels * itemsize) + 2 * 3 * preview_size[0] * preview_size[1]
    )
    needed, available = num_envs * per_env, _available_memory()
    if needed > 0.9 * available:
        raise MemoryError(
            f"{num_envs} sub-env(s) of {height} x {width} images (previews {preview_size[0]} x {preview_size[1]}) "
            f"need about {needed / 2**30:.1f} GiB at their peak and {available / 2**30:.1f} GiB is available. "
            "Use fewer sub-envs or smaller images, or pass check_memory=False to try anyway."
        )


#: The keys ``reset(options=...)`` understands.
OPTION_KEYS = ("query", "latents")


def _check_options(options: Any) -> dict[str, Any]:
    """``options`` as a dict, or a clear error for a non-mapping or a misspelled key."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"reset(options=...) must be a dict with keys {', '.join(map(repr, OPTION_KEYS))}; got "
            f"{type(options).__name__}: {options!r:.80}."
        )
    unknown = sorted(str(k) for k in options if k not in OPTION_KEYS)
    if unknown:
        raise ValueError(f"Unknown reset option(s) {unknown}; expected {', '.join(map(repr, OPTION_KEYS))}.")
    return dict(options)


def _check_seed(seed: Any) -> int | None:
    """A seed as a Python int (numpy integers accepted), or a clear error."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or None; got {type(seed).__name__}: {seed!r:.80}.")
    return int(seed)


def _as_latents(latents: Any, what: str = "options['latents']") -> torch.Tensor:
    """Initial latents as a float32 tensor, or a clear error for complex, integer, boolean or 0-d input."""
    if isinstance(latents, torch.Tensor):
        tensor = latents
    else:
        array = np.asarray(latents)
        if array.dtype == object:
            raise TypeError(f"{what} must be an array of real numbers; got {type(latents).__name__}.")
        tensor = torch.from_numpy(array)
    if tensor.is_complex() or not tensor.is_floating_point():
        raise TypeError(f"{what} must hold real floating-point noise (float32 Gaussian); got dtype {tensor.dtype}.")
    if tensor.ndim < 3:
        raise ValueError(f"{what} must be [C, h, w] or [N, C, h, w] noise; got shape {tuple(tensor.shape)}.")
    return tensor.to(torch.float32)


class _Episodes:
    """What the single and the vector env share: building the engine and drawing an episode's start."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "rgb_array_list"], "render_fps": 2}

    def _setup(
        self,
        *,
        num_envs: int,
        pipeline: Any,
        num_inference_steps: int,
        num_refinements: int,
        schedule: str | Sequence[int],
        guidance_scale: float | None,
        negative_prompt: str | None,
        height: int | None,
        width: int | None,
        preview: Any,
        preview_size: int | tuple[int, int] | None,
        reward: Any,
        prompts: Any,
        scheduler: str | None,
        render_mode: str | None,
        device: Any,
        torch_dtype: Any,
        local_files_only: bool | None,
        profile: bool,
        text_cache_size: int | None = None,
        check_memory: bool = True,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Unknown render_mode {render_mode!r}; expected None or one of {self.metadata['render_modes']}."
            )
        self.render_mode = render_mode
        self.num_inference_steps = int(num_inference_steps)
        self.num_refinements = int(num_refinements)
        self.schedule = validate_schedule(schedule, self.num_refinements, self.num_inference_steps)
        world = world_defaults(pipeline)  # the toy world's model, queries and scorer go together
        self._reward = make_reward(reward if reward is not None else world.reward)
        self._prompt_source = make_prompt_source(prompts if prompts is not None else world.prompts)
        with quiet_loading():
            pipe = resolve_pipeline(pipeline, device, torch_dtype, local_files_only)
        if guidance_scale is None:
            guidance_scale = world.guidance_scale
        sampling: dict[str, Any] = dict(
            num_inference_steps=self.num_inference_steps,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
        )
        if scheduler is not None:
            sampling["scheduler"] = scheduler_from_name(scheduler, pipe.scheduler)
        if text_cache_size is not None:
            if not isinstance(text_cache_size, (int, np.integer)) or text_cache_size < 0:
                raise ValueError(
                    f"text_cache_size must be an int >= 0 (prompt encodings kept); got {text_cache_size!r}."
                )
            sampling["cache_size"] = int(text_cache_size)
        for name, value in (("height", height), ("width", width)):
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 8):
                raise ValueError(f"{name} must be an int >= 8 (pixels) or None for the model's default; got {value!r}.")
        with quiet_loading():
            backend = make_backend(pipe, **sampling)
        _check_timesteps(backend, self.num_inference_steps)
        if preview_size is None:
            size = (backend.height, backend.width)
        elif isinstance(preview_size, int):
            size = (preview_size, preview_size)
        else:
            size = (int(preview_size[0]), int(preview_size[1]))
        if min(size) < 1:
            raise ValueError(f"preview_size must be positive; got {preview_size!r}.")
        self.preview_size = size
        if check_memory:
            _check_memory(num_envs, backend, size)
        self.engine = Engine(backend, make_preview(preview, backend, size), size, self._reward, profile=profile)

        text = PromptText(MAX_PROMPT_CHARS)
        self._single_observation_space = spaces.Dict(
            {
                "preview": spaces.Box(0, 255, (*size, 3), np.uint8),
                "query": text,
                "prompt": text,
                "progress": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )
        self._single_action_space = PromptText(MAX_PROMPT_CHARS)
        self._frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline in use."""
        return self.engine.backend.pipeline

    def _start(
        self, rng: np.random.Generator, query: str | None, latents: Any
    ) -> tuple[str, torch.Tensor, torch.Generator, list[int]]:
        """One trajectory's query, initial noise ``[1, C, h, w]``, generator and schedule, all from ``rng``."""
        drawn = self._prompt_source(rng)  # drawn even when options name the query: same random stream
        query = drawn if query is None else query
        if not isinstance(query, str):
            raise TypeError(f"options['query'] must be a str; got {type(query).__name__}.")
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        shape = self.engine.backend.latent_shape()
        if latents is None:
            noise = torch.randn((1, *shape), generator=generator, dtype=torch.float32)
        else:
            noise = torch.as_tensor(latents, dtype=torch.float32)
            if noise.ndim == len(shape):
                noise = noise[None]
        return (
            query,
            noise,
            generator,
            draw_schedule(self.schedule, self.num_refinements, self.num_inference_steps, rng),
        )

    def _infos(self, result: Refinement) -> list[dict[str, Any]]:
        engine = self.engine
        assert engine.traj is not None
        infos = []
        for i in range(len(result.prompts)):
            info: dict[str, Any] = {
                "query": engine.queries[i],
                "step": engine.traj.step,
                "refinement": engine.num_actions,
                "refinement_steps": list(engine.refinement_steps),
            }
            if result.truncated:
                info["prompt_truncated"] = result.truncated[i]
            if result.done:
                assert result.images is not None
                info["image"] = result.images[i]
                info["prompts"] = list(engine.history[i])
                info["reward_components"] = {k: float(v[i]) for k, v in result.components.items()}
            infos.append(info)
        return infos

    def _observations(self, result: Refinement) -> list[dict[str, Any]]:
        return [
            {
                "preview": result.previews[i],
                "query": self.engine.queries[i],
                "prompt": result.prompts[i],
                "progress": result.progress[i : i + 1].copy(),
            }
            for i in range(len(result.prompts))
        ]

    def _record(self, result: Refinement) -> None:
        if self.render_mode is None:
            return
        height, width = self.engine.backend.height, self.engine.backend.width
        for i, frames in enumerate(self._frames):
            frame = result.images[i] if result.done else result.previews[i]
            if frame.shape[:2] != (height, width):
                frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.NEAREST))
            if self.render_mode == "rgb_array":
                frames[:] = [frame]
            else:
                frames.append(frame)


class PromptLoopEnv(_Episodes, gym.Env):
    """
    ## Description

    One reverse-diffusion sampling pass of a frozen text-to-image model, in which an agent may rewrite the
    prompt at ``K`` refinement points (PromptLoop, Lee & Ye, arXiv 2510.00430). An episode draws a query,
    starts from Gaussian noise and denoises under the query until the first refinement point. There the agent
    sees a preview of the clean estimate x̂0 of the current latent and returns a new prompt, which conditions
    every denoising step until the next point; after the K-th action sampling runs to the end and the final
    image is scored against the ORIGINAL query. The denoising loop is the diffusers pipeline's own, so an
    agent that returns the query at every point reproduces ``pipeline(query, latents=...)`` exactly.

    ```python
    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> env = gym.make("PromptLoop-v0", num_inference_steps=10, num_refinements=2)
    >>> obs, info = env.reset(seed=0, options={"query": "a red circle"})
    >>> obs["query"], obs["prompt"], info["refinement_steps"]
    ('a red circle', 'a red circle', [3, 7])
    >>> obs, reward, terminated, truncated, info = env.step("a red circle, bright")
    >>> reward, terminated
    (0.0, False)
    >>> obs, reward, terminated, truncated, info = env.step("a bright red circle on white")
    >>> terminated, info["prompts"], info["image"].shape
    (True, ['a red circle, bright', 'a bright red circle on white'], (32, 32, 3))

    ```

    ## Action Space

    ``Text(max_length=1024, charset=PRINTABLE)``: the new prompt, a full string (not an edit). ``step``
    accepts any ``str``: control characters are removed (line breaks and tabs become spaces), a prompt longer
    than the text encoder's token limit (77 for CLIP) or than 1024 characters is cut and
    ``info["prompt_truncated"]`` is ``True``, and the empty string is the unconditional prompt. A non-``str``
    action raises ``TypeError``.

    ## Observation Space

    ``Dict`` with

    | key        | space                                  | meaning                                          |
    |------------|----------------------------------------|--------------------------------------------------|
    | `preview`  | `Box(0, 255, (H, W, 3), uint8)`        | x̂0 as RGB (`preview=` chooses how; blank at step 0) |
    | `query`    | `Text(1024)`                           | the user's original query                        |
    | `prompt`   | `Text(1024)`                           | the prompt in force (the query before any action) |
    | `progress` | `Box(0, 1, (1,), float32)`             | fraction of the denoising steps done             |

    ``(H, W)`` is ``preview_size`` (default: the image size). Text fields are plain ``str`` in a
    :class:`PromptText` space: any printable Unicode (emoji and CJK are kept as given, the tokenizer decides
    what they mean; control characters are removed), so ``observation_space.contains(obs)`` always holds.

    ## Rewards

    ``0`` on every step but the last; then ``reward(final_image, query)`` of the configured reward: by default
    ``"toy_alignment"`` on the toy model (the fraction of the query's attributes the toy scorer confirms, in
    ``[0, 1]``) and ``"jpeg_compressibility"`` (minus the JPEG size in kB) on any other pipeline.
    ``info["reward_components"]`` has the named parts of a weighted sum.

    ## Starting State

    Gaussian noise from the episode's seed (or ``options["latents"]``), denoised under the query (or
    ``options["query"]``, else one drawn from ``prompts``) up to the first refinement point. The refinement
    points come from ``schedule``: ``"uniform"`` puts K points at ``round(k T / (K + 1))``, ``"random"`` draws
    K distinct steps in ``1..T-1`` per episode (the paper's training), a list gives them explicitly (``0``
    allowed: the agent then acts before sampling, on a blank preview).

    ## Episode End

    The episode terminates after exactly K steps, when sampling is complete. It is never truncated. Stepping
    after the end, or before ``reset``, raises ``gymnasium.error.ResetNeeded``.

    ## Arguments

    * `pipeline`: a diffusers pipeline object, a folder written by ``save_pretrained``, or a model id in the
      local Hugging Face cache, of a supported family (Stable Diffusion 1.x/2.x, SDXL and SDXL-turbo,
      SD3/3.5, FLUX; see ``docs/backends.md``). Default: the embedded toy world's model (a small Stable
      Diffusion trained on the shapes domain, shipped in the package, 32 x 32 images), offline; ``"toy"`` names
      it and ``"toy-b"`` a second toy model of the same world (another seed, a narrower UNet: the toy world's
      unseen backbone).
    * `num_inference_steps` (20): T, denoiser calls per image. `num_refinements` (5): K, actions per episode.
    * `schedule` (``"uniform"``): ``"uniform"``, ``"random"`` or a list of K step indices.
    * `guidance_scale`, `negative_prompt` (None): classifier-free guidance as in diffusers (default: the
      pipeline's own, 7.5 for Stable Diffusion, 5.0 SDXL, 7.0 SD3, 3.5 FLUX's distilled guidance; 3.0 on the
      toy model, whose images saturate and break up at higher guidance). ``<= 1`` turns guidance off (no
      negative pass), as SDXL-turbo needs.
    * `height`, `width`: image size (default: the model's). `scheduler`: ``None`` (the pipeline's own),
      ``"ddim"``, ``"euler"`` or ``"dpm++"``.
    * `preview` (``"full"``): ``"full"`` (VAE decode), ``"tiny"`` / ``"tiny:<id or folder>"`` (a TAESD-family
      tiny autoencoder), ``"linear"`` (a latent->RGB map fitted from the pipeline's VAE on first use and cached,
      nearly free; ``"linear:<file.json>"``), ``"none"`` (blank: no latent feedback), or a callable.
      `preview_size`: int or (H, W).
    * `reward`: a registered name, ``{name: weight}``, or a callable ``(uint8 [N, H, W, 3], list[str]) -> [N]``
      (default: ``"toy_alignment"`` on the toy model, else ``"jpeg_compressibility"``; the defaults of reward,
      prompts and guidance follow the pipeline: :func:`promptloop_env.backends.resolve.world_defaults`).
    * `prompts`: where queries come from: ``"toy-user-train"`` / ``"toy-user-test"`` (the toy grammar's splits
      in users' style), ``"toy-train"`` / ``"toy-test"`` (the same in random phrasings), a list,
      a text, CSV, JSONL or Parquet file (``"file.csv:column"``), a dataset (``"hf:<id or folder>[:column]"``),
      with options such as ``"?split=train"`` (a fixed hash-based train/eval split), or a callable
      ``rng -> str`` (default: ``"toy-user-train"`` on the toy model). See :mod:`promptloop_env.prompts`.
    * `render_mode`: ``"rgb_array"`` (the latest preview, the final image at the end) or ``"rgb_array_list"``
      (every preview of the episode and the final image), frames at the image size.
    * `device`, `torch_dtype`, `local_files_only`: where and how a pipeline given by name is loaded; a pipeline
      object is moved to `device` / converted to `torch_dtype` in place (all of its components; a shipped toy
      model is copied first). `torch_dtype` is a ``torch.dtype`` or its name (``"bfloat16"``).
    * `profile`: synchronise the device around timed parts (``env.unwrapped.engine.timings``).
    * `text_cache_size`: how many prompt encodings the backend keeps (least recently used dropped; default 4096).
    * `check_memory`: refuse at construction a batch whose rough peak memory exceeds what is available (a
      ``MemoryError`` naming the estimate); ``False`` tries anyway.

    ## Info

    | key                 | when                 | meaning                                                      |
    |---------------------|----------------------|--------------------------------------------------------------|
    | `query`             | always               | the query the reward grades (sanitised, never cut)            |
    | `step`              | always               | denoising steps done                                         |
    | `refinement`        | always               | actions taken so far                                         |
    | `refinement_steps`  | always               | the 0-based step from which each action's prompt is in force |
    | `prompt_truncated`  | always               | the prompt in force (at reset: the query) was cut to fit     |
    | `image`             | at the end           | the final image, uint8 H x W x 3                             |
    | `prompts`           | at the end           | the K prompts used, aligned with `refinement_steps`          |
    | `reward_components` | at the end           | each named part of the reward                                |

    ## Vectorized environment

    ``gym.make_vec("PromptLoop-v0", num_envs=N)`` gives :class:`~promptloop_env.vector.PromptLoopVectorEnv`:
    the same engine over a batch, one denoiser call per step for all N trajectories, a different query and
    prompt per sub-env, sub-env i seeded with ``seed + i``.

    ```python
    >>> envs = gym.make_vec("PromptLoop-v0", num_envs=2, num_inference_steps=6, num_refinements=1)
    >>> obs, info = envs.reset(seed=0, options={"query": ["a red circle", "a blue square"]})
    >>> obs["preview"].shape, obs["query"]
    ((2, 32, 32, 3), ('a red circle', 'a blue square'))
    >>> obs, reward, terminated, truncated, info = envs.step(["a red circle", "a green square"])
    >>> terminated.tolist(), reward.shape
    ([True, True], (2,))

    ```
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "rgb_array_list"], "render_fps": 2}

    def __init__(
        self,
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
        self._setup(
            num_envs=1,
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
        self.observation_space = self._single_observation_space
        self.action_space = self._single_action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode. ``options``: ``"query"`` (str) and ``"latents"`` (``[C, h, w]`` or
        ``[1, C, h, w]`` unit-variance noise) fix the query and the initial noise for paired comparisons."""
        super().reset(seed=_check_seed(seed))
        options = _check_options(options)
        latents = options.get("latents")
        if latents is not None:
            latents = _as_latents(latents)
        query, noise, generator, schedule = self._start(self.np_random, options.get("query"), latents)
        result = self.engine.reset([query], noise, [generator], schedule)
        self._frames = [[]]
        self._record(result)
        return self._observations(result)[0], self._infos(result)[0]

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            raise TypeError(
                f"PromptLoopEnv.step expects the new prompt as a str; got {type(action).__name__}: {action!r:.80}."
            )
        if self.engine.done:
            raise ResetNeeded("The episode has ended (or has not started): call reset() before step().")
        result = self.engine.refine([action])
        self._record(result)
        reward = float(result.rewards[0]) if result.done else 0.0
        return self._observations(result)[0], reward, result.done, False, self._infos(result)[0]

    def render(self) -> np.ndarray | list[np.ndarray] | None:
        if self.render_mode == "rgb_array":
            return self._frames[0][-1] if self._frames[0] else None
        if self.render_mode == "rgb_array_list":
            frames, self._frames[0] = self._frames[0], []
            return frames
        return None
