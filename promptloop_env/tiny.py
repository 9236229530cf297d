"""Deprecated alias of :mod:`promptloop_env.testing` (renamed so that it is not confused with the ``"tiny"``
preview); importing it warns, and it goes in the next minor release."""

import warnings

from .testing import *  # noqa: F403
from .testing import __all__  # noqa: F401

warnings.warn(
    "promptloop_env.tiny is now promptloop_env.testing (the random test pipelines); the old name goes in the next "
    "minor release.",
    DeprecationWarning,
    stacklevel=2,
)
