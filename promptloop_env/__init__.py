"""PromptLoop environments: text-to-image sampling as a Gymnasium task whose actions are prompts.

Importing this package registers ``PromptLoop-v0`` (the offline default model), ``PromptLoop-ToyB-v0`` (the
toy world on its second model) and, loading from the local Hugging Face cache, the paper's backbones:
``PromptLoop-SD15-v0``, ``PromptLoop-SDXL-v0``, ``PromptLoop-SDXLTurbo-v0``, ``PromptLoop-SD35-v0`` and
``PromptLoop-FLUX-v0`` (see ``docs/backends.md``).
"""

import os

from gymnasium.envs.registration import register, registry

from .core import MAX_PROMPT_CHARS, Engine, Refinement, sanitize_prompt
from .env import PRINTABLE, PromptLoopEnv, PromptText
from .vector import PromptLoopVectorEnv

__all__ = [
    "MAX_PROMPT_CHARS",
    "PRINTABLE",
    "Engine",
    "PromptLoopEnv",
    "PromptText",
    "PromptLoopVectorEnv",
    "Refinement",
    "sanitize_prompt",
]

__version__ = "0.1.0"

SD15_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_MODEL_ID = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_TURBO_MODEL_ID = "stabilityai/sdxl-turbo"
SD35_MODEL_ID = "stabilityai/stable-diffusion-3.5-large"
FLUX_MODEL_ID = "black-forest-labs/FLUX.1-dev"

_IDS = {
    "PromptLoop-v0": {},
    # The toy world on its second model (another seed, a narrower UNet): an unseen backbone for toy agents.
    "PromptLoop-ToyB-v0": dict(pipeline="toy-b"),
    # The paper's SD1.5 setting: 512 x 512, 50 steps of the pipeline's own scheduler, guidance 7.5.
    "PromptLoop-SD15-v0": dict(pipeline=SD15_MODEL_ID, num_inference_steps=50, height=512, width=512, preview_size=256),
    # SDXL base: 1024 x 1024, 50 steps of its Euler scheduler, guidance 5.0 (the pipeline's default).
    "PromptLoop-SDXL-v0": dict(
        pipeline=SDXL_MODEL_ID, num_inference_steps=50, guidance_scale=5.0, height=1024, width=1024, preview_size=256
    ),
    # SDXL-turbo: 512 x 512, 4 steps, no guidance. With T = 4, refinement points can only fall after steps 1,
    # 2 and 3, so K = 3 (the most a preview-seeing schedule allows) gives each of steps 2..4 its own prompt;
    # step 1 always runs under the query.
    "PromptLoop-SDXLTurbo-v0": dict(
        pipeline=SDXL_TURBO_MODEL_ID,
        num_inference_steps=4,
        num_refinements=3,
        guidance_scale=0.0,
        height=512,
        width=512,
        preview_size=256,
    ),
    # SD3.5-large and FLUX.1-dev, the paper's unseen backbones: 1024 x 1024, 28 steps, guidance 3.5 (CFG for
    # SD3.5, the distilled guidance embedding for FLUX).
    "PromptLoop-SD35-v0": dict(
        pipeline=SD35_MODEL_ID, num_inference_steps=28, guidance_scale=3.5, height=1024, width=1024, preview_size=256
    ),
    "PromptLoop-FLUX-v0": dict(
        pipeline=FLUX_MODEL_ID, num_inference_steps=28, guidance_scale=3.5, height=1024, width=1024, preview_size=256
    ),
}

for _id, _kwargs in _IDS.items():
    if _id not in registry:
        register(
            id=_id,
            entry_point="promptloop_env.env:PromptLoopEnv",
            vector_entry_point="promptloop_env.vector:PromptLoopVectorEnv",
            kwargs=_kwargs,
        )


def _one_thread_after_fork() -> None:
    """torch's OpenMP thread pool does not survive ``fork``: a forked child whose parent ran torch ops with
    several threads deadlocks in its first parallel op (gymnasium's ``AsyncVectorEnv`` and any other
    fork-based worker pool). One intra-op thread in forked children avoids the pool; a child that wants more
    can call ``torch.set_num_threads`` itself."""
    import torch

    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_thread_after_fork)
