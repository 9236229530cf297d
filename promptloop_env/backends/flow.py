"""Flow-matching transformers: Stable Diffusion 3 / 3.5 and FLUX, their pipelines' loops split at refinement points.

Both predict a velocity ``v`` with ``x_t = (1 - sigma) x0 + sigma * noise``, so the clean estimate of a step is
``x̂0 = x_t - sigma * v`` (in float32, as ``FlowMatchEulerDiscreteScheduler.step`` computes). The trajectory's
latents are kept UNPACKED, ``[N, C, h, w]``, for every family: FLUX packs them into 2 x 2 patches only around
the transformer call (packing is a reshape; the scheduler's Euler update is elementwise, so stepping the
unpacked latents is the same arithmetic), and previews, the decode and the engine see one layout.

- SD3 / 3.5 (``StableDiffusion3Pipeline``): two CLIP encoders and an optional T5 (``text_encoder_3=None``
  gives zeros in its place, as diffusers does), the pooled CLIP embeddings, classifier-free guidance with a
  negative pass, the scheduler's static shift (or the dynamic ``mu`` when its config asks for it).
- FLUX (``FluxPipeline``): CLIP's pooled output and T5's sequence, the distilled guidance as an embedding
  (no negative pass; ``true_cfg_scale`` > 1 with a negative prompt adds one, as diffusers does), packed
  latents with their latent image ids, ``sigmas = linspace(1, 1/T, T)`` shifted by ``mu`` from the image's
  sequence length.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import torch

from .base import LatentBackend, PromptCache, Trajectory, fit_to_limit, token_count


class _FlowBackend(LatentBackend):
    """What SD3 and FLUX share: cached encodings, unpacked latents, the Euler flow step and x̂0 = x - sigma v."""

    family = "flow"
    default_guidance = 3.5
    default_max_sequence_length = 256
    latent_multiple = 1
    latent_channels: int

    def __init__(
        self,
        pipeline: Any,
        *,
        num_inference_steps: int,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        max_sequence_length: int | None = None,
        scheduler: Any = None,
        cache_size: int = 4096,
    ) -> None:
        self.pipeline = pipeline
        self.scheduler = scheduler if scheduler is not None else pipeline.scheduler
        if "FlowMatch" not in type(self.scheduler).__name__:
            raise ValueError(
                f"{type(pipeline).__name__} needs a flow-matching scheduler (FlowMatchEulerDiscreteScheduler or "
                f"another FlowMatch* scheduler); got {type(self.scheduler).__name__}. The env's scheduler= names "
                "(ddim, euler, dpm++) are for Stable Diffusion and SDXL; leave it None for SD3 and FLUX."
            )
        self.transformer = pipeline.transformer
        self.vae = pipeline.vae
        self.device = torch.device(pipeline._execution_device)
        self.dtype = self.transformer.dtype
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(self.default_guidance if guidance_scale is None else guidance_scale)
        self.negative_prompt = negative_prompt
        self.max_sequence_length = int(max_sequence_length or self.default_max_sequence_length)
        self.vae_scale_factor = pipeline.vae_scale_factor
        multiple = self.vae_scale_factor * self.latent_multiple
        size = pipeline.default_sample_size * self.vae_scale_factor
        self.height = int(height or size)
        self.width = int(width or size)
        if self.height % multiple or self.width % multiple:
            raise ValueError(
                f"height and width must be multiples of {multiple} for {type(pipeline).__name__} (the VAE factor "
                f"{self.vae_scale_factor} times the latent patch {self.latent_multiple}); "
                f"got {self.height} x {self.width}."
            )
        self._cache = PromptCache(self._encode_batch, cache_size)
        self._step_takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters

    # -- text --------------------------------------------------------------------------------------------

    def _limits(self) -> list[tuple[Any, int]]:
        """The tokenizer(s) whose limit decides whether a prompt fits, with the limit."""
        raise NotImplementedError

    def fit_prompt(self, prompt: str) -> tuple[str, bool]:
        """Cut ``prompt`` to the longest prefix the longest-reading text encoder takes in full (T5's
        ``max_sequence_length`` when there is a T5, else CLIP's 77); the CLIP encoders read the first 77
        tokens of it, as in diffusers."""
        limits = self._limits()
        return fit_to_limit(prompt, lambda text: all(token_count(t, text) <= n for t, n in limits))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden states [N, L, D], pooled [N, P])`` for ``prompts``, cached by prompt string."""
        embeds, pooled = self._cache(prompts)
        return embeds, pooled

    # -- sampling ----------------------------------------------------------------------------------------

    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.height // self.vae_scale_factor, self.width // self.vae_scale_factor)

    def _set_timesteps(self, scheduler: Any, latents: torch.Tensor) -> None:
        raise NotImplementedError

    def start(self, noise: torch.Tensor, generators: list[torch.Generator]) -> Trajectory:
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        latents = noise.to(device=self.device, dtype=self.dtype)
        self._set_timesteps(scheduler, latents)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
        return Trajectory(latents=latents, timesteps=scheduler.timesteps, scheduler=scheduler, generators=generators)

    def _velocity(self, traj: Trajectory, latents: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The (guided) velocity at ``latents`` (unpacked), unpacked."""
        raise NotImplementedError

    @torch.no_grad()
    def denoise(self, traj: Trajectory, cond: Any, steps: int) -> None:
        scheduler = traj.scheduler
        cond = self._prepare(traj, cond)
        latents = traj.latents
        for _ in range(steps):
            t = traj.timesteps[traj.step]
            v = self._velocity(traj, latents, t, cond)
            extra = {"generator": traj.generators} if self._step_takes_generator else {}
            result = scheduler.step(v, t, latents, **extra, return_dict=True)
            sigma = scheduler.sigmas[scheduler.step_index - 1].to(device=latents.device, dtype=torch.float32)
            traj.x0 = (latents.float() - sigma * v.float()).to(v.dtype)
            latents = result.prev_sample
            traj.step += 1
        traj.latents = latents

    def _prepare(self, traj: Trajectory, cond: Any) -> Any:
        return cond


class StableDiffusion3Backend(_FlowBackend):
    """Backend for ``StableDiffusion3Pipeline`` (SD3 medium, SD3.5 medium / large / large-turbo).

    Args:
        pipeline: a ``diffusers.StableDiffusion3Pipeline``; ``text_encoder_3`` may be ``None``.
        **sampling: the sampling settings, all optional keywords:

            - ``num_inference_steps``: denoiser calls per image.
            - ``guidance_scale``: classifier-free guidance weight (default 7.0, the pipeline's); off at ``<= 1``.
            - ``negative_prompt``: the unconditional branch's prompt (``None`` = the empty prompt, as in diffusers).
            - ``height``, ``width``: image size (default: the transformer's sample size times the VAE factor: 1024).
            - ``max_sequence_length``: T5 tokens (default 256, the pipeline's).
            - ``scheduler``: a flow-matching scheduler to use instead of the pipeline's (a template).
            - ``cache_size``: how many prompt encodings to keep.
    """

    family = "stable-diffusion-3"
    default_guidance = 7.0
    default_max_sequence_length = 256

    def __init__(self, pipeline: Any, **sampling: Any) -> None:
        self.latent_multiple = int(pipeline.transformer.config.patch_size)
        self.latent_channels = int(pipeline.transformer.config.in_channels)
        super().__init__(pipeline, **sampling)
        self.do_cfg = self.guidance_scale > 1.0

    def _limits(self) -> list[tuple[Any, int]]:
        if self.pipeline.text_encoder_3 is not None and self.pipeline.tokenizer_3 is not None:
            return [(self.pipeline.tokenizer_3, self.max_sequence_length)]
        tokenizers = [t for t in (self.pipeline.tokenizer, self.pipeline.tokenizer_2) if t is not None]
        return [(t, int(self.pipeline.tokenizer_max_length)) for t in tokenizers]

    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return embeds.to(self.dtype), pooled.to(self.dtype)

    def _set_timesteps(self, scheduler: Any, latents: torch.Tensor) -> None:
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        kwargs: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            patch = self.transformer.config.patch_size
            seq_len = (latents.shape[-2] // patch) * (latents.shape[-1] // patch)
            kwargs["mu"] = calculate_shift(
                seq_len,
                scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.16),
            )
        scheduler.set_timesteps(self.num_inference_steps, device=self.device, **kwargs)

    def _prepare(self, traj: Trajectory, cond: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled = cond
        if self.do_cfg:
            neg_embeds, neg_pooled = self.encode([self.negative_prompt or ""])
            n = len(embeds)
            embeds = torch.cat([neg_embeds.expand(n, -1, -1), embeds])
            pooled = torch.cat([neg_pooled.expand(n, -1), pooled])
        return embeds, pooled

    def _velocity(self, traj: Trajectory, latents: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        embeds, pooled = cond
        model_input = torch.cat([latents] * 2) if self.do_cfg else latents
        v = self.transformer(
            hidden_states=model_input,
            timestep=t.expand(model_input.shape[0]),
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        if self.do_cfg:
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + self.guidance_scale * (v_text - v_uncond)
        return v


class FluxBackend(_FlowBackend):
    """Backend for ``FluxPipeline`` (FLUX.1-dev, FLUX.1-schnell and fine-tunes).

    Args:
        pipeline: a ``diffusers.FluxPipeline``.
        **sampling: the sampling settings, all optional keywords:

            - ``num_inference_steps``: denoiser calls per image.
            - ``guidance_scale``: the distilled guidance fed to the transformer's guidance embedding (default 3.5, the
              pipeline's; ignored by transformers without one, e.g. schnell). There is no negative pass.
            - ``negative_prompt``: used only with ``true_cfg_scale`` > 1 (diffusers' "true CFG": a second pass).
            - ``true_cfg_scale``: weight of the true classifier-free guidance (1 = off, the default).
            - ``height``, ``width``: image size (default 1024, the pipeline's); multiples of twice the VAE factor.
            - ``max_sequence_length``: T5 tokens (default 512, the pipeline's).
            - ``scheduler``: a flow-matching scheduler to use instead of the pipeline's (a template).
            - ``cache_size``: how many prompt encodings to keep.
    """

    family = "flux"
    default_guidance = 3.5
    default_max_sequence_length = 512
    latent_multiple = 2

    def __init__(self, pipeline: Any, *, true_cfg_scale: float = 1.0, **sampling: Any) -> None:
        self.latent_channels = int(pipeline.transformer.config.in_channels) // 4
        super().__init__(pipeline, **sampling)
        self.true_cfg_scale = float(true_cfg_scale)
        self.do_true_cfg = self.true_cfg_scale > 1.0 and self.negative_prompt is not None
        if self.negative_prompt is not None and not self.do_true_cfg:
            warnings.warn(
                "FLUX's guidance is distilled (no negative pass): negative_prompt has no effect unless "
                "FluxBackend(true_cfg_scale > 1) is used, as in diffusers.",
                stacklevel=2,
            )
        h, w = self.height // self.vae_scale_factor, self.width // self.vae_scale_factor
        self.image_ids = pipeline._prepare_latent_image_ids(1, h // 2, w // 2, self.device, self.dtype)
        self.text_ids: torch.Tensor | None = None

    def _limits(self) -> list[tuple[Any, int]]:
        return [(self.pipeline.tokenizer_2, self.max_sequence_length)]

    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled, text_ids = self.pipeline.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        self.text_ids = text_ids
        return embeds.to(self.dtype), pooled.to(self.dtype)

    def _set_timesteps(self, scheduler: Any, latents: torch.Tensor) -> None:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        steps = self.num_inference_steps
        sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        seq_len = (latents.shape[-2] // 2) * (latents.shape[-1] // 2)
        mu = calculate_shift(
            seq_len,
            scheduler.config.get("base_image_seq_len", 256),
            scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5),
            scheduler.config.get("max_shift", 1.15),
        )
        retrieve_timesteps(scheduler, steps, self.device, sigmas=sigmas, mu=mu)

    def _prepare(self, traj: Trajectory, cond: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        n = len(traj.latents)
        out: dict[str, Any] = {"embeds": cond[0], "pooled": cond[1]}
        if self.transformer.config.guidance_embeds:
            out["guidance"] = torch.full([1], self.guidance_scale, device=self.device, dtype=torch.float32).expand(n)
        else:
            out["guidance"] = None
        if self.do_true_cfg:
            neg_embeds, neg_pooled = self.encode([self.negative_prompt])
            out["neg_embeds"], out["neg_pooled"] = neg_embeds.expand(n, -1, -1), neg_pooled.expand(n, -1)
        return out

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` -> FLUX's packed ``[N, h/2 * w/2, 4C]``."""
        n, c, h, w = latents.shape
        return self.pipeline._pack_latents(latents, n, c, h, w)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """FLUX's packed ``[N, h/2 * w/2, 4C]`` -> ``[N, C, h, w]``."""
        return self.pipeline._unpack_latents(packed, self.height, self.width, self.vae_scale_factor)

    def _velocity(self, traj: Trajectory, latents: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        packed = self.pack(latents)
        timestep = t.expand(len(latents)).to(latents.dtype) / 1000
        assert self.text_ids is not None  # set by the first encode
        common = dict(timestep=timestep, guidance=cond["guidance"], txt_ids=self.text_ids, img_ids=self.image_ids)
        v = self.transformer(
            hidden_states=packed,
            pooled_projections=cond["pooled"],
            encoder_hidden_states=cond["embeds"],
            return_dict=False,
            **common,
        )[0]
        if self.do_true_cfg:
            v_neg = self.transformer(
                hidden_states=packed,
                pooled_projections=cond["neg_pooled"],
                encoder_hidden_states=cond["neg_embeds"],
                return_dict=False,
                **common,
            )[0]
            v = v_neg + self.true_cfg_scale * (v - v_neg)
        return self.unpack(v)
