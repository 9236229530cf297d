"""Stable Diffusion 1.x / 2.x: the denoising loop of ``StableDiffusionPipeline``, split at refinement points.

The loop is the pipeline's own (``encode_prompt``, scheduler ``set_timesteps``/``scale_model_input``/``step``,
the UNet, classifier-free guidance, the VAE), so that holding one prompt throughout reproduces
``pipeline(prompt, latents=...)`` exactly; the only change is that the prompt may differ between intervals.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .base import LatentBackend, PromptCache, Trajectory, fit_to_limit, token_count


class StableDiffusionBackend(LatentBackend):
    """Backend for any ``StableDiffusionPipeline`` (epsilon, v-prediction or sample prediction).

    Args:
        pipeline: a ``diffusers.StableDiffusionPipeline`` (its scheduler is copied per trajectory, never
            mutated).
        num_inference_steps: denoiser calls per image.
        guidance_scale: classifier-free guidance weight; guidance is off at ``<= 1`` (as in diffusers).
        negative_prompt: the unconditional branch's prompt (``None`` = the empty prompt).
        guidance_rescale: diffusers' ``guidance_rescale`` (0 = off).
        eta: DDIM's eta, passed to schedulers that take it.
        height: image height in pixels (default: the UNet's sample size times the VAE factor).
        width: image width in pixels (default: the UNet's sample size times the VAE factor).
        scheduler: a scheduler to use instead of the pipeline's (a template: each trajectory gets a fresh copy).
        cache_size: how many prompt encodings to keep (least recently used are dropped).
    """

    family = "stable-diffusion"

    def __init__(
        self,
        pipeline: Any,
        *,
        num_inference_steps: int,
        guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        guidance_rescale: float = 0.0,
        eta: float = 0.0,
        height: int | None = None,
        width: int | None = None,
        scheduler: Any = None,
        cache_size: int = 4096,
    ) -> None:
        self.pipeline = pipeline
        self.scheduler = scheduler if scheduler is not None else pipeline.scheduler
        self.unet = pipeline.unet
        self.vae = pipeline.vae
        self.tokenizer = pipeline.tokenizer
        self.device = torch.device(pipeline._execution_device)
        self.dtype = self.unet.dtype
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.guidance_rescale = float(guidance_rescale)
        self.negative_prompt = negative_prompt or ""
        self.eta = float(eta)
        self.vae_scale_factor = pipeline.vae_scale_factor
        sample = self.unet.config.sample_size
        sample_hw = (sample, sample) if isinstance(sample, int) else tuple(sample)
        self.height = int(height or sample_hw[0] * self.vae_scale_factor)
        self.width = int(width or sample_hw[1] * self.vae_scale_factor)
        if self.height % self.vae_scale_factor or self.width % self.vae_scale_factor:
            raise ValueError(
                f"height and width must be multiples of the VAE factor {self.vae_scale_factor}; "
                f"got {self.height} x {self.width}."
            )
        self.do_cfg = self.guidance_scale > 1.0 and self.unet.config.time_cond_proj_dim is None
        self.max_tokens = int(self.tokenizer.model_max_length)
        self.cache_size = int(cache_size)
        self._cache = PromptCache(self._encode_batch, self.cache_size)
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        self._step_takes_eta = "eta" in step_params
        self._step_takes_generator = "generator" in step_params

    # -- text --------------------------------------------------------------------------------------------

    def fit_prompt(self, prompt: str) -> tuple[str, bool]:
        """Cut ``prompt`` to the longest prefix that fits the text encoder's ``model_max_length`` tokens."""
        return fit_to_limit(prompt, lambda text: token_count(self.tokenizer, text) <= self.max_tokens)

    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor]:
        embeds, _ = self.pipeline.encode_prompt(prompts, self.device, 1, False)
        return (embeds.to(self.dtype),)  # a text encoder in another dtype than the UNet (float32 around fp16)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[N, L, D]`` for ``prompts``, cached by prompt string."""
        return self._cache(prompts)[0]

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
        latents = noise.to(device=self.device, dtype=self.dtype) * scheduler.init_noise_sigma
        traj = Trajectory(latents=latents, timesteps=scheduler.timesteps, scheduler=scheduler, generators=generators)
        if self.unet.config.time_cond_proj_dim is not None:  # guidance-distilled (LCM) UNets
            w = torch.tensor(self.guidance_scale - 1).repeat(len(latents))
            traj.extra["timestep_cond"] = self.pipeline.get_guidance_scale_embedding(
                w, embedding_dim=self.unet.config.time_cond_proj_dim
            ).to(device=self.device, dtype=latents.dtype)
        return traj

    @torch.no_grad()
    def denoise(self, traj: Trajectory, cond: torch.Tensor, steps: int) -> None:
        n = len(traj.latents)
        if self.do_cfg:
            uncond = self.encode([self.negative_prompt]).expand(n, -1, -1)
            embeds = torch.cat([uncond, cond])
        else:
            embeds = cond
        unet_denoise(self, traj, embeds, steps)


def unet_denoise(
    backend: Any, traj: Trajectory, embeds: torch.Tensor, steps: int, added_cond_kwargs: dict | None = None
) -> None:
    """``steps`` steps of the UNet pipelines' loop (Stable Diffusion and SDXL): classifier-free guidance with the
    negative rows first in ``embeds`` when ``backend.do_cfg``, guidance rescale, the scheduler's step with its
    eta / generator, and the clean estimate of the last step kept in ``traj.x0``."""
    n = len(traj.latents)
    scheduler = traj.scheduler
    extra: dict[str, Any] = {}
    if backend._step_takes_eta:
        extra["eta"] = backend.eta
    if backend._step_takes_generator:
        extra["generator"] = traj.generators
    latents = traj.latents
    for _ in range(steps):
        t = traj.timesteps[traj.step]
        model_input = torch.cat([latents] * 2) if backend.do_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        output = backend.unet(
            model_input,
            t,
            encoder_hidden_states=embeds,
            timestep_cond=traj.extra.get("timestep_cond"),
            added_cond_kwargs=added_cond_kwargs,
            return_dict=False,
        )[0]
        if backend.do_cfg:
            out_uncond, out_text = output.chunk(2)
            output = out_uncond + backend.guidance_scale * (out_text - out_uncond)
            if backend.guidance_rescale > 0.0:
                from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

                output = rescale_noise_cfg(output, out_text, guidance_rescale=backend.guidance_rescale)
        result = scheduler.step(output, t, latents, **extra, return_dict=True)
        x0 = getattr(result, "pred_original_sample", None)
        if x0 is None:
            x0 = _x0_from_output(scheduler, output, model_input[n:] if backend.do_cfg else model_input, t)
        latents = result.prev_sample
        traj.x0 = x0
        traj.step += 1
    traj.latents = latents


def _x0_from_output(scheduler: Any, output: torch.Tensor, model_input: torch.Tensor, t: torch.Tensor):
    """Tweedie's clean estimate from a variance-preserving model input, for schedulers whose ``step`` does
    not return ``pred_original_sample`` (DPM-Solver++, UniPC, PNDM, ...)."""
    alphas = scheduler.alphas_cumprod.to(device=output.device, dtype=torch.float32)
    index = int(round(float(t)))
    alpha = alphas[min(max(index, 0), len(alphas) - 1)]
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    kind = scheduler.config.prediction_type
    x = model_input.float()
    if kind == "epsilon":
        x0 = (x - s * output.float()) / a
    elif kind == "v_prediction":
        x0 = a * x - s * output.float()
    elif kind == "sample":
        x0 = output.float()
    else:
        raise ValueError(f"Unsupported prediction_type {kind!r}; expected epsilon, v_prediction or sample.")
    return x0.to(output.dtype)
