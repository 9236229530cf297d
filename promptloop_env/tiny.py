"""A tiny Stable Diffusion pipeline built in memory from configs: the offline default of ``PromptLoop-v0``.

Nothing here downloads anything. The tokenizer is a real CLIP byte-pair tokenizer whose vocabulary is built
from a word list (every byte as a character token, plus whole-word merges), the text encoder, UNet and VAE
are the diffusers/transformers classes of Stable Diffusion 1.x with small configs and seeded random weights.
The images it draws are meaningless; it exists so that the environment, its tests and the demo run anywhere.
The embedded toy world (a model trained on a procedural domain) replaces it as the default when it lands.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["TINY_WORDS", "build_clip_tokenizer", "make_scheduler", "small_stable_diffusion", "tiny_stable_diffusion"]

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
