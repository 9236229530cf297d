"""Shared fixtures: tiny pipelines built from configs in memory (cached per process)."""

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
    from promptloop_env.tiny import tiny_stable_diffusion

    return tiny_stable_diffusion(scheduler=scheduler, prediction_type=prediction_type)


@pytest.fixture
def make_pipeline():
    """``make_pipeline(scheduler, prediction_type)``: a cached tiny Stable Diffusion pipeline."""
    return _pipeline


@pytest.fixture
def pipeline():
    return _pipeline()
