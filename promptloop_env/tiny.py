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

import torch

__all__ = ["TINY_WORDS", "build_clip_tokenizer", "tiny_stable_diffusion"]

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
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                projection_dim=32,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 32),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=2 * sample_size,
        )
        # At default init the random UNet barely listens to the text; scale the cross-attention value and
        # output projections so that changing the prompt visibly changes the image (as in a trained model).
        with torch.no_grad():
            for name, module in unet.named_modules():
                if name.endswith("attn2"):
                    module.to_v.weight.mul_(4.0)
                    module.to_out[0].weight.mul_(4.0)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=make_scheduler(scheduler, prediction_type=prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
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
