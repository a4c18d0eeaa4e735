"""scripts/bench_report.py runs and prints the keys docs/benchmarks.md quotes (issue 26 item 2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_report.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_report_prints_seconds_per_size(capsys):
    _bench().main(["--sizes", "16", "24", "--fps", "2", "--dim", "6", "--embedding", "pca", "--no-warmup", "--json"])
    out = json.loads(capsys.readouterr().out)
    for n in (16, 24):
        assert out[f"seconds_{n}"] > 0
        assert abs(out[f"seconds_{n}"] - out[f"seconds_{n}_analysis"] - out[f"seconds_{n}_page"]) < 0.02
        assert out[f"figures_{n}"] > 0


def test_bench_report_counts_the_fingerprints_drawn_again_on_a_null_population(capsys):
    """``--null`` leaves the deep effect out and ``--seed`` picks the population: ``redrawn_N`` counts the
    fingerprints whose label-free tests were drawn again (docs/benchmarks.md quotes it)."""
    _bench().main(["--sizes", "16", "--fps", "2", "--dim", "6", "--embedding", "pca", "--no-warmup", "--json",
                   "--null", "--seed", "3"])
    out = json.loads(capsys.readouterr().out)
    assert out["null"] is True and out["seed"] == 3 and 0 <= out["redrawn_16"] <= 2
