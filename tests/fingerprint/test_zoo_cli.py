"""The zoo on disk and the sweep CLI: errors for people, resume after kill -9, corrupt shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from exact import assert_bitwise_equal

from fingerprint import Zoo
from tests.conftest import run_cli as cli
from training.config import load_config
from training.core.errors import CorruptFileError
from training.sweep import run_sweep

BIN = [sys.executable, "-m", "fingerprint.cli"]  # a real process, where signals and kill -9 are the point; else `cli`


def _one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:")
    return lines[0]


@pytest.mark.parametrize("edit,expect", [
    (lambda s: s.replace('name = "xor-cues"', 'name = "xor-cuez"'), "unknown task 'xor-cuez' (valid: "),
    (lambda s: s.replace("lr = 0.02", "lr = 0.02\nlearning_rate = 1"), "unknown config key 'train.learning_rate' (valid: "),
    (lambda s: s.replace("steps = 40", 'steps = "forty"'), "config key 'train.steps' must be int"),
    (lambda s: s.replace('arch = "mlp"', 'arch = "resnet"'), "unknown architecture 'resnet' (valid: cnn, mlp"),
    (lambda s: s.replace("n_train = 128", "n_train = -5"), "task.n_train"),
    (lambda s: s.replace("n_probes = 32", "n_probez = 32"), "unknown parameter 'task.n_probez' for task 'xor-cues'"),
    (lambda s: s.replace("width = 8", "widht = 8"), "unknown config key 'model.widht' for arch 'mlp'"),
    (lambda s: s.replace("checkpoints = [0, 10, 20]", 'checkpoints = "log:0"'), "asks for 0 checkpoints; K must be at least 1"),
    (lambda s: s + '\n[fingerprints]\nnames = ["oodd-outputs"]\n', "unknown extractor 'oodd-outputs'"),
    (lambda s: s.replace("at_step = 10", "at_step = 400"), "spawn[0].at_step"),
    (lambda s: s + "\n[extra]\nx = 1\n", "unknown config key 'extra'"),
    (lambda s: s.replace("[train]", "[train\n"), "is not valid TOML"),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, tiny_config, edit, expect):
    from tests.conftest import TINY

    cfg = tiny_config(body=edit(TINY.format(mpb=4)))
    out = tmp_path / "never"
    line = _one_line_error(cli("sweep", cfg, "--out", out))
    assert expect in line
    assert not out.exists()


def test_unknown_executor_and_existing_out(tmp_path, tiny_config, tiny_zoo):
    cfg = tiny_config(mpb=4)
    assert "unknown executor 'slurm' (valid: local, process, ray)" in _one_line_error(
        cli("sweep", cfg, "--out", tmp_path / "x", "--executor", "slurm"))
    assert "already exists; pass --resume" in _one_line_error(cli("sweep", cfg, "--out", tiny_zoo))
    assert "not found" in _one_line_error(cli("sweep", tmp_path / "nope.toml", "--out", tmp_path / "y"))
    assert "cuda" in _one_line_error(cli("sweep", cfg, "--out", tmp_path / "z", "--device", "cuda")) or torch.cuda.is_available()


def test_resume_after_kill_9_matches_uninterrupted(tmp_path, tiny_config):
    """kill -9 mid-sweep, then --resume: exactly the planned models, each once, identical weights."""
    # 12 shards of 2 models (4 inits x 2 data orders x base, spawn, fine-tune): the kill lands after
    # 2 of them; a shard's own overhead (its zoo reads and writes) outweighs its 100 steps
    body = Path(tiny_config(mpb=2)).read_text().replace("steps = 40", "steps = 100")
    cfg = tiny_config(body=body)
    ref = tmp_path / "ref"
    run_sweep(load_config(cfg), ref, models_per_batch=2)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*BIN, "sweep", str(cfg), "--out", str(out), "--models-per-batch", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("*.h5"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "shards").glob("*.h5")))
    planned = json.loads((out / "manifest.json").read_text())["planned"]
    assert 2 <= n_before < len({p["shard"] for p in planned}), "the kill must land mid-sweep"
    res = cli("sweep", cfg, "--out", out, "--resume")
    assert res.returncode == 0, res.stderr
    assert not list((out / "shards").glob(".*.tmp"))
    a, b = Zoo.open(ref), Zoo.open(out)
    assert a.model_ids == b.model_ids == [p["model_id"] for p in planned]
    assert len(set(b.model_ids)) == len(b.model_ids)
    assert_bitwise_equal(a.params(), b.params(), "final weights after --resume")
    for s in (0, 10, 20):
        ids = a.models_at(s)
        assert_bitwise_equal(a.params(s, ids), b.params(s, ids), f"step {s} after --resume")
    # resuming a finished zoo trains nothing
    res = cli("sweep", cfg, "--out", out, "--resume")
    assert res.returncode == 0 and "0 trained now" in " ".join(res.stdout.split())


def test_an_error_left_by_ctrl_c_is_an_interruption_not_a_bug(monkeypatch, capsys):
    """A library interrupted inside its C code can raise something else on the way out (an outside audit:
    matplotlib's "ValueError: Invalid bounding box", a traceback and status 1 after Ctrl-C in `report`).
    After Ctrl-C any error ends as "interrupted", status 130; without one, the same error is a bug and
    propagates (its traceback)."""
    import fingerprint.cli as cli_mod

    ctrl_c = [True]

    def broken(**_kw):
        if ctrl_c[0]:
            cli_mod._INTERRUPTED.append(True)  # what the SIGINT handler records, during the command
        raise ValueError("Invalid bounding box")

    monkeypatch.setattr(cli_mod, "app", broken)
    monkeypatch.setattr(cli_mod, "_register", lambda: None)  # the commands are not needed
    monkeypatch.setattr(cli_mod.signal, "signal", lambda *a: None)  # leave pytest's own Ctrl-C handler alone
    with pytest.raises(SystemExit) as e:
        cli_mod.main()
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
    ctrl_c[0] = False  # the next command starts without it: the same error is a bug
    with pytest.raises(ValueError, match="Invalid bounding box"):
        cli_mod.main()

    # a command started with Ctrl-C ignored (`fingerprint sweep ... &` in a script) keeps ignoring it (review)
    import signal as sig

    installed = []
    monkeypatch.setattr(cli_mod.signal, "signal", lambda *a: installed.append(a))
    monkeypatch.setattr(cli_mod.signal, "getsignal", lambda _s: sig.SIG_IGN)
    with pytest.raises(ValueError):
        cli_mod.main()
    assert installed == []
    monkeypatch.setattr(cli_mod.signal, "getsignal", lambda _s: sig.default_int_handler)
    with pytest.raises(ValueError):
        cli_mod.main()
    assert installed and installed[0][1] is cli_mod._on_interrupt


def test_ctrl_c_says_how_to_resume(tmp_path, tiny_config):
    """SIGINT mid-sweep: exit 130, one line saying the finished shards are kept and --resume ends it."""
    # 12 shards, long enough (~0.3 s each) that the first one's file is seen before the sweep ends: with 100 steps a
    # loaded 2-core host (two test workers beside the sweep) finished all 12 before the poll woke, and it exited 0
    body = Path(tiny_config(mpb=2)).read_text().replace("steps = 40", "steps = 600")
    cfg = tiny_config(body=body)
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*BIN, "sweep", str(cfg), "--out", str(out), "--models-per-batch", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "shards").glob("*.h5")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted; finished shards are kept: rerun with --resume" in " ".join(err.split())
    assert cli("sweep", cfg, "--out", out, "--resume").returncode == 0


def test_resume_refuses_changed_config(tmp_path, tiny_config, tiny_zoo):
    body = Path(tiny_config(mpb=4)).read_text().replace("lr = 0.02", "lr = 0.03")
    line = _one_line_error(cli("sweep", tiny_config(body=body), "--out", tiny_zoo, "--resume"))
    assert "config differs" in line


def test_process_executor_gives_the_same_models(tmp_path, tiny_config, tiny_zoo):
    out = tmp_path / "proc"
    # shards of 8 (one a phase): a worker process each, every one starting torch (the conftest zoo has 4 a shard)
    # wide enough that the closing summary never wraps into a line starting "trained " on a slow host
    res = cli("sweep", tiny_config(mpb=8), "--out", out, "--executor", "process", env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    # not a terminal: plain progress lines (the first shard, then at most every 10 s, and the last)
    lines = [l for l in res.stdout.splitlines() if l.startswith("trained ")]
    assert lines[0].startswith("trained 8/24 models (") and lines[-1].startswith("trained 24/24 models (")
    assert "model-steps/s" in lines[-1] and "ETA 0:00:00" in lines[-1]
    a, b = Zoo.open(tiny_zoo), Zoo.open(out)
    assert a.model_ids == b.model_ids
    pa, pb = a.params(), b.params()
    assert all(torch.allclose(pa[k], pb[k], atol=1e-5) for k in pa)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_process_workers_exit_when_the_sweep_is_killed(tmp_path, tiny_config):
    """kill -9 of a `--executor process` sweep: its workers stop too, instead of training on as orphans."""
    body = Path(tiny_config(mpb=2)).read_text().replace("steps = 40", "steps = 200000")  # minutes of work
    proc = subprocess.Popen([*BIN, "sweep", str(tiny_config(body=body)), "--out", str(tmp_path / "z"),
                             "--executor", "process"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and not workers:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert workers, "the sweep started no worker"
    time.sleep(1.0)  # past the workers' start-up
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def test_corrupt_shard_is_named_and_others_stay_readable(tmp_path, tiny_zoo):
    shards = sorted((tiny_zoo / "shards").glob("*.h5"))
    victim = shards[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(CorruptFileError, match=victim.name):
        Zoo.open(tiny_zoo)
    with pytest.warns(UserWarning, match=victim.name):
        zoo = Zoo.open(tiny_zoo, strict=False)
    assert len(zoo) == 24 - 4
    assert zoo.params()["out.bias"].shape[0] == 20
    res = cli("inspect", tiny_zoo, "--json")  # what is readable, then exit 1 naming the corrupt shard
    last = res.stderr.strip().splitlines()[-1]  # after the reader's warning
    assert res.returncode == 1 and last.startswith("error: 1 corrupt shard(s) skipped") and victim.name in last
    assert any(victim.name in s for s in json.loads(res.stdout)["corrupt_shards"])
    res = cli("inspect", tiny_zoo)
    assert res.returncode == 1 and "corrupt shards (skipped)" in res.stdout


def test_mis_shaped_or_short_datasets_are_corrupt_not_read(tiny_zoo):
    """A stacked parameter whose shape differs from the rest of its shard, or from the zoo's other
    shards, or a table column with too few rows, is named as corrupt instead of being read into
    another's buffer (which wrote out of bounds or returned garbage rows)."""
    shards = sorted((tiny_zoo / "shards").glob("*.h5"))
    with h5py.File(shards[1], "a") as f:
        steps = sorted(f["checkpoints"])
        g = f["checkpoints"][steps[0]]["params"]  # an early step: the shard still opens
        rows = g["out.bias"].shape[0]
        del g["out.bias"]
        g["out.bias"] = np.zeros((rows, 7), np.float32)
    zoo = Zoo.open(tiny_zoo)
    step = int(steps[0].split("_")[1])
    with pytest.raises(CorruptFileError, match=rf"{shards[1].name}' is corrupt: parameter 'out.bias' at step {step} has shape"):
        zoo.params(step=step)
    with h5py.File(shards[2], "a") as f:  # every step of this one: its models differ from the others'
        for st in f["checkpoints"]:
            g = f["checkpoints"][st]["params"]
            rows = g["out.bias"].shape[0]
            del g["out.bias"]
            g["out.bias"] = np.zeros((rows, 9), np.float32)
    with pytest.raises(CorruptFileError, match="different parameter shapes"):
        Zoo.open(tiny_zoo).params()
    with h5py.File(shards[3], "a") as f:
        seeds = f["models/data_seed"][()]
        del f["models/data_seed"]
        f["models/data_seed"] = seeds[:1]
    with pytest.raises(CorruptFileError, match=rf"{shards[3].name}' is corrupt: 'models/data_seed' has 1 rows"):
        Zoo.open(tiny_zoo)


def test_error_text_is_printed_verbatim(tmp_path, tiny_zoo):
    """Messages are not read as rich markup: brackets in them survive, and a name that looks like a
    closing tag is an ordinary one-line error, not a crash of the printer."""
    (tmp_path / "empty.toml").write_text("")
    assert "missing config section '[task]'" in _one_line_error(cli("sweep", tmp_path / "empty.toml", "--out", tmp_path / "o"))
    assert "unknown extractor '[/x]'" in _one_line_error(cli("extract", tiny_zoo, "--fp", "[/x]"))
    assert "'[/red]zoo' does not exist" in _one_line_error(cli("inspect", "[/red]zoo"))
    (tmp_path / "afile").write_text("x")
    assert "Not a directory" in _one_line_error(cli("sweep", "xor-cues-quick", "--out", tmp_path / "afile" / "zoo"))


def test_usage_errors_are_one_line(tmp_path):
    """click's own errors (an unknown option, a missing argument, a bad choice) are one line naming
    the culprit and where the help is, exit 2; a bare `fingerprint` still shows the help."""
    line = _one_line_error(cli("sweep", "xor-cues-quick", "--out", tmp_path / "z", "--bogus"))
    assert "No such option: --bogus" in line and "sweep --help" in line
    assert "Missing argument 'ZOO'" in _one_line_error(cli("inspect"))
    line = _one_line_error(cli("inspect", tmp_path, "--jsn"))
    assert "No such option: --jsn" in line and "--json" in line
    assert "'--models-per-batch'" in _one_line_error(cli("sweep", "xor-cues-quick", "--out", tmp_path / "z", "--models-per-batch", "x"))
    assert not (tmp_path / "z").exists()
    bare = cli()
    assert bare.returncode == 2 and "Usage:" in bare.stdout + bare.stderr and "sweep" in bare.stdout + bare.stderr
    assert cli("sweep", "--help").returncode == 0


def test_not_hdf5_and_future_schema(tmp_path, tiny_zoo):
    shard = sorted((tiny_zoo / "shards").glob("*.h5"))[0]
    with h5py.File(shard, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(CorruptFileError, match="schema version 99"):
        Zoo.open(tiny_zoo)
    shard.write_text("not hdf5")
    line = _one_line_error(cli("inspect", tiny_zoo.parent / "nozoo"))
    assert "does not exist" in line


def test_inspect_json_and_list(tiny_zoo):
    res = cli("inspect", tiny_zoo, "--json")
    d = json.loads(res.stdout)
    assert d["n_models"] == 24 and d["task"] == "xor-cues"
    m = d["models"][0]
    for key in ("model_id", "init_seed", "data_seed", "parent_id", "diverged", "deep_label"):
        assert key in m
    assert cli("inspect", tiny_zoo).returncode == 0
    lst = json.loads(cli("list", "--json").stdout)
    assert "xor-cues" in lst["tasks"] and {"mlp", "cnn"} <= set(lst["architectures"])
    assert "xor-cues-quick" in lst["configs"]


def test_config_roundtrips_through_the_manifest(tiny_config):
    from training.config import SweepConfig

    c = load_config(tiny_config())
    assert SweepConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_written_files_get_the_umask_permissions(tiny_zoo):
    """Files renamed into place from private temporary names get what a plain ``open`` would give
    (0666 minus the umask), so zoos are readable by the other users of a shared machine; so does
    the directory ``Zoo.from_modules`` writes, and its scratch zoo is removed at exit."""
    from fingerprint import extract
    from training.core.files import _UMASK

    extract(Zoo.open(tiny_zoo), ["weight-stats"])
    files = [p for p in tiny_zoo.rglob("*") if p.is_file()]
    assert any(p.suffix == ".h5" for p in files) and any(p.name == "manifest.json" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o666 & ~_UMASK)}

    script = (
        "import os, torch; from torch import nn; import fingerprint\n"
        "z = fingerprint.Zoo.from_modules([nn.Linear(3, 2) for _ in range(2)], probes={'ood': torch.randn(4, 3)})\n"
        "print(z.path); print(oct(os.stat(z.path).st_mode & 0o777))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    path, mode = res.stdout.split()
    assert mode == oct(0o777 & ~_UMASK)
    assert not os.path.exists(path)  # the scratch zoo went with the interpreter


def test_run_resume_needs_a_run_directory(tmp_path, tiny_config, tiny_zoo):
    """`run --resume` into a zoo (or any directory without zoo/), or into nothing, is refused
    instead of training a nested zoo there."""
    cfg = tiny_config(mpb=4)
    before = sorted(p.name for p in tiny_zoo.iterdir())
    assert "not a `fingerprint run` directory" in _one_line_error(cli("run", cfg, "--out", tiny_zoo, "--resume"))
    assert sorted(p.name for p in tiny_zoo.iterdir()) == before
    assert "does not exist" in _one_line_error(cli("run", cfg, "--out", tmp_path / "none", "--resume"))


def test_a_shard_copied_over_another_is_corrupt_and_partial_zoos_are_announced(tiny_zoo):
    """A shard file holding models the manifest plans elsewhere is named as corrupt (their copies
    were dropped silently); analysing a zoo with missing shards says how many models it has."""
    shards = sorted((tiny_zoo / "shards").glob("*.h5"))
    shards[1].write_bytes(shards[0].read_bytes())
    with pytest.raises(CorruptFileError, match=rf"'{shards[1]}' holds model '.*', which the manifest plans in shard '{shards[0].stem}'"):
        Zoo.open(tiny_zoo)
    shards[1].unlink()
    res = cli("extract", tiny_zoo, "--fp", "weight-stats")
    assert res.returncode == 0
    assert "has 20 of its 24 planned models" in " ".join(res.stderr.split())
    for shard in (tiny_zoo / "shards").glob("*.h5"):  # a sweep stopped before its first shard landed
        shard.unlink()
    for cmd in (("extract", tiny_zoo, "--fp", "weight-stats"), ("report", tiny_zoo, "--out", tiny_zoo.parent / "r")):
        assert "holds no trained models yet (0 of its 24 planned" in _one_line_error(cli(*cmd))  # was: unknown column 'diverged'
    assert not (tiny_zoo.parent / "r").exists()
    from fingerprint import UserError, pipeline  # a notebook's path says the same

    with pytest.raises(UserError, match="holds no trained models yet"):
        pipeline.compute(Zoo.open(tiny_zoo), ["weight-stats"])


def test_every_command_helps_with_every_option_and_shows_flags_as_flags():
    """`fingerprint CMD --help` for every command: each option says what it does, and a flag shows no
    value type (no `--resume <bool>`)."""
    import typer
    from typer.testing import CliRunner

    from fingerprint.cli import _register, app

    _register()
    group = typer.main.get_command(app)
    runner = CliRunner()
    assert len(group.commands) >= 12
    for name, command in group.commands.items():
        undocumented = [p.name for p in command.params
                        if p.param_type_name == "option" and not (getattr(p, "help", None) or "").strip()]
        assert not undocumented, (name, undocumented)
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "100"})
        assert res.exit_code == 0, (name, res.output)
        assert "<bool>" not in res.output, (name, res.output)


def test_ctrl_c_that_typer_turns_into_status_130_still_says_interrupted(monkeypatch, capsys):
    """Outside audit 117 (F2): Ctrl-C during `report` exited 130 saying nothing: typer 0.2x turns a
    KeyboardInterrupt into a silent exit code 130. The line is said once: not again after a command's own line."""
    import fingerprint.cli as cli_mod

    said = [False]

    def interrupted(**_kw):
        cli_mod._INTERRUPTED.append(True)  # what the SIGINT handler records, during the command
        if said[0]:
            cli_mod.interrupt_said()
        return 130

    monkeypatch.setattr(cli_mod, "app", interrupted)
    monkeypatch.setattr(cli_mod, "_register", lambda: None)
    monkeypatch.setattr(cli_mod.signal, "signal", lambda *a: None)  # leave pytest's own Ctrl-C handler alone
    with pytest.raises(SystemExit) as e:
        cli_mod.main()
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
    said[0] = True  # a command that said what it kept (sweep, extract, run)
    with pytest.raises(SystemExit) as e:
        cli_mod.main()
    assert e.value.code == 130 and capsys.readouterr().err.strip() == ""


def test_a_ctrl_c_lost_in_a_callback_is_delivered_again(monkeypatch, capsys):
    """A Ctrl-C raised inside a weakref callback during garbage collection (matplotlib's, while a report writes its
    figures) was "Exception ignored" and lost: the report ran to the end with status 0. It is sent again 50 ms later;
    a command that ends first exits 130 with `interrupted`, and nothing is sent into main()'s caller afterwards
    (review 119: a stray Ctrl-C hit the caller 50 ms after main() returned)."""
    import _thread
    import types

    import fingerprint.cli as cli_mod

    lost = types.SimpleNamespace(exc_value=KeyboardInterrupt(), exc_type=KeyboardInterrupt)
    other = types.SimpleNamespace(exc_value=ValueError("x"), exc_type=ValueError)
    callers: list = []
    monkeypatch.setattr(sys, "unraisablehook", callers.append)  # a notebook's or a test runner's own hook

    def command(**_kw):
        cli_mod._INTERRUPTED.append(True)  # the SIGINT handler's record, then its KeyboardInterrupt lost in a callback
        sys.unraisablehook(lost)
        sys.unraisablehook(other)  # anything else: to the caller's hook, not Python's default (read-through, 41st)
        assert callers == [other]
        assert [t.function for t in cli_mod._RESEND] == [_thread.interrupt_main]
        return 0  # the command ends before the Ctrl-C is sent again

    monkeypatch.setattr(cli_mod, "app", command)
    monkeypatch.setattr(cli_mod, "_register", lambda: None)
    monkeypatch.setattr(cli_mod.signal, "signal", lambda *a: None)  # leave pytest's own Ctrl-C handler alone
    hook = sys.unraisablehook
    with pytest.raises(SystemExit) as e:
        cli_mod.main()
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
    time.sleep(0.2)  # the cancelled resend never fires into this process (a KeyboardInterrupt here would end the test)
    assert cli_mod._RESEND == [] and sys.unraisablehook is hook  # the caller's hook is back
    passed: list = []
    cli_mod._unraisable(other, previous=passed.append)
    assert passed == [other] and cli_mod._RESEND == []


def test_ctrl_c_during_extract_says_what_is_cached(tmp_path, tiny_zoo):
    """The sixth audit: SIGINT mid-extract exited 130 saying nothing. Now one line names what this
    run cached; the same command computes the rest. A plugin that sleeps keeps the run going."""
    (tmp_path / "slowfp.py").write_text(
        "import time\nimport fingerprint\n\n\n@fingerprint.extractor('slow-test', kind='behavioural')\n"
        "def slow(models):\n    time.sleep(120)\n    return models.params[next(iter(models.params))].flatten(1)[:, :2]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    fps = tiny_zoo / "fingerprints"
    proc = subprocess.Popen([*BIN, "extract", str(tiny_zoo), "--plugin", "slowfp", "--fp", "weight-stats", "--fp", "slow-test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(fps.glob("weight-stats*.h5")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert ("interrupted; 1 fingerprint computed by this run is cached: weight-stats; the same command computes the "
            "rest (nothing half-written is kept)") in " ".join(err.split())
    assert [p.name.split("-")[0] for p in fps.glob("*.h5")] == ["weight"]


def test_a_log_file_says_what_is_being_extracted_and_analysed(tiny_zoo, tmp_path):
    """The sixth audit: in a log file (no terminal, no live bars) extract and report were silent
    until they finished (140 s on a wide zoo). A plain line says what is being computed."""
    res = cli("extract", tiny_zoo, "--fp", "weight-stats")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert f"extracting weight-stats ({len(Zoo.open(tiny_zoo))} models)" in out
    assert out.index("extracting weight-stats") < out.index("computed weight-stats")
    res = cli("extract", tiny_zoo, "--fp", "weight-stats")  # served from the cache: said as cached, not "extracting"
    assert res.returncode == 0 and "cached weight-stats" in " ".join(res.stdout.split()) and "extracting" not in res.stdout
    res = cli("report", tiny_zoo, "-o", tmp_path / "r.html", "--embedding", "pca")
    assert res.returncode == 0, res.stderr
    assert "analysing: clustering, bootstrapping and scoring" in res.stdout
