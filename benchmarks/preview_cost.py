"""The cost of a preview: full VAE decode vs tiny autoencoder vs linear latent->RGB, and their error on the toy model.

1. Stable Diffusion 1.5 sizes: an ``AutoencoderKL`` with SD1.5's VAE config and an ``AutoencoderTiny`` with the
   TAESD architecture (diffusers' defaults are TAESD's), both with random weights built from config (nothing is
   downloaded; the cost of a forward pass does not depend on the weights' values), decoding one 4 x 64 x 64
   latent to a 512 x 512 preview, and the linear map on the same latent. Variants are interleaved round by
   round; the table gives medians and the medians of the per-round ratios to the full decode. Also the one-off
   cost of fitting linear factors (``fit_linear_preview``) for that VAE on this machine.
2. The toy model (shipped, trained): the same three costs, and how far each cheap preview is from the full
   decode on clean estimates x̂0 of real trajectories (RMSE on 0..255 RGB at the preview size), with the best
   linear map fitted on those very x̂0 (an oracle bound for any linear preview) and the best constant image.

    python benchmarks/preview_cost.py --out benchmarks/results/preview_cost.md [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch
import torch.nn.functional as F

from promptloop_env.backends import make_backend
from promptloop_env.previews import (
    FullDecodePreview,
    LinearPreview,
    TinyPreview,
    fit_linear_preview,
    make_preview,
)

# Stable Diffusion 1.5's VAE (stable-diffusion-v1-5/stable-diffusion-v1-5, vae/config.json).
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)


class _VaeOnly:
    """What the previews and the fit read from a backend: the pipeline's VAE, the image size, the device."""

    def __init__(self, vae, size: int):
        self.pipeline = type("Pipeline", (), {"vae": vae})()
        self.height = self.width = size
        self.device = torch.device("cpu")

    @torch.no_grad()
    def decode(self, latents):
        image = self.pipeline.vae.decode(latents / self.pipeline.vae.config.scaling_factor, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def interleaved(variants: dict, latents: torch.Tensor, rounds: int) -> dict[str, tuple[float, float]]:
    """``{name: (median seconds, median ratio to the first variant)}`` over interleaved rounds (1 warm-up)."""
    for fn in variants.values():
        fn(latents)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn, latents))
    base = next(iter(variants))
    return {
        name: (statistics.median(ts), statistics.median(t / b for t, b in zip(ts, times[base], strict=True)))
        for name, ts in times.items()
    }


def sd15_section(rounds: int, fit_images: int) -> list[str]:
    from diffusers import AutoencoderKL, AutoencoderTiny

    torch.manual_seed(0)
    vae = AutoencoderKL(**SD15_VAE).eval().requires_grad_(False)
    tiny = AutoencoderTiny().eval().requires_grad_(False)  # diffusers' defaults: the TAESD architecture
    backend = _VaeOnly(vae, 512)
    start = time.perf_counter()
    fitted = fit_linear_preview(backend, num_images=fit_images, max_side=256)
    fit_s = time.perf_counter() - start
    size = (512, 512)
    variants = {
        "full VAE decode (AutoencoderKL, SD1.5 config)": FullDecodePreview(backend.decode, size),
        "tiny autoencoder (AutoencoderTiny, TAESD architecture)": TinyPreview(tiny, size),
        "linear latent->RGB": LinearPreview(fitted.weight, fitted.bias, size),
    }
    latents = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        results = interleaved(variants, latents, rounds)
    params = {"full": sum(p.numel() for p in vae.decoder.parameters()) + vae.post_quant_conv.weight.numel(),
              "tiny": sum(p.numel() for p in tiny.decoder.parameters())}  # fmt: skip
    lines = [
        "## SD1.5 sizes: one 4 x 64 x 64 latent -> 512 x 512 preview (batch 1)",
        "",
        f"Random weights, built from config. Decoder parameters: full {params['full'] / 1e6:.1f} M, "
        f"tiny {params['tiny'] / 1e6:.2f} M. Medians of {rounds} interleaved rounds after a warm-up.",
        "",
        *report.table(
            ["preview", "median time", "median ratio to full decode"],
            [[name, f"{seconds * 1e3:.1f} ms", f"{ratio:.4f}"] for name, (seconds, ratio) in results.items()],
            align="lrr",
        ),
        "",
        f"Fitting linear factors for this VAE on this CPU (`fit_linear_preview`, {fit_images} synthetic images "
        f"at 256 x 256, each encoded and decoded, plus {fit_images} Gaussian latents decoded): {fit_s:.1f} s, "
        "once per VAE (then cached on disk). On a GPU this is a few seconds.",
        "",
    ]
    return lines


def toy_section(rounds: int, n: int) -> list[str]:
    from promptloop_env.prompts import make_prompt_source
    from promptloop_env.toy.model import load_toy_pipeline

    backend = make_backend(load_toy_pipeline(), num_inference_steps=20)
    size = (backend.height, backend.width)
    full = make_preview("full", backend, size)
    start = time.perf_counter()
    linear = make_preview(fit_linear_preview(backend), backend, size)
    fit_s = time.perf_counter() - start
    latents = torch.randn(1, *backend.latent_shape(), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cost = interleaved({"full VAE decode": full, "linear latent->RGB": linear}, latents, rounds * 5)

    # Error on x̂0 of real trajectories: n toy-test queries, 20 steps, x̂0 after steps 5, 10, 15 and 20.
    source = make_prompt_source("toy-test")
    rng = np.random.default_rng(0)
    queries = [source(rng) for _ in range(n)]
    cond = backend.encode(queries)
    noise = torch.randn(n, *backend.latent_shape(), generator=torch.Generator().manual_seed(0))
    traj = backend.start(noise, [torch.Generator().manual_seed(i) for i in range(n)])
    x0s = []
    for _ in range(4):
        backend.denoise(traj, cond, 5)
        x0s.append(backend.predict_x0(traj))
    oracle = oracle_linear(backend, torch.cat(x0s), size)
    rows = []
    for step, x0 in zip((5, 10, 15, 20), x0s, strict=True):
        exact = full(x0).astype(float)
        const = np.sqrt(((exact - exact.mean(axis=(0, 1, 2))) ** 2).mean())
        errs = [np.sqrt(((exact - p(x0).astype(float)) ** 2).mean()) for p in (linear, oracle)]
        rows.append([f"{step} / 20", f"{errs[0]:.1f}", f"{errs[1]:.1f}", f"{const:.1f}"])
    (name_full, (t_full, _)), (name_lin, (t_lin, r_lin)) = cost.items()
    return [
        f"## Toy model (shipped, trained): {size[0]} x {size[1]} images, {backend.latent_shape()} latents",
        "",
        *report.table(
            ["preview", "median time", "median ratio to full decode"],
            [[name_full, f"{t_full * 1e3:.2f} ms", "1.0000"], [name_lin, f"{t_lin * 1e3:.3f} ms", f"{r_lin:.4f}"]],
            align="lrr",
        ),
        "",
        f"No tiny autoencoder exists for the toy VAE (the TAESD models are trained for SD/SDXL/SD3/FLUX latents). "
        f"Fitting the linear factors took {fit_s:.1f} s.",
        "",
        f"Error against the full decode on x̂0 of {n} real trajectories (toy-test queries, DDIM 20 steps), RMSE on "
        "0..255 RGB per pixel at the image size. *Oracle linear*: the least-squares linear map fitted on these very "
        "x̂0 (the best any linear preview can do here); *constant*: the best single colour per channel.",
        "",
        *report.table(
            ["after step", "linear (fitted on synthetic images)", "oracle linear", "constant"], rows, align="lrrr"
        ),
        "",
    ]


def oracle_linear(backend, x0: torch.Tensor, size) -> LinearPreview:
    with torch.no_grad():
        target = F.adaptive_avg_pool2d(backend.decode(x0).float(), x0.shape[-2:])
    xs = x0.float().permute(0, 2, 3, 1).reshape(-1, x0.shape[1])
    ys = target.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([xs, torch.ones(len(xs), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, ys.double()).solution
    return LinearPreview(solution[:-1].T.float(), solution[-1].float(), size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-images", type=int, default=16)
    parser.add_argument("--toy-n", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sections = sd15_section(args.rounds, args.fit_images) + toy_section(args.rounds, args.toy_n)
    lines = report.header("Preview cost: full VAE decode vs tiny autoencoder vs linear")  # after the run: its load
    lines += [
        "CPU only. Absolute times depend on the machine's load (see the load average above); the ratios are "
        "medians of per-round ratios of interleaved runs, which a shared load affects less.",
        "",
        *sections,
        f"Total run time {time.perf_counter() - started:.0f} s.",
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
