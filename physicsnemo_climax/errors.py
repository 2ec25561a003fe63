# SPDX-License-Identifier: Apache-2.0
"""The errors a user can act on.

Each message names the item (key, file, variable, time, checkpoint) and, where
there is one, the way out. ``climax`` prints these as one or two lines and
exits with 1; ``climax --debug`` (or ``CLIMAX_DEBUG=1``) shows the traceback.
They subclass the built-in type a caller would catch (``ValueError``,
``OSError``, ...), so library code can keep catching those.
"""

from __future__ import annotations


class ClimaxError(Exception):
    """Base of the errors this package raises on purpose."""


class ConfigError(ClimaxError, ValueError):
    """A configuration value that cannot work; raised before anything runs."""


class DataError(ClimaxError, ValueError):
    """Input data files or stores that are missing, corrupt or inconsistent."""


class InputError(ClimaxError, ValueError):
    """A forecast or evaluation input that cannot be used (NaN, lead, grid)."""


class UnknownName(ClimaxError, KeyError):
    """A name (variable, level, channel, region, time) that is not among those a model,
    file, store or table has; the message lists those it has. A ``KeyError``, so callers
    that look names up keep catching it; printed without the quotes ``KeyError`` adds."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class CheckpointError(ClimaxError):
    """No usable checkpoint where one is needed, or one that cannot be written."""


class CheckpointMismatch(CheckpointError, ValueError):
    """A checkpoint whose weights do not fit the model (other shapes or keys), or a
    checkpoint file that cannot be read as weights at all."""


class OutputError(ClimaxError, OSError):
    """An output that could not be written (the previous file, if any, is intact)."""


class RunInUse(ClimaxError):
    """Another process holds the run folder's lock."""


class MissingFeature(ClimaxError, RuntimeError):
    """A config asks for a fast path this machine lacks (and may not fall back)."""
