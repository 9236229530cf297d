"""Quiet loading: what our own loading calls would print that says nothing is wrong, hidden for those calls only.

``gym.make("PromptLoop-v0")`` loads a 21 MB pipeline: diffusers draws "Loading pipeline components" progress bars
and transformers warns, once per process, that its image processors fall back to PIL without torchvision (the
fallback serves us). Inside :func:`quiet_loading` both are off; the user's own settings (progress bars, verbosity)
are restored on exit and never changed globally, and every other warning still shows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["quiet_loading"]


class _DropTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Progress bars of diffusers and transformers off, and transformers' torchvision-fallback notice dropped,
    for the duration of the block."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    bars = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
    notice = _DropTorchvisionFallback()
    loggers = [logging.getLogger("transformers.utils.import_utils"), logging.getLogger("transformers")]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    for logger in loggers:
        logger.addFilter(notice)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(notice)
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()
