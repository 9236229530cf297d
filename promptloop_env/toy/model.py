"""The toy world's text-to-image model: an ordinary ``StableDiffusionPipeline`` of small diffusers and
transformers parts (CLIP tokenizer over the grammar's words, ``CLIPTextModel``, ``UNet2DConditionModel`` with
cross-attention on 8x8x4 latents, ``AutoencoderKL`` 32x32 <-> 8x8x4, DDIM with a cosine schedule).

``build_toy_pipeline`` makes the untrained model from configs (what ``python -m promptloop_env.toy.train``
trains); ``load_toy_pipeline`` loads the trained weights shipped in the package (safetensors, offline).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

__all__ = [
    "TOY_GUIDANCE_SCALE",
    "TOY_MODEL_B_DIR",
    "TOY_MODEL_DIR",
    "TOY_PIPELINES",
    "build_toy_pipeline",
    "load_toy_pipeline",
    "toy_scheduler",
]

#: The shipped pipeline folder (written by ``save_pretrained``).
TOY_MODEL_DIR = Path(__file__).resolve().parent / "weights"
#: A second toy model of the same world (another seed, a narrower UNet, the same VAE): the toy world's
#: unseen backbone (``pipeline="toy-b"``).
TOY_MODEL_B_DIR = Path(__file__).resolve().parent / "weights_b"
#: The toy models by the names ``pipeline=`` accepts.
TOY_PIPELINES: dict[str, Path] = {"toy": TOY_MODEL_DIR, "toy-b": TOY_MODEL_B_DIR}

IMAGE_SIZE = 32
MAX_TOKENS = 40
#: Classifier-free guidance the toy model samples best with (higher guidance saturates and breaks up images).
TOY_GUIDANCE_SCALE = 3.0


def toy_scheduler() -> Any:
    """DDIM over a cosine (``squaredcos_cap_v2``) schedule with epsilon prediction.

    ``timestep_spacing="leading"`` with ``steps_offset=1``: "trailing" would start at t = 999 where the cosine
    schedule's signal is about 2e-9 and the first x̂0 explodes.
    """
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        timestep_spacing="leading",
        steps_offset=1,
    )


def build_toy_pipeline(seed: int = 0, block_out_channels: tuple[int, ...] = (64, 128)) -> Any:
    """The untrained toy model, from configs (seeded initialisation): UNet 4.2M parameters (64/128 channels,
    cross-attention at both resolutions; ``block_out_channels`` makes it narrower or wider, multiples of 32),
    VAE 32x32 -> 8x8x4, a 2-layer text encoder of width 64."""
    from ..testing import build_clip_tokenizer, small_stable_diffusion
    from .grammar import vocabulary

    return small_stable_diffusion(
        build_clip_tokenizer(tuple(vocabulary()), model_max_length=MAX_TOKENS),
        toy_scheduler(),
        seed=seed,
        text_width=64,
        image_size=IMAGE_SIZE,
        vae_channels=(32, 64, 64),
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


@functools.lru_cache(maxsize=len(TOY_PIPELINES))
def _load_cached(folder: Path) -> Any:
    pipeline = load_toy_pipeline(folder, cache=False)
    pipeline._promptloop_shared_folder = folder  # envs given this shared instance convert a copy, never it
    return pipeline


def load_toy_pipeline(path: str | Path | None = None, cache: bool = True) -> Any:
    """The trained toy model shipped in the package (or a folder written by the training script).

    Loaded with ``from_pretrained`` from safetensors, offline. With ``cache`` (and a shipped model's path, the
    default one or :data:`TOY_MODEL_B_DIR`) one instance is shared per process.

    Raises:
        FileNotFoundError: when the folder has no trained weights, naming the command that makes them.
    """
    if cache and (path is None or Path(path) in TOY_PIPELINES.values()):
        return _load_cached(TOY_MODEL_DIR if path is None else Path(path))
    from diffusers import StableDiffusionPipeline

    folder = Path(path) if path is not None else TOY_MODEL_DIR
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"No toy model at {folder}: expected a pipeline folder with model_index.json. Train one with "
            "`python -m promptloop_env.toy.train`."
        )
    shared = {}
    if not (folder / "vae").is_dir() and (TOY_MODEL_DIR / "vae").is_dir():
        # A toy model trained with ``--vae-from`` the shipped VAE (toy-b) is shipped without its copy of it.
        from diffusers import AutoencoderKL

        vae_dir = TOY_MODEL_DIR / "vae"
        shared["vae"] = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, use_safetensors=True)
    pipe = StableDiffusionPipeline.from_pretrained(
        folder,
        local_files_only=True,
        use_safetensors=True,
        safety_checker=None,
        requires_safety_checker=False,
        **shared,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
