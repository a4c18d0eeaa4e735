"""The zoo store's integrity (issue 18, cases 7, 8, 12 and 13).

Damaged, hand-edited or half-written zoo files are one-line errors naming the file (exit 2 from the
CLI), never tracebacks or silently wrong numbers: random bit flips in a real shard, a flipped
weight, hand-edited manifests, caches and results. ``--resume`` retrains the shards it cannot
trust, a full disk stops a sweep cleanly (a real tmpfs), and the temporaries of writers killed
with ``kill -9`` are removed by the next write to the zoo.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from exact import assert_bitwise_equal

from fingerprint import Zoo, extract
from tests.conftest import run_cli as cli
from training.core import store as zoo_io
from training.core.errors import CorruptFileError
from training.core.integrity import _attrs_digest as attrs_digest
from training.core.store import Shard, digest_all, row_digests


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a failed command (exit 2, no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return " ".join(lines[0].split())


def snapshot(zoo: Zoo) -> dict:
    """Everything a reader gets from a zoo: model table, parameters and metrics at every step."""
    out: dict = {"table": {k: [str(v) for v in col] for k, col in zoo.models.columns.items()}}
    for step in zoo.steps:
        out[f"params@{step}"] = {k: v.numpy().tobytes() for k, v in zoo.params(step, zoo.models_at(step)).items()}
        out[f"metrics@{step}"] = {k: [str(v) for v in col] for k, col in zoo.metrics(step).columns.items()}
    return out


def all_params(zoo: Zoo) -> dict:
    return {f"{step}/{k}": v for step in zoo.steps for k, v in zoo.params(step, zoo.models_at(step)).items()}


def flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def no_tmp(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


# -- case 7: damaged HDF5 metadata ---------------------------------------------------------------------
def test_random_bit_flips_in_a_shard_are_named_or_harmless(tiny_config, tiny_zoo):
    """30 seeded single-bit flips in the first 9 KB of a real shard (its HDF5 metadata, model table
    and first datasets): each either reads back exactly the original data or is a CorruptFileError
    naming the shard, never another exception or different numbers. The CLI then names a damaged
    shard in one line (exit 2), and `sweep --resume` moves it aside and retrains it bit for bit."""
    shard = sorted((tiny_zoo / "shards").glob("*.h5"))[0]
    original = shard.read_bytes()
    ref = snapshot(Zoo.open(tiny_zoo))
    rng = random.Random(18)
    outcomes: Counter = Counter()
    damaging = None
    for _ in range(30):
        offset, bit = rng.randrange(min(9216, len(original))), rng.randrange(8)
        shard.write_bytes(original)
        flip(shard, offset, bit)
        try:
            got = snapshot(Zoo.open(tiny_zoo))
            Shard(shard).verify()
        except CorruptFileError as e:
            assert str(shard) in str(e) and "\n" not in str(e), e
            outcomes["named"] += 1
            damaging = damaging or (offset, bit)
            continue
        assert got == ref, f"a flip of bit {bit} at byte {offset} was read as different data"
        outcomes["harmless"] += 1
    assert outcomes["named"] >= 10, outcomes  # most of the first 9 KB is metadata and table the reader checks

    shard.write_bytes(original)
    flip(shard, *damaging)
    line = one_line_error(cli("extract", tiny_zoo, "--fp", "weight-stats"))
    assert f"zoo shard '{shard}'" in line
    assert f"zoo shard '{shard}'" in one_line_error(cli("cluster", tiny_zoo))
    res = cli("inspect", tiny_zoo, "--json")  # inspect shows the rest of the zoo, names what it skipped, exits 1
    assert res.returncode == 1 and any(shard.name in s for s in json.loads(res.stdout)["corrupt_shards"])
    res = cli("sweep", tiny_config(mpb=4), "--out", tiny_zoo, "--resume")
    assert res.returncode == 0, res.stderr
    assert shard.name in res.stderr and "moved aside" in res.stderr
    assert shard.with_name(shard.name + ".corrupt").exists()
    assert snapshot(Zoo.open(tiny_zoo)) == ref


# -- case 13: checksums on shard data ---------------------------------------------------------------
def test_a_flipped_weight_is_a_checksum_error_and_resume_retrains_it(tmp_path, tiny_config, tiny_zoo):
    """One flipped exponent bit turns a weight into ~1e38: reading it is a named checksum error
    (with the model), `extract` exits 2 naming the shard, and `--resume` retrains the shard
    bit-identically to the uninterrupted sweep."""
    work = tmp_path / "work"
    shutil.copytree(tiny_zoo, work)
    ref = all_params(Zoo.open(tiny_zoo))
    shard = sorted((work / "shards").glob("*.h5"))[0]
    with h5py.File(shard, "r") as f:
        step = zoo_io.step_key(int(f["steps"][-1]))
        ds = f[f"checkpoints/{step}/params/layer0.weight"]
        offset, row_bytes, model = ds.id.get_offset(), ds[0].nbytes, str(f["models/model_id"].asstr()[1])
    flip(shard, offset + row_bytes + 3, 6)  # row 1's first float: the top byte holds the exponent

    zoo = Zoo.open(work)  # the model table is intact: the zoo opens
    with pytest.raises(CorruptFileError, match=rf"zoo shard '{shard}' is corrupt: checksum mismatch in "
                                               rf"'/checkpoints/{step}/params/layer0.weight' row 1 \(model '{model}'\)"):
        zoo.params()
    with pytest.raises(CorruptFileError, match=rf"row 1 \(model '{model}'\)"):  # reading just that model: its row digest
        zoo.params(model_ids=[model])
    others = [m for m in zoo.model_ids if m != model]
    assert_bitwise_equal(zoo.params(model_ids=others)["layer0.weight"],  # the other rows are intact
                         Zoo.open(tiny_zoo).params(model_ids=others)["layer0.weight"])
    unverified = Zoo.open(work, verify=False).params()["layer0.weight"]  # what extract used to read
    assert np.abs(unverified.numpy()).max() > 1e30

    assert f"zoo shard '{shard}' is corrupt: checksum mismatch" in one_line_error(cli("extract", work, "--fp", "weight-stats"))
    assert not list((work / "fingerprints").glob("*.h5"))
    res = cli("sweep", tiny_config(mpb=4), "--out", work, "--resume")
    assert res.returncode == 0, res.stderr
    assert "checksum mismatch" in res.stderr and "moved aside" in res.stderr
    assert_bitwise_equal(all_params(Zoo.open(work)), ref, "resumed zoo")


def test_zoos_written_before_checksums_still_open(tiny_zoo):
    """A schema-1 zoo (no checksums: as written before them) opens and reads the same numbers; a
    schema-2 shard that lost a dataset's checksums is corrupt, not silently unverified."""
    ref = snapshot(Zoo.open(tiny_zoo))
    for shard in sorted((tiny_zoo / "shards").glob("*.h5")):
        with h5py.File(shard, "a") as f:
            f.visititems(lambda _name, obj: obj.attrs.__delitem__("xxh3") if isinstance(obj, h5py.Dataset) else None)
            del f.attrs["xxh3_attrs"], f.attrs["xxh3_datasets"]
            f.attrs["schema_version"] = 1
    manifest = json.loads((tiny_zoo / "manifest.json").read_text())
    (tiny_zoo / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    assert snapshot(Zoo.open(tiny_zoo)) == ref

    shard = sorted((tiny_zoo / "shards").glob("*.h5"))[0]
    with h5py.File(shard, "a") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(CorruptFileError, match=rf"zoo shard '{shard}' is corrupt: its attributes have no checksum"):
        Zoo.open(tiny_zoo)


# -- case 12: hand-edited zoo files ---------------------------------------------------------------------
def _edit_manifest(zoo: Path, change) -> None:
    m = json.loads((zoo / "manifest.json").read_text())
    change(m)
    (zoo / "manifest.json").write_text(json.dumps(m))


def _reseal(f: h5py.File) -> None:
    """What a careful hand-editor would do: make the checksums match the edit."""
    digests = {}

    def visit(_name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            values = obj.asstr()[()] if h5py.check_string_dtype(obj.dtype) else obj[()]
            obj.attrs["xxh3"] = row_digests(values)
            digests[obj.name] = digest_all(values)

    f.visititems(visit)
    f.attrs["xxh3_datasets"] = json.dumps(digests)
    f.attrs["xxh3_attrs"] = np.uint64(attrs_digest(f.attrs))


def _cache(zoo: Path) -> Path:
    extract(Zoo.open(zoo), ["weight-stats"])
    (path,) = (zoo / "fingerprints").glob("*.h5")
    return path


def _cache_meta(zoo: Path, meta: str, reseal: bool) -> None:
    with h5py.File(_cache(zoo), "a") as f:
        f.attrs["meta"] = meta
        if reseal:
            _reseal(f)


def _cache_rows(zoo: Path, rows: int) -> None:
    with h5py.File(_cache(zoo), "a") as f:
        values = f["values"][()]
        del f["values"]
        f["values"] = values[:rows]
        _reseal(f)


def _result(zoo: Path, name: str, obj) -> None:
    (zoo / "results").mkdir(exist_ok=True)
    (zoo / "results" / f"{name}.json").write_text(json.dumps(obj))


HAND_EDITS = {  # id -> (edit, command (ZOO / CFG are filled in), what the one-line error says)
    "models_per_batch-str": (lambda z: _edit_manifest(z, lambda m: m.update(models_per_batch="4")), ["sweep", "CFG", "--out", "ZOO", "--resume"],
                             "manifest.json' is corrupt: 'models_per_batch' must be a positive integer, found '4'"),
    "models_per_batch-neg": (lambda z: _edit_manifest(z, lambda m: m.update(models_per_batch=-1)), ["inspect", "ZOO"],
                             "manifest.json' is corrupt: 'models_per_batch' must be a positive integer, found -1"),
    "planned-cut-extract": (lambda z: _edit_manifest(z, lambda m: m.update(planned=m["planned"][:5])), ["extract", "ZOO", "--fp", "weight-stats"],
                            "manifest.json' is corrupt: shard 'p0-g0-0001.h5' holds model 'i2-d1', which its 'planned' list (5 models) does not have"),
    "planned-cut-resume": (lambda z: _edit_manifest(z, lambda m: m.update(planned=m["planned"][:5])), ["sweep", "CFG", "--out", "ZOO", "--resume"],
                           "manifest.json' is corrupt: its 'planned' list (5 models) is not the plan its config makes (24 models)"),
    "cache-meta-list": (lambda z: _cache_meta(z, "[1,2]", reseal=True), ["cluster", "ZOO"],
                        "is corrupt: 'meta' must be an object, found a list"),
    "cache-meta-unsealed": (lambda z: _cache_meta(z, "[1,2]", reseal=False), ["inspect", "ZOO"],
                            "is corrupt: checksum mismatch in its attributes"),
    "cache-5-rows": (lambda z: _cache_rows(z, 5), ["extract", "ZOO", "--fp", "weight-stats"],
                     "is corrupt: its values have shape [5, "),
    "basins-list": (lambda z: _result(z, "basins", [1]), ["inspect", "ZOO"],
                    "basins.json' is corrupt: the top level must be an object, found a list"),
    "forecast-number": (lambda z: (_cache(z), _result(z, "forecast", {"forecast": 5})), ["report", "ZOO", "-o", "ZOO/../r.html", "--n-boot", "2", "--embedding", "pca"],
                        "forecast.json' is corrupt: 'forecast' must be a list, found a number"),
}


@pytest.mark.parametrize("case", list(HAND_EDITS))
def test_hand_edited_files_are_named_corrupt_files(tmp_path, tiny_config, tiny_zoo, case):
    edit, command, expect = HAND_EDITS[case]
    edit(tiny_zoo)
    args = [str(tiny_config(mpb=4)) if a == "CFG" else a.replace("ZOO", str(tiny_zoo)) for a in command]
    line = one_line_error(cli(*args))
    assert expect in line and "corrupt" in line
    assert not (tmp_path / "r.html").exists() and not no_tmp(tmp_path)
    if case == "cache-5-rows":  # the documented repair: recompute it
        assert cli("extract", tiny_zoo, "--fp", "weight-stats", "--force").returncode == 0
        (path,) = (tiny_zoo / "fingerprints").glob("*.h5")
        assert Zoo.open(tiny_zoo).load_fingerprint(path.stem)[0].shape[0] == 24


# -- case 8: a full disk, and the temporaries of killed writers -------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB tmpfs (needs root and permission to mount)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here ({res.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of the disk's free space."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


def test_disk_full_stops_the_sweep_in_one_line_and_resume_finishes(tmp_path, tiny_config, tiny_zoo, small_disk):
    """A sweep onto a disk with room for about two shards: one line naming the shard it could not
    write, exit 2, the finished shards kept and valid, no temporary left; after space is freed,
    `--resume` finishes bit-identically to an uninterrupted sweep. Extraction onto a full disk
    fails the same way and writes nothing."""
    cfg, zoo = tiny_config(mpb=4), small_disk / "zoo"
    filler = _fill(small_disk, 96 * 1024)
    line = one_line_error(cli("sweep", cfg, "--out", zoo))
    assert "no space left writing '" in line and f"{zoo / 'shards'}" in line and "rerun with --resume" in line
    kept = sorted((zoo / "shards").glob("*.h5"))
    assert kept and len(kept) < 6 and not no_tmp(small_disk)
    for shard in kept:
        Shard(shard).verify()
    line = one_line_error(cli("sweep", cfg, "--out", zoo, "--resume", "--executor", "process"))  # workers: the same line
    assert "no space left writing '" in line and "rerun with --resume" in line and not no_tmp(small_disk)

    filler.unlink()
    res = cli("sweep", cfg, "--out", zoo, "--resume")
    assert res.returncode == 0, res.stderr
    assert_bitwise_equal(all_params(Zoo.open(zoo)), all_params(Zoo.open(tiny_zoo)), "resumed after a full disk")

    filler = _fill(small_disk, 0)
    line = one_line_error(cli("extract", zoo, "--fp", "weight-stats"))
    assert "no space left writing '" in line and str(zoo / "fingerprints") in line
    assert not no_tmp(small_disk) and not list((zoo / "fingerprints").glob("*.h5"))
    filler.unlink()
    assert cli("extract", zoo, "--fp", "weight-stats").returncode == 0


_WRITER = """
import os, sys, time
from pathlib import Path
from training.core import files as zoo_io  # store re-exports these two; files alone starts without torch
target, kind = Path(sys.argv[1]), sys.argv[2]
if kind == "file":  # as save_fingerprint / write_shard / write_json do
    with zoo_io.atomic_path(target) as tmp:
        tmp.write_bytes(b"x" * 1000)
        print(tmp, flush=True)
        time.sleep(120)
else:  # as `fingerprint import` stages a whole zoo
    tmp = zoo_io.staging_dir(target)
    (tmp / "shards").mkdir()
    print(tmp, flush=True)
    time.sleep(120)
"""


def _writers(*jobs: tuple[Path, str]) -> list[tuple[subprocess.Popen, Path]]:
    """Real writers paused half-way (started together): each process and its temporary."""
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(target), kind], stdout=subprocess.PIPE, text=True)
             for target, kind in jobs]
    return [(proc, Path(proc.stdout.readline().strip())) for proc in procs]


def test_temporaries_of_killed_writers_are_cleaned_on_the_next_write(tiny_zoo):
    """kill -9 during a cache write and during an import's staging leaves temporaries; the next
    write to the zoo removes them, and leaves alone the one a live writer is still filling."""
    *killed, (live, live_tmp) = _writers((tiny_zoo / "fingerprints" / "weight-stats-0123.h5", "file"), (tiny_zoo, "dir"),
                                         (tiny_zoo / "results" / "notes.json", "file"))
    try:
        for proc, tmp in killed:
            assert tmp.exists() and f"-{proc.pid}." in tmp.name
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert tmp.exists()
        assert cli("extract", tiny_zoo, "--fp", "weight-stats").returncode == 0
        for _, tmp in killed:
            assert not tmp.exists(), tmp
        assert live_tmp.exists()
    finally:
        live.kill()
        live.wait()


def test_json_files_write_nan_and_infinity_as_null(tmp_path):
    """summary.json and the other JSON outputs are standard JSON: an interval that could not be
    computed (NaN) is null, not the NaN token strict readers reject; finite numbers are unchanged."""
    import json

    import numpy as np

    from training.core.store import write_json

    obj = {"auroc": 0.75, "ci": [float("nan"), np.float64("inf")], "arr": np.array([1.5, np.nan]),
           "nested": ({"x": np.float32(-np.inf), "n": 3, "s": "NaN"},), "ints": np.arange(2)}
    write_json(tmp_path / "out.json", obj)
    text = (tmp_path / "out.json").read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}")) == {
        "auroc": 0.75, "ci": [None, None], "arr": [1.5, None], "nested": [{"x": None, "n": 3, "s": "NaN"}], "ints": [0, 1]}
