"""Shared fixtures: tiny pipelines built from configs in memory (cached per process), tiny training runs."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# What previews cache from a model (fitted linear factors) goes to a folder of this test session, not the user's.
if "PROMPTLOOP_CACHE" not in os.environ:
    os.environ["PROMPTLOOP_CACHE"] = tempfile.mkdtemp(prefix="promptloop-cache-")
    atexit.register(shutil.rmtree, os.environ["PROMPTLOOP_CACHE"], ignore_errors=True)


@functools.cache
def _pipeline(scheduler: str = "ddim", prediction_type: str = "epsilon"):
    from promptloop_env.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(scheduler=scheduler, prediction_type=prediction_type)


@pytest.fixture
def make_pipeline():
    """``make_pipeline(scheduler, prediction_type)``: a cached tiny Stable Diffusion pipeline."""
    return _pipeline


@pytest.fixture
def pipeline():
    return _pipeline()


@pytest.fixture
def tiny_run(tmp_path):
    """``tiny_run(name, **overrides)``: the ``TrainConfig`` of a seconds-long run on the toy world (T = 6, K = 2,
    2 queries x G = 2, 2 updates, a checkpoint and preview strips every update), writing to ``tmp_path / name``."""
    from agents.config import TrainConfig

    def make(name: str, **overrides) -> TrainConfig:
        settings = dict(
            num_inference_steps=6,
            num_refinements=2,
            queries_per_update=2,
            group_size=2,
            updates=2,
            checkpoint_every=1,
            log_images_every=1,
            out=str(tmp_path / name),
        )
        return TrainConfig(**{**settings, **overrides})

    return make
