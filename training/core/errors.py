"""Errors meant for people.

A :class:`UserError` carries a one-line message that names the culprit (a config key, a file, a
plugin) and, where there is a closed set, the valid options. The CLI prints it without a traceback
and exits with status 2. Library code raises it for anything the user can fix.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input: bad config, unknown name, corrupt file, broken plugin."""

    exit_code = 2


class CorruptFileError(UserError):
    """A zoo file that cannot be read (truncated, not HDF5, wrong schema, failed checksum, a
    hand-edited structure its readers cannot use)."""


class DiskFullError(UserError):
    """No space (or quota) left while writing a file; nothing half-written is left behind."""


class PluginError(UserError):
    """A plugin (extractor or task) that failed to import, raised, or returned bad output."""


def choices(options: Iterable[str]) -> str:
    """Format a closed set of valid options for an error message."""
    opts = sorted(set(options))
    return ", ".join(opts) if opts else "(none)"


def unknown(what: str, name: str, options: Iterable[str]) -> UserError:
    """``unknown task 'foo' (valid: a, b, c)``."""
    return UserError(f"unknown {what} {name!r} (valid: {choices(options)})")
