"""What the CLI draws: progress bars for the pipeline's long stages, and the scorecard tables.

Longer than ~400 lines: the scorecard's table and the notes printed under it (label-free cautions,
metadata matches, outliers, two partitions, the too-few hint) are one screen, drawn in one place.
"""

from __future__ import annotations

import re
import time
from typing import Any, ContextManager

from rich import box
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from analysis import verdicts
from analysis.labelfree_sentences import (
    DEEP_VERDICTS,
    alone,
    closest_split_text,
    closest_splits_sentence,
    few_count,
    few_families_text,
    size_lines,
    unknown_text,
)
from analysis.options import NO_STRATA, AnalysisOptions
from analysis.resampling import MIN_FAMILIES
from analysis.results import AnalysisResult
from fingerprint.cli import console, err_console, esc, print_error
from fingerprint.progress import Progress as PipelineProgress


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RichProgress(PipelineProgress):
    """The pipeline's progress as rich bars (a plain line per shard, at most every 10 s, in a log file).

    Use as a context manager, so that a bar still drawn when a stage fails is closed."""

    def __init__(self) -> None:
        self.in_sweep = False
        self._bar: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._logged: dict[str, tuple[float, float]] = {}  # spec -> (started, last plain line), for a log file
        self._sweep = {"t0": 0.0, "steps": 0, "total": 0, "logged": None, "models": 0, "n_models": 0}

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._tasks = None, {}

    def stage(self, index: int, total: int, title: str, detail: str = "") -> None:
        self.close()
        self.in_sweep = title == "sweep"
        console.rule(f"[bold]{index}/{total} {esc(title)}[/]" + (f" {esc(detail)}" if detail else ""))

    def note(self, text: str) -> None:
        self.close()
        console.print(esc(text), highlight=False, soft_wrap=True)

    # -- training --
    def sweep_started(self, n_models: int, n_done: int, total_steps: int) -> None:
        self.close()
        self.in_sweep = True
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             TextColumn("models {task.fields[models]}/{task.fields[n_models]}"),
                             TextColumn("{task.fields[rate]} model-steps/s"), TimeElapsedColumn(), TextColumn("ETA"),
                             TimeRemainingColumn(), console=console, transient=False,
                             disable=not console.is_terminal)  # a log file gets the plain lines of shard_finished only
        self._bar.start()
        self._tasks["sweep"] = self._bar.add_task("training", total=max(total_steps, 1), models=n_done, n_models=n_models, rate="-")
        self._sweep.update(t0=time.time(), steps=0, total=total_steps, logged=None, models=n_done, n_models=n_models)
        if total_steps == 0:
            self._bar.update(self._tasks["sweep"], completed=1)

    def sweep_advanced(self, model_steps: int) -> None:
        s = self._sweep
        s["steps"] += model_steps
        rate = s["steps"] / max(time.time() - s["t0"], 1e-9)
        if self._bar is not None:
            self._bar.update(self._tasks["sweep"], advance=model_steps, rate=f"{rate:,.0f}")

    def shard_finished(self, n_models: int) -> None:
        s = self._sweep
        s["models"] += n_models
        if self._bar is not None:
            self._bar.update(self._tasks["sweep"], models=s["models"])
        if not console.is_terminal:  # no live bar in a log file: a plain line per shard, at most every 10 s
            now, last = time.time(), s["models"] == s["n_models"]
            if s["logged"] is None or last or now - s["logged"] >= 10:
                s["logged"] = now
                elapsed = now - s["t0"]
                rate = s["steps"] / max(elapsed, 1e-9)
                left = max(s["total"] - s["steps"], 0) / max(rate, 1e-9)
                console.print(f"trained {s['models']}/{s['n_models']} models ({rate:,.0f} model-steps/s, "
                              f"{_clock(elapsed)} elapsed, ETA {_clock(left)})", highlight=False, soft_wrap=True)

    # -- fingerprints --
    def extraction(self, spec: str, done: int, total: int) -> None:
        if self._bar is None or "sweep" in self._tasks:
            self.close()
            self.in_sweep = False
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("models"),
                                 TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
            self._bar.start()
        if spec not in self._tasks:
            self._tasks[spec] = self._bar.add_task(esc(spec), total=total)  # the description is markup
            self._logged[spec] = (time.time(), time.time())
            # no live bar in a log file: what is being computed, then a line every 10 s; a fingerprint served from the
            # cache arrives done at once and is said by its result line alone (an outside audit, 71: "extracting" for it)
            if not console.is_terminal and done < total:
                console.print(f"extracting {esc(spec)} ({total} models)", highlight=False, soft_wrap=True)
        self._bar.update(self._tasks[spec], completed=done)
        t0, last = self._logged[spec]
        if not console.is_terminal and 0 < done < total and time.time() - last >= 10:
            self._logged[spec] = (t0, time.time())
            console.print(f"extracting {esc(spec)}: {done}/{total} models ({_clock(time.time() - t0)} elapsed)",
                          highlight=False, soft_wrap=True)

    def extracted(self, results: list) -> None:
        self.close()
        report_results(results)

    def analysing(self) -> ContextManager[Any]:
        self.close()
        if not console.is_terminal:  # a status spinner shows nothing in a log file: say it once
            console.print("analysing: clustering, bootstrapping and scoring", highlight=False)
        return console.status("clustering, bootstrapping and scoring")


def report_results(results: list) -> int:
    """A line per fingerprint (computed or cached, its step and shape); failures as errors. Returns their number."""
    failures = 0
    for r in results:
        if r.error:
            failures += 1
            print_error(str(r.error))
        else:
            extra = f" held-out AUROC {r.meta['heldout_auroc']:.3f}" if "heldout_auroc" in r.meta else ""
            if isinstance(r.meta.get("layer"), str) and r.meta["layer"]:  # cka's layer: its default depends on the zoo
                extra += f" layer '{esc(r.meta['layer'])}'"
            if r.meta.get("source_changed"):  # a plugin edited since its values were cached
                extra += " (recomputed: the plugin's source changed since it was cached; the old entry was replaced)"
            console.print(f"{'cached ' if r.cached else 'computed'} {esc(format(str(r.meta.get('spec', r.name)), '<28'))} "
                          f"step {str(r.meta.get('step')):>6} {esc(r.meta.get('output', ''))} {list(r.values.shape)}{extra}"
                          + ("" if r.seconds is None else f" in {r.seconds:.1f} s"), soft_wrap=True)  # which one to drop at scale (audit 72)
            for w in fingerprint_warnings(r.meta):  # a plugin's check failed: kept, and said
                console.print(f"warning: {w}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    return failures


def fingerprint_warnings(meta: Any) -> list[str]:
    """The warnings extraction stored with a fingerprint (``meta["warnings"]``: a plugin whose two
    runs on the same models differ, or whose rows depend on the other models in the call:
    :mod:`fingerprint.plugin_checks`)."""
    found = (meta or {}).get("warnings") if isinstance(meta, dict) else None
    return [str(w) for w in found] if isinstance(found, list) else []


def _breakable(spec: str, width: int) -> str:
    """A fingerprint spec, escaped for rich, broken into lines of at most ``width`` after ``:``, ``,``
    or ``+`` (between an extractor and its parameters) rather than mid-word; unchanged if it fits."""
    if len(spec) <= width:
        return esc(spec)
    lines = [""]
    for part in re.split(r"(?<=[:,+])", spec):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(esc(line) for line in lines)


def _num(v: Any) -> str:
    return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _verdict(v: Any, short: bool = True) -> str:
    """A verdict in its colour (``analysis.verdicts.TABLE``), in its short form for the scorecard's columns."""
    st = verdicts.style(v)
    return f"[{st.rich}]{esc(st.short if short else v)}[/]"


def _lineage_cell(r: Any, q: Any, marks: str = "", follows: str | None = None) -> str:
    """A scorecard row's label-free cell: the verdict, ``marks``, the design column its clusters follow (``follows``:
    ``= data_seed``, or ``~ data_seed`` in part; outside audit 113: clusters that were the data orders exactly read
    "none" alone) and its q; ``–`` for a failed row. Narrow (80 columns, a log file): the marks, the column and the q
    each on a line of their own, not cut ("q 0.00" read as zero, "groups (no rela"; rich crops this cell)."""
    if r.error:
        return "–"
    q_text = _q(q)
    if console.width < 100:
        column = f"\n[dim]{esc(follows)}[/]" if follows else ""
        return _verdict(r.label_free_verdict) + ("\n" + marks.lstrip() if marks else "") + column + "\n" + q_text.lstrip()
    return _verdict(r.label_free_verdict) + marks + (f" [dim](basins {esc(follows)})[/]" if follows else "") + q_text


def _follow_mark(h: Any, name: str) -> str | None:
    """``= COLUMN`` for a fingerprint whose clusters are a design column's values, ``~ COLUMN`` for one whose clusters
    follow it in part (values grouped into sides, or split: outside audit 114 F6), ``None`` for the others."""
    col = h.follows.get(name)
    return None if col is None else ("~ " if name in h.follows_in_part else "= ") + col


def _q(q: Any) -> str:
    """`` q 0.012`` after a label-free verdict (its adjusted p-value), or nothing."""
    return "" if q is None or q != q else f" [dim]q {q:.2g}[/]"


DEFAULTS = AnalysisOptions()  # the thresholds of a result whose settings predate them


def print_scorecard(result: AnalysisResult, zoo: Any = None) -> None:
    """The scorecard table and its notes; ``zoo`` (optional) lets the 'too few' note name the model
    columns that could be the lineage."""
    settings = result.settings
    gone = settings.get("exclude") or []
    left = f" ({len(gone)} left out by --exclude)" if gone else ""
    t = Table(title=f"scorecard: {result.n_models} models{left}, ground truth {esc(result.label or 'none')}, lineage "
                    f"{esc(result.lineage)}", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=True)
    for col, just in (("fingerprint", "left"), ("k", "right"), ("stab", "right"), ("deep", "right"),
                      ("AUROC", "right"), ("noise", "right"), ("ident", "right"), ("verdict", "left"), ("lineage", "left")):
        t.add_column(col, justify=just, no_wrap=col != "fingerprint", overflow="fold",
                     min_width={"fingerprint": 18}.get(col))
    name_width = max(18, console.width - 70)  # what the seven number and two verdict columns leave
    free_q = {str(f.fingerprint): (f.label_free or {}).get("q") for f in result.fingerprints}
    from analysis.report import headline  # deferred for start-up time (numpy, jinja2)

    h = headline(result)  # the report's verdict box: its outliers, leads and partitions, the same model-set check
    for r in result.scorecard:
        sig = r.lineage_auc_q is not None and r.lineage_auc_q <= settings.get("alpha", DEFAULTS.alpha)
        ident = "–" if r.lineage_auc is None else f"{r.lineage_auc:.2f}" + ("*" if sig else "")
        noise = r.noise_ami
        if r.parent_noise_ami is not None and (noise is None or r.parent_noise_ami > noise):
            noise = r.parent_noise_ami
        t.add_row(_breakable(str(r.fingerprint), name_width) + (" (sup.)" if r.supervised else "") + (" (priv.)" if r.privileged else ""), _num(r.n_clusters),
                  _num(r.stability), _num(r.deep_ami), _num(r.probe_auroc), _num(noise), ident,
                  _verdict(r.verdict) + (" (probe)" if r.probe_only else ""),
                  _lineage_cell(r, free_q.get(str(r.fingerprint)), _no_relatives(r), _follow_mark(h, str(r.fingerprint))))  # (audit 113)
    console.print(t)
    console.print("k: basins, stab: bootstrap stability (ARI), deep: AMI with ground truth, AUROC: linear probe, "
                  "noise: within-basin AMI with lineage (max of init / parent), ident: AUC that relatives are closer than "
                  "unrelated models of a basin (* significant); lineage: the label-free verdict (q: its Benjamini-Hochberg "
                  "adjusted p-value; = COLUMN: the clusters are the values of a design column the tests take out as lineage, "
                  "~ COLUMN: they follow it in part, values grouped or split; the answer reads it). 95% intervals of stab, deep, AUROC and noise (init AMI): the report and summary.json", style="dim",
                  highlight=False)  # printed, not the table's caption: a caption is cut at the table's width
    from fingerprint.tables import recovered_line  # deferred for start-up time
    for line in filter(None, [recovered_line(result.lineage, zoo, result.label), *metadata_lines(result), insufficient_hint(result, zoo)]):
        console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)
    console.print("verdict (against the label): deep = tracks deep differences, noise = tracks initialization noise, "
                  "both = tracks both, uninf. = uninformative, (probe) = from the linear probe alone, the basins do not "
                  "follow the label; lineage (the label-free verdict, from lineage alone): "
                  "crosses / groups = candidate deep basins that cross or group init families, lineage = families "
                  "identifiable, no groups shown (initialization noise, or a seed-decided difference too weak or graded "
                  "to group them), none = no structure, groups (no relatives) = groups of models that are each their own init family; (priv.) = on a probe set built from the ground truth: not label-free evidence, and no bound on what the others find "
                  "(docs/scorecard.md)", style="dim")
    capped = [str(r.fingerprint) for r in result.scorecard if r.k_at_cap and not r.error]
    if capped:
        console.print(f"k = {settings.get('k_max')} is the largest k tried, and was chosen for {', '.join(capped)}: "
                      "more basins may fit better (raise --k-max; each k's score is in summary.json's k_scores); on "
                      "initialization noise alone k often runs to the cap: whether there are basins is the label-free "
                      "tests' to say, not k's",
                      style="yellow", highlight=False, markup=False)
    for line in label_free_notes(result):
        console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)
    for f in result.fingerprints:  # stored at extraction (cache meta): shown wherever the fingerprint is scored
        for w in fingerprint_warnings(f.meta):
            console.print(f"warning: {w}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    for r in result.scorecard:
        if r.error:
            err_console.print(f"[bold red]failed:[/] {esc(str(r.fingerprint))}: {esc(str(r.error))}", highlight=False, soft_wrap=True)
    for line in h.lone:
        console.print(f"outliers, {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    for line in h.leads:
        console.print(f"small basin, {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    for line in h.tails:
        console.print(f"far out together, {line}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    if h.apart:
        console.print(f"two partitions: {h.apart}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    if len(h.model_counts) > 1:
        console.print(f"the fingerprints cover different model sets ({', '.join(map(str, h.model_counts))} models): "
                      "their numbers are not comparable row to row", style="yellow", highlight=False, markup=False)
    if h.answer:
        console.print(f"[bold]label-free answer:[/] {esc(h.answer)}", highlight=False)  # wrapped, as the headline
    console.print(f"[bold]headline:[/] {esc(headline_sentence(h, set(h.small)))}", highlight=False)
    flagged = [str(f.fingerprint) for f in result.fingerprints if fingerprint_warnings(f.meta)]
    if flagged:  # an outside audit (71): an answer resting on fingerprints extraction flagged did not say so
        console.print(f"flagged at extraction: {', '.join(flagged)} (the warnings above): the answer and the headline "
                      "count them like the others; rerun without them (--fp) to see whether they carry it",
                      style="yellow", highlight=False, markup=False, soft_wrap=True)


def _no_relatives(r: Any) -> str:
    """`` (no relatives)`` after a ``groups lineages`` whose every model is its own init family."""
    alone = r.n_families is not None and r.n_families == r.n_models
    return " [dim](no relatives)[/]" if r.label_free_verdict == "groups lineages" and alone else ""


def label_free_notes(result: AnalysisResult) -> list[str]:
    """Lines the terminal adds to the label-free sentences: few-families cautions, closest splits
    (``closest_groups``), the sizes of the deep verdicts and families set apart (``size_lines``)."""
    lines, cautions = [], {}  # one caution line for every fingerprint it applies to
    for f in result.fingerprints:
        d = f.label_free or {}
        few = few_count(d)
        if few is not None:
            cautions.setdefault(few_families_text(*few), []).append(f"{f.fingerprint} ({d['verdict']})")
        elif d.get("closest_groups"):
            lines.append(f"lineage, {f.fingerprint} ({d.get('verdict')}): {closest_split_text(d['closest_groups'], alone(d))}")
    lines += size_lines([(str(f.fingerprint), f.label_free or {}) for f in result.fingerprints])
    unknown = max(((f.label_free or {}).get("n_unknown") or 0 for f in result.fingerprints), default=0)
    if unknown:  # one line for the population, not one per fingerprint
        lines.append(f"lineage: {unknown_text(unknown, 'the label-free tests')}")
    disagree = closest_splits_sentence({str(f.fingerprint): f.label_free for f in result.fingerprints})
    if disagree:
        lines.append(f"lineage: {disagree}")
    return [f"lineage, {', '.join(fps)}: {text}" for text, fps in cautions.items()] + lines


# what lineage_candidates takes for a column of init seeds; two or three families are tested too (one column that
# has them the user names with --lineage), but a column of so few values is as likely a label or a setting
SEED_LIKE = f"{MIN_FAMILIES} or more values, fewer than the models; 2 or 3 init families are enough to test"


def insufficient_hint(result: AnalysisResult, zoo: Any = None) -> str | None:
    """One line when every fingerprint's label-free verdict is ``insufficient`` (``too few``): why,
    and how to name init families (the sentences summary.json and the report hold), and, given the
    ``zoo``, its model columns that could (:func:`lineage_candidates`); else ``None``."""
    free = [f.label_free or {} for f in result.fingerprints if not getattr(f, "error", None)]
    if not free or any(verdicts.style(d.get("verdict")) is not verdicts.TABLE[verdicts.Verdict.INSUFFICIENT] for d in free):
        return None
    why = list(dict.fromkeys(str(d.get("sentence") or d.get("verdict")) for d in free))
    line = f"lineage: every label-free verdict is 'too few': {'; '.join(why)}"
    if zoo is None:
        return line
    found = lineage_candidates(zoo, {result.label, result.lineage})
    if not found:
        kinds = {str(k) for k in zoo.models["kind"]} if "kind" in zoo.models.names() else {"imported"}
        fix = ("add one to the --metadata CSV and re-import" if kinds == {"imported"} else
               f"train at least {MIN_FAMILIES} init seeds: seeds.init in the config")
        singles = lineage_candidates(zoo, {result.label, result.lineage}, singletons=True)
        if singles:  # every model its own init family (each its own seed): the tests still run, with less to say
            cols = ", ".join(f"'{c}'" for c in singles)
            return line + (f"; no model column of the zoo looks like init seeds with relatives ({SEED_LIKE}); {cols} gives "
                           f"every model its own: --lineage {next(iter(singles))} tests whether the models fall into "
                           "groups, not whether their seed decided them")
        if kinds == {"imported"}:  # an outside audit (79): GRUs of independent seeds, no metadata, every hint a dead end
            return line + (f"; no model column of the zoo looks like init seeds ({SEED_LIKE}; {fix}); if no two models "
                           "share an initialisation (each trained from its own seed), --lineage model_id says so: the "
                           "tests then ask whether the models fall into groups, not whether their seed decided them")
        return line + f"; no model column of the zoo looks like init seeds ({SEED_LIKE}; {fix})"
    cols = ", ".join(f"{c} ({n} values)" for c, n in found.items())
    return line + f"; the zoo's model {'column' if len(found) == 1 else 'columns'} that could be --lineage: {cols}"


def lineage_candidates(zoo: Any, skip: set[str | None] = frozenset(), singletons: bool = False) -> dict[str, int]:
    """The zoo's own model columns (its metadata CSV's, not the core ones; not those in ``skip``,
    the label and the lineage already used) that could name init families, each with its number of
    distinct values: at least ``MIN_FAMILIES`` of them and fewer than the models (a column where
    every model has its own value makes every model its own family), and not measurements
    (floats that are not whole numbers). Which one holds the init seeds only the user knows. With
    ``singletons``, instead the columns that give every model its own value (every model its own seed)."""
    import numpy as np  # deferred for start-up time

    from training.core.store import CORE_COLUMNS  # deferred for start-up time (h5py)

    out = {}
    for c in zoo.models.names():
        if c in CORE_COLUMNS or c in skip:
            continue
        col = np.asarray(zoo.models[c])
        if col.dtype.kind == "f" and not np.all(np.isnan(col) | (col == np.round(col))):
            continue
        if col.dtype.kind in "OUS" and _measurement([str(v) for v in col]):  # numbers stored as text (a blank among them)
            continue
        n = len({str(v) for v in col})
        if (n == len(col) >= MIN_FAMILIES) if singletons else (MIN_FAMILIES <= n < len(col)):
            out[c] = n
    return out


def _measurement(values: list[str]) -> bool:
    """Whether text values are numbers, some not whole (a measurement, not a family name), blanks aside."""
    nums = []
    for v in values:
        if v.strip() in ("", "nan", "None"):
            continue
        try:
            nums.append(float(v))
        except ValueError:
            return False
    return bool(nums) and any(x != round(x) for x in nums if x == x and abs(x) != float("inf"))


def metadata_lines(result: AnalysisResult) -> list[str]:
    """One line per model column that candidate basins match (``metadata_match``,
    :mod:`analysis.metadata`), naming the fingerprints with their statistics and family-bootstrap
    intervals (fingerprints with the same numbers together), then one line saying what to check."""
    by_col: dict[str, dict[str, list[str]]] = {}
    graded: dict[str, int] = {}  # matched numeric columns with many values: the camps may be a threshold on them
    crossed: set[str] = set()  # matched columns crossed with the families as a shared data order is
    design = set(result.settings.get("strata") or ()) - {NO_STRATA}
    inherited = int(result.settings.get("lineage_inherited") or 0)
    for r in result.fingerprints:
        stats: dict[str, list[str]] = {}
        for e in getattr(r, "metadata_match", None) or []:
            if e.get("match"):
                stats.setdefault(str(e["column"]), []).append(_with_ci(e["statistic"], e.get("value"), e.get("ci")))
                if e.get("graded"):
                    graded[str(e["column"])] = int(e.get("distinct") or 0)
                if e.get("crossed"):
                    crossed.add(str(e["column"]))
        for col, st in stats.items():
            by_col.setdefault(col, {}).setdefault("; ".join(st), []).append(str(r.fingerprint))
    out = [f"candidate basins match column '{col}': " + "; ".join(f"{', '.join(fps)} ({st})" for st, fps in groups.items())
           + (f"; a graded column ({graded[col]} values) cut in two: if its numbers are an order (not codes, such as class ids), the camps may be the two ends of a continuum, not "
              "two basins" if col in graded else "")
           + (f"; if '{col}' records a rule or a goal, it is the difference itself; if a training setting (a hyper-parameter "
              f"sweep) or a design factor the init families share (a data order, a batch), report with --strata {col} to ask "
              "whether anything beyond it differs (the tests then take it out as they do lineage)"
              if col in crossed and col not in graded and col not in design else "")
           for col, groups in by_col.items()]
    if NO_STRATA in (result.settings.get("strata") or ()):  # --strata none: nothing taken out (not 'none' as a column)
        out.insert(0, "label-free tests stratified by no design column (--strata none): data_seed and kind are not "
                      "taken out, so a split that follows a data order reads as a candidate, whether the order "
                      "decides a rule or is only seed noise")
    same = set(result.settings.get("strata_as_lineage") or ()) & set(design)  # one value a family: nothing more
    if design - same:  # the user's --strata: say what it did, whether or not anything matched
        cols = ", ".join(f"'{c}'" for c in sorted(design - same))
        out.insert(0, f"label-free tests stratified by {cols} (--strata): models that share a value are relatives, as "
                      "a shared data order is, so a difference that follows the column reads as lineage, not as a "
                      "candidate deep difference; report without --strata to see whether it separates the models")
    if same:  # an outside audit (89): --strata rule, set family by family, was said to do what it could not
        cols = ", ".join(f"'{c}'" for c in sorted(same))
        out.insert(0, f"--strata {cols}: one value in every init family, so the tests, which take the families out "
                      "already, are unchanged by it; a difference that follows it groups whole families and reads as "
                      "one (groups lineages)")
    gen_cols = result.settings.get("generation_columns") or []
    if gen_cols:  # analysis.metadata.generation_columns (an outside audit, 75)
        out.append(f"column{'s' if len(gen_cols) > 1 else ''} {', '.join(repr(c) for c in gen_cols)} "
                   f"{'are' if len(gen_cols) > 1 else 'is'} decided by the generation in parent_id's chains (base against "
                   f"fine-tune): not tested as following the fingerprints, since {'they' if len(gen_cols) > 1 else 'it'} "
                   "cannot be told from fine-tuning itself")
    if inherited:  # analysis.metrics.inherit_lineage
        out.insert(0, f"{inherited} model{'s' if inherited != 1 else ''} without a '{result.settings.get('lineage')}' value "
                      "took it from the parent chain (parent_id): a fine-tune is in its base's init family")
    if by_col:
        out.append("check whether that is the difference you mean: a column recording how the models were made (training "
                   "length, learning rate, data) is not necessarily a basin; one measuring what they do may be the basin "
                   "itself (summary.json: metadata_match)")
    return out


def _with_ci(name: str, value: float | None, ci: Any) -> str:
    if value is None:
        return f"{name} n/a"
    return f"{name} {value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (no interval: the value itself)")


def headline_sentence(h: Any, small: set[str] | frozenset[str] = frozenset()) -> str:
    """One line from the report's :class:`~analysis.report.Headline`: what the analysis found (the
    labelled verdict of the best fingerprint, or the label-free ones; ``small``: fingerprints whose
    deep verdict is a small difference, marked so)."""
    if h.mode == "nothing":
        return "every fingerprint failed" if h.failed else "nothing analysed"
    if h.mode == "labelled" and h.best is not None:
        b = h.best
        tracks = ", ".join(h.deep + h.both) or "none"
        upper = (f"; with the answer's help (privileged probe set): {h.best_privileged.fingerprint}, deep AMI {h.best_privileged.deep_ami:.2f}"
                 if h.best_privileged is not None and h.best_privileged.deep_ami is not None else "")
        few = (f"; only {b.n_families} init families: the permutations decide, no interval resamples so few"
               if b.n_families is not None and 2 <= b.n_families < MIN_FAMILIES else "")
        return (f"{b.fingerprint}{' (privileged)' if b.privileged else ''} aligns best with {h.label} "
                f"({b.verdict}; {_with_ci('deep AMI', b.deep_ami, b.deep_ami_ci)}{few}); "
                f"tracking the deep difference: {tracks}"
                + (f"; basins or probe match {h.label} but too few families to test: {', '.join(h.floor)}" if h.floor else "")
                + f"; label-free, {b.fingerprint}: {b.label_free_verdict}{upper}")
    found = [(v, names) for v, names in h.free.items() if names]
    deep = h.free.get("crosses lineage", []) + h.free.get("groups lineages", [])
    few, weak = set(h.few), set(h.weak)  # the answer's leads: few families, or one fingerprint's (lone_leads)
    same, led = set(h.held_same), set(h.held_lead)  # held back, said as a candidate's or a lead's camps
    in_lead = set(h.in_lead)  # camps an unconfirmed or cluster lead says
    lead = ("no candidate deep basins without ground truth" if not deep else
            "only small candidate deep differences (no ground truth)" if set(deep) <= set(small) else
            "no candidate deep basins, only leads that so few init families cannot confirm (no ground truth)"
            if h.leads_only and not weak else "no candidate deep basins, only leads (no ground truth)"
            if h.leads_only else "candidate deep basins (no ground truth)")

    def named(v: str, names: list[str]) -> str:
        marks = lambda n: ((" (small)" if n in small else "") + (" (few families: a lead)" if n in few else "")  # noqa: E731
                           + (" (alone: a lead)" if n in weak else ""))
        held = lambda n: ((" (held back: a candidate's camps)" if n in same else  # noqa: E731  (audit 103)
                           " (held back: a lead's camps)" if n in led else " (in a lead)" if n in in_lead else "")
                          + (f" (basins {_follow_mark(h, n)})" if n in h.follows else ""))  # (audit 113)
        return ", ".join(n + marks(n) if v in DEEP_VERDICTS else n + held(n) for n in names)
    return lead + "; " + "; ".join(f"{v}: {named(v, n)}" for v, n in found)  # each name once, under its verdict


def print_basins(zoo: Any, scorecard: bool = True) -> None:
    """The basins (and scorecard) sections of ``inspect`` (from ``results/basins.json``, if any)."""
    stored = zoo.load_result("basins")
    if not stored or "fingerprints" not in stored:
        return
    res = AnalysisResult.from_dict(stored)
    t = Table(title=f"basins (results/basins.json; ground truth {esc(res.label or 'none')}, "
                    f"lineage {esc(res.lineage)})")
    for col in ("fingerprint", "k", "basin sizes", "exemplars (medoids)", "stability"):
        t.add_column(col)
    for r in res.fingerprints:
        if r.error:
            t.add_row(esc(str(r.fingerprint)), "–", f"[red]failed: {esc(str(r.error))}[/]", "", "")
            continue
        basins = r.basins or []
        t.add_row(esc(str(r.fingerprint)), _num(r.k), ", ".join(str(b["size"]) for b in basins),
                  esc("; ".join(f"{b['cluster']}: {b['exemplar']}" for b in basins[:6])) + (" ..." if len(basins) > 6 else ""),
                  _num((r.bootstrap or {}).get("stability")))
    console.print(t)
    if not scorecard:
        return
    # as print_scorecard lays it out: names and verdicts whole at 80 columns (a log file), numbers never wrapped
    s = Table(title="scorecard", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=True)
    for col, just in (("fingerprint", "left"), ("deep", "right"), ("AUROC", "right"), ("noise", "right"),
                      ("parent", "right"), ("ident", "right"), ("1-NN", "right"), ("verdict", "left"), ("lineage", "left")):
        s.add_column(col, justify=just, no_wrap=col != "fingerprint", overflow="fold", min_width={"fingerprint": 18}.get(col))
    name_width = max(18, console.width - 62)  # what the six number and two verdict columns leave
    free_q = {str(f.fingerprint): (f.label_free or {}).get("q") for f in res.fingerprints}
    for r in res.scorecard:
        q = r.label_free_q if r.label_free_q is not None else free_q.get(str(r.fingerprint))
        s.add_row(_breakable(str(r.fingerprint), name_width), _num(r.deep_ami), _num(r.probe_auroc), _num(r.noise_ami),
                  _num(r.parent_noise_ami), _num(r.lineage_auc), _num(r.lineage_nn), _verdict(r.verdict),
                  _lineage_cell(r, q))
    console.print(s)
    console.print("deep: AMI with ground truth, AUROC: linear probe, noise / parent: within-basin AMI with lineage / parent "
                  "family, ident: lineage AUC, 1-NN: lineage 1-NN; lineage: the label-free verdict and its q "
                  "(`fingerprint report` explains each)", style="dim", highlight=False)


def missing_line(missing: list[dict[str, str]]) -> str:
    """One line naming the fingerprints that are not in a report because their extraction failed
    (:func:`fingerprint.pipeline.not_in_report`), with the reasons of the first three (outside audit 117: only the
    first's was said), and how to drop a spec written wrong from the record."""
    names = ", ".join(m["fingerprint"] for m in missing)
    why = missing[0]["error"] if len(missing) == 1 else "; ".join(f"{m['fingerprint']}: {m['error']}" for m in missing[:3])
    more = f"; {len(missing) - 3} more in summary.json's not_in_report" if len(missing) > 3 else ""
    return (f"not in this report: {names} ({'its' if len(missing) == 1 else 'their'} extraction failed; {why}{more}); "
            "`fingerprint extract` again once fixed, or `fingerprint extract ZOO --forget-failed` to drop a spec "
            "written wrong from the record")
