"""The Ray executor on a real local Ray instance (2 CPUs) and on a real multi-node cluster on this
machine: same models, worker kills, failing shards, lost nodes, stale session records."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

# Ray binds its nodes to 127.0.0.1 only when this is off (it is read when ray is imported): the
# tests' instances and clusters must not listen on the machine's network interfaces.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'basin-fingerprint[ray]')")

from exact import assert_bitwise_equal  # noqa: E402

from fingerprint import Zoo  # noqa: E402
from training.config import load_config  # noqa: E402
from training.core.errors import UserError  # noqa: E402
from training.executors import RayExecutor  # noqa: E402
from training.sweep import run_sweep  # noqa: E402

FAILING_TASK = textwrap.dedent('''
    from dataclasses import dataclass
    from training.tasks.xor_cues import XorCues

    import ray

    @dataclass(frozen=True)
    class FailingXor(XorCues):
        """xor-cues whose variant fails for any shard holding init seed 3, in a Ray worker only (the driver checks
        every shard's variants before training, where it passes: the failure is a worker's, as a flaky node's)."""

        def variant(self, init_seeds, data_seeds):
            if 3 in init_seeds.tolist() and ray._private.worker.global_worker.mode == ray.WORKER_MODE:
                raise RuntimeError("planted failure for the test")
            return super().variant(init_seeds, data_seeds)
''')


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    """Plugin modules importable here and by every Ray worker (through PYTHONPATH, set before Ray starts)."""
    plugin_dir = tmp_path_factory.mktemp("plugins")
    (plugin_dir / "failing_task_mod.py").write_text(FAILING_TASK)
    (plugin_dir / "ray_fp_plugin.py").write_text(RAY_PLUGIN)
    sys.path.insert(0, str(plugin_dir))
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_dir), str(Path.cwd()), old) if p)
    import ray_fp_plugin  # noqa: F401  (registers the plugins here; workers import the module)

    yield plugin_dir
    os.environ["PYTHONPATH"] = old
    sys.path.remove(str(plugin_dir))


@pytest.fixture(scope="module")
def local_ray(plugins):
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()


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
    # 12 shards of 2 models, each long enough (600 steps) for a running one to be seen and killed
    body = Path(tiny_config(mpb=2)).read_text().replace("steps = 40", "steps = 600")
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
    import os
    import pathlib
    import time

    import torch
    from fingerprint.registry import extractor

    @extractor("row-norms", kind="mechanistic")
    def row_norms(models):
        """Per-model norm of every parameter tensor (a decorator-registered plugin in an importable module)."""
        return torch.stack([p.flatten(1).norm(dim=1) for p in models.params.values()], 1)

    @extractor("slow-row-norms", kind="mechanistic")
    def slow_row_norms(models):
        """row-norms after a pause: a chunk long enough to lose its node while it runs (the test
        looks every 20 ms). A file beside this
        module, named by the worker's pid, says the pause is under way: the test kills the node only
        then (review 122: a worker's process title still named the task after it had returned), and
        while the test's hold file is there the pause lasts until the killed worker is gone (CI, 42nd
        session: under load a worker outlived its raylet long enough to return its chunk)."""
        marker = pathlib.Path(__file__).with_name(f"in-slow-chunk-{os.getpid()}")
        hold = pathlib.Path(__file__).with_name("hold-slow-chunks")  # the test's: pause until the node is gone
        marker.touch()
        try:
            time.sleep(0.1)  # (the test's hold keeps the lost node's chunk here; the others pass through)
            end = time.time() + 60
            while hold.exists() and time.time() < end:
                time.sleep(0.05)
        finally:
            marker.unlink(missing_ok=True)
        return row_norms(models)

    @extractor("fails-on-chunk", kind="mechanistic")
    def fails_on_chunk(models):
        if len(models.model_ids) < 5:  # the last, short chunk (extractors see opaque ids, not the zoo's)
            raise RuntimeError("planted chunk failure")
        return torch.zeros(len(models.model_ids), 1)
''')


def test_ray_extraction_matches_local_and_names_a_failing_chunk(local_ray, tmp_path, tiny_zoo):
    from fingerprint.extraction import extract
    from fingerprint.parallel import RayChunks

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
    # a corrupt shard: the chunk's refusal comes back as it is, not retried (outside audit 120: two retries a chunk,
    # each a traceback block in the output)
    import shutil

    import h5py

    from tests.training.test_integrity import flip
    from training.core import store as zoo_io
    from training.core.errors import CorruptFileError

    shutil.copytree(tiny_zoo, tmp_path / "bad")
    shard = sorted((tmp_path / "bad" / "shards").glob("*.h5"))[0]
    with h5py.File(shard, "r") as f:
        ds = f[f"checkpoints/{zoo_io.step_key(int(f['steps'][-1]))}/params/layer0.weight"]
        offset, row_bytes = ds.id.get_offset(), ds[0].nbytes
    flip(shard, offset + row_bytes + 3, 6)
    with pytest.raises(CorruptFileError, match=f"zoo shard '{shard}' is corrupt: checksum mismatch"):
        extract(Zoo.open(tmp_path / "bad"), ["weight-stats"], force=True, chunk_size=5, runner=RayChunks(max_retries=2))


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


# -- issue 18, case 16: a stale Ray session record -------------------------------------------------
@pytest.fixture
def ray_tmpdir():
    """A private Ray temp dir (RAY_TMPDIR), short because Ray's socket paths under it must fit 107 bytes."""
    d = Path(tempfile.mkdtemp(prefix="bf-ray-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _dead_loopback_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"  # nothing listens there once the socket is closed


def _stale_record(ray_tmpdir: Path) -> tuple[Path, str]:
    """The record a killed cluster leaves: TEMP/ray/ray_current_cluster naming its (now dead) GCS, as Ray writes it."""
    address = _dead_loopback_address()
    record = ray_tmpdir / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text(address)
    return record, address


def _ray_processes_under(path: Path) -> list[str]:
    res = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True, check=False)
    return [ln for ln in res.stdout.splitlines() if "pgrep" not in ln]


def _cli(args: list, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fingerprint.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _base_only(tiny_config) -> Path:
    return tiny_config(body=Path(tiny_config(mpb=4)).read_text().split("[[spawn]]")[0])


@pytest.mark.slow
def test_a_stale_session_record_does_not_stop_a_fresh_local_ray(tmp_path, tiny_config, ray_tmpdir):
    record, dead = _stale_record(ray_tmpdir)
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmpdir), "RAY_ADDRESS": dead}  # RAY_ADDRESS left behind too
    res = _cli(["sweep", _base_only(tiny_config), "--out", tmp_path / "zoo", "--executor", "ray"], env)
    assert res.returncode == 0, res.stdout + res.stderr
    zoo = Zoo.open(tmp_path / "zoo")
    assert zoo.model_ids == [p["model_id"] for p in zoo.manifest["planned"]] and len(zoo.model_ids) == 8
    assert record.read_text() == dead  # the fresh instance did not join, nor rewrite, the old record
    deadline = time.time() + 20
    while _ray_processes_under(ray_tmpdir) and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_processes_under(ray_tmpdir), "the CLI's local Ray instance outlived it"


def test_address_auto_with_a_dead_cluster_names_the_address_at_once(tmp_path, tiny_config, ray_tmpdir):
    record, dead = _stale_record(ray_tmpdir)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(ray_tmpdir)}
    t0 = time.time()
    res = _cli(["sweep", _base_only(tiny_config), "--out", tmp_path / "zoo", "--executor", "ray", "--address", "auto"],
               env, timeout=120)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2 and "\n" not in out, out
    assert f"cannot reach Ray at auto ({dead}, from Ray's session record {record})" in out, out
    assert time.time() - t0 < 60, "Ray's own retries were waited out"  # minutes before the check
    assert not (tmp_path / "zoo").exists()  # nothing written
    with pytest.raises(UserError, match=f"^cannot reach Ray at {dead}: connection refused; start the cluster"):
        RayExecutor(address=dead).check()  # an explicit dead address: the same check, no record involved


def test_an_address_where_something_else_answers_is_refused_at_once(tmp_path, tiny_config):
    """Outside audit 120 (F1): --address pointed at a web server passed the reachability check (something answered),
    then the sweep wrote its manifest and hung in Ray's retries for minutes. The check now asks for a gRPC server (an
    HTTP/2 answer to HTTP/2's connection preface), as Ray's GCS is; nothing is written."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        t0 = time.time()
        res = _cli(["sweep", _base_only(tiny_config), "--out", tmp_path / "zoo", "--executor", "ray", "--address",
                    address], dict(os.environ), timeout=120)
        out = (res.stdout + res.stderr).strip()
        assert res.returncode == 2 and "\n" not in out, out
        assert f"cannot reach Ray at {address}: something answers there, but not Ray (no gRPC server" in out, out
        assert time.time() - t0 < 60 and not (tmp_path / "zoo").exists()
    finally:
        server.shutdown()


# -- issue 18, case 15: a cluster that loses a node ------------------------------------------------
@pytest.fixture(scope="module")
def loopback_cluster(plugins):
    """A real multi-node Ray cluster on this machine, every node on 127.0.0.1: a head (1 CPU), which
    this process joins through the executor's own connect path, and worker nodes that tests add and
    lose. Its session record goes to a private temp dir, not over another Ray user's in /tmp/ray."""
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's local instance, if a test above started it: join the cluster instead
    tmp = Path(tempfile.mkdtemp(prefix="bf-rc-", dir="/tmp"))
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(tmp)
    cluster = None
    try:
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        assert RayExecutor(address="auto").check() == cluster.address  # found through the cluster's session record
        RayExecutor(address="auto").start()
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        os.environ.pop("RAY_TMPDIR") if old is None else os.environ.__setitem__("RAY_TMPDIR", old)
        shutil.rmtree(tmp, ignore_errors=True)


# Ray's paragraph about a lost node, cut to one line that names the node
NODE_LOST = r"NodeDiedError: Task failed because the node it was running on is dead or unavailable \(node 127\.0\.0\.1\)$"


@ray.remote(num_cpus=1)
class _HoldACpu:
    """Holds one CPU of the node it is placed on for as long as it lives (an actor given ``num_cpus``
    keeps it, not only while it is scheduled)."""

    def ready(self) -> bool:
        return True


def _running_on(node, task: str, marker_dir: Path | None = None) -> int | None:
    """The pid of a worker of ``node`` (a child of its raylet) running a Ray task of function ``task`` (and, given
    ``marker_dir``, that has written its ``in-slow-chunk-PID`` file there: inside the task's pause), else ``None``."""
    import psutil
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    for p in psutil.Process(raylet).children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith(f"ray::{task}"):
                if marker_dir is None or (marker_dir / f"in-slow-chunk-{p.pid}").exists():
                    return p.pid
        except psutil.Error:
            continue
    return None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _lose_a_node_during(cluster, task: str, work, marker_dir: Path | None = None):
    """Add a worker node, run ``work()`` against the cluster, and kill the node (its raylet, object
    store and workers, as a crashed machine loses them) while it runs a ``task`` task.
    Returns what ``work`` returned or raised.

    The head node's CPU is held until the node is lost, so the first task must run on the new node:
    otherwise a fast host finishes every task on the head's warm worker before the new node has
    started one (seen on CI: "no _train_shard_task task was seen running on the worker node")."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    head = NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
    hold = _HoldACpu.options(scheduling_strategy=head).remote()
    ray.get(hold.ready.remote(), timeout=60)
    outcome: list = []

    def go():
        try:
            outcome.append(work())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    held = None if marker_dir is None else marker_dir / "hold-slow-chunks"
    if held is not None:
        held.touch()  # a chunk in its pause stays there until its worker is gone (slow-row-norms)
    t = threading.Thread(target=go)
    t.start()
    lost, deadline = False, time.time() + 120
    try:
        while not lost and t.is_alive() and time.time() < deadline:
            if (pid := _running_on(node, task, marker_dir)) is not None:
                cluster.remove_node(node, allow_graceful=False)
                lost = True
                if held is not None:  # the lost node's worker must not return its chunk: gone before the release
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # as the crashed machine would (it may outlive its raylet a while)
                    gone = time.time() + 30
                    while _alive(pid) and time.time() < gone:
                        time.sleep(0.05)
            time.sleep(0.02)
    finally:
        if held is not None:
            held.unlink(missing_ok=True)
        ray.kill(hold)  # the head's CPU is free for the retried and the remaining tasks
    t.join(timeout=300)
    assert lost, f"no {task} task was seen running on the worker node"
    assert not t.is_alive(), "the run did not end after its node was lost"
    return outcome[0]


@pytest.mark.slow
def test_a_sweep_that_loses_a_node_ends_with_every_model_once(loopback_cluster, tmp_path, tiny_config):
    body = Path(_base_only(tiny_config)).read_text().replace("steps = 40", "steps = 300")
    cfg = load_config(tiny_config(body=body))  # 8 models in 4 shards of 2

    def sweep(out: Path, **kw):
        return lambda: run_sweep(cfg, out, executor=RayExecutor(address=loopback_cluster.address, **kw),
                                 models_per_batch=2)

    # retried: the killed shard runs again on the head node
    res = _lose_a_node_during(loopback_cluster, "_train_shard_task", sweep(tmp_path / "retried"))
    assert not isinstance(res, BaseException), res
    retried = Zoo.open(tmp_path / "retried")
    planned = [p["model_id"] for p in retried.manifest["planned"]]
    assert retried.model_ids == planned and len(set(planned)) == len(planned) == 8

    # no retries: the lost shard is named in one line, the others are kept, and --resume finishes it
    err = _lose_a_node_during(loopback_cluster, "_train_shard_task", sweep(tmp_path / "named", max_retries=0))
    assert isinstance(err, UserError) and "\n" not in str(err), err
    m = re.match(r"shard\(s\) (p0-g0-\d{4}(?:, p0-g0-\d{4})*) failed after 0 retries .*: "
                 + NODE_LOST, str(err))
    assert m, err
    lost = m.group(1).split(", ")
    kept = {p.stem for p in (tmp_path / "named" / "shards").glob("*.h5")}
    assert kept and not kept & set(lost)
    run_sweep(cfg, tmp_path / "named", executor=RayExecutor(address=loopback_cluster.address), resume=True)
    resumed = Zoo.open(tmp_path / "named")
    assert resumed.model_ids == planned
    assert_bitwise_equal(retried.params(), resumed.params(), "models after losing a node")


@pytest.mark.slow
def test_an_extraction_that_loses_a_node_caches_all_or_nothing(loopback_cluster, tiny_zoo, plugins):
    from fingerprint.extraction import extract, load_cached
    from fingerprint.parallel import RayChunks

    zoo = Zoo.open(tiny_zoo)

    def chunks(**kw):
        return lambda: extract(zoo, ["slow-row-norms"], force=True, chunk_size=4,
                               runner=RayChunks(address=loopback_cluster.address, **kw))

    # no retries: the lost chunk is named in one line and nothing is cached
    (failed,) = _lose_a_node_during(loopback_cluster, "chunk_or_refusal", chunks(max_retries=0), plugins)
    assert failed.error and re.match(r"chunk \d+ \(models .+\) of 'slow-row-norms' failed after 0 retries: "
                                     + NODE_LOST, failed.error), failed.error
    assert "\n" not in failed.error
    assert load_cached(zoo, "slow-row-norms") is None
    assert not [m for m in zoo.list_fingerprints() if m["extractor"] == "slow-row-norms"]

    # retried: the lost chunk runs again on the head node, and the whole fingerprint is cached
    (done,) = _lose_a_node_during(loopback_cluster, "chunk_or_refusal", chunks(), plugins)
    assert done.error is None, done.error
    (local,) = extract(zoo, ["row-norms"], force=True, chunk_size=4)
    cached = load_cached(zoo, "slow-row-norms")
    assert cached.model_ids == done.model_ids == local.model_ids
    assert torch.allclose(torch.as_tensor(cached.values), torch.as_tensor(local.values), atol=1e-6)
