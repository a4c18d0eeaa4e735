"""``--fp`` names the fingerprint the cache holds for it: specs resolve to their cache entry with the
defaults merged, and a bare name that could mean several cached variants is an error (issue 27 item 3)."""

from __future__ import annotations

import json
import subprocess

import pytest

from fingerprint import pipeline
from fingerprint.extraction import extract, find_cached, load_cached
from tests.conftest import run_cli
from training.core.errors import UserError
from training.core.store import Zoo

VARIANTS = ["cka:probe_set=ood,n_probes=16", "cka:n_probes=16"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)  # the entry point in this process


def test_a_bare_name_with_several_cached_variants_and_no_default_is_an_error(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    assert all(r.error is None for r in extract(zoo, VARIANTS))
    res = cli("cluster", tiny_zoo, "--fp", "cka", "--embedding", "pca", "--n-boot", "0")
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: 'cka' is ambiguous"), res.stderr
    assert "cka:n_probes=16" in lines[0] and "cka:n_probes=16,probe_set=ood" in lines[0]
    with pytest.raises(UserError, match="ambiguous"):
        pipeline.cached_fingerprints(zoo, ["cka"])
    # a spec with parameters is never ambiguous: it names one entry, or none (then it is computed)
    assert [m["params"]["probe_set"] for m in find_cached(zoo, "cka:n_probes=16")] == ["in_dist"]
    assert find_cached(zoo, "cka:n_probes=32") == []


def test_equivalent_specs_find_one_entry_and_the_default_wins_over_variants(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    (default, *_) = extract(zoo, ["cka", *VARIANTS])
    for spec in ("cka", "cka:debiased=false", "cka:n_probes=128,debiased=false", default.key):
        (fp,) = pipeline.cached_fingerprints(zoo, [spec])
        assert fp.meta["key"] == default.key, spec
        assert load_cached(zoo, spec).key == default.key
    # two names of one entry are analysed once; a variant is its own entry
    got = pipeline.inputs_for(zoo, ["cka", "cka:debiased=false", "cka:n_probes=16"])
    assert [f.meta["key"] for f in got] == [default.key, find_cached(zoo, "cka:n_probes=16")[0]["key"]]
    # the CLI: the spelled-out default is the cached default ("cached", then analysed, exit 0)
    res = cli("cluster", tiny_zoo, "--fp", "cka:debiased=false", "--embedding", "pca", "--n-boot", "0")
    assert res.returncode == 0, res.stderr
    basins = json.loads((tiny_zoo / "results" / "basins.json").read_text())
    assert [f["key"] for f in basins["fingerprints"]] == [default.key]


def test_a_bare_name_with_one_cached_variant_uses_it(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    (only,) = extract(zoo, ["cka:n_probes=16"])
    assert [f.meta["key"] for f in pipeline.cached_fingerprints(zoo, ["cka"])] == [only.key]
