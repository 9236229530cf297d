"""GPU memory of the paper's training configurations, estimated from the models' real architectures.

    python benchmarks/memory_estimate.py --out benchmarks/results/memory_estimate.md [--measure-cpu]

Every model is built on the ``meta`` device from its real config (no weights, no memory, nothing downloaded) and
its parameters are counted: the policy (Qwen2.5-VL-3B-Instruct), the diffusion models (SD1.5: UNet, CLIP ViT-L
text encoder, VAE; SDXL: UNet, CLIP ViT-L and OpenCLIP bigG text encoders, VAE) and the reward (ImageReward: a
BLIP ViT-L/16 image encoder with a BERT-base text encoder). LoRA adapters are counted from the policy's real
linear layers. Activation memory of the policy's training step is a formula (below, and in
docs/paper_configs.md), checked against the training step measured on an H100 (benchmarks/results/agent_gpu.md).
With ``--measure-cpu`` the inference activations of the SD1.5 / SDXL UNet and VAE decode are measured on this
CPU as the rise of the process's peak resident memory (random weights, float32, one model per subprocess) and
halved for fp16; without it those rows say "not measured".

Formula for the policy's training step (bf16 activations, LoRA on all 7 projections of every decoder layer,
SDPA attention that keeps no L x L matrix, no dropout): per token and decoder layer the backward pass keeps
``2 * (15 h + 4 i)`` bytes: two RMSNorms (float32 input and normalised copy, 4h each), the input of the q/k/v
projections (h), attention's q, k, v (k and v repeated to h for grouped heads) and output (4h), the input of
o_proj (h), of gate/up (h), and in the MLP gate, SiLU(gate), up and their product (4i). With per-layer gradient
checkpointing only each layer's input (``2 h`` bytes) is kept, plus one layer's activations while it is
recomputed. The scored logits (the answer's positions only, ``logits_to_keep``) cost ``14 V`` bytes per kept
position (bf16 logits, their float32 copy, the tempered copy and log-softmax), twice for their gradients. The
frozen vision tower runs without a graph. LoRA weights, gradients and AdamW's two moments are float32 (16 bytes
a parameter).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import dataclass

import report  # benchmarks/report.py, next to this script
import torch

GiB = 2**30
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# ------------------------------------------------------------------------------------------------------------
# Real configs (values of the models' config.json files on the hub)

QWEN25_VL_3B_TEXT = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
)  # fmt: skip
QWEN25_VL_3B_VISION = dict(
    depth=32, hidden_act="silu", hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3,
    out_hidden_size=2048, patch_size=14, spatial_merge_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    temporal_patch_size=2,
)  # fmt: skip
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, cross_attention_dim=768, attention_head_dim=8,
)  # fmt: skip
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=2048,
    attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10], use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)  # fmt: skip
SD_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32,
)  # fmt: skip
CLIP_L_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)  # fmt: skip
OPENCLIP_BIGG_TEXT = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
)  # fmt: skip
# ImageReward (THUDM/ImageReward): BLIP with a ViT-L/16 image encoder at 224 px and a BERT-base text encoder with
# cross-attention, then an MLP head 768-1024-128-64-16-1.
BLIP_VISION_L = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     image_size=224, patch_size=16)  # fmt: skip
BLIP_TEXT_BASE = dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, encoder_hidden_size=1024)  # fmt: skip
IMAGEREWARD_HEAD = [768, 1024, 128, 64, 16, 1]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_counts() -> dict[str, int]:
    """Parameter counts of every model, built on the meta device from the configs above."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        BlipConfig,
        BlipForImageTextRetrieval,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    counts: dict[str, int] = {}
    with torch.device("meta"):
        qwen = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=QWEN25_VL_3B_TEXT, vision_config=QWEN25_VL_3B_VISION)
        )
        counts["qwen"] = count(qwen)
        counts["qwen_vision"] = count(qwen.model.visual)
        counts["lora_per_rank"] = sum(
            m.in_features + m.out_features
            for name, m in qwen.named_modules()
            if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS and "language_model" in name
        )
        counts["sd15_unet"] = count(UNet2DConditionModel(**SD15_UNET))
        counts["sdxl_unet"] = count(UNet2DConditionModel(**SDXL_UNET))
        counts["vae"] = count(AutoencoderKL(**SD_VAE))
        counts["clip_l"] = count(CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)))
        counts["openclip_bigg"] = count(CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG_TEXT)))
        blip = BlipForImageTextRetrieval(BlipConfig(text_config=BLIP_TEXT_BASE, vision_config=BLIP_VISION_L))
        head = sum(a * b + b for a, b in zip(IMAGEREWARD_HEAD, IMAGEREWARD_HEAD[1:], strict=False))
        # ImageReward keeps the image encoder and the text encoder (no ITM head, no decoder).
        counts["imagereward"] = count(blip.vision_model) + count(blip.text_encoder) + head
    return counts


# ------------------------------------------------------------------------------------------------------------
# CPU measurements of inference activations (one model per subprocess)

_MEASURE = r"""
import json, sys, torch
from diffusers import AutoencoderKL, UNet2DConditionModel
kind, cfg, side, batch, dtype = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(2)
torch.manual_seed(0)
torch.set_default_dtype(getattr(torch, dtype))

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

with torch.no_grad():
    if kind == "vae":
        model = AutoencoderKL(**cfg).eval()
        x = torch.randn(batch, 4, side, side)
        run = lambda: model.decode(x).sample
    else:
        model = UNet2DConditionModel(**cfg).eval()
        extra = {}
        if cfg.get("addition_embed_type") == "text_time":
            extra = {"added_cond_kwargs": {"text_embeds": torch.randn(batch, 1280), "time_ids": torch.randn(batch, 6)}}
        x = torch.randn(batch, 4, side, side)
        ctx = torch.randn(batch, 77, cfg["cross_attention_dim"])
        run = lambda: model(x, 500, encoder_hidden_states=ctx, **extra).sample
    run()  # warm-up: oneDNN primitives and caches are made once
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM)
    before = status("VmRSS")
    run()
    peak = status("VmHWM")
print(json.dumps({"activation_bytes": peak - before}))
"""


def measure_cpu(kind: str, config: dict, side: int, batch: int, dtype: str = "float32") -> float:
    """Rise of the peak resident memory (bytes) during one forward/decode of ``batch`` latents of ``side`` x
    ``side``, in ``dtype``, after a warm-up call."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind, json.dumps(config), str(side), str(batch), dtype],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["activation_bytes"])


# ------------------------------------------------------------------------------------------------------------
# The estimate


@dataclass
class Setting:
    """One training configuration (examples/configs/*.yaml) as far as memory is concerned."""

    name: str
    unet: str
    text_encoders: tuple[str, ...]
    latent_side: int
    num_envs: int  # queries_per_update * group_size: episodes sampled at once
    turns_per_minibatch: int  # K * num_envs / minibatches
    context_tokens: int  # per turn: chat template + image tokens + query/prompt text
    answer_tokens: int  # max_new_tokens of the policy
    lora_r: int


def policy_activation_bytes(tokens: int, h: int, i: int, layers: int, checkpointing: bool) -> float:
    per_token_layer = 2 * (15 * h + 4 * i)
    if checkpointing:
        return tokens * (layers * 2 * h + per_token_layer)
    return tokens * layers * per_token_layer


def logits_bytes(turns: int, answer_tokens: int, vocab: int) -> float:
    return 2 * turns * (answer_tokens + 1) * vocab * 14


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--measure-cpu", action="store_true", help="measure UNet/VAE inference activations on CPU")
    args = parser.parse_args()
    c = build_counts()
    h, i, layers = QWEN25_VL_3B_TEXT["hidden_size"], QWEN25_VL_3B_TEXT["intermediate_size"], 36
    vocab = QWEN25_VL_3B_TEXT["vocab_size"]
    lines = [
        "Models built on the `meta` device from their real configs (parameter counts are exact for those configs); "
        "activation terms are the formulas of the script's docstring; CPU measurements (if any) on the machine "
        "above, float32 halved for fp16.",
        "",
        "## Parameters",
        "",
    ]
    rows = [
        ("Qwen2.5-VL-3B-Instruct (policy), all", c["qwen"]),
        ("  of which the vision tower (frozen, no LoRA)", c["qwen_vision"]),
        ("SD1.5 UNet", c["sd15_unet"]),
        ("SDXL UNet", c["sdxl_unet"]),
        ("VAE (SD1.5 and SDXL share the architecture)", c["vae"]),
        ("CLIP ViT-L/14 text encoder (SD1.5; SDXL's first)", c["clip_l"]),
        ("OpenCLIP bigG text encoder with projection (SDXL's second)", c["openclip_bigg"]),
        ("ImageReward (BLIP ViT-L/16 + BERT-base + MLP head)", c["imagereward"]),
    ]
    lines += report.table(
        ["model", "parameters", "weights (bf16/fp16)"],
        [[name, f"{n / 1e6:,.1f} M", f"{2 * n / GiB:.2f} GiB"] for name, n in rows],
        align="lrr",
    )
    lines += ["", f"LoRA on the language model's 7 projections: {c['lora_per_rank']:,} parameters per unit of rank "
              f"(r = 16: {16 * c['lora_per_rank'] / 1e6:.1f} M).", ""]  # fmt: skip

    # Calibrate the policy formula on the measured H100 step: 8 turns, 372 context + 64 answer tokens, r = 16,
    # no optimizer states (the benchmark times score + backward), no checkpointing: peak 29.9 GiB.
    measured_peak = 29.9
    tokens = 8 * (372 + 64)
    analytic = (
        2 * c["qwen"] + 16 * c["lora_per_rank"] * 8
        + policy_activation_bytes(tokens, h, i, layers, False) + logits_bytes(8, 64, vocab)
    ) / GiB  # fmt: skip
    calibration = measured_peak / analytic
    lines += [
        "## The formula against the measured training step",
        "",
        "benchmarks/results/agent_gpu.md measured, on an H100, a training step (score with gradients + backward) "
        "of Qwen2.5-VL-3B with LoRA r = 16, 8 turns of 372 context + 64 answer tokens, no gradient checkpointing: "
        f"**peak {measured_peak} GiB**. The formula gives {analytic:.1f} GiB for the same step (weights, LoRA "
        f"weights and gradients, activations, logits): it is {100 * (calibration - 1):.0f} % low (the allocator's "
        "cache and fragmentation, kernel workspaces and temporaries the count leaves out). The *calibrated* "
        f"column below multiplies the formula's activation and logits terms by {calibration:.2f}.",
        "",
    ]

    measured: dict[str, float] = {}
    if args.measure_cpu:
        measured["sd15_unet"] = measure_cpu("unet", SD15_UNET, 64, 2) / 2 / 2  # per CFG pair member, fp16
        measured["sd15_vae"] = measure_cpu("vae", SD_VAE, 64, 1) / 2
        measured["sdxl_vae"] = 4 * measured["sd15_vae"]  # the same architecture at 4x the pixels
        # bf16 on CPU (float32 weights would need 10 GiB); at 64^2 latents, x4 for 128^2.
        measured["sdxl_unet"] = measure_cpu("unet", SDXL_UNET, 64, 2, "bfloat16") / 2 * 4
        lines += [
            "## Inference activations, measured on CPU (per image, fp16 = float32 / 2)",
            "",
            *report.table(
                ["part", "per image"],
                [
                    [label, f"{measured[key] / GiB:.2f} GiB"]
                    for label, key in (
                        ("SD1.5 UNet, 64 x 64 latents (one of the CFG pair)", "sd15_unet"),
                        ("SD1.5 VAE decode, 512 x 512", "sd15_vae"),
                        ("SDXL UNet, 128 x 128 latents (measured at 64 x 64, x 4)", "sdxl_unet"),
                        ("SDXL VAE decode, 1024 x 1024 (the SD1.5 row x 4)", "sdxl_vae"),
                    )
                ],
                align="lr",
            ),
            "",
            "The rise of the peak resident memory (VmHWM, reset before the call) over the resident memory before "
            "it, during a second call (after a warm-up), float32 halved; the SDXL UNet was run in bfloat16 at "
            "64 x 64 latents and scaled by 4 for 128 x 128. The CPU kernels (oneDNN convolutions, flash attention "
            "for CPU) differ from CUDA's, so take these as the order of magnitude.",
            "",
        ]

    settings = [
        Setting("SD1.5 (examples/configs/paper_sd15.yaml)", "sd15_unet", ("clip_l",), 64, 32, 20, 180, 77, 16),
        Setting(
            "SDXL (examples/configs/paper_sdxl.yaml)",
            "sdxl_unet",
            ("clip_l", "openclip_bigg"),
            128,
            32,
            20,
            180,
            77,
            16,
        ),  # fmt: skip
    ]
    lines += [
        "## Peak GPU memory of a training run (one GPU)",
        "",
        "Resident: the policy (bf16) with its LoRA adapter and AdamW states (fp32), the diffusion model (fp16) and "
        "ImageReward (fp16). Rollout adds the policy's sampling (KV cache and kept logits; scaled from the "
        "measured 0.72 GiB for 8 turns) or the diffusion model's inference activations (UNet over the 2N "
        "classifier-free-guidance batch, VAE decode of N images), whichever is larger; the update adds the "
        "training step's activations for one minibatch. Peak = resident + the larger of the two.",
        "",
    ]
    peak_rows = []
    for s in settings:
        lora = s.lora_r * c["lora_per_rank"]
        resident = 2 * c["qwen"] + 16 * lora + 2 * (c[s.unet] + c["vae"] + sum(c[t] for t in s.text_encoders))
        resident += 2 * c["imagereward"]
        sampling = 0.72 * GiB * s.num_envs / 8
        if measured:
            vae_key = "sd15_vae" if s.latent_side == 64 else "sdxl_vae"
            diffusion = max(2 * s.num_envs * measured[s.unet], s.num_envs * measured[vae_key])
            rollout = max(sampling, diffusion)
            rollout_text = f"{rollout / GiB:.1f} GiB"
        else:
            rollout = sampling
            rollout_text = f"{rollout / GiB:.1f} GiB (policy only; diffusion not measured)"
        tokens = s.turns_per_minibatch * (s.context_tokens + s.answer_tokens)
        logits = logits_bytes(s.turns_per_minibatch, s.answer_tokens, vocab)
        plain = policy_activation_bytes(tokens, h, i, layers, False) + logits
        ckpt = policy_activation_bytes(tokens, h, i, layers, True) + logits
        peak_plain = resident + max(rollout, calibration * plain)
        peak_ckpt = resident + max(rollout, calibration * ckpt)
        peak_rows.append(
            [
                s.name,
                f"{resident / GiB:.1f} GiB",
                rollout_text,
                f"{plain / GiB:.1f} / {calibration * plain / GiB:.1f} GiB",
                f"{ckpt / GiB:.1f} / {calibration * ckpt / GiB:.1f} GiB",
                f"{peak_plain / GiB:.1f} / {peak_ckpt / GiB:.1f} GiB",
            ]
        )
    lines += report.table(
        [
            "configuration",
            "resident",
            "rollout extra",
            "update extra, no checkpointing (formula / calibrated)",
            "update extra, gradient checkpointing (formula / calibrated)",
            "peak (calibrated), no ckpt / ckpt",
        ],
        peak_rows,
        align="lrrrrr",
    )
    lines += [
        "",
        "Assumptions of the table: N = 32 episodes sampled at once (queries_per_update 4 x group_size 8), "
        "K = 5, minibatches of 4 episodes = 20 turns (minibatches: 8), previews of 256 x 256 (Qwen2.5-VL: 81 "
        "image tokens) and about 100 text tokens of chat template, query and prompt (180 context tokens a turn), "
        "answers of at most 77 tokens, LoRA r = 16. If the env decodes all N images in one VAE call, the VAE row "
        "times N is a large transient: decoding in slices (`pipeline.vae.enable_slicing()`) bounds it to one "
        "image.",
        "",
        f"Peak RSS of this script: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB.",
    ]
    # The header last: its load average then covers the CPU measurements.
    report.write(args.out, [*report.header("GPU memory of the paper's configurations (estimate)"), *lines])


if __name__ == "__main__":
    main()
