"""Tiny diffusers pipelines built in memory from configs: Stable Diffusion 1.x, SDXL, SD3 and FLUX.

Nothing here downloads anything. The tokenizer is a real CLIP byte-pair tokenizer whose vocabulary is built
from a word list (every byte as a character token, plus whole-word merges), the text encoder, UNet and VAE
are the diffusers/transformers classes of Stable Diffusion 1.x with small configs and seeded random weights.
The images it draws are meaningless; it exists so that the environment's tests, the docs' examples and the
backend parity checks run anywhere (the embedded toy world, a model trained on a procedural domain, is the
default model). Named ``testing`` (it was ``promptloop_env.tiny`` until 0.1.0) so that it is not confused with
the ``"tiny"`` preview, which decodes with a tiny autoencoder (TAESD).
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "TINY_WORDS",
    "build_clip_tokenizer",
    "build_t5_tokenizer",
    "make_scheduler",
    "small_stable_diffusion",
    "tiny_flux",
    "tiny_stable_diffusion",
    "tiny_stable_diffusion_3",
    "tiny_stable_diffusion_xl",
]

TINY_WORDS: tuple[str, ...] = tuple(
    """a an the of in on at with and photo picture painting drawing render of
    red green blue yellow orange purple pink white black gray brown cyan magenta
    circle square triangle star cat dog house tree car bird flower mountain sky sea
    small large big tiny left right top bottom center above below next to
    bright dark detailed sharp soft vivid high quality beautiful simple background""".split()
)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode character table (the GPT-2 scheme)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_clip_tokenizer(words: tuple[str, ...] | list[str] = TINY_WORDS, model_max_length: int = 77):
    """Build a ``CLIPTokenizer`` with a small vocabulary: all bytes, plus ``words`` as single tokens.

    Any text tokenizes (unknown words fall back to byte tokens); the listed words cost one token each.
    """
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in dict.fromkeys(w.lower() for w in words):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        left = symbols[0]
        for right in symbols[1:]:
            merged = left + right
            if merged not in vocab:
                merges.append(f"{left} {right}")
                vocab[merged] = len(vocab)
            left = merged
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer(
            str(Path(tmp) / "vocab.json"),
            str(Path(tmp) / "merges.txt"),
            model_max_length=model_max_length,
            pad_token="<|endoftext|>",
        )
    return tokenizer


def small_stable_diffusion(
    tokenizer: Any,
    scheduler: Any,
    *,
    seed: int,
    text_width: int,
    image_size: int,
    vae_channels: tuple[int, ...],
    **unet: Any,
):
    """A ``StableDiffusionPipeline`` of small, freshly initialised (seeded) parts around ``tokenizer``.

    The text encoder is a 2-layer ``CLIPTextModel`` of width ``text_width``; the VAE an ``AutoencoderKL`` with
    ``vae_channels`` (a factor ``2 ** (len - 1)``) and 4 latent channels; ``unet`` are the
    ``UNet2DConditionModel`` block settings (``block_out_channels``, ``layers_per_block``, block types).
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    factor = 2 ** (len(vae_channels) - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=text_width,
                intermediate_size=2 * text_width,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                projection_dim=text_width,
            )
        )
        unet_model = UNet2DConditionModel(
            sample_size=image_size // factor,
            in_channels=4,
            out_channels=4,
            cross_attention_dim=text_width,
            attention_head_dim=8,
            norm_num_groups=32,
            **unet,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=vae_channels,
            down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=image_size,
        )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet_model.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_stable_diffusion(
    seed: int = 0,
    scheduler: str = "ddim",
    prediction_type: str = "epsilon",
    sample_size: int = 16,
):
    """A ``StableDiffusionPipeline`` with small random weights (seeded), built from configs in memory.

    Args:
        seed: seeds the weight initialisation, so the same arguments give the same model in any process.
        scheduler: ``"ddim"``, ``"euler"`` or ``"dpm++"`` (DPM-Solver++ 2M), with Stable Diffusion 1.5's
            beta schedule.
        prediction_type: ``"epsilon"`` or ``"v_prediction"``.
        sample_size: latent side; images are ``2 * sample_size`` pixels square.
    """
    pipe = small_stable_diffusion(
        build_clip_tokenizer(),
        make_scheduler(scheduler, prediction_type=prediction_type),
        seed=seed,
        text_width=32,
        image_size=2 * sample_size,
        vae_channels=(32, 32),
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    # At default init the random UNet barely listens to the text; scale the cross-attention value and
    # output projections so that changing the prompt visibly changes the image (as in a trained model).
    with torch.no_grad():
        for name, module in pipe.unet.named_modules():
            if name.endswith("attn2"):
                module.to_v.weight.mul_(4.0)
                module.to_out[0].weight.mul_(4.0)
    return pipe


_SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
)


def make_scheduler(name: str, prediction_type: str = "epsilon", **overrides):
    """A diffusers scheduler by short name with Stable Diffusion 1.5's training schedule."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    config = dict(_SD15_SCHEDULER, prediction_type=prediction_type, **overrides)
    if name == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **config)
    if name == "euler":
        return EulerDiscreteScheduler(**config)
    if name in ("dpm++", "dpmsolver++"):
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **config)
    raise ValueError(f"Unknown scheduler {name!r}; expected one of 'ddim', 'euler', 'dpm++'.")


# -- SDXL, SD3 / 3.5 and FLUX, tiny ----------------------------------------------------------------------------
# The same classes as the real checkpoints (the SDXL UNet with text-time conditioning, the MMDiT of SD3, the
# FLUX transformer with guidance embedding, CLIP and T5 text encoders, 16-channel VAEs with shift and scale),
# with small widths and seeded random weights. Images are 32 x 32 pixels (VAE factor 2, 16 x 16 latents).

_SDXL_SCHEDULER = dict(_SD15_SCHEDULER, timestep_spacing="leading", interpolation_type="linear")


def build_t5_tokenizer(words: tuple[str, ...] | list[str] = TINY_WORDS, model_max_length: int = 512):
    """A ``T5Tokenizer`` (the ``tokenizers`` Unigram model behind it) over a small vocabulary.

    The pieces are ``words`` (with the word-start marker "▁", one token each) and every printable ASCII
    character with and without the marker, so any ASCII text tokenizes; other characters become ``<unk>``.
    """
    from transformers import T5Tokenizer

    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "▁": -2.0}
    for word in dict.fromkeys(w.lower() for w in words):
        pieces.setdefault("▁" + word, -3.0)
    for ch in string.printable.strip():
        pieces.setdefault("▁" + ch, -8.0)
        pieces.setdefault(ch, -9.0)
    return T5Tokenizer(vocab=list(pieces.items()), extra_ids=0, model_max_length=model_max_length)


def _clip_text(tokenizer: Any, width: int, *, projection: bool, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=4,
        num_hidden_layers=layers,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=width,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _t5_encoder(tokenizer: Any, width: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_ff=2 * width,
        d_kv=width // 4,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config).eval()


def _vae(latent_channels: int, **config: Any):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=32,
        **config,
    ).eval()


def _loud_text(model: torch.nn.Module, names: tuple[str, ...], factor: float = 4.0) -> None:
    """Scale the text-facing projections of a random denoiser so that the prompt visibly matters (as it does in
    a trained model; at default init a tiny random model barely listens to the text)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".weight") and any(part in name for part in names):
                param.mul_(factor)


def tiny_stable_diffusion_xl(seed: int = 0, turbo: bool = False):
    """A ``StableDiffusionXLPipeline`` with small random weights (seeded), built from configs in memory.

    Two CLIP text encoders (the second with a projection: the pooled embedding), a UNet with SDXL's
    ``text_time`` added conditioning (6 size/crop ids), a VAE with SDXL's scaling factor. ``turbo`` gives
    SDXL-turbo's scheduler (Euler ancestral, trailing timesteps) instead of SDXL base's (Euler, leading).
    """
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _clip_text(tokenizer, 32, projection=False)
        text_encoder_2 = _clip_text(tokenizer_2, 32, projection=True)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids x 8 + the pooled text width
            cross_attention_dim=64,  # the two encoders' hidden states side by side
            norm_num_groups=32,
        ).eval()
        vae = _vae(4, scaling_factor=0.13025, force_upcast=True)
    _loud_text(unet, ("attn2.to_v", "attn2.to_out"), 16.0)
    if turbo:
        scheduler = EulerAncestralDiscreteScheduler(**dict(_SD15_SCHEDULER, timestep_spacing="trailing"))
    else:
        scheduler = EulerDiscreteScheduler(**_SDXL_SCHEDULER)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=not turbo,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_stable_diffusion_3(seed: int = 0, t5: bool = True):
    """A ``StableDiffusion3Pipeline`` with small random weights (seeded), built from configs in memory.

    Two CLIP text encoders with projections (pooled embeddings side by side), a T5 encoder (``t5=False``
    leaves it out, ``text_encoder_3=None``, as diffusers allows), an ``SD3Transformer2DModel`` (patch 2), a
    16-channel VAE with SD3's shift and scaling factors, and ``FlowMatchEulerDiscreteScheduler(shift=3)``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_clip_tokenizer()
    tokenizer_3 = build_t5_tokenizer(model_max_length=256) if t5 else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _clip_text(tokenizer, 32, projection=True)
        text_encoder_2 = _clip_text(tokenizer_2, 32, projection=True)
        text_encoder_3 = _t5_encoder(tokenizer_3, 64) if t5 else None
        transformer = SD3Transformer2DModel(
            sample_size=16,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=64,  # T5's width; the two CLIP widths (32 + 32) are padded to it
            caption_projection_dim=32,
            pooled_projection_dim=64,
            pos_embed_max_size=16,
        ).eval()
        vae = _vae(16, shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False, use_post_quant_conv=False)
    _loud_text(transformer, ("context_embedder", "add_v_proj"))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux(seed: int = 0, guidance_embeds: bool = True):
    """A ``FluxPipeline`` with small random weights (seeded), built from configs in memory.

    A CLIP text encoder (its pooled output), a T5 encoder (the sequence), a ``FluxTransformer2DModel`` with
    the guidance embedding of FLUX.1-dev (``guidance_embeds=False``: FLUX.1-schnell's), a 16-channel VAE with
    FLUX's shift and scaling factors and the dynamically shifted ``FlowMatchEulerDiscreteScheduler``. Pass
    ``height=width=32`` when sampling (FluxPipeline's default size is 128 latents a side).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer(model_max_length=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _clip_text(tokenizer, 32, projection=False)
        text_encoder_2 = _t5_encoder(tokenizer_2, 32)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,  # 16 latent channels packed in 2 x 2 patches
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 4, 8),
        ).eval()
        vae = _vae(16, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False, use_post_quant_conv=False)
    _loud_text(transformer, ("context_embedder", "add_v_proj"))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
