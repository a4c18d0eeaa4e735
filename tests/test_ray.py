"""The Ray executor on a real local Ray instance (2 CPUs): same models, worker kills, failing shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'basin-fingerprint[ray]')")

from fingerprint import Zoo  # noqa: E402
from fingerprint.errors import UserError  # noqa: E402
from training.config import load_config  # noqa: E402
from training.ray_executor import RayExecutor  # noqa: E402
from training.sweep import run_sweep  # noqa: E402

FAILING_TASK = textwrap.dedent('''
    from dataclasses import dataclass
    from training.tasks.xor_cues import XorCues

    @dataclass(frozen=True)
    class FailingXor(XorCues):
        """xor-cues whose sampler fails for any shard holding init seed 3."""

        def variant(self, init_seeds, data_seeds):
            if 3 in init_seeds.tolist():
                raise RuntimeError("planted failure for the test")
            return super().variant(init_seeds, data_seeds)
''')


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    plugin_dir = tmp_path_factory.mktemp("plugins")
    (plugin_dir / "failing_task_mod.py").write_text(FAILING_TASK)
    sys.path.insert(0, str(plugin_dir))
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_dir), str(Path.cwd()), old) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
    os.environ["PYTHONPATH"] = old
    sys.path.remove(str(plugin_dir))


def test_ray_gives_the_same_models_as_local(local_ray, tmp_path, tiny_config, tiny_zoo):
    out = tmp_path / "ray"
    run_sweep(load_config(tiny_config(mpb=4)), out, executor=RayExecutor())
    a, b = Zoo.open(tiny_zoo), Zoo.open(out)
    assert a.model_ids == b.model_ids
    pa, pb = a.params(), b.params()
    assert all(torch.allclose(pa[k], pb[k], atol=1e-5) for k in pa)


def _worker_pids() -> list[int]:
    res = subprocess.run(["pgrep", "-f", "ray::_train_shard_task"], capture_output=True, text=True)
    return [int(p) for p in res.stdout.split()]


def test_killed_worker_is_retried_and_every_model_ends_up_trained(local_ray, tmp_path, tiny_config):
    body = Path(tiny_config(mpb=2)).read_text().replace("steps = 40", "steps = 600").replace("init = 4", "init = 6")
    cfg = load_config(tiny_config(body=body))
    out = tmp_path / "killed"
    errors: list[BaseException] = []

    def go():
        try:
            run_sweep(cfg, out, executor=RayExecutor(max_retries=3), models_per_batch=2)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=go)
    t.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and t.is_alive():
        pids = _worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    t.join(timeout=300)
    assert killed is not None, "no Ray worker was seen running a shard"
    assert not errors, errors
    zoo = Zoo.open(out)
    planned = [p["model_id"] for p in zoo.manifest["planned"]]
    assert zoo.model_ids == planned and len(set(planned)) == len(planned)


def test_a_shard_that_always_fails_is_named_and_others_are_kept(local_ray, tmp_path, tiny_config):
    body = Path(tiny_config(mpb=4)).read_text().replace('name = "xor-cues"', 'name = "failing_task_mod:FailingXor"')
    body = body.split("[[spawn]]")[0]  # base models only
    cfg = load_config(tiny_config(body=body))
    with pytest.raises(UserError, match=r"shard\(s\) p0-g0-0001 failed after 1 retries.*planted failure"):
        run_sweep(cfg, tmp_path / "fail", executor=RayExecutor(max_retries=1))
    # the healthy shard (init seeds 0, 1) finished and is kept
    assert [p.name for p in (tmp_path / "fail" / "shards").glob("*.h5")] == ["p0-g0-0000.h5"]


RAY_PLUGIN = textwrap.dedent('''
    import torch
    from fingerprint.registry import extractor

    @extractor("row-norms", kind="mechanistic")
    def row_norms(models):
        """Per-model norm of every parameter tensor (a decorator-registered plugin in an importable module)."""
        return torch.stack([p.flatten(1).norm(dim=1) for p in models.params.values()], 1)

    @extractor("fails-on-chunk", kind="mechanistic")
    def fails_on_chunk(models):
        if len(models.model_ids) < 5:  # the last, short chunk (extractors see opaque ids, not the zoo's)
            raise RuntimeError("planted chunk failure")
        return torch.zeros(len(models.model_ids), 1)
''')


def test_ray_extraction_matches_local_and_names_a_failing_chunk(local_ray, tmp_path, tiny_zoo):
    from fingerprint.extraction import extract
    from fingerprint.parallel import RayChunks

    plugin_dir = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0])
    (plugin_dir / "ray_fp_plugin.py").write_text(RAY_PLUGIN)
    import ray_fp_plugin  # noqa: F401  (registers the plugins here; workers import the module)

    zoo = Zoo.open(tiny_zoo)
    specs = ["weight-stats", "ood-outputs", "row-norms", "cka"]
    local = {r.name: r for r in extract(zoo, specs, force=True, chunk_size=5)}
    remote = {r.name: r for r in extract(zoo, specs, force=True, chunk_size=5, runner=RayChunks())}
    for name in specs:
        assert remote[name].error is None, remote[name].error
        assert remote[name].model_ids == local[name].model_ids
        assert torch.allclose(torch.as_tensor(remote[name].values), torch.as_tensor(local[name].values), atol=1e-6)
    (bad,) = extract(zoo, ["fails-on-chunk"], force=True, chunk_size=5, runner=RayChunks(max_retries=0))
    assert "planted chunk failure" in bad.error and "\n" not in bad.error
    assert not [m for m in zoo.list_fingerprints() if m["extractor"] == "fails-on-chunk"]  # nothing cached


def _main(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run the ``fingerprint`` entry point in this process (it shares the test's Ray instance)."""
    from fingerprint.cli import main

    monkeypatch.setattr(sys, "argv", ["fingerprint", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out + out.err


def test_cli_extract_and_run_accept_the_ray_executor(local_ray, tmp_path, tiny_config, monkeypatch, capsys):
    cfg = tiny_config(mpb=8)
    with open(cfg, "a") as f:
        f.write('\n[fingerprints]\nnames = ["weight-stats", "ood-outputs"]\n[analysis]\nn_boot = 2\nembedding = "pca"\n')
    code, out = _main(monkeypatch, capsys, "run", cfg, "--out", tmp_path / "run", "--executor", "ray")
    assert code == 0, out
    assert (tmp_path / "run" / "report.html").exists()
    code, out = _main(monkeypatch, capsys, "extract", tmp_path / "run" / "zoo", "--fp", "weight-spectra",
                      "--executor", "ray", "--chunk-size", "6")
    assert code == 0 and "computed weight-spectra" in out, out
    code, out = _main(monkeypatch, capsys, "extract", tmp_path / "run" / "zoo", "--fp", "weight-spectra",
                      "--executor", "process")
    assert code == 2 and "unknown executor 'process' for extraction (valid: local, ray)" in out
