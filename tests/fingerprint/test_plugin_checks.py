"""Two silent failures of plugin extractors, found by an outside audit (audit 45, finding 6), and
`inspect`'s tables (finding 8 ii, iii).

A plugin that is not deterministic (an unseeded ``torch.rand``) was cached and scored with no word:
extraction now runs a plugin twice more on the first few models and keeps a warning in the cache
entry, which ``extract``, ``cluster`` / ``report`` and the HTML show. A plugin whose body was edited
without bumping ``version`` was served its stale cache entry: a plugin's key now covers its source.
Plugins are real files on disk, imported by a fresh interpreter (``--plugin``), as a user runs them.
Two checks left open then: a streaming plugin whose rows depend on the other models in the call
(chunk-dependent values) is warned about too, and an edited body's entry replaces the old one
(``inspect`` marks one left by an earlier run as superseded).
"""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import pytest

import fingerprint
from fingerprint import registry
from fingerprint.extraction import extract, find_cached
from fingerprint.extractor_spec import ExtractorSpec, source_digest
from fingerprint.plugin_checks import determinism_warning
from fingerprint.registry import get_extractor
from tests.conftest import run_cli
from training.core.store import Zoo

PLUGIN = '''
import torch
import fingerprint


@fingerprint.extractor("noisy-t", kind="behavioural")
def noisy(models, n: int = 4):
    return torch.rand(len(models), n)


@fingerprint.extractor("steady-t", kind="behavioural")
def steady(models, scale: float = 1.0):
    return scale * models.forward(models.task.probes("ood")).mean(1)
'''


def _plugin_spec(name, fn, **kw):
    return ExtractorSpec(name=name, fn=fn, source="plugin (test)", code=source_digest(fn), **kw)


def test_a_plugin_that_is_not_deterministic_is_named_with_its_difference_and_the_fix(tiny_zoo):
    import torch

    zoo = Zoo.open(tiny_zoo)
    ids = zoo.model_ids

    def noisy(models, n: int = 4):
        return torch.rand(len(models), n)

    def steady(models):
        return models.forward(models.task.probes("ood")).mean(1)

    def seeded(models, seed: int = 0):  # a random draw from its own generator: deterministic
        g = torch.Generator().manual_seed(seed)
        return models.forward(torch.randn(8, *models.task.input_shape, generator=g)).mean(1)

    def population(models):  # needs many models (a z-score over the population): not checked on 3
        if len(models) < 10:
            raise ValueError("needs the population")
        return models.forward(models.task.probes("ood")).mean(1)

    w = determinism_warning(zoo, _plugin_spec("noisy", noisy), {"n": 4}, ids, None, "cpu")
    assert w is not None and w.startswith("extractor 'noisy' is not deterministic: two runs on the same 3 models")
    assert "apart (largest |value|" in w and "torch.Generator().manual_seed(seed)" in w
    for name, fn, params in (("steady", steady, {}), ("seeded", seeded, {"seed": 0}), ("population", population, {})):
        assert determinism_warning(zoo, _plugin_spec(name, fn), params, ids, None, "cpu") is None, name
    # a zoo of one model is checked on it
    assert determinism_warning(zoo, _plugin_spec("noisy", noisy), {"n": 4}, ids[:1], None, "cpu").count("1 model ") == 1


def test_a_plugins_cache_key_covers_its_source_and_builtins_keep_theirs():
    ns1 = {}
    exec("def f(models, k: int = 1):\n    return models\n", ns1)  # no file behind it: no source to key
    assert source_digest(ns1["f"]) is None

    def a(models, k: int = 1):
        return k

    def b(models, k: int = 1):
        return k + 1

    assert source_digest(a) != source_digest(b) and len(source_digest(a)) == 12
    sa, sb, none = _plugin_spec("p", a), _plugin_spec("p", b), ExtractorSpec(name="p", fn=a, source="plugin (test)")
    assert len({sa.cache_key({"k": 1}, 5), sb.cache_key({"k": 1}, 5), none.cache_key({"k": 1}, 5)}) == 3
    ood = get_extractor("ood-outputs")
    assert ood.code is None  # a built-in's key is what it always was (a release bumps `version`)


def _entry(zoo, spec, code=None, value=0.0, text=None, key=None):
    meta = {"extractor": spec.name, "spec": text or spec.name, "version": spec.version, "params": dict(spec.params),
            "step": 20, "source": spec.source, "kind": spec.kind, "output": spec.output}
    if code is not None:
        meta["code"] = code
    key = key or f"{spec.name}-{code or 'old'}"
    zoo.save_fingerprint(key, np.full((len(zoo.model_ids), 2), value, np.float32), zoo.model_ids, meta)
    return key


def test_find_cached_never_serves_an_edited_bodys_entry_and_keeps_one_made_before(tiny_zoo, monkeypatch):
    zoo = Zoo.open(tiny_zoo)

    def body(models, scale: float = 1.0):
        return scale

    spec = _plugin_spec("bodied-t", body)
    old = _entry(zoo, spec)  # made before sources were keyed: no `code`
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)  # the plugin loaded, as --plugin does
    assert [m["key"] for m in find_cached(zoo, "bodied-t")] == [old]  # alone: still used
    time.sleep(0.01)
    stale = _entry(zoo, spec, "0123456789ab")  # an earlier body's
    assert [m["key"] for m in find_cached(zoo, "bodied-t")] == [old]
    time.sleep(0.01)
    now = _entry(zoo, spec, spec.code, value=1.0)
    assert [m["key"] for m in find_cached(zoo, "bodied-t")] == [now]
    monkeypatch.delitem(registry._REGISTRY, spec.name)  # not loaded: found by name, the newest entry
    assert [m["key"] for m in find_cached(zoo, "bodied-t")] == [now]
    from fingerprint.pipeline import cached_fingerprints

    for names in (["bodied-t"], None):
        (fp,) = [f for f in cached_fingerprints(zoo, names) if f.name == "bodied-t"]
        assert fp.meta["key"] == now and float(fp.values[0, 0]) == 1.0
    assert stale != now


def test_cli_warns_about_a_noisy_plugin_and_recomputes_an_edited_one(tiny_zoo, tmp_path, monkeypatch):
    """The audit's two cases through the CLI, a plugin file imported by `--plugin`: `extract` prints
    the warning; editing the body without bumping `version` recomputes; `cluster` without the plugin
    uses the new entry and repeats the warning; the stored result keeps it in the fingerprint's meta.
    In this process (a fresh interpreter costs 4 s of imports): the registry, sys.path and the
    imported module are put back afterwards, and the edited file is imported anew, as a new process would."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edit within the second: never a stale .pyc
    (tmp_path / "plugt.py").write_text(PLUGIN)

    def extract_cli():
        sys.modules.pop("plugt", None)
        importlib.invalidate_caches()
        res = run_cli("extract", tiny_zoo, "--plugin", "plugt", "--fp", "noisy-t", "--fp", "steady-t", cwd=tmp_path,
                      env={"COLUMNS": "200"})
        sys.modules.pop("plugt", None)
        assert res.returncode == 0, res.stderr
        return " ".join(res.stdout.split())

    out = extract_cli()
    assert "computed noisy-t" in out and "computed steady-t" in out
    assert ("warning: extractor 'noisy-t' is not deterministic: two runs on the same 3 models gave values up to" in out
            and "take a seed parameter and use torch.Generator().manual_seed(seed)" in out)
    assert out.count("warning:") == 1  # steady-t: none
    first = {m["extractor"]: m for m in Zoo.open(tiny_zoo).list_fingerprints() if m["extractor"] in ("noisy-t", "steady-t")}
    assert first["noisy-t"]["warnings"] and "warnings" not in first["steady-t"] and first["steady-t"]["code"]
    (tmp_path / "plugt.py").write_text(PLUGIN.replace("scale * models", "2 * scale * models"))  # version not bumped
    out = extract_cli()
    assert "cached noisy-t" in out and "computed steady-t" in out
    assert ("(recomputed: the plugin's source changed since it was cached; the old entry was replaced)"
            in out.split("computed steady-t")[1])
    assert out.count("recomputed:") == 1  # only the edited one
    assert out.count("warning: extractor 'noisy-t'") == 1  # a cached entry keeps its warning
    new = [m for m in Zoo.open(tiny_zoo).list_fingerprints() if m["extractor"] == "steady-t"]
    assert len(new) == 1 and new[0]["code"] != first["steady-t"]["code"]  # the edited body's entry alone
    shown = " ".join(run_cli("inspect", tiny_zoo, env={"COLUMNS": "200"}).stdout.split())
    assert f"{new[0]['key']} │ steady-t │" in shown and first["steady-t"]["key"] not in shown and "superseded" not in shown
    # the plugin not loaded: its entries are found by name, and the edited body's is used
    for name in ("noisy-t", "steady-t"):
        registry._REGISTRY.pop(name)
    res = run_cli("cluster", tiny_zoo, "--fp", "noisy-t", "--fp", "steady-t", "--embedding", "pca", "--n-boot", "2",
                  "--k", "2", cwd=tmp_path, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert " ".join(res.stdout.split()).count("warning: extractor 'noisy-t' is not deterministic") == 1
    # and below the answer: it counts a flagged fingerprint like the others (an outside audit, 71)
    assert "flagged at extraction: noisy-t (the warnings above): the answer and the headline count them" in " ".join(
        res.stdout.split())
    stored = Zoo.open(tiny_zoo).load_result("basins")
    metas = {f["fingerprint"]: f["meta"] for f in stored["fingerprints"]}
    newest = max(new, key=lambda m: m["created"])
    assert metas["steady-t"]["key"] == newest["key"] and metas["noisy-t"]["warnings"]


@pytest.mark.parametrize("width", [80, 120])
def test_inspect_shows_whole_names_and_verdicts_and_no_mean_of_ids(tiny_zoo, tmp_path, width):
    """Audit 45 finding 8: `weight…` for both weight-spectra and weight-stats, the label-free verdict cut,
    and `mean family 14.5000` for an id column."""
    zoo = Zoo.open(tiny_zoo)
    extract(zoo, ["weight-spectra", "weight-stats"])
    res = run_cli("cluster", tiny_zoo, "--fp", "weight-spectra", "--fp", "weight-stats", "--embedding", "pca",
                  "--n-boot", "2", cwd=tmp_path, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    out = run_cli("inspect", tiny_zoo, env={"COLUMNS": str(width)}).stdout
    assert "…" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("weight-spectra ", "weight-stats "))}
    assert set(rows) == {"weight-spectra", "weight-stats"} and all(len(line) <= width for line in out.splitlines())
    stored = {r["fingerprint"]: r for r in Zoo.open(tiny_zoo).load_result("basins")["scorecard"]}
    from analysis import verdicts

    for name, line in rows.items():
        assert verdicts.style(stored[name]["label_free_verdict"]).short in line


def test_inspect_gives_integer_id_columns_their_range_not_a_mean(tmp_path):
    import torch

    from fingerprint.cli.train import zoo_summary

    n = 6
    nan = float("nan")  # a diagnostic NaN for every model (an outside audit, 71: numpy's bare "Mean of empty slice")
    meta = {"family": [0, 0, 1, 1, 2, 2], "order": [0, 1, 0, 1, 0, 1], "acc": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "lost": [nan] * 6}
    zoo = fingerprint.Zoo.from_modules([torch.nn.Linear(3, 2) for _ in range(n)], out=tmp_path / "z", metadata=meta,
                           probes={"ood": torch.randn(4, 3)})
    s = zoo_summary(zoo)
    assert s["metrics_levels"] == {"family": {"distinct": 3, "min": 0, "max": 2}}
    assert set(s["metrics_mean"]) == {"order", "acc", "lost"}  # a 0/1 column's mean is a share
    res = run_cli("inspect", tmp_path / "z", env={"COLUMNS": "80"})
    out = " ".join(res.stdout.split())
    assert "family values │ 3 (0..2)" in out and "mean family" not in out and "mean acc │ 0.7500" in out
    assert "mean lost │ none finite (NaN for every model)" in out and "Mean of empty slice" not in res.stderr


def _row_plugins():
    """Plugins of each kind the row-independence check must tell apart, with their specs' settings."""
    import torch

    def mean_out(models):
        return models.forward(models.task.probes("ood")).mean(1)  # [n, n_out]

    def zscored(models):  # the audit's case: z-scores across the models in the call
        x = mean_out(models)
        return (x - x.mean(0)) / (x.std(0) + 1e-6)

    def own(models, scale: float = 1.0):  # each row from its own model
        return scale * mean_out(models)

    def noisy(models):
        return torch.rand(len(models), 4)

    def similarity(models):  # an [n, n] similarity returned by mistake as features
        x = models.forward(models.task.probes("ood")).flatten(1)
        return x @ x.T

    def position(models):  # a column that reads the row order
        return torch.cat([mean_out(models), torch.arange(len(models), dtype=torch.float32)[:, None]], 1)

    def first_row(models):  # each row relative to the first one it is given (a reference model picked by row)
        x = mean_out(models)
        return x - x[:1]

    def centred(models):  # population-level, and declared so
        x = mean_out(models)
        return x - x.mean(0)

    def distances(models):
        return torch.cdist(mean_out(models), mean_out(models))

    return {"zscored": (zscored, {}), "own": (own, {}), "noisy": (noisy, {}), "similarity": (similarity, {}),
            "position": (position, {}), "first-row": (first_row, {}), "centred": (centred, {"streaming": False}),
            "centred-sup": (centred, {"supervised": True}), "distances": (distances, {"output": "distances"})}


def test_a_streaming_plugin_whose_rows_depend_on_the_other_models_is_named_and_the_fix_given(tiny_zoo):
    """The subset run (2 of the first 3 models) against the 3-model run: a z-scoring, a
    similarity-as-features, a row-order and a first-row-reference plugin are named; a per-model one
    is not; a random one gets only the determinism line; streaming=False, supervised and distance
    plugins are not checked."""
    from fingerprint.plugin_checks import plugin_warnings, row_independence_warning

    zoo = Zoo.open(tiny_zoo)
    ids = zoo.model_ids
    got = {}
    for name, (fn, kw) in _row_plugins().items():
        spec = _plugin_spec(name, fn, **kw)
        labels = list(range(len(ids))) if spec.supervised else None
        got[name] = plugin_warnings(zoo, spec, {}, ids, None, "cpu", labels)
        assert row_independence_warning(zoo, spec, {}, ids, None, "cpu") == (got[name][0] if name in (
            "zscored", "similarity", "position", "first-row") else None), name
    for name in ("zscored", "similarity", "position", "first-row"):
        (w,) = got[name]
        assert w.startswith(f"extractor '{name}' gives rows that depend on the other models in the call: run on 2 of the "
                            "same 3 models, it gave ")
        assert ("Extraction runs in chunks of models, so its values depend on the chunking: compute each row from its own "
                "model only, or declare streaming=False to get the whole population in one call") in w
        assert "\n" not in w
    assert "values up to" in got["zscored"][0] and "shape [2, 2] (on all 3: [3, 3])" in got["similarity"][0]
    (w,) = got["noisy"]
    assert "is not deterministic" in w and "depend on the other models" not in w
    assert got["own"] == got["centred"] == got["centred-sup"] == got["distances"] == []
    # two models: the subset is the second alone; one model: nothing to compare
    # a plugin that reads the row order is caught whatever the hidden orders: never by luck of them
    for name in ("position", "first-row"):
        spec = _plugin_spec(name, _row_plugins()[name][0])
        for i in range(len(ids) - 2):
            assert row_independence_warning(zoo, spec, {}, ids[i:i + 3], None, "cpu"), (name, i)
    centred = _plugin_spec("centred", _row_plugins()["centred"][0])  # left streaming: its lone row is 0
    assert "run on 1 of the same 2 models, it gave" in plugin_warnings(zoo, centred, {}, ids[:2], None, "cpu")[0]
    assert plugin_warnings(zoo, centred, {}, ids[:1], None, "cpu") == []


def test_extraction_stores_the_row_warning_with_the_entry(tiny_zoo, monkeypatch):
    """Through ``extract`` (the plugins registered as --plugin does): the warning is in the cached
    entry's meta, and a per-model plugin's entry has none, in chunks of models or in one call."""
    zoo = Zoo.open(tiny_zoo)
    plugins = _row_plugins()
    for name in ("zscored", "own", "centred"):
        fn, kw = plugins[name]
        monkeypatch.setitem(registry._REGISTRY, f"{name}-t", _plugin_spec(f"{name}-t", fn, **kw))
    res = {r.name: r for r in extract(zoo, ["zscored-t", "own-t", "centred-t"], chunk_size=5)}
    assert all(r.error is None for r in res.values())
    stored = {m["extractor"]: m for m in Zoo.open(tiny_zoo).list_fingerprints()}
    (w,) = stored["zscored-t"]["warnings"]
    assert "rows that depend on the other models in the call" in w and res["zscored-t"].meta["warnings"] == [w]
    assert "warnings" not in stored["own-t"] and "warnings" not in stored["centred-t"]


def test_an_entry_of_an_earlier_body_left_by_an_older_run_is_superseded(tiny_zoo, monkeypatch):
    """Entries both bodies left (as extraction did before it replaced them): `inspect` marks the old
    one, `report` / `cluster` use the new one whatever spec text each was extracted as, and the next
    recomputation removes it through the store's own primitive, leaving one entry."""
    from fingerprint.cli.train import zoo_summary
    from fingerprint.extraction import superseded
    from fingerprint.pipeline import cached_fingerprints

    zoo = Zoo.open(tiny_zoo)

    def body(models, scale: float = 1.0):
        return scale * models.forward(models.task.probes("ood")).mean(1)

    spec = _plugin_spec("bodied-t", body)
    built = _entry(zoo, get_extractor("ood-outputs"), value=2.0)  # a built-in: never superseded
    # the old body's entry, extracted under another spec text of the same fingerprint
    old = _entry(zoo, spec, "0123456789ab", text="bodied-t:scale=1.0")
    time.sleep(0.01)
    now = _entry(zoo, spec, spec.code, value=1.0, key=spec.cache_key(dict(spec.params), 20))
    path = tiny_zoo / "fingerprints" / f"{old}.h5"
    assert superseded(zoo.list_fingerprints()) == {old}
    s = zoo_summary(zoo)
    assert [f["key"] for f in s["fingerprints"] if f.get("superseded")] == [old]
    out = " ".join(run_cli("inspect", tiny_zoo, env={"COLUMNS": "200"}).stdout.split())
    assert f"{old} │ bodied-t (superseded) │" in out and f"{now} │ bodied-t │" in out and f"{built} │ ood-outputs │" in out
    assert "superseded: computed by an earlier body of its plugin" in out
    keys = {f.meta["key"] for f in cached_fingerprints(zoo)}
    assert now in keys and old not in keys
    for text in ("bodied-t:scale=1.0", "bodied-t"):  # the plugin not loaded: the old entry's own spec text finds the new
        assert [m["key"] for m in find_cached(zoo, text)] == [now], text
        assert [f.meta["key"] for f in cached_fingerprints(zoo, [text])] == [now], text
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    (r,) = extract(zoo, ["bodied-t"], step=20, force=True)
    assert r.error is None and r.meta.get("source_changed")
    left = [m for m in Zoo.open(tiny_zoo).list_fingerprints() if m["extractor"] == "bodied-t"]
    assert [m["key"] for m in left] == [r.key] == [now] and left[0]["code"] == spec.code and not path.exists()
    assert "superseded" not in run_cli("inspect", tiny_zoo, env={"COLUMNS": "200"}).stdout


def test_the_store_removes_cache_entries_by_key_only(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    spec = get_extractor("ood-outputs")
    key = _entry(zoo, spec)
    with pytest.raises(fingerprint.UserError, match="is not a fingerprint cache key"):
        zoo.remove_fingerprints([key, "../manifest"])
    assert (tiny_zoo / "fingerprints" / f"{key}.h5").exists()  # checked before anything is removed
    assert zoo.remove_fingerprints([key, key, "never-cached"]) == [key]
    assert zoo.load_fingerprint(key) is None and (tiny_zoo / "manifest.json").exists()
