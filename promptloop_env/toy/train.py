"""Train the toy world's text-to-image model from scratch on a CPU: seeded, by step count, a few dozen minutes.

Stage 1 trains the ``AutoencoderKL`` (32x32 RGB <-> 8x8x4) on renders and sets its ``scaling_factor`` so the
latents have unit variance. Stage 2 trains the UNet and the text encoder together, with epsilon prediction on
a cosine schedule, min-SNR loss weighting, an EMA of the weights and classifier-free-guidance dropout, on
latents of train-split scenes. The data is what gives the world its failures (toy world v2):

- captions are in the model's own dialect (:func:`~promptloop_env.toy.grammar.model_caption`: the canonical
  caption, a random phrasing only ``--dialect-rate`` of the time), so users' wording is followed less well;
- in ``--neglect`` of the two-object scenes the image does not show one of the objects (captions that name
  more than the image shows), and in ``--leak`` of them it draws one object in the other's colour, so the
  model neglects an object or leaks a colour in a noise-dependent fraction of its samples. Which object:
  the second-named one (``--failed-object second``, toy world v2) or either at random (``either``, v3);
- in ``--restate`` of the two-object scenes the caption makes one object salient: it names it again at the end
  (``--salient-form restate``, :func:`~promptloop_env.toy.grammar.restate`) or doubles its colour word in place
  (``emphasis``, :func:`~promptloop_env.toy.grammar.emphasise`); that object is always drawn as stated and the
  failure, at the same rate, falls on the other one (meant to make a missing object's salience help and a blind
  one not; the toy world v3 attempt measured how much a model learns of the restate form:
  ``benchmarks/results/toy_world_v3.md``);
- with ``--plain-colors`` every caption names a colour by its caption word only ("red", never "scarlet"), so
  the colour words users reach for (:func:`~promptloop_env.toy.grammar.color_synonyms`) are words the model
  never sees (toy world v5): a user's "navy box" is a box of any colour to it until a prompt says "blue".

``--init-from FOLDER`` continues from a trained toy model (its VAE, text encoder and UNet) instead of starting
from scratch (the toy world v3 attempt was the v2 model trained on for a second stage with the new data).

Every ``--eval-every`` steps the EMA model samples held-out queries in its own dialect and in users' style
(DDIM, 20 steps, the env's guidance) and the scorer grades them; the checkpoint with the best fraction on its
own dialect is kept. Training is by step count, not minutes, so a slower machine gives the same model. The
pipeline is written with ``save_pretrained`` (safetensors) to ``--out``, atomically.

    python -m promptloop_env.toy.train --out promptloop_env/toy/weights --log benchmarks/results/toy_training.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .grammar import (
    Scene,
    color_synonyms,
    model_caption,
    random_scene,
    sample_queries,
    spec_of,
    split_of,
    vocabulary,
)
from .model import TOY_GUIDANCE_SCALE, TOY_MODEL_DIR, build_toy_pipeline, load_toy_pipeline
from .renderer import render
from .scorer import accuracy


@dataclass
class TrainConfig:
    seed: int = 0
    out: str = str(TOY_MODEL_DIR)
    log: str = "benchmarks/results/toy_training.md"
    vae_steps: int = 600
    vae_batch: int = 64
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    pool: int = 60_000
    unet_steps: int = 4000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    min_snr: float = 5.0
    ema: float = 0.995
    cfg_dropout: float = 0.1
    caption_drop: float = 0.1
    dialect_rate: float = 0.08
    neglect: float = 0.5
    leak: float = 0.0
    failed_object: str = "second"
    restate: float = 0.0
    salient_form: str = "restate"
    plain_colors: bool = False
    init_from: str = ""
    share_vae: bool = False
    eval_every: int = 500
    eval_queries: int = 64
    eval_seeds: int = 2
    threads: int = 0
    vae_from: str = ""
    unet_channels: str = "64,128"


def draw_failure(
    rng: np.random.Generator,
    scene: Scene,
    neglect: float = 0.0,
    leak: float = 0.0,
    failed_object: str = "second",
    restate: float = 0.0,
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """How a training image of ``scene`` departs from its caption: ``(restated, hidden, leaked)``.

    ``restated``: the object its captions name again (-1: none; with probability ``restate`` for two objects,
    either one). A two-object render fails with probability ``neglect`` (an object ``hidden``) or ``leak`` (an
    object drawn in the other's colour, ``leaked``); the failing object is the non-restated one when one is
    restated, else the second-named one (``failed_object="second"``) or either (``"either"``). One-object
    scenes never fail."""
    restated, hidden, leaked = -1, (), ()
    if len(scene.objects) == 2:
        if restate > 0 and rng.random() < restate:
            restated = int(rng.integers(2))
        u = rng.random()
        if u < neglect + leak:
            if restated >= 0:
                target = 1 - restated
            elif failed_object == "either":
                target = int(rng.integers(2))
            else:
                target = 1
            if u < neglect:
                hidden = (target,)
            else:
                leaked = (target,)
    return restated, hidden, leaked


def _images(rng: np.random.Generator, n: int, train_only: bool = False, **failures):
    """``n`` random scenes, their renders in [-1, 1] and the object each one's captions restate (-1: none),
    failing as :func:`draw_failure` draws with ``failures``."""
    scenes, images, restated = [], [], []
    while len(scenes) < n:
        scene = random_scene(rng)
        if train_only and split_of(spec_of(scene)) != "train":
            continue
        salient, hidden, leaked = draw_failure(rng, scene, **failures)
        scenes.append(scene)
        restated.append(salient)
        images.append(render(scene, rng=rng, hidden=hidden, leaked=leaked))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return scenes, pixels, restated


def forget_words(text_encoder, tokenizer, words: list[str], seen: list[str], seed: int) -> list[str]:
    """Draw again, from the text encoder's initial distribution, the token-embedding rows used by ``words`` and
    by none of the ``seen`` words; return those tokens. A continued model then knows ``words`` no better than a
    model whose captions never used them."""

    def tokens_of(word: str) -> list[int]:
        return tokenizer(word, add_special_tokens=False).input_ids

    kept = {t for word in seen for t in tokens_of(word)}
    ids = sorted({t for word in words for t in tokens_of(word)} - kept)
    table = text_encoder.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    std = text_encoder.config.initializer_range * text_encoder.config.initializer_factor
    with torch.no_grad():
        table[ids] = torch.randn(len(ids), table.shape[1], generator=generator) * std
    return tokenizer.convert_ids_to_tokens(ids)


def _save_atomically(write, out: Path) -> None:
    """``write(folder)`` into a temporary folder, then swap it in: a crash never leaves a half-written model."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def train_vae(pipe, cfg: TrainConfig, rng: np.random.Generator, log) -> None:
    vae = pipe.vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    start = time.perf_counter()
    for step in range(1, cfg.vae_steps + 1):
        _, x, _ = _images(rng, cfg.vae_batch)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon, x)
        loss = mse + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.vae_steps:
            log(f"vae step {step}: mse {mse.item():.5f} ({(time.perf_counter() - start) / 60:.1f} min)")
    vae.eval()
    with torch.no_grad():
        _, x, _ = _images(rng, 1024)
        std = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(256)]).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    log(f"vae scaling_factor = {1.0 / std:.4f}")


@torch.no_grad()
def evaluate(pipe, queries: list[str], seeds: int) -> dict[str, float]:
    pipe.unet.eval()
    pipe.text_encoder.eval()
    images, all_queries = [], []
    for seed in range(seeds):
        out = pipe(
            queries,
            num_inference_steps=20,
            guidance_scale=TOY_GUIDANCE_SCALE,
            output_type="np",
            generator=torch.Generator().manual_seed(seed),
        )
        images.append((out.images * 255).round().astype(np.uint8))
        all_queries += queries
    return accuracy(np.concatenate(images), all_queries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, value in asdict(TrainConfig()).items():
        if isinstance(value, bool):
            parser.add_argument(f"--{field.replace('_', '-')}", action="store_true")
        else:
            parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    if cfg.failed_object not in ("second", "either"):
        raise SystemExit(f"--failed-object must be 'second' or 'either'; got {cfg.failed_object!r}")
    if cfg.salient_form not in ("restate", "emphasis"):
        raise SystemExit(f"--salient-form must be 'restate' or 'emphasis'; got {cfg.salient_form!r}")
    if not (0 <= cfg.neglect and 0 <= cfg.leak and cfg.neglect + cfg.leak <= 1 and 0 <= cfg.restate <= 1):
        raise SystemExit(
            "--neglect and --leak must be >= 0 with a sum <= 1, and --restate in [0, 1]; got "
            f"{cfg.neglect}, {cfg.leak}, {cfg.restate}"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lines: list[str] = []

    def log(message: str) -> None:
        print(message, flush=True)
        lines.append(message)

    t0 = time.perf_counter()
    try:
        channels = tuple(int(c) for c in cfg.unet_channels.split(","))
    except ValueError:
        raise SystemExit(
            f"--unet-channels must be comma-separated integers such as 64,128; got {cfg.unet_channels!r}"
        ) from None
    if cfg.init_from:
        pipe = load_toy_pipeline(cfg.init_from, cache=False)  # its own VAE, or the shipped one it shares
    else:
        pipe = build_toy_pipeline(seed=cfg.seed, block_out_channels=channels)
    counts = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")
    }
    log(f"parameters: {counts}")
    out = Path(cfg.out)
    if cfg.init_from:
        log(f"continuing from {cfg.init_from} (its VAE, text encoder and UNet; stage 1 skipped)")
        if cfg.plain_colors:
            synonyms = color_synonyms()
            seen = [w for w in vocabulary() if w not in synonyms]
            tokens = forget_words(pipe.text_encoder, pipe.tokenizer, synonyms, seen, cfg.seed)
            log(f"forgot the colour synonyms {', '.join(synonyms)}: token rows {', '.join(tokens)} drawn again")
    elif cfg.vae_from:
        from diffusers import AutoencoderKL

        pipe.vae = AutoencoderKL.from_pretrained(cfg.vae_from, use_safetensors=True, local_files_only=True).eval()
        log(f"vae loaded from {cfg.vae_from} (stage 1 skipped)")
    else:
        train_vae(pipe, cfg, rng, log)
        _save_atomically(lambda folder: pipe.vae.save_pretrained(folder), out.with_name(out.name + ".vae"))
    vae_minutes = (time.perf_counter() - t0) / 60

    # Stage 2 draws from its own streams, so that reusing a trained VAE (--vae-from) gives the same model as
    # a run that trains it.
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    # Latent pool of train-split scenes (renders with jitter), encoded once.
    scenes, pixels, restated = _images(
        rng,
        cfg.pool,
        train_only=True,
        neglect=cfg.neglect,
        leak=cfg.leak,
        failed_object=cfg.failed_object,
        restate=cfg.restate,
    )
    with torch.no_grad():
        pool = (
            torch.cat([pipe.vae.encode(c).latent_dist.mean for c in pixels.split(512)]) * pipe.vae.config.scaling_factor
        )
    del pixels
    log(f"latent pool: {len(pool)} train-split scenes, latent std {pool.std().item():.3f}")

    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    alphas = noise_scheduler.alphas_cumprod
    unet, text_encoder, tokenizer = pipe.unet.train(), pipe.text_encoder.train(), pipe.tokenizer
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(params, decay=cfg.ema, use_ema_warmup=False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup))
    eval_sets = {
        "model": sample_queries(cfg.eval_queries, "test", seed=cfg.seed + 1000, style="model"),
        "user": sample_queries(cfg.eval_queries, "test", seed=cfg.seed + 2000, style="user"),
    }
    curve: list[dict] = []
    best: tuple = ((-1.0, -1.0), 0, None, None)
    start = time.perf_counter()
    losses: list[float] = []
    for step in range(1, cfg.unet_steps + 1):
        unet.train()
        text_encoder.train()
        idx = rng.integers(len(pool), size=cfg.batch)
        latents = pool[idx]
        texts = [
            ""
            if rng.random() < cfg.cfg_dropout
            else model_caption(
                scenes[i],
                rng,
                dialect_rate=cfg.dialect_rate,
                drop=cfg.caption_drop,
                restated=None if restated[i] < 0 else restated[i],
                salient_form=cfg.salient_form,
                plain_colors=cfg.plain_colors,
            )
            for i in idx
        ]
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        hidden = text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (cfg.batch,))
        noisy = noise_scheduler.add_noise(latents, noise, t)
        per_sample = F.mse_loss(unet(noisy, t, encoder_hidden_states=hidden).sample, noise, reduction="none")
        # min-SNR weighting (Hang et al. 2023) for epsilon prediction: min(SNR, gamma) / SNR.
        snr = alphas[t] / (1 - alphas[t])
        weight = snr.clamp(max=cfg.min_snr) / snr if cfg.min_snr > 0 else torch.ones_like(snr)
        loss = (per_sample.mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.step(params)
        losses.append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.unet_steps:
            elapsed = time.perf_counter() - start
            ema.store(params)
            ema.copy_to(params)  # evaluate (and save) the EMA weights
            accs = {name: evaluate(pipe, queries, cfg.eval_seeds) for name, queries in eval_sets.items()}
            acc = accs["model"]
            row = {
                "step": step,
                "minutes": round(elapsed / 60, 2),
                "loss": round(float(np.mean(losses[-100:])), 4),
                "images_per_s": round(step * cfg.batch / elapsed, 1),
            } | {k: round(v, 3) for k, v in acc.items()}
            row["user_fraction"] = round(accs["user"]["fraction"], 3)
            curve.append(row)
            log(json.dumps(row))
            # Keep the best checkpoint by the scorer on the model's own dialect (ties go to the later one),
            # written as it is found, so an interrupted run still leaves its best model behind.
            key = (acc["fraction"], acc["all_correct"])
            if key >= best[0]:
                best = (key, step, copy.deepcopy(unet.state_dict()), copy.deepcopy(text_encoder.state_dict()))

                def write(folder: Path, step: int = step) -> None:
                    pipe.save_pretrained(folder, safe_serialization=True)
                    if cfg.share_vae:  # shipped without its copy of the main model's VAE (toy-b)
                        shutil.rmtree(folder / "vae")
                    config = asdict(cfg) | {"chosen_step": step}
                    (folder / "training_config.json").write_text(json.dumps(config, indent=1))

                _save_atomically(write, out)
                log(f"saved the best so far (step {step}) to {out}")
            ema.restore(params)
    unet_minutes = (time.perf_counter() - start) / 60
    unet.load_state_dict(best[2])
    text_encoder.load_state_dict(best[3])
    unet.eval()
    text_encoder.eval()
    chosen = next(r for r in curve if r["step"] == best[1])
    size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    log(f"saved {out} ({size_mb:.1f} MB), checkpoint of step {chosen['step']}")

    keys = [k for k in curve[0] if k not in ("step", "minutes", "loss", "images_per_s")]
    md = [
        "# Toy model training",
        "",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Command: `python -m promptloop_env.toy.train --seed {cfg.seed} "
        + ("" if cfg.init_from else f"--vae-steps {cfg.vae_steps} --unet-channels {cfg.unet_channels} ")
        + f"--unet-steps {cfg.unet_steps} --pool {cfg.pool} "
        f"--neglect {cfg.neglect} --leak {cfg.leak} --failed-object {cfg.failed_object} --restate {cfg.restate} "
        + (f"--salient-form {cfg.salient_form} " if cfg.salient_form != "restate" else "")
        + ("--plain-colors " if cfg.plain_colors else "")
        + f"--dialect-rate {cfg.dialect_rate} --lr {cfg.lr} --eval-every {cfg.eval_every}"
        + (f" --vae-from {cfg.vae_from}" if cfg.vae_from else "")
        + (f" --init-from {cfg.init_from}" if cfg.init_from else "")
        + (" --share-vae" if cfg.share_vae else "")
        + "`  ",
        f"Parameters: UNet {counts['unet']:,}, VAE {counts['vae']:,}, text encoder {counts['text_encoder']:,}.  ",
        "Wall time: "
        + ("" if cfg.init_from else f"VAE {vae_minutes:.1f} min, ")
        + f"UNet + text encoder {unet_minutes:.1f} min "
        f"({cfg.unet_steps * cfg.batch / (unet_minutes * 60):.0f} images/s at batch {cfg.batch}), "
        f"{torch.get_num_threads()} CPU threads.  ",
        f"Evaluation (EMA weights): {cfg.eval_queries} held-out queries in the model's dialect (the columns) and "
        f"{cfg.eval_queries} in users' style (`user_fraction`) x {cfg.eval_seeds} seeds, DDIM 20 steps, guidance "
        f"{TOY_GUIDANCE_SCALE}, graded by the scorer. Kept: step {chosen['step']} (best fraction, own dialect).",
        "",
        "| step | min | loss | img/s | " + " | ".join(keys) + " |",
        "|" + "---:|" * (4 + len(keys)),
    ]
    for r in curve:
        md.append(
            f"| {r['step']} | {r['minutes']} | {r['loss']} | {r['images_per_s']} | "
            + " | ".join(str(r[k]) for k in keys)
            + " |"
        )
    md += ["", "```", *lines, "```"]
    Path(cfg.log).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.log).write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
