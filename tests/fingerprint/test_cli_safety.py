"""Issue 18, cases 1, 2, 3, 9 and 10, attacked through the real CLI on real files.

Outputs never destroy inputs (``--overwrite`` replaces only a zoo; no output is, contains or lies
inside an input, compared through symbolic links); config values that used to crash after the
manifest was written are one-line errors before anything is written, and so is a plan larger than
``--max-gb``; user strings (paths, config, column, label, model and plugin names) never reach rich
as markup. Commands run the installed entry point ``main()`` in this process (``run_cli`` and the
``main`` fixture), which is as real but skips the 3-5 s of imports of a fresh interpreter; a plugin
under ``TTY_COMPATIBLE`` (which rich reads when a console is made) runs as a subprocess.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest
import torch

from fingerprint import Zoo
from tests.conftest import run_cli
from training.config import load_config
from training.sweep import planned_bytes, run_sweep

BIN = [sys.executable, "-m", "fingerprint.cli"]
# models of the conftest TINY config: 8 seed-grid models, 8 spawned children, 8 fine-tunes
TINY_MODELS = 24


def cli(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={"COLUMNS": "200", **(env or {})})


def proc(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m fingerprint.cli ARGS``: a fresh process (a plugin module, rich's start-up environment)."""
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def ok(res) -> str:
    assert res.returncode == 0, (res.returncode, res.stdout[-3000:], res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "MarkupError" not in res.stderr, res.stderr
    return " ".join(res.stdout.split())  # rich may wrap a long line


def refused(res, *words: str) -> str:
    """Exit 2 with one ``error:`` line on stderr that names every one of ``words``."""
    code, err = (res.returncode, res.stderr) if hasattr(res, "returncode") else res
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def main(monkeypatch, capsys):
    """``fingerprint ARGS`` in this process (cwd, argv): ``(exit code, stderr)``."""
    from fingerprint.cli import main as entry

    def run(*args, cwd: Path | None = None) -> tuple[int, str]:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["fingerprint", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            entry()
        return e.value.code, capsys.readouterr().err

    return run


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the hash of its bytes: "nothing was touched" in one comparison."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The conftest TINY sweep (with optimiser state, so the size estimate counts it), never modified."""
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("safety")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY.format(mpb=8).replace("checkpoints = [0, 10, 20]",
                                              "checkpoints = [0, 10, 20]\nsave_optimizer_state = true"))
    run_sweep(load_config(cfg), root / "zoo")
    return SimpleNamespace(root=root, cfg=cfg, zoo=root / "zoo", digest=tree_digest(root / "zoo"))


def assert_untouched(swept) -> None:
    assert tree_digest(swept.zoo) == swept.digest
    assert len(Zoo.open(swept.zoo)) == TINY_MODELS


ARCH = textwrap.dedent('''
    from torch import nn

    def make():
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
''')


@pytest.fixture
def user_ckpts(tmp_path):
    """Six checkpoints of a user's architecture (one named with rich markup), and a metadata CSV whose
    label values and a column name are rich markup too."""
    (tmp_path / "safearch.py").write_text(ARCH)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        import safearch

        importlib.reload(safearch)
        ids = [f"m{i}" for i in range(5)] + ["m[@x]5"]  # a file name cannot hold the '/' of a closing tag
        for i, mid in enumerate(ids):
            torch.manual_seed(i)
            torch.save(safearch.make().state_dict(), ckpts / f"{mid}.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("safearch", None)
    with open(tmp_path / "meta.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model_id", "deep_label", "[red]score"])
        for i, mid in enumerate(ids):
            w.writerow([mid, "[/red] rule 0" if i % 2 else "rule [bold]1", i / 10])
    return tmp_path


# -- 1. `import --overwrite` replaces only a zoo, never its own sources ---------------------------------
def test_import_overwrite_refuses_a_non_zoo_and_its_own_checkpoints(user_ckpts, main):
    d = user_ckpts
    victim = d / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    sources = tree_digest(d / "ckpts")
    refused(cli("import", "ckpts", "--arch", "safearch:make", "--out", "victim", "--overwrite", cwd=d),
            "'victim'", "not a zoo")
    assert (victim / "notes.txt").read_text() == "mine"
    refused(cli("import", "ckpts", "--arch", "safearch:make", "--out", "ckpts", "--overwrite", cwd=d),
            "--out 'ckpts'", "is the checkpoint directory 'ckpts'")
    # the same through a symbolic link, a parent, and the metadata / architecture files it reads
    (d / "link").symlink_to("ckpts")
    line = refused(main("import", "ckpts", "--arch", "safearch:make", "--out", "link", "--overwrite", cwd=d),
                   "'link'", str(d / "ckpts"), "checkpoint directory")
    assert "is the checkpoint directory" in line
    refused(main("import", "ckpts", "--arch", "safearch:make", "--out", ".", "--overwrite", cwd=d),
            "--out '.'", "contains the checkpoint directory")
    (d / "meta-dir").mkdir()
    shutil.copy(d / "meta.csv", d / "meta-dir" / "meta.csv")
    refused(main("import", "ckpts", "--arch", "safearch:make", "--metadata", "meta-dir/meta.csv", "--out", "meta-dir",
                 "--overwrite", cwd=d), "contains the metadata file 'meta-dir/meta.csv'")
    assert tree_digest(d / "ckpts") == sources and (d / "meta-dir" / "meta.csv").exists() and (d / "safearch.py").exists()
    # a zoo is still replaced
    assert main("import", "ckpts", "--arch", "safearch:make", "--out", "zoo", cwd=d)[0] == 0
    assert main("import", "ckpts", "--arch", "safearch:make", "--out", "zoo", "--overwrite", cwd=d)[0] == 0
    assert len(Zoo.open(d / "zoo")) == 6


# -- 2. no command writes over, into or around what it reads ---------------------------------------------
def test_select_refuses_its_own_source_zoo_before_anything_runs(swept, main, tmp_path):
    refused(cli("select", swept.zoo, "--basin", "rule_a", "--at-step", "10", "--out", swept.zoo, "--overwrite"),
            f"--out '{swept.zoo}'", f"is the source zoo '{swept.zoo}'")
    (tmp_path / "link").symlink_to(swept.zoo)
    for out, relation in ((swept.zoo / "sub", "is inside"), (swept.root, "contains"), (tmp_path / "link", "is")):
        refused(main("select", swept.zoo, "--basin", "rule_a", "--at-step", "10", "--out", out, "--overwrite"),
                f"{relation} the source zoo")
    assert_untouched(swept)  # nothing extracted or cached either: refused before anything ran


def test_sweep_and_run_refuse_outputs_overlapping_their_config(swept, main, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(swept.cfg, d / "c.toml")
    refused(main("sweep", d / "c.toml", "--out", d, "--overwrite"), "contains the config file")
    refused(main("sweep", d / "c.toml", "--out", d / "c.toml"), "is the config file")
    refused(main("run", d / "c.toml", "--out", d, "--overwrite"), "contains the config file")
    assert (d / "c.toml").read_text() == swept.cfg.read_text()


def test_overwrite_replaces_only_what_the_command_writes(swept, main, tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "data.bin").write_bytes(b"precious")
    refused(main("sweep", swept.cfg, "--out", victim, "--overwrite"), "not a zoo")
    refused(main("run", swept.cfg, "--out", victim, "--overwrite"), "not a `fingerprint run` directory", "'sub'")
    # a zoo is not a run directory, and a link to a zoo is not the zoo
    refused(main("run", swept.cfg, "--out", swept.zoo, "--overwrite"), "not a `fingerprint run` directory")
    (tmp_path / "link").symlink_to(swept.zoo)
    refused(main("sweep", swept.cfg, "--out", tmp_path / "link", "--overwrite"), "symbolic link")
    # the working directory is never deleted from under the command
    refused(main("sweep", swept.cfg, "--out", ".", "--overwrite", cwd=swept.zoo), "holds the working directory")
    # nor is anything written inside a zoo
    refused(main("sweep", swept.cfg, "--out", swept.zoo / "inner"), f"inside the zoo '{swept.zoo}'")
    assert (victim / "sub" / "data.bin").read_bytes() == b"precious"
    assert_untouched(swept)


# -- 3. report files never replace zoo files, nor each other ------------------------------------------------
def test_report_refuses_to_write_into_the_zoo_or_one_file_twice(swept, main, tmp_path):
    refused(cli("report", swept.zoo, "-o", tmp_path / "r.html", "--json", swept.zoo / "manifest.json"),
            "--json", "manifest.json", f"the zoo '{swept.zoo}'")
    assert not (tmp_path / "r.html").exists()
    refused(main("report", swept.zoo, "-o", tmp_path / "x", "--json", tmp_path / "x"), "-o", "is the --json output")
    # a new file inside the zoo is refused too: the zoo's directory holds only the zoo's files
    refused(main("report", swept.zoo, "-o", swept.zoo / "report.html"), "-o", "is inside the zoo")
    refused(main("report", swept.zoo, "-o", swept.zoo / "results" / "basins.json"), "-o", "is inside the zoo")
    refused(main("forecast", swept.zoo, "--json", swept.zoo / "results" / "forecast.json"), "--json", "is inside the zoo")
    (tmp_path / "evil.json").symlink_to(swept.zoo / "manifest.json")  # a link is where it points
    refused(main("report", swept.zoo, "-o", tmp_path / "r.html", "--json", tmp_path / "evil.json"),
            "--json", f"(= '{swept.zoo / 'manifest.json'}')", "is inside the zoo")
    (tmp_path / "evil.json").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert_untouched(swept)


# -- 9. config values are checked before anything is written ------------------------------------------------
def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old,new,expect", [
    ("lr = 0.02", 'lr = 0.02\noptimizer = "sgd"\nmomentum = -7', "'train.momentum' must be in [0, 1), got -7.0"),
    ("lr = 0.02", "lr = 0.02\nmomentum = 1.0", "'train.momentum' must be in [0, 1)"),
    ("lr = 0.02", "lr = 0.02\neps = -1", "'train.eps' must be > 0, got -1.0"),
    ("lr = 0.02", "lr = nan", "'train.lr' must be a finite number, got nan"),
    ("lr = 0.02", "lr = inf", "'train.lr' must be a finite number, got inf"),
    ("lr = 0.02", "lr = 0.02\nweight_decay = -inf", "'train.weight_decay' must be a finite number"),
    ("lr = 0.02", "lr = 0.02\nwarmup_steps = -1", "'train.warmup_steps' must be in [0, 2147483647]"),
    ("steps = 40", "steps = 4000000000", "'train.steps' must be in [1, 2147483647]"),
    ("batch_size = 32", "batch_size = 100000000", "'train.batch_size' must be in [1, 1048576]"),
    ("checkpoints = [0, 10, 20]", 'checkpoints = "log:3000000000"', "asks for 3000000000 checkpoints; K must be at most 10000"),
    ("init = 4", "init = 4\ninit_start = 9223372036854775805",
     "'seeds.init_start' = 9223372036854775805 puts seed number 4 at 9223372036854775808, beyond 2**63 - 1"),
    ("init = 4", "init = 4\ninit_start = 9223372036854775808", "'seeds.init_start' = 9223372036854775808 does not fit in a 64-bit"),
    ("init = 4", "init = [0, 18446744073709551617]", "'seeds.init' must be int or list of int"),
    ("init = 4", "init = 100000000", "'seeds.init' must be in [1, 1000000]"),
    ("init = 4\ndata = 2", "init = 1000\ndata = 1000", "plans 3,000,000 models"),
    ("at_step = 10", "at_step = 10\ndata_seed_start = -3", "'spawn[0].data_seed_start' must be >= 0, got -3"),
    ("children = 1\ntrain", "children = 2\ndata_seed_start = 9223372036854775807\ntrain",
     "'finetune[0].data_seed_start' = 9223372036854775807 puts seed number 2 at 9223372036854775808"),
    ("n_probes = 32", "n_probes = 32\ncue_b_strength = nan", "'task.cue_b_strength' must be a finite number"),
    ("width = 8", "width = 9223372036854775808", "'model.width' = 9223372036854775808 does not fit"),
    ('name = "tiny"', 'name = "tiny"\nmodels_per_batch = 0', "'models_per_batch' must be in [1, 1000000]"),
])
def test_out_of_range_config_is_one_line_and_writes_nothing(tmp_path, main, old, new, expect):
    from tests.conftest import TINY

    cfg = tmp_path / "c.toml"
    body = TINY.format(mpb=4)
    if old == 'name = "tiny"':  # models_per_batch is set once already
        body = body.replace("models_per_batch = 4\n", "")
    cfg.write_text(_edit(body, old, new))
    refused(main("sweep", cfg, "--out", tmp_path / "never"), expect)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("config,targets", [("tiny-lm-quick", "[2, 16, 64]"), ("icl-regression-quick", "[2, 8]")])
def test_a_readout_that_does_not_fit_the_task_is_refused_before_anything_is_written(tmp_path, main, config, targets):
    """A model read out at the last position for a task with a target at every position (a
    classification and a regression) failed at the first step with torch's shape error (tiny-lm) or
    could broadcast its outputs against the targets; now one line, before the zoo exists."""
    text = (Path(__file__).resolve().parents[2] / "configs" / f"{config}.toml").read_text()
    cfg = tmp_path / "c.toml"
    cfg.write_text(_edit(text, "[model]\n", '[model]\nreadout = "last"\n') if "readout" not in text
                   else text.replace('readout = "all"', 'readout = "last"'))
    refused(main("sweep", cfg, "--out", tmp_path / "never"), "read out at 'last'", "'model.readout'", targets)
    assert not (tmp_path / "never").exists()


def test_outputs_fit_reads_the_targets_as_the_loss_does():
    """The shape rule of :func:`training.plan.check_outputs_fit` is the loss's: a regression with
    several outputs per example (targets ``[B, 3]``, outputs ``[n, B, 3]``) fits; one with a single
    output does not fit such targets; a task with a loss of its own is left to it."""
    from dataclasses import dataclass

    from training.core.errors import UserError
    from training.families import get_family
    from training.plan import check_outputs_fit
    from training.tasks.base import Task

    @dataclass(frozen=True)
    class Three(Task):
        name = "three"
        loss_kind = "regression"
        outs: int = 3

        @property
        def input_shape(self):
            return (4,)

        @property
        def n_out(self):
            return self.outs

        def train_set(self):
            return torch.zeros(5, 4), torch.zeros(5, 3)

    check_outputs_fit(Three(), get_family("mlp", (4,), 3, {"width": 8}))
    with pytest.raises(UserError, match=r"gives outputs \[2, 1\] .* need \[2, 3\]"):
        check_outputs_fit(Three(outs=1), get_family("mlp", (4,), 1, {"width": 8}))

    @dataclass(frozen=True)
    class OwnLoss(Three):
        def loss(self, out, y):
            return out.mean((1, 2))

    check_outputs_fit(OwnLoss(outs=1), get_family("mlp", (4,), 1, {"width": 8}))


def test_command_line_numbers_are_range_checked_before_anything_is_written(swept, main, tmp_path):
    """The same class of input on the options: each used to fail late (a failed analysis stored in the
    zoo, a run directory holding an empty zoo) instead of up front."""
    for seed in ("-1", "4294967296"):  # scikit-learn's random_state is 32-bit
        refused(main("cluster", swept.zoo, "--seed", seed), "'analysis.seed' (--seed) must be in [0, 4294967275]")
    refused(main("run", swept.cfg, "--out", tmp_path / "r", "--models-per-batch", "-1"), "--models-per-batch must be in [1,")
    refused(main("select", swept.zoo, "--basin", "rule_a", "--at-step", "10", "--out", tmp_path / "s", "--threshold", "nan"),
            "--threshold must be in (0, 1]")
    assert sorted(tmp_path.iterdir()) == []
    assert_untouched(swept)


def test_planned_size_is_exact_and_refused_above_max_gb(swept, tmp_path, main):
    # the estimate is what a sweep really stores: parameters and optimiser buffers of every checkpoint
    sizes: list[int] = []

    def weights(name: str, obj) -> None:  # checkpoints/step_*/{params,optim}/*, not the optimiser's step count
        if isinstance(obj, h5py.Dataset) and name.split("/")[1] in ("params", "optim") and name.rsplit("/", 1)[1] != "step":
            sizes.append(obj.nbytes)

    for shard in (swept.zoo / "shards").glob("*.h5"):
        with h5py.File(shard, "r") as f:
            f["checkpoints"].visititems(weights)
    stored = sum(sizes)
    zoo = Zoo.open(swept.zoo)
    assert planned_bytes(load_config(swept.cfg), {"": zoo.n_params}) == stored
    # above the limit: one line with the estimate, before anything is written or deleted
    line = refused(cli("sweep", swept.cfg, "--out", tmp_path / "z", "--max-gb", "1e-6"), "MB of checkpoints",
                   f"{TINY_MODELS} models", "1e-06 GB limit", "--max-gb 1")
    assert f"{stored / 1e6:,.1f} MB" in line
    refused(main("sweep", swept.cfg, "--out", tmp_path / "z", "--max-gb", "nan"), "--max-gb must be > 0")
    assert not (tmp_path / "z").exists()
    # the environment sets the default; `run` checks before it deletes the run directory it would replace
    run_dir = tmp_path / "run"
    shutil.copytree(swept.zoo, run_dir / "zoo")
    res = cli("run", swept.cfg, "--out", run_dir, "--overwrite", env={"FINGERPRINT_MAX_GB": "1e-6"})
    refused(res, "MB of checkpoints")
    assert tree_digest(run_dir / "zoo") == swept.digest


# -- 10. user strings are shown verbatim, never read as rich markup ------------------------------------------
FAST_RUN = '\n[fingerprints]\nnames = ["weight-stats"]\n\n[analysis]\nembedding = "pca"\nn_boot = 2\n'


def test_markup_in_output_paths_and_config_names(tmp_path):
    from tests.conftest import TINY

    cfg = tmp_path / "c.toml"
    body = _edit(TINY.format(mpb=8), 'name = "tiny"', 'name = "ablation [/w noise]"')
    cfg.write_text(body.split("[[spawn]]")[0] + FAST_RUN)  # 8 seed-grid models: a fast run
    out = ok(cli("sweep", cfg, "--out", "q[/x]", cwd=tmp_path))
    assert "done: 8 models in q[/x]" in out
    out = ok(cli("run", cfg, "--out", "run[/o]", cwd=tmp_path))
    assert "ablation [/w noise]" in out and "report: run[/o]/report.html" in out


PLUGIN = textwrap.dedent('''
    import torch
    from fingerprint import extractor

    @extractor("[/x]-fp", kind="mechanistic")
    def fp(models):
        return torch.cat([p.flatten(1) for p in models.params.values()], 1)[:, :4]
''')


def test_markup_in_a_plugin_name_cached_then_inspected(swept, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(swept.zoo, zoo)
    (tmp_path / "plug.py").write_text(PLUGIN)
    # TTY_COMPATIBLE: rich draws its progress bar, whose description is the plugin's name
    out = ok(proc("extract", zoo, "--plugin", "plug:fp", "--fp", "[/x]-fp", cwd=tmp_path, env={"TTY_COMPATIBLE": "1"}))
    assert "[/x]-fp" in out
    ok(cli("cluster", zoo, "--fp", "[/x]-fp", "--embedding", "pca", "--n-boot", "2", cwd=tmp_path))  # the cached one: no plugin
    out = ok(cli("inspect", zoo, cwd=tmp_path))
    assert "[/x]-fp" in out


def test_markup_in_csv_labels_columns_and_model_ids(user_ckpts):
    d = user_ckpts
    out = ok(cli("import", "ckpts", "--arch", "safearch:make", "--metadata", "meta.csv", "--out", "z", cwd=d))
    assert "imported 6 models" in out and "[red]score" in out
    out = ok(cli("cluster", "z", "--trust-code", "--fp", "weight-stats", "--embedding", "pca", "--n-boot", "2", "--k", "2",
                 "--lineage", "[red]score", cwd=d))
    assert "lineage [red]score" in out  # the scorecard's title
    out = ok(cli("inspect", "z", cwd=d))
    assert "[/red] rule 0: 3" in out and "rule [bold]1: 3" in out and "mean [red]score" in out


def test_a_librarys_warning_says_whose_it_is(capsys):
    """An outside audit of the seventeenth session read torch's own note on ``weight_norm`` batching, printed
    as ``warning: ...``, as the toolkit's. A warning raised from an installed library names it."""
    from fingerprint.cli import _show_warning

    _show_warning("There is a performance drop", UserWarning, "/x/lib/python3.11/site-packages/torch/nn/utils/p.py", 1)
    _show_warning("a zoo note", UserWarning, "/work/repo/fingerprint/extraction.py", 1)
    err = capsys.readouterr().err
    assert "warning (from torch): There is a performance drop" in err and "warning: a zoo note" in err
    # a library's own warning class, raised with a stacklevel that points into our code (outside audit 117: scipy's
    # ClusterWarning on an all-zero distance matrix read as the toolkit's own)
    from scipy.cluster.hierarchy import ClusterWarning

    _show_warning("looks suspiciously like an uncondensed distance matrix", ClusterWarning,
                  "/work/repo/analysis/clustering.py", 1)
    assert "warning (from scipy): looks suspiciously" in capsys.readouterr().err
