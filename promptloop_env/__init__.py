"""PromptLoop environments: text-to-image sampling as a Gymnasium task whose actions are prompts.

Importing this package registers ``PromptLoop-v0`` (the offline default model), ``PromptLoop-ToyB-v0`` (the
toy world on its second model) and ``PromptLoop-SD15-v0`` (Stable Diffusion 1.5 from the local Hugging Face
cache).
"""

from gymnasium.envs.registration import register, registry

from .core import MAX_PROMPT_CHARS, Engine, Refinement, sanitize_prompt
from .env import PRINTABLE, PromptLoopEnv
from .vector import PromptLoopVectorEnv

__all__ = [
    "MAX_PROMPT_CHARS",
    "PRINTABLE",
    "Engine",
    "PromptLoopEnv",
    "PromptLoopVectorEnv",
    "Refinement",
    "sanitize_prompt",
]

__version__ = "0.1.0"

SD15_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"

_IDS = {
    "PromptLoop-v0": {},
    # The toy world on its second model (another seed, a narrower UNet): an unseen backbone for toy agents.
    "PromptLoop-ToyB-v0": dict(pipeline="toy-b"),
    # The paper's SD1.5 setting: 512 x 512, 50 steps of the pipeline's own scheduler, guidance 7.5.
    "PromptLoop-SD15-v0": dict(pipeline=SD15_MODEL_ID, num_inference_steps=50, height=512, width=512, preview_size=256),
}

for _id, _kwargs in _IDS.items():
    if _id not in registry:
        register(
            id=_id,
            entry_point="promptloop_env.env:PromptLoopEnv",
            vector_entry_point="promptloop_env.vector:PromptLoopVectorEnv",
            kwargs=_kwargs,
        )
