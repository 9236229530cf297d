"""SDXL and SDXL-turbo: the denoising loop of ``StableDiffusionXLPipeline``, split at refinement points.

SDXL conditions its UNet on two CLIP encoders' hidden states side by side, the second encoder's pooled
embedding, and six "time ids" (original size, crop top-left, target size). The loop is the pipeline's own
(``encode_prompt``, ``_get_add_time_ids``, the scheduler's ``set_timesteps`` / ``scale_model_input`` /
``step``, classifier-free guidance with the zeroed or encoded negative, the VAE with its float32 upcast), so
holding one prompt throughout reproduces ``pipeline(prompt, latents=...)``; the prompt may change between
intervals, and with it the pooled embedding.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .base import LatentBackend, PromptCache, Trajectory, fit_to_limit, token_count
from .stable_diffusion import unet_denoise


class StableDiffusionXLBackend(LatentBackend):
    """Backend for ``StableDiffusionXLPipeline`` (SDXL base, SDXL-turbo, and fine-tunes of them).

    Args:
        pipeline: a ``diffusers.StableDiffusionXLPipeline`` (its scheduler is copied per trajectory).
        num_inference_steps: denoiser calls per image.
        guidance_scale: classifier-free guidance weight; at ``<= 1`` there is no guidance and no negative pass
            (SDXL-turbo runs at 0.0), as in diffusers.
        negative_prompt: the unconditional branch's prompt. ``None`` gives zero embeddings when the pipeline's
            ``force_zeros_for_empty_prompt`` is set (SDXL base), else the encoded empty prompt.
        guidance_rescale: diffusers' ``guidance_rescale`` (0 = off).
        eta: passed to schedulers whose ``step`` takes it.
        height: image height in pixels (default: the UNet's sample size times the VAE factor: 1024 for SDXL
            base, 512 for SDXL-turbo).
        width: image width in pixels (default as for ``height``).
        original_size: SDXL's size conditioning (default ``(height, width)``, as in diffusers).
        crops_coords_top_left: SDXL's crop conditioning (default ``(0, 0)``).
        target_size: SDXL's target-size conditioning (default ``(height, width)``).
        scheduler: a scheduler to use instead of the pipeline's (a template: each trajectory gets a fresh copy).
        cache_size: how many prompt encodings to keep.
    """

    family = "stable-diffusion-xl"

    def __init__(
        self,
        pipeline: Any,
        *,
        num_inference_steps: int,
        guidance_scale: float = 5.0,
        negative_prompt: str | None = None,
        guidance_rescale: float = 0.0,
        eta: float = 0.0,
        height: int | None = None,
        width: int | None = None,
        original_size: tuple[int, int] | None = None,
        crops_coords_top_left: tuple[int, int] = (0, 0),
        target_size: tuple[int, int] | None = None,
        scheduler: Any = None,
        cache_size: int = 4096,
    ) -> None:
        self.pipeline = pipeline
        self.scheduler = scheduler if scheduler is not None else pipeline.scheduler
        self.unet = pipeline.unet
        self.vae = pipeline.vae
        self.tokenizers = [t for t in (pipeline.tokenizer, pipeline.tokenizer_2) if t is not None]
        self.device = torch.device(pipeline._execution_device)
        self.dtype = self.unet.dtype
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.guidance_rescale = float(guidance_rescale)
        self.negative_prompt = negative_prompt
        self.eta = float(eta)
        self.vae_scale_factor = pipeline.vae_scale_factor
        sample = pipeline.default_sample_size
        sample_hw = (sample, sample) if isinstance(sample, int) else tuple(sample)
        self.height = int(height or sample_hw[0] * self.vae_scale_factor)
        self.width = int(width or sample_hw[1] * self.vae_scale_factor)
        if self.height % self.vae_scale_factor or self.width % self.vae_scale_factor:
            raise ValueError(
                f"height and width must be multiples of the VAE factor {self.vae_scale_factor}; "
                f"got {self.height} x {self.width}."
            )
        self.original_size = tuple(original_size or (self.height, self.width))
        self.crops_coords_top_left = tuple(crops_coords_top_left)
        self.target_size = tuple(target_size or (self.height, self.width))
        self.do_cfg = self.guidance_scale > 1.0 and self.unet.config.time_cond_proj_dim is None
        self.max_tokens = [int(t.model_max_length) for t in self.tokenizers]
        self._cache = PromptCache(self._encode_batch, cache_size)
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        self._step_takes_eta = "eta" in step_params
        self._step_takes_generator = "generator" in step_params
        if pipeline.text_encoder_2 is not None:
            projection_dim = int(pipeline.text_encoder_2.config.projection_dim)
        else:
            projection_dim = int(self.encode([""])[1].shape[-1])
        # The pipeline's own time ids (it checks them against the UNet's added-embedding width).
        self.add_time_ids = pipeline._get_add_time_ids(
            self.original_size,
            self.crops_coords_top_left,
            self.target_size,
            dtype=self.dtype,
            text_encoder_projection_dim=projection_dim,
        ).to(self.device)

    # -- text --------------------------------------------------------------------------------------------

    def fit_prompt(self, prompt: str) -> tuple[str, bool]:
        """Cut ``prompt`` to the longest prefix that fits both CLIP tokenizers' ``model_max_length``."""
        return fit_to_limit(
            prompt,
            lambda text: all(
                token_count(t, text) <= limit for t, limit in zip(self.tokenizers, self.max_tokens, strict=True)
            ),
        )

    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return embeds.to(self.dtype), pooled.to(self.dtype)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden states [N, 77, D1 + D2], pooled [N, P])`` for ``prompts``, cached by prompt string."""
        embeds, pooled = self._cache(prompts)
        return embeds, pooled

    def _negative(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.negative_prompt is None and self.pipeline.config.force_zeros_for_empty_prompt:
            embeds, pooled = self.encode([""])
            return torch.zeros_like(embeds).expand(n, -1, -1), torch.zeros_like(pooled).expand(n, -1)
        embeds, pooled = self.encode([self.negative_prompt or ""])
        return embeds.expand(n, -1, -1), pooled.expand(n, -1)

    # -- sampling ----------------------------------------------------------------------------------------

    def latent_shape(self) -> tuple[int, int, int]:
        return (
            self.unet.config.in_channels,
            self.height // self.vae_scale_factor,
            self.width // self.vae_scale_factor,
        )

    def start(self, noise: torch.Tensor, generators: list[torch.Generator]) -> Trajectory:
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(self.num_inference_steps, device=self.device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        latents = noise.to(device=self.device, dtype=self.dtype) * scheduler.init_noise_sigma
        traj = Trajectory(latents=latents, timesteps=scheduler.timesteps, scheduler=scheduler, generators=generators)
        if self.unet.config.time_cond_proj_dim is not None:  # guidance-distilled (LCM-SDXL) UNets
            w = torch.tensor(self.guidance_scale - 1).repeat(len(latents))
            traj.extra["timestep_cond"] = self.pipeline.get_guidance_scale_embedding(
                w, embedding_dim=self.unet.config.time_cond_proj_dim
            ).to(device=self.device, dtype=latents.dtype)
        return traj

    @torch.no_grad()
    def denoise(self, traj: Trajectory, cond: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
        n = len(traj.latents)
        embeds, pooled = cond
        time_ids = self.add_time_ids.repeat(n, 1)
        if self.do_cfg:
            neg_embeds, neg_pooled = self._negative(n)
            embeds = torch.cat([neg_embeds, embeds])
            pooled = torch.cat([neg_pooled, pooled])
            time_ids = torch.cat([time_ids, time_ids])
        unet_denoise(self, traj, embeds, steps, {"text_embeds": pooled, "time_ids": time_ids})
