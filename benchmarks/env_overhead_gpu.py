"""Env overhead at full size on a GPU: the REAL SD1.5 and SDXL architectures (random weights), fp16, batch 8.

Wall time of one batch of PromptLoop episodes (the vector env over N = batch trajectories, a new prompt at
each of K refinement points, full VAE-decode previews) relative to one bare diffusers pipeline call with the same
model, steps, batch and guidance, for K = 0, 1, 3, 5. K = 0 is the engine's own loop run straight through (encode,
the pipeline's scheduler and denoiser, decode) with no refinement point. Timings are synchronised; each round
times every variant once, ratios are taken per round and the medians reported.

The models are built from their configs in code (the UNet2DConditionModel configs of SD1.5 and SDXL base, the
CLIP text encoders' configs, the SD / SDXL VAE config) with random weights, directly on the GPU: only the
architecture matters for time. The tokenizer is the tiny byte-level CLIP tokenizer of ``promptloop_env.testing``:
prompts are padded to 77 tokens, which is all the text encoder's cost depends on.

What the paper's numbers include and ours do not: the paper's 1.05 / 1.13 / 1.23 (K = 1 / 3 / 5, SDXL, A100,
batch 8, 15.00 -> 18.43 s/img) are for the whole PromptLoop inference, the MLLM policy generating the new
prompts included; this script measures the environment's share alone (previews, re-encoding, the paused loop,
bookkeeping). The agent's cost is ``benchmarks/agent_gpu.py``'s business.

    python benchmarks/env_overhead_gpu.py                       # both models, batch 8, 50 steps, 3 rounds
    python benchmarks/env_overhead_gpu.py --models sdxl --steps 30 --rounds 3
    python benchmarks/env_overhead_gpu.py --smoke               # CPU, tiny configs, seconds (the test runs it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch

OUT = Path(__file__).parent / "results"
PAPER = {"sdxl": {1: 1.05, 3: 1.13, 5: 1.23}}  # Lee & Ye, arXiv 2510.00430: SDXL, A100, batch 8
PAPER_NOTE = "paper (SDXL, A100, batch 8): 15.00 -> 18.43 s/img at K = 5, agent included"

# -- the real architectures, as configs ---------------------------------------------------------------------

CLIP_L = dict(  # openai/clip-vit-large-patch14's text tower: SD1.5's encoder and SDXL's first
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
    vocab_size=49408,
)
CLIP_BIGG = dict(  # OpenCLIP ViT-bigG/14's text tower: SDXL's second encoder (with projection: pooled)
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
    vocab_size=49408,
)
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 6 time ids x 256 + 1280 pooled
    cross_attention_dim=2048,  # 768 + 1280
    norm_num_groups=32,
)
VAE = dict(  # the SD / SDXL autoencoder (8x, 4 latent channels)
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
)
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
)


def _clip(tokenizer: Any, config: dict, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        **config,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def build_full_size(model: str, device: str, dtype: torch.dtype) -> Any:
    """SD1.5 or SDXL base with random weights, allocated on ``device`` and cast to ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from promptloop_env.testing import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        if model == "sd15":
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(**VAE, sample_size=512, scaling_factor=0.18215),
                text_encoder=_clip(tokenizer, CLIP_L, projection=False),
                tokenizer=tokenizer,
                unet=UNet2DConditionModel(**SD15_UNET),
                scheduler=PNDMScheduler(**SD15_SCHEDULER, skip_prk_steps=True),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(**VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                text_encoder=_clip(tokenizer, CLIP_L, projection=False),
                text_encoder_2=_clip(build_clip_tokenizer(), CLIP_BIGG, projection=True),
                tokenizer=tokenizer,
                tokenizer_2=build_clip_tokenizer(),
                unet=UNet2DConditionModel(**SDXL_UNET),
                scheduler=EulerDiscreteScheduler(**SD15_SCHEDULER, timestep_spacing="leading"),
                add_watermarker=False,
            )
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_smoke(model: str) -> Any:
    from promptloop_env.testing import tiny_stable_diffusion, tiny_stable_diffusion_xl

    return tiny_stable_diffusion(scheduler="ddim") if model == "sd15" else tiny_stable_diffusion_xl()


# -- measurement --------------------------------------------------------------------------------------------


def _zero_reward(images: np.ndarray, queries: list[str]) -> np.ndarray:
    return np.zeros(len(images))  # the bare call scores nothing either


def measure(
    pipe: Any,
    *,
    batch: int,
    steps: int,
    guidance: float,
    ks: list[int],
    rounds: int,
    device: str,
    preview_size: int | None = 256,
    warmup: bool = True,
) -> dict:
    """Per round: the bare call, the engine's loop straight through (K = 0), the vector env for each K > 0."""
    from promptloop_env import PromptLoopVectorEnv
    from promptloop_env.previews import to_uint8

    query = "a photo of a red house next to a tree"
    envs = {
        k: PromptLoopVectorEnv(
            num_envs=batch,
            pipeline=pipe,
            num_inference_steps=steps,
            num_refinements=k,
            guidance_scale=guidance,
            preview="full",
            preview_size=preview_size,
            reward=_zero_reward,
        )
        for k in ks
        if k > 0
    }
    backend = next(iter(envs.values())).engine.backend
    shape = backend.latent_shape()
    noise = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def bare(r: int) -> None:
        pipe(
            [query] * batch,
            latents=noise.to(device=backend.device, dtype=backend.dtype),
            num_inference_steps=steps,
            guidance_scale=guidance,
            output_type="np",
        )

    def straight(r: int) -> None:  # K = 0: encode, the whole loop, decode; no pause
        cond = backend.encode([query] * batch)
        traj = backend.start(noise, [torch.Generator().manual_seed(i) for i in range(batch)])
        backend.denoise(traj, cond, steps)
        to_uint8(backend.decode(traj.latents))

    def episode(k: int):
        def run(r: int) -> None:
            env = envs[k]
            env.reset(seed=r, options={"query": query, "latents": noise})
            for i in range(k):  # a new prompt each time, as an agent's rewrite: the text encoder runs
                env.step([f"{query}, detail {r} {i} {j}" for j in range(batch)])

        return run

    variants: dict[str, Any] = {"bare": bare}
    for k in ks:
        variants[f"K={k}"] = straight if k == 0 else episode(k)
    for fn in variants.values() if warmup else ():  # warm-up (cuDNN autotune, allocator, caches)
        fn(10_000)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, fn in variants.items():
            sync()
            start = time.perf_counter()
            fn(r)
            sync()
            times[name].append(time.perf_counter() - start)
    ratios = {
        name: statistics.median(t / b for t, b in zip(ts, times["bare"], strict=True)) for name, ts in times.items()
    }
    return {"times_s": times, "median_ratio": ratios}


def render(results: dict, args: argparse.Namespace, device: str) -> list[str]:
    """The result file's lines: the header of :mod:`report`, then one table per model."""
    lines = report.header("Env overhead at full size (random weights, real architectures)", [__file__, *args.argv])
    lines += [
        f"Run on {device}, {args.dtype}. Batch {args.batch}, T = {args.steps}, previews: full VAE decode at 256 px, "
        f"a new prompt at every refinement point, medians over {args.rounds} interleaved rounds of per-round "
        "ratios.",
        "",
        "K = 0 is the engine's loop run straight through (no pause). The paper's ratios include the MLLM agent "
        "writing the prompts; ours are the environment's share alone.",
        "",
    ]
    for model, result in results.items():
        settings = MODELS[model]
        label = "tiny config of the same family (smoke)" if args.smoke else settings["label"]
        lines += [
            f"## {model}: {label}, guidance {settings['guidance']}",
            "",
        ]
        rows = []
        for name, ts in result["times_s"].items():
            med = statistics.median(ts)
            k = None if name == "bare" else int(name.split("=")[1])
            paper = PAPER.get(model, {}).get(k) if k is not None else None
            paper_text = f"{paper:.2f}" if paper is not None else ("1.00" if name == "bare" and model in PAPER else "")
            rows.append(
                [name, f"{med:.3f}", f"{med / args.batch:.3f}", f"{result['median_ratio'][name]:.3f}", paper_text]
            )
        lines += report.table(
            ["variant", "median s / batch", "median s / img", "median ratio to bare", "paper ratio"],
            rows,
            align="lrrrr",
        )
        if model in PAPER:
            lines += ["", f"({PAPER_NOTE}.)"]
        lines.append("")
    return lines


MODELS = {
    "sd15": {"label": "SD1.5 UNet + CLIP ViT-L + VAE, 512 px, PNDM", "guidance": 7.5},
    "sdxl": {"label": "SDXL base UNet + CLIP ViT-L + bigG + VAE, 1024 px, Euler", "guidance": 5.0},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="sd15,sdxl", help="comma-separated: sd15, sdxl")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ks", default="0,1,3,5", help="numbers of refinement points to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    parser.add_argument(
        "--smoke", action="store_true", help="CPU, tiny configs, batch 2, 6 steps, 1 round: checks the script runs"
    )
    raw = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(raw)
    args.argv = raw
    ks = [int(k) for k in args.ks.split(",")]
    if args.smoke:
        args.batch, args.steps, args.rounds, args.dtype = 2, 6, 1, "float32"
        device, device_name = "cpu", "the CPU (smoke mode: tiny configs, not a measurement)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("No CUDA device: run with --smoke to check the script on CPU.")
        device, device_name = "cuda", torch.cuda.get_device_name()
    dtype = getattr(torch, args.dtype)
    results = {}
    for model in args.models.split(","):
        pipe = build_smoke(model) if args.smoke else build_full_size(model, device, dtype)
        guidance = MODELS[model]["guidance"]
        settings = dict(batch=args.batch, steps=args.steps, guidance=guidance, ks=ks, rounds=args.rounds, device=device)
        if args.smoke:  # previews at the tiny image size, no warm-up round
            settings.update(preview_size=None, warmup=False)
        try:
            results[model] = measure(pipe, **settings)
        except FloatingPointError as err:  # random fp16 weights can overflow; timing does not need fp16 values
            if dtype != torch.float16:
                raise
            print(f"{model}: float16 overflowed with random weights ({err}); retrying in bfloat16")
            pipe = pipe.to(dtype=torch.bfloat16)
            results[model] = measure(pipe, **settings)
            results[model]["dtype"] = "bfloat16 (float16 overflowed)"
        del pipe
        if device == "cuda":
            torch.cuda.empty_cache()
    lines = render(results, args, device_name)
    if args.smoke:
        lines = [line.replace("full VAE decode at 256 px", "full VAE decode at the image size") for line in lines]
    out = Path(args.out) if args.out else OUT
    name = "env_overhead_gpu_smoke" if args.smoke else "env_overhead_gpu"
    report.write(out / f"{name}.md", lines)
    (out / f"{name}.json").write_text(json.dumps({"results": results, "args": vars(args)}, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
