"""Fingerprints analysed in a process pool give the same results as in turn (issue 26 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import parallel
from analysis.errors import AnalysisError
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze


def _population(n=32, n_fps=3):
    rng = np.random.default_rng(3)
    fam = np.arange(n) // 4
    deep = rng.integers(0, 2, n)
    ids = [f"m{i}" for i in range(n)]
    fps = [FingerprintInput(f"fp{j}", rng.standard_normal((fam.max() + 1, 5))[fam] + np.outer(deep, rng.standard_normal(5))
                            + rng.standard_normal((n, 5)), ids) for j in range(n_fps)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam,
             "deep_label": np.asarray(["a", "b"], dtype=object)[deep]}
    return fps, table


def _numbers(res):
    d = res.to_dict()
    d.pop("created")
    for f in d["fingerprints"]:
        f.pop("seconds")
    return d


def test_pool_results_equal_serial(monkeypatch):
    fps, table = _population()
    opts = AnalysisOptions(embedding="pca", n_boot=4, n_perm=19, n_family_boot=20)
    monkeypatch.setenv(parallel.ENV, "1")
    serial = _numbers(analyze(fps, table, opts))
    monkeypatch.setenv(parallel.ENV, "2")
    monkeypatch.setattr(parallel, "MIN_ROWS", 0)
    pooled = _numbers(analyze(fps, table, opts))
    assert pooled == serial


def test_jobs_from_the_environment(monkeypatch):
    monkeypatch.setenv(parallel.ENV, "3")
    assert parallel.jobs() == 3
    monkeypatch.delenv(parallel.ENV)
    assert parallel.jobs() >= 1
    monkeypatch.setenv(parallel.ENV, "many")
    with pytest.raises(AnalysisError, match=parallel.ENV):
        parallel.jobs()


def test_pooled_page_equals_serial(monkeypatch):
    from analysis.report import page

    fps, table = _population(24, 2)
    res = analyze(fps, table, AnalysisOptions(embedding="pca", n_boot=2, n_perm=19, n_family_boot=20))
    monkeypatch.setenv(parallel.ENV, "1")
    serial = page(res, formats=("png",))
    monkeypatch.setenv(parallel.ENV, "2")
    monkeypatch.setattr(parallel, "MIN_ROWS", 0)
    pooled = page(res, formats=("png",))
    assert pooled.html == serial.html
    assert [(f.name, f.files) for f in pooled.figures] == [(f.name, f.files) for f in serial.figures]


def test_sections_drawn_during_the_analysis_equal_the_page_alone(monkeypatch):
    """SectionDrawer: the fingerprints' figures drawn in a second process while the analysis runs give
    the same HTML and figure bytes as page() drawing them afterwards (and page() redraws what it lacks)."""
    from analysis.report import SectionDrawer, page

    fps, table = _population(24, 2)
    opts = AnalysisOptions(embedding="pca", n_boot=2, n_perm=19, n_family_boot=20)
    monkeypatch.setenv(parallel.ENV, "2")
    with SectionDrawer(24 * 2, formats=("png",)) as drawer:
        assert drawer.active  # two workers, a small population
        res = analyze(fps, table, opts, on_result=drawer)
        drawer._send()  # sections held while the drawing process started (this analysis is quick) sent now
        ahead = {name: f.result() for name, f in drawer._futures.items()}  # every section, drawn by the worker
        overlapped = page(res, formats=("png",), drawn=drawer.views())  # futures, or drawn here if withdrawn
    assert sorted(ahead) == ["fp0", "fp1"]
    alone = page(res, formats=("png",))
    worker = page(res, formats=("png",), drawn=ahead)
    partly = page(res, formats=("png",), drawn={"fp1": ahead["fp1"]})
    failed = page(res, formats=("png",), drawn={"fp0": _Failed(), "fp1": _Done(ahead["fp1"])})  # fp0 drawn again here
    for pg in (overlapped, worker, partly, failed):
        assert pg.html == alone.html
        assert [(f.name, f.files) for f in pg.figures] == [(f.name, f.files) for f in alone.figures]
    monkeypatch.setenv(parallel.ENV, "1")
    with SectionDrawer(24 * 2) as off:  # one worker: nothing drawn ahead, page() draws it all
        analyze(fps[:1], table, opts, on_result=off)
        assert off.views() == {}


class _Done:
    """A finished future of ``value``."""

    def __init__(self, value):
        self.value = value

    def done(self):
        return True

    def cancel(self):
        return False

    def result(self):
        return self.value


class _Failed(_Done):
    """A future whose drawing failed in the drawing process."""

    def __init__(self):
        super().__init__(None)

    def result(self):
        raise RuntimeError("the drawing process died")


def test_section_drawer_only_with_two_workers_below_the_pool(monkeypatch):
    from analysis.report import SectionDrawer

    monkeypatch.setenv(parallel.ENV, "2")
    with SectionDrawer(100) as small:
        assert small.active
    with SectionDrawer(parallel.MIN_ROWS) as large:  # the analysis has the pool
        assert not large.active
    with SectionDrawer(100, sections=2) as two:  # a stored analysis of two sections: shared
        assert two.active
    with SectionDrawer(100, sections=1) as single:  # one section: drawn here, no second process started
        assert not single.active
    monkeypatch.setenv(parallel.ENV, "1")
    with SectionDrawer(100) as one:
        assert not one.active
