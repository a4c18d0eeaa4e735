"""Sort keys shared by the analysis and the report: numbers by value, then names.

Its own module, importing nothing, so that the report's figures (:mod:`analysis.plots`,
:mod:`analysis.report_sections`) do not import :mod:`analysis.metrics` and with it scikit-learn
and ``scipy.stats``: the report's drawing process imports the figures' modules at its start
(~1 s of CPU less per report; docs/benchmarks.md, "The report's speed").
"""

from __future__ import annotations

__all__ = ["natural_key"]


def natural_key(s: str):
    """Sort key: numbers by value first, then other strings ("2" before "10" before "a")."""
    try:
        return (0, float(s), "")
    except ValueError:
        return (1, 0.0, s)
