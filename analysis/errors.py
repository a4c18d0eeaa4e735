"""The one error type of ``analysis/``: a :class:`ValueError` with a one-line message for people.

``analysis/`` imports nothing else of ours (the layer rule, ``/work/shared/STYLE.md``): like
scikit-learn it raises ``ValueError``s. :class:`AnalysisError` is one, so callers that catch
``ValueError`` keep working; the CLI turns it into its one-line error. Messages name the culprit
and, for a closed set, the valid choices (:func:`choices`).
"""

from __future__ import annotations

from collections.abc import Iterable


class AnalysisError(ValueError):
    """Invalid input to an analysis (unknown method or column, k out of range, bad option value)."""


def choices(options: Iterable[str]) -> str:
    """A closed set of valid options for an error message: sorted, comma-separated, ``(none)`` if empty."""
    opts = sorted(set(options))
    return ", ".join(opts) if opts else "(none)"
