"""Issue 18, cases 4, 5, 6, 11 and 14: untrusted zoos never run code, extractors cannot read the
answer, imported metadata and probes are validated, and a broken plugin fails alone.

Real zoos (a small sweep, imported checkpoints), real files, real CLI subprocesses, no mocks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fingerprint
from fingerprint import ModelBatch, Zoo
from fingerprint.extraction import active_models, extract
from fingerprint.importer import import_checkpoints
from tests.conftest import run_cli
from training.core.errors import UserError

BIN = [sys.executable, "-m", "fingerprint.cli"]


def cli(*args, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([*BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
                          check=False)


def one_line(text: str) -> bool:
    return "\n" not in str(text).strip()


# -- case 4: opening, inspecting, extracting from or reporting on a zoo runs no code it names ----------
def make(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 2))


def wide() -> nn.Module:
    return make(9)


EVIL_ARCH = '''
import pathlib
pathlib.Path({marker!r}).write_text("the zoo's code ran")
from torch import nn

def make():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
'''


@pytest.fixture
def hostile_zoo(tmp_path):
    """An imported zoo of 5 models (10 pairs: lineage's fewest) whose manifest names a factory module
    shipped inside the zoo, which writes a marker file when imported (``factory_dir`` = ``.``, i.e.
    next to the manifest)."""
    torch.manual_seed(0)
    zoo_dir = tmp_path / "zoo"
    Zoo.from_modules([make() for _ in range(5)], out=zoo_dir,
                     probes={"in_dist": torch.randn(16, 4), "ood": 3 * torch.randn(16, 4)})
    module = f"zoo_arch_{uuid.uuid4().hex[:8]}"  # fresh per test: never already imported
    marker = tmp_path / "MARKER"
    (zoo_dir / f"{module}.py").write_text(EVIL_ARCH.format(marker=str(marker)))
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    manifest["source"] = "import"
    manifest["family"].update(factory=f"{module}:make", factory_dir=".")
    (zoo_dir / "manifest.json").write_text(json.dumps(manifest))
    yield zoo_dir, module, marker
    sys.modules.pop(module, None)
    while str(zoo_dir.resolve()) in sys.path:
        sys.path.remove(str(zoo_dir.resolve()))


def test_an_untrusted_zoo_never_imports_the_code_it_names(hostile_zoo):
    zoo_dir, module, marker = hostile_zoo
    zoo = Zoo.open(zoo_dir)
    for attempt in (lambda: extract(zoo, ["ood-outputs"]), lambda: ModelBatch.from_zoo(zoo)):
        with pytest.raises(UserError, match="names code to run its models") as err:
            attempt()
        assert one_line(err.value) and "--trust-code" in str(err.value) and "--arch" in str(err.value)
        assert f"'{module}:make'" in str(err.value)
    assert not marker.exists() and module not in sys.modules
    # the user's own factory runs the models (checked against the zoo), and the zoo's still does not run
    from fingerprint.population import use_architecture

    with pytest.raises(UserError, match=re.escape("parameter '0.bias' is [9] in it and [8] in the zoo")):
        use_architecture(zoo, f"{__name__}:wide")
    zoo.module_factory = make
    (res,) = extract(zoo, ["ood-outputs"])
    assert res.error is None and res.values.shape[0] == 5
    assert not marker.exists() and module not in sys.modules
    # the user's explicit consent: the zoo's factory is imported (so the marker above would have caught it)
    (res,) = extract(Zoo.open(zoo_dir, trust_code=True), ["ood-outputs"], force=True)
    assert res.error is None and marker.exists()


def test_cli_inspect_extract_report_refuse_the_zoos_code_and_say_what_to_pass(hostile_zoo, tmp_path, monkeypatch,
                                                                             request):
    # the commands run in this process (run_cli), where an import of the zoo's module would also show in sys.modules
    zoo_dir, module, marker = hostile_zoo
    work = tmp_path / "work"
    work.mkdir()
    res = run_cli("inspect", zoo_dir, cwd=work)
    assert res.returncode == 0, res.stderr
    res = run_cli("extract", zoo_dir, "--fp", "ood-outputs", cwd=work)
    assert res.returncode == 2 and "--trust-code" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_cli("report", zoo_dir, "--fp", "ood-outputs", "-o", work / "r.html", cwd=work)
    assert res.returncode == 2 and "--trust-code" in res.stderr, res.stderr
    assert not marker.exists() and not (work / "r.html").exists() and module not in sys.modules
    assert not list(zoo_dir.glob("fingerprints/*.h5"))
    # passing --arch again: the user's factory (a module of theirs on PYTHONPATH), checked against the zoo
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_arch.py").write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))\n")
    monkeypatch.syspath_prepend(str(mine))  # as PYTHONPATH would put it
    request.addfinalizer(lambda: sys.modules.pop("my_arch", None))
    res = run_cli("extract", zoo_dir, "--fp", "ood-outputs", "--arch", "my_arch:make", cwd=work)
    assert res.returncode == 0 and "computed ood-outputs" in res.stdout, res.stderr
    assert not marker.exists() and module not in sys.modules
    # lineage's behavioural test of the cached fingerprint needs no code: only the weight tests are left out, and said
    res = run_cli("lineage", zoo_dir, cwd=work)
    assert res.returncode == 2 and "--trust-code" in res.stderr, res.stderr
    res = run_cli("lineage", zoo_dir, "--fp", "ood-outputs", cwd=work)
    assert res.returncode == 0, res.stderr
    assert "no weight evidence (exact, matched): the weight tests need the architecture's code" in " ".join(res.stdout.split())
    assert not marker.exists() and module not in sys.modules


def test_a_sweep_zoo_naming_a_task_module_does_not_import_it(tiny_zoo, tmp_path, monkeypatch):
    """A trained zoo whose config names a ``module:Class`` task: importable here (on sys.path) but
    never imported unless the user allows it."""
    module = f"zoo_task_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "TASK_MARKER"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from dataclasses import dataclass\nfrom training.tasks.xor_cues import XorCues\n\n"
        "@dataclass(frozen=True)\nclass Evil(XorCues):\n    pass\n")
    monkeypatch.syspath_prepend(str(code))
    manifest = json.loads((tiny_zoo / "manifest.json").read_text())
    manifest["config"]["task"]["name"] = f"{module}:Evil"
    (tiny_zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=f"task '{module}:Evil'.*--trust-code") as err:
        extract(Zoo.open(tiny_zoo), ["ood-outputs"])
    assert "--arch" not in str(err.value)  # --arch builds an imported zoo's architecture: no help for a task (audit 7B)
    assert not marker.exists() and module not in sys.modules
    try:
        (res,) = extract(Zoo.open(tiny_zoo, trust_code=True), ["ood-outputs"])
        assert res.error is None and marker.exists()
    finally:
        sys.modules.pop(module, None)


# -- case 5: extractors get opaque ids and a task view; the real ids only afterwards ---------------------
FOUND: list[dict] = []


def _reachable(roots) -> list:
    """Every object reachable from ``roots`` through attributes, containers, closures and bound
    methods -- what a plugin can get at from what it was handed without walking the interpreter
    (module globals, ``gc``, stack frames: the boundary docs/extractors.md states)."""
    seen: set[int] = set()
    stack, out = list(roots), []
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (types.ModuleType, type)):
            continue
        seen.add(id(o))
        out.append(o)
        if isinstance(o, (torch.Tensor, np.ndarray, str, bytes, int, float, bool)) or o is None:
            continue
        if isinstance(o, dict):
            stack += list(o.keys()) + list(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack += list(o)
        if isinstance(o, types.MethodType):
            stack += [o.__self__, o.__func__]
        if isinstance(o, types.FunctionType):
            stack += [c.cell_contents for c in (o.__closure__ or ()) if c.cell_contents is not None]
            stack += list(o.__defaults__ or ())
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.append(d)
        for slot in getattr(type(o), "__slots__", ()) or ():
            if hasattr(o, slot):
                stack.append(getattr(o, slot))
    return out


@fingerprint.extractor("trust-snoop", kind="mechanistic", streaming=False)
def snoop(models):
    """Collects everything it was handed, calling every accessor of the task view."""
    view = models.task
    handed = [models, view, models.model_ids, view.probe_names(), view.hypotheses()]
    handed += [view.probes(n) for n in view.probe_names()]
    handed += [view.interchanges(h, 4, torch.Generator().manual_seed(0)) for h in view.hypotheses()]
    handed.append(view.train_data())
    FOUND.append({"ids": list(models.model_ids), "objects": _reachable(handed), "view_attrs": dir(view)})
    return models.params["out.bias"].flatten(1)


@fingerprint.extractor("trust-pairs", kind="mechanistic", output="distances", streaming=False)
def pairs(models):
    w = torch.cat([v.flatten(1) for _, v in sorted(models.params.items())], 1)
    return torch.cdist(w, w)


@fingerprint.extractor("trust-landmarks", kind="mechanistic", output="distances", streaming=False)
def landmarks(models):
    w = torch.cat([v.flatten(1) for _, v in sorted(models.params.items())], 1)
    return torch.cdist(w, w[:2]), {"landmarks": models.model_ids[:2], "per_row": np.arange(len(models.model_ids))}


@fingerprint.extractor("trust-labels", supervised=True, streaming=False)
def echo_labels(models, labels=None):
    return torch.tensor([float(x) for x in labels])[:, None]


def test_a_plugin_that_inspects_everything_it_is_handed_finds_no_seed_lineage_or_label(tiny_zoo):
    from training.core.store import ModelTable, Shard
    from training.tasks.base import Task

    zoo = Zoo.open(tiny_zoo)
    FOUND.clear()
    (res,) = extract(zoo, ["trust-snoop"])
    assert res.error is None
    # the population's run, then the determinism check's two on the first 3 models (docs/extractors.md)
    seen, *checks = FOUND
    assert [len(c["ids"]) for c in checks] == [3, 3]
    real = set(zoo.model_ids)
    assert all(re.fullmatch(r"m\d{4}", m) for m in seen["ids"]) and len(seen["ids"]) == len(real)
    strings = [o for o in seen["objects"] if isinstance(o, str)]
    assert not real & set(strings)
    assert not [s for s in strings if re.search(r"i\d+-d\d+|>s\d+|>ft", s)]  # nothing shaped like an id or lineage
    assert not [o for o in seen["objects"] if isinstance(o, (Task, Zoo, ModelTable, Shard))]
    assert not {"variant", "deep_labels", "diagnostics", "sampler", "_task"} & set(seen["view_attrs"])
    seeds = [np.asarray(zoo.models[c]) for c in ("init_seed", "data_seed")]
    vectors = [np.asarray(o) for o in seen["objects"] if isinstance(o, (np.ndarray, list, torch.Tensor))
               and np.asarray(o).ndim == 1 and len(o) == len(real) and np.asarray(o).dtype.kind in "iuf"]
    assert not [v for v in vectors for s in seeds if np.array_equal(np.sort(v), np.sort(s))]
    # after it returns, its rows are the zoo's models again (it saw them in a random order)
    assert res.model_ids == active_models(zoo)
    assert np.array_equal(res.values, zoo.params(model_ids=res.model_ids)["out.bias"].numpy())


def test_rows_distances_landmarks_and_labels_come_back_in_the_zoos_order(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    ids = zoo.model_ids
    w = torch.cat([v.flatten(1) for _, v in sorted(zoo.params(model_ids=ids).items())], 1)
    res = {r.name: r for r in extract(zoo, ["trust-pairs", "trust-landmarks", "trust-labels", "aligned-weights"],
                                      model_ids=ids, labels=dict(zip(ids, zoo.models["init_seed"])))}
    assert all(r.error is None for r in res.values()), {k: r.error for k, r in res.items()}
    assert np.allclose(res["trust-pairs"].values, torch.cdist(w, w).numpy(), atol=1e-4)
    lm = res["trust-landmarks"].meta["landmarks"]
    assert set(lm) <= set(ids)  # the opaque ids it declared, mapped back
    assert np.allclose(res["trust-landmarks"].values, torch.cdist(w, w[[ids.index(m) for m in lm]]).numpy(), atol=1e-4)
    assert np.array_equal(res["trust-labels"].values[:, 0], np.asarray(zoo.models["init_seed"], float))
    assert res["aligned-weights"].meta["reference"] == ids[0]  # a built-in's model id in its metadata, mapped back
    # distances to landmarks are [n, L] coordinates: stored as features, so the cache reads them back (it refused a
    # non-square "distances" entry as corrupt: `lmc-barrier:landmarks=L` failed on its second use)
    (again,) = extract(zoo, ["trust-landmarks"], model_ids=ids)
    assert again.cached and again.error is None and again.meta["output"] == "features"
    assert np.array_equal(again.values, res["trust-landmarks"].values)
    # an entry written before (output "distances", [n, L], with its landmarks) still loads
    zoo.save_fingerprint(again.key, again.values, list(again.model_ids), {**again.meta, "output": "distances"}, {})
    assert np.array_equal(zoo.load_fingerprint(again.key)[0], again.values)


# -- case 11: a broken plugin is that plugin's failure only --------------------------------------------
BAD_PLUGINS = '''
import sys
import numpy as np
import torch
import fingerprint
from training.core.errors import UserError


@fingerprint.extractor("tb-strings")
def strings(models):
    return np.array([["a", "b"]] * len(models.model_ids))


@fingerprint.extractor("tb-objects")
def objects(models):
    return np.array([[object()]] * len(models.model_ids), dtype=object)


@fingerprint.extractor("tb-complex")
def complex_out(models):
    return torch.ones(len(models.model_ids), 2, dtype=torch.complex64)


@fingerprint.extractor("tb-complex-np")
def complex_np(models):
    return np.ones((len(models.model_ids), 2), dtype=np.complex128)


@fingerprint.extractor("tb-diagonal", output="distances")
def diagonal(models):
    return torch.ones(len(models.model_ids), len(models.model_ids))


@fingerprint.extractor("tb-exit")
def exits(models):
    sys.exit(0)


@fingerprint.extractor("tb-exit3")
def exits3(models):
    raise SystemExit(3)


@fingerprint.extractor("tb-user-error")
def user_error(models):
    raise UserError("no such probe set")


@fingerprint.extractor("tb-reserved-meta")
def reserved(models):
    return torch.zeros(len(models.model_ids), 1), {"step": "cheat"}


@fingerprint.extractor("tb-object-meta")
def object_meta(models):
    return torch.zeros(len(models.model_ids), 1), {"names": np.array(["x"], dtype=object)}


@fingerprint.extractor("tb-slash-meta")
def slash_meta(models):
    return torch.zeros(len(models.model_ids), 1), {"a/b": 1}


@fingerprint.extractor("tb-good")
def good(models):
    return models.params["out.bias"].flatten(1)
'''

EXPECT = {
    "tb-strings": "returned a numpy array of dtype <U1, expected numbers",
    "tb-objects": "returned a numpy array of dtype object, expected numbers",
    "tb-complex": "returned complex values (torch.complex64)",
    "tb-complex-np": "returned complex values (complex128)",
    "tb-diagonal": "whose diagonal is not zero",
    "tb-exit": "called sys.exit(0)",
    "tb-exit3": "called sys.exit(3)",
    "tb-user-error": "extractor 'tb-user-error': no such probe set",
    "tb-reserved-meta": "metadata key 'step', which extraction writes itself",
    "tb-object-meta": "metadata array 'names' of dtype object",
    "tb-slash-meta": "metadata key 'a/b'",
}


@pytest.fixture
def bad_plugins(tmp_path, monkeypatch):
    site = tmp_path / "plugins"
    site.mkdir()
    (site / "trust_bad_plugins.py").write_text(BAD_PLUGINS)
    monkeypatch.syspath_prepend(str(site))
    import importlib

    importlib.import_module("trust_bad_plugins")
    yield site
    sys.modules.pop("trust_bad_plugins", None)


def test_broken_plugins_fail_alone_and_the_others_are_cached(bad_plugins, tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    res = {r.name: r for r in extract(zoo, [*EXPECT, "weight-stats", "tb-good"])}
    for name, expect in EXPECT.items():
        err = res[name].error
        assert err and expect in err and f"'{name}'" in err and one_line(err), (name, err)
    assert res["weight-stats"].error is None and res["tb-good"].error is None
    assert {m["extractor"] for m in zoo.list_fingerprints()} == {"weight-stats", "tb-good"}


def test_cli_extract_survives_sys_exit_and_string_output_and_exits_nonzero(bad_plugins, tiny_zoo):
    res = cli("extract", tiny_zoo, "--plugin", "trust_bad_plugins:good", "--fp", "tb-exit", "--fp", "tb-strings",
              "--fp", "weight-stats", "--fp", "tb-good", cwd=tiny_zoo.parent, pythonpath=bad_plugins)
    assert res.returncode == 1, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "'tb-exit' called sys.exit(0)" in errors[0] and "'tb-strings'" in errors[1], res.stderr
    assert "Traceback" not in res.stderr
    assert "computed weight-stats" in res.stdout and "computed tb-good" in res.stdout
    assert {m["extractor"] for m in Zoo.open(tiny_zoo).list_fingerprints()} == {"weight-stats", "tb-good"}


# -- cases 6 and 14: imported metadata, file names and probes are validated before anything is written --
ARCH = '''
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
'''


@pytest.fixture
def ckpts(tmp_path, monkeypatch):
    """Four checkpoints of ``trust_arch:make`` and the directory to import into."""
    (tmp_path / "trust_arch.py").write_text(ARCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import trust_arch

    importlib.reload(trust_arch)
    d = tmp_path / "ckpts"
    d.mkdir()
    for i in range(4):
        torch.manual_seed(i)
        torch.save(trust_arch.make().state_dict(), d / f"model{i}.pt")
    return tmp_path


def _nothing_written(root: Path) -> bool:
    return not (root / "zoo").exists() and not list(root.glob(".zoo.*"))


@pytest.mark.parametrize("csv_text,culprit", [
    ("model_id,a/b\nmodel0,1\n", "column 2 ('a/b') cannot be a column name: it contains '/'"),
    ("model_id,,label\nmodel0,1,x\n", "column 2 ('') cannot be a column name: it is empty"),
    ("model_id,.\nmodel0,1\n", "column 2 ('.') cannot be a column name: '.' names the group itself"),
    ("model_id,label\nmodel0,x\nmodel1,y,EXTRA\n", "row 3 has 3 fields for the header's 2 (an extra field 'EXTRA')"),
    ("model_id,label,lr\nmodel0,x\n", "row 2 has 2 fields for the header's 3 (no field for column 'lr')"),
    ("model_id,label,label\nmodel0,x,y\n", "has two columns named 'label' (columns 2 and 3)"),
    ("model_id,bad\tname\nmodel0,1\n", "it contains a control character"),
])
def test_bad_metadata_csv_is_one_line_error_naming_the_culprit_and_writes_nothing(ckpts, csv_text, culprit):
    (ckpts / "meta.csv").write_text(csv_text)
    with pytest.raises(UserError) as err:
        import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo", metadata=ckpts / "meta.csv")
    assert culprit in str(err.value) and "meta.csv" in str(err.value) and one_line(err.value), str(err.value)
    assert _nothing_written(ckpts)


def test_checkpoint_named_with_invalid_utf8_is_refused(ckpts):
    raw = os.fsencode(ckpts / "ckpts") + b"/bad\xff.pt"
    try:
        with open(raw, "wb") as f:
            torch.save(torch.load(ckpts / "ckpts" / "model0.pt", weights_only=True), f)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    with pytest.raises(UserError, match=r"checkpoint file name b'bad\\xff.pt' .* is not valid UTF-8; rename it") as err:
        import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo")
    assert one_line(err.value) and _nothing_written(ckpts)


@pytest.mark.parametrize("probes,culprit", [
    ({"in/dist": torch.randn(4, 3)}, "'in/dist' cannot name a probe set: it contains '/'"),
    ({".": torch.randn(4, 3)}, "'.' cannot name a probe set"),
    ({"empty": torch.randn(0, 3)}, "probe set 'empty' of"),
    ({"nan": torch.full((4, 3), float("nan"))}, "probe set 'nan' of"),
    ({"c": torch.ones(4, 3, dtype=torch.complex64)}, "holds torch.complex64"),
    ({"a": torch.randn(4, 3), "b": torch.randn(4, 7)}, "probe set 'b' of"),
])
def test_bad_probe_files_are_one_line_errors(ckpts, probes, culprit):
    torch.save(probes, ckpts / "probes.pt")
    with pytest.raises(UserError) as err:
        import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo", probes=ckpts / "probes.pt")
    assert culprit in str(err.value) and one_line(err.value), str(err.value)
    assert _nothing_written(ckpts)


def test_layer_and_from_modules_names_are_checked_too(ckpts):
    with pytest.raises(UserError, match="an empty layer name names the whole model"):
        import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo", layers=[""])
    assert _nothing_written(ckpts)
    mods = [nn.Linear(3, 2) for _ in range(2)]
    with pytest.raises(UserError, match=r"column 2 \('a/b'\) cannot be a column name"):
        Zoo.from_modules(mods, out=ckpts / "zoo", metadata={"a/b": [1, 2]})
    with pytest.raises(UserError, match="cannot be a model id"):
        Zoo.from_modules(mods, out=ckpts / "zoo", model_ids=["ok", "two\nlines"])
    assert _nothing_written(ckpts)


def test_metadata_covering_fewer_models_warns_with_the_count_and_strict_refuses(ckpts):
    (ckpts / "meta.csv").write_text("model_id,label\nmodel2,x\n")
    with pytest.raises(UserError, match="covers 1 of 4 models: 3 have no row .*--strict refuses") as err:
        import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo", metadata=ckpts / "meta.csv", strict=True)
    assert one_line(err.value) and _nothing_written(ckpts)
    with pytest.warns(UserWarning, match=r"covers 1 of 4 models: 3 have no row \(e.g. model0, model1, model3\)"):
        out = import_checkpoints(ckpts / "ckpts", "trust_arch:make", ckpts / "zoo", metadata=ckpts / "meta.csv")
    assert list(Zoo.open(out).models["label"]) == ["", "", "x", ""]


def test_cli_import_metadata_errors_and_coverage(ckpts):
    # in this process (run_cli): the fixture put trust_arch's directory on sys.path, as `python -m` from it would
    (ckpts / "slash.csv").write_text("model_id,a/b\nmodel0,1\n")
    res = run_cli("import", "ckpts", "--arch", "trust_arch:make", "--out", "zoo", "--metadata", "slash.csv", cwd=ckpts)
    assert res.returncode == 2 and "column 2 ('a/b')" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert _nothing_written(ckpts)
    (ckpts / "partial.csv").write_text("model_id,label\nmodel2,x\n")
    res = run_cli("import", "ckpts", "--arch", "trust_arch:make", "--out", "zoo", "--metadata", "partial.csv", "--strict", cwd=ckpts)
    assert res.returncode == 2 and "covers 1 of 4 models" in res.stderr, res.stderr
    assert _nothing_written(ckpts)
    res = run_cli("import", "ckpts", "--arch", "trust_arch:make", "--out", "zoo", "--metadata", "partial.csv", cwd=ckpts)
    assert res.returncode == 0 and "warning:" in res.stderr and "covers 1 of 4 models: 3 have no row" in res.stderr, res.stderr
    assert len(Zoo.open(ckpts / "zoo")) == 4


def test_a_cached_module_function_fingerprint_is_read_without_importing_its_module(tmp_path, monkeypatch):
    """Outside audit 121 (F5): `cluster --fp sidefp:plain` on a zoo not trusted imported `sidefp` from the working
    directory to look its name up, though the cached values needed no code. A module:function that is not loaded is
    matched against the cache as written; one already loaded keeps its checks."""
    import sys

    from fingerprint.extraction import find_cached

    (tmp_path / "sidemodtrust.py").write_text("import pathlib\npathlib.Path(__file__).with_suffix('.log').write_text('imported')\n"
                                              "def plain(models):\n    return models.params['w'].flatten(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    metas = [{"key": "sidemodtrust:plain-abc", "spec": "sidemodtrust:plain", "extractor": "sidemodtrust:plain",
              "version": "1", "params": {}}]
    found = find_cached(None, "sidemodtrust:plain", metas)
    assert [m["key"] for m in found] == ["sidemodtrust:plain-abc"]
    assert "sidemodtrust" not in sys.modules and not (tmp_path / "sidemodtrust.log").exists()
    # its variants: the one named, never another under the extractor's name (review 122: k=3 read for the default)
    k3 = {**metas[0], "key": "sidemodtrust:plain-k3", "spec": "sidemodtrust:plain:k=3", "params": {"k": 3}}
    assert [m["key"] for m in find_cached(None, "sidemodtrust:plain", [*metas, k3])] == ["sidemodtrust:plain-abc"]
    assert [m["key"] for m in find_cached(None, "sidemodtrust:plain:k=3", [*metas, k3])] == ["sidemodtrust:plain-k3"]
    k5 = {**k3, "key": "sidemodtrust:plain-k5", "spec": "sidemodtrust:plain:k=5"}
    with pytest.raises(UserError, match="'sidemodtrust:plain' is ambiguous: 2 variants are cached"):
        find_cached(None, "sidemodtrust:plain", [k3, k5])
    assert "sidemodtrust" not in sys.modules
