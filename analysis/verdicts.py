"""Every verdict of the analysis, once: its name (the string stored in results), its style and its short form.

:class:`Verdict` is a ``str`` enum whose values are exactly the strings of ``summary.json``;
:data:`TABLE` gives each one's report CSS class, rich colour style and short form for the terminal
scorecard. The labelled verdicts come from :func:`analysis.scorecard.verdict`, the label-free ones
from :func:`analysis.labelfree.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    DEEP = "tracks deep differences"
    NOISE = "tracks initialization noise"
    BOTH = "tracks both"
    UNINFORMATIVE = "uninformative"
    NO_TRUTH = "no ground truth"
    FAILED = "failed"
    # label-free (from lineage alone)
    CROSSES = "crosses lineage"
    GROUPS = "groups lineages"
    LINEAGE_ONLY = "lineage only"
    NO_STRUCTURE = "no structure"
    INSUFFICIENT = "insufficient"

    def __str__(self) -> str:
        return self.value


# A labelled ``insufficient: N families`` verdict whose basins match the label but whose family permutation
# p-value cannot reach alpha (analysis.calibration.Floor) has a reason starting so (the report lists them).
FLOOR_REASON = "the basins match the label"
PROBE_FLOOR_REASON = "the probe reads the label"  # the same, where the probe's p-value is at that floor


@dataclass(frozen=True)
class VerdictStyle:
    css: str  # the report's CSS class
    rich: str  # rich markup style for the terminal
    short: str  # the terminal scorecard's short form


TABLE: dict[Verdict, VerdictStyle] = {
    Verdict.DEEP: VerdictStyle("deep", "green", "deep"),
    Verdict.NOISE: VerdictStyle("noise", "yellow", "noise"),
    Verdict.BOTH: VerdictStyle("both", "magenta", "both"),
    Verdict.UNINFORMATIVE: VerdictStyle("none", "dim", "uninf."),
    Verdict.NO_TRUTH: VerdictStyle("none", "cyan", "–"),
    Verdict.FAILED: VerdictStyle("failrow", "bold red", "failed"),
    Verdict.CROSSES: VerdictStyle("deep", "green", "crosses"),
    Verdict.GROUPS: VerdictStyle("deep", "green", "groups"),
    Verdict.LINEAGE_ONLY: VerdictStyle("noise", "yellow", "lineage"),
    Verdict.NO_STRUCTURE: VerdictStyle("none", "dim", "none"),
    Verdict.INSUFFICIENT: VerdictStyle("none", "dim", "too few"),
}
LABELLED = (Verdict.DEEP, Verdict.NOISE, Verdict.BOTH, Verdict.UNINFORMATIVE)
LABEL_FREE = (Verdict.CROSSES, Verdict.GROUPS, Verdict.LINEAGE_ONLY, Verdict.NO_STRUCTURE, Verdict.INSUFFICIENT)


def style(verdict: str | None) -> VerdictStyle:
    """The style of a verdict string; ``insufficient: 3 families`` is insufficient's, other unknown ones look like "none"."""
    text = str(verdict)
    if text.startswith(Verdict.INSUFFICIENT.value):
        text = Verdict.INSUFFICIENT.value
    try:
        return TABLE[Verdict(text)]
    except ValueError:
        return VerdictStyle("none", "dim", str(verdict))


def css_class(verdict: str | None) -> str:
    return style(verdict).css
