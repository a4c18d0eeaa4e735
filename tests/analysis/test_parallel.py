"""Fingerprints analysed in a process pool give the same results as in turn (issue 26 item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    the same HTML and figure bytes as page() drawing them afterwards (and page() redraws what it lacks),
    whichever process draws each section and each families' tree."""
    from analysis.report import SectionDrawer, page
    from analysis.report_sections import Queued

    fps, table = _population(24, 2)
    opts = AnalysisOptions(embedding="pca", n_boot=2, n_perm=19, n_family_boot=20)
    monkeypatch.setenv(parallel.ENV, "2")
    with SectionDrawer(24 * 2, formats=("png",)) as drawer:
        assert drawer.active  # two workers, a small population
        res = analyze(fps, table, opts, on_result=drawer)
        ahead = {name: f.result() for name, f in drawer._futures.items()}  # every section, drawn by the worker
        overlapped = page(res, formats=("png",), drawn=drawer.views())  # futures, or drawn here if withdrawn
        queued = drawer.views(res)  # the families' trees queued behind the sections
        assert all(isinstance(q, Queued) and q.tree is not None for q in queued.values())
        shared = page(res, formats=("png",), drawn=queued)  # each piece drawn by whichever process takes it
        trees = {n: q.tree.result() for n, q in drawer.views(res).items()}  # every tree drawn by the drawing process
    assert sorted(ahead) == ["fp0", "fp1"]
    alone = page(res, formats=("png",))
    worker = page(res, formats=("png",), drawn=ahead)
    partly = page(res, formats=("png",), drawn={"fp1": ahead["fp1"]})
    failed = page(res, formats=("png",), drawn={"fp0": _Failed(), "fp1": _Done(ahead["fp1"])})  # fp0 drawn again here
    from_worker = page(res, formats=("png",), drawn={n: Queued(_Done(ahead[n]), _Done(t)) for n, t in trees.items()})
    tree_failed = page(res, formats=("png",), drawn={n: Queued(_Done(ahead[n]), _Failed()) for n in trees})
    line = {n: Queued(_Pending(), _Pending()) for n in trees}  # nothing started there: all withdrawn, drawn here
    withdrawn = page(res, formats=("png",), drawn=line)
    assert all(q.section.cancelled and q.tree.cancelled for q in line.values())
    for pg in (overlapped, worker, partly, failed, shared, from_worker, tree_failed, withdrawn):
        assert pg.html == alone.html
        assert [(f.name, f.files) for f in pg.figures] == [(f.name, f.files) for f in alone.figures]
    monkeypatch.setenv(parallel.ENV, "1")
    with SectionDrawer(24 * 2) as off:  # one worker: nothing drawn ahead, page() draws it all
        analyze(fps[:1], table, opts, on_result=off)
        assert off.views() == {} and off.views(res) == {}


def test_the_queue_is_withdrawn_from_the_back_up_to_the_first_started_piece():
    """finish_sections: the drawing process works from the front (sections, then trees), this process
    takes from the back what that one has not started, stops at the first piece it has, and waits for
    the rest; the page is the one this process draws alone."""
    from analysis.report import page
    from analysis.report_sections import Queued, _family_tree, fingerprint_view

    fps, table = _population(24, 3)
    res = analyze(fps, table, AnalysisOptions(embedding="pca", n_boot=2, n_perm=19, n_family_boot=20))
    s, fmt = res.settings, ("png",)
    line = {str(r.fingerprint): Queued(_Started(fingerprint_view(r, s, None, fmt, decided=False)),
                                       _Started(_family_tree(r, s, fmt))) for r in res.fingerprints}
    line["fp2"].tree = _Pending()
    shared, alone = page(res, formats=fmt, drawn=line), page(res, formats=fmt)
    assert shared.html == alone.html
    assert [(f.name, f.files) for f in shared.figures] == [(f.name, f.files) for f in alone.figures]
    assert line["fp2"].tree.cancelled and line["fp1"].tree.asked  # withdrawn; started there, so the walk stops
    assert not line["fp0"].tree.asked and not any(q.section.asked for q in line.values())
    assert all(q.section.waited for q in line.values()) and line["fp0"].tree.waited and line["fp1"].tree.waited


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


class _Pending(_Done):
    """A future the drawing process has not started: withdrawn by ``cancel()``, never waited for."""

    def __init__(self):
        super().__init__(None)
        self.cancelled = False

    def cancel(self):
        self.cancelled = True
        return True

    def result(self):
        raise AssertionError("waited for a piece that was withdrawn")


class _Started(_Done):
    """A future the drawing process has started (``cancel()`` fails): records being asked and waited for."""

    def __init__(self, value):
        super().__init__(value)
        self.asked = self.waited = False

    def cancel(self):
        self.asked = True
        return False

    def result(self):
        self.waited = True
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


def test_background_gives_its_worker_one_call_at_a_time():
    """parallel.Background: submit returns at once; the calls run in order in another process, one at a
    time, so those not given to it yet can still be cancelled (ProcessPoolExecutor hands out three);
    shutdown cancels what is left."""
    import os
    import time

    bg = parallel.background_pool()
    try:
        first = bg.submit(time.sleep, 1.0)
        second, third = bg.submit(os.getpid), bg.submit(os.getpid)
        assert third.cancel() and third.cancelled()  # not given to the worker: taken back
        assert second.result() != os.getpid() and first.done() and first.result() is None
        last, after = bg.submit(time.sleep, 1.0), bg.submit(os.getpid)
    finally:
        bg.shutdown()
    assert last.done() and after.cancelled()


def test_ctrl_c_ends_a_worker_without_a_traceback():
    """A terminal's Ctrl-C reaches every process of the group: a worker (here the report's figure worker)
    ends at once, status 130, and prints nothing; the caller handles the interrupt (an outside audit: each
    worker printed its own KeyboardInterrupt traceback)."""
    script = """
import os, signal, time
from analysis import parallel
bg = parallel.background_pool()
pid = bg.submit(os.getpid).result()
slow = bg.submit(time.sleep, 30)
time.sleep(0.5)
t0 = time.time()
os.kill(pid, signal.SIGINT)
try:
    slow.result()
except Exception as e:
    print(type(e).__name__, round(time.time() - t0) < 10)
bg.shutdown()
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.stdout.split() == ["BrokenProcessPool", "True"], (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "KeyboardInterrupt" not in res.stderr, res.stderr


def test_background_without_a_worker_fails_each_call():
    """A worker that cannot be started (no processes here): each call's future fails, and the report's
    process then draws that piece itself (finish_sections)."""

    class NoProcesses:
        def submit(self, *args):
            raise OSError("no more processes")

        def shutdown(self, **kwargs):
            pass

    bg = parallel.Background(NoProcesses())
    call = bg.submit(sum, [1, 2])
    with pytest.raises(OSError, match="no more processes"):
        call.result()
    bg.shutdown()


def test_the_drawing_process_does_not_import_scikit_learn():
    """The drawing process's forkserver imports analysis.report: without scikit-learn and scipy.stats
    (natural_key is analysis.sortkeys'), ~1.3 s of CPU less per report."""
    import subprocess
    import sys

    code = "import sys, analysis.report; print(sorted(m for m in ('sklearn', 'scipy.stats', 'umap') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_analyze_freezes_the_heap_only_while_it_runs():
    """analyze() keeps the objects that exist when it starts out of the collector's passes meanwhile
    (gc.freeze), and unfreezes them after; a caller's own freeze is left as it was."""
    import gc

    fps, table = _population(16, 1)
    opts = AnalysisOptions(embedding="pca", n_boot=2, n_perm=19, n_family_boot=20)
    seen = []
    analyze(fps, table, opts, on_result=lambda r, s: seen.append(gc.get_freeze_count()))
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        analyze(fps, table, opts)
        assert gc.get_freeze_count() > 0  # not unfrozen by analyze()
    finally:
        gc.unfreeze()


_POOLED_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
from analysis import parallel
from tests.analysis.test_parallel import _population
from analysis.scorecard import AnalysisOptions, analyze
with open({log!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{parallel.main_reruns()}} {{parallel.jobs()}}\\n")
parallel.MIN_ROWS = 0
fps, table = _population(n=16, n_fps=2)
analyze(fps, table, AnalysisOptions(embedding="pca", n_boot=2, n_perm=9, n_family_boot=5))
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_is_run_once(tmp_path, guarded):
    """A notebook-style script (no ``if __name__ == "__main__":``) gets no worker processes: a
    forkserver worker imports the main module and would run the script again (an outside audit's
    script trained and reported twice). With the guard, the pool is used and the script runs once."""
    root, log = str(Path(__file__).resolve().parents[2]), tmp_path / "runs.txt"
    body = _POOLED_SCRIPT.format(root=root, log=str(log))
    if guarded:
        body = "if __name__ == '__main__':\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())
    script = tmp_path / "script.py"
    script.write_text(body)
    env = {**os.environ, parallel.ENV: "2", "PYTHONPATH": root}
    res = subprocess.run([sys.executable, str(script)], check=True, env=env, timeout=300, capture_output=True, text=True)
    assert ("has no `if __name__ == \"__main__\":` guard" in res.stderr) is not guarded, res.stderr
    runs = log.read_text().split()
    assert len(runs) == 3  # one run: pid, main_reruns, jobs
    assert runs[1:] == (["False", "2"] if guarded else ["True", "1"])


def test_commands_that_do_not_analyse_start_without_scikit_learn():
    """`fingerprint --help`, `sweep`, `extract`, `list` and `inspect` import the CLI and the pipeline,
    which import the analysis only where it runs: without scikit-learn, scipy.stats and matplotlib
    (~1.1 s of CPU less per command: `sweep` 6.3 -> 5.2 s, `list` 4.3 -> 2.4 s, `--help` 1.8 -> 0.6 s)."""
    import subprocess
    import sys

    code = ("import sys, fingerprint.cli, fingerprint.pipeline, fingerprint.forecast, fingerprint.extraction;"
            "print(sorted(m for m in ('sklearn', 'scipy.stats', 'matplotlib', 'umap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_forkserver_start_module_changes_nothing_outside_a_forkserver():
    """`analysis.forkserver_start`, preloaded first, makes the forkserver's Ctrl-C during its imports quiet (a
    traceback before); imported anywhere else it leaves the process's Ctrl-C alone."""
    import importlib
    import signal

    import analysis.forkserver_start as start
    from analysis.parallel import FORKSERVER_START

    before = signal.getsignal(signal.SIGINT)
    importlib.reload(start)
    assert signal.getsignal(signal.SIGINT) is before and not start._in_forkserver_preload()
    assert FORKSERVER_START == start.__name__
