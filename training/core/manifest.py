"""The manifest (config, planned models, shards), and the probe sets and labelled data of imported zoos.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import torch

from training.core.errors import CorruptFileError
from training.core.files import (
    clean_orphans,
    clean_zoo_orphans,
    package_version,
    read_json,
    write_json,
)
from training.core.integrity import (
    MANIFEST,
    SCHEMA_VERSION,
    h5_writer,
    open_checks,
    reading,
)
from training.core.shards import Shard

PROBES = "probes.h5"
PROBES_FORMAT = "basin-fingerprint/probes"


def write_probes(zoo_dir: Path, probes: dict[str, torch.Tensor]) -> Path:
    """Store named probe sets ``{name: [n_probes, *input_shape]}`` in ``ZOO/probes.h5``."""
    path = Path(zoo_dir) / PROBES
    clean_zoo_orphans(zoo_dir)
    with h5_writer(path) as w:
        f = w.file
        f.attrs["format"] = PROBES_FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        for name, t in probes.items():
            w.put(f, name, t.detach().cpu().numpy())
    return path


def read_probes(zoo_dir: Path) -> dict[str, torch.Tensor]:
    path = Path(zoo_dir) / PROBES
    if not path.exists():
        return {}
    label = f"probe file '{path}'"
    with reading(label), h5py.File(path, "r") as f:
        check = open_checks(f, label, PROBES_FORMAT, "probe file")
        return {k: torch.from_numpy(check(ds, ds[()])) for k, ds in f.items()}


DATA = "data.h5"
DATA_FORMAT = "basin-fingerprint/data"
LOSSES = ("classification", "regression")


def write_data(zoo_dir: Path, x: torch.Tensor, y: torch.Tensor, loss: str) -> Path:
    """Store an imported zoo's labelled data ``x [N, *input_shape]``, ``y [N, ...]`` in ``ZOO/data.h5``,
    with the loss it is scored with (``classification``: cross-entropy on class indices;
    ``regression``: mean squared error)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    path = Path(zoo_dir) / DATA
    clean_zoo_orphans(zoo_dir)
    with h5_writer(path) as w:
        f = w.file
        f.attrs["format"] = DATA_FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["loss"] = loss
        w.put(f, "x", x.detach().cpu().numpy())
        w.put(f, "y", y.detach().cpu().numpy())
    return path


def read_data(zoo_dir: Path) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """``(x, y, loss)`` of an imported zoo's labelled data, or ``None`` when it was imported without."""
    path = Path(zoo_dir) / DATA
    if not path.exists():
        return None
    label = f"data file '{path}'"
    with reading(label), h5py.File(path, "r") as f:
        check = open_checks(f, label, DATA_FORMAT, "data file")
        loss = str(f.attrs.get("loss", ""))
        if loss not in LOSSES or set(f) != {"x", "y"}:
            raise CorruptFileError(f"{label} is corrupt: expected datasets x, y and a loss in {LOSSES}")
        return torch.from_numpy(check(f["x"], f["x"][()])), torch.from_numpy(check(f["y"], f["y"][()])), loss


# -- manifests -------------------------------------------------------------------------------------
def read_manifest(zoo_dir: Path) -> dict:
    path = Path(zoo_dir) / MANIFEST
    manifest = read_json(path)
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: Any, path: Path) -> None:
    """The keys every reader relies on, with their JSON types; a :class:`CorruptFileError` naming
    ``path`` and the key otherwise."""
    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"zoo manifest '{path}' is corrupt: {what}")

    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, found {type(manifest).__name__}")
    if not isinstance(manifest.get("schema_version"), int) or isinstance(manifest.get("schema_version"), bool):
        raise bad(f"'schema_version' must be an integer, found {manifest.get('schema_version')!r}")
    planned = manifest.get("planned")
    if not isinstance(planned, list) or not all(isinstance(m, dict) and isinstance(m.get("model_id"), str)
                                                and isinstance(m.get("shard"), str) for m in planned):
        raise bad("'planned' must be a list of {\"model_id\", \"shard\", ...} objects with string values")
    counts = Counter(m["model_id"] for m in planned)
    if len(counts) != len(planned):
        raise bad(f"'planned' lists model '{next(m for m, c in counts.items() if c > 1)}' twice")
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in shards):
        raise bad("'shards' must be a list of {\"name\", ...} objects")
    mpb = manifest.get("models_per_batch")
    if "models_per_batch" in manifest and (not isinstance(mpb, int) or isinstance(mpb, bool) or mpb <= 0):
        raise bad(f"'models_per_batch' must be a positive integer, found {mpb!r}")
    for key in ("config", "task", "family"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(f"'{key}' must be a JSON object")
    if manifest.get("source", "sweep") in ("sweep", "continue") and "config" not in manifest:
        raise bad("it has no 'config' (the sweep config it was trained from)")


def write_manifest(zoo_dir: Path, manifest: dict) -> None:
    manifest = {**manifest, "schema_version": SCHEMA_VERSION, "package_version": package_version()}
    clean_zoo_orphans(zoo_dir)
    write_json(Path(zoo_dir) / MANIFEST, manifest)


def completed_shards(zoo_dir: Path) -> dict[str, Path]:
    """Shard name -> path of the complete shard files that read and verify in full.

    Removes the temporaries killed writers left. A shard that cannot be read or fails a checksum
    is moved aside (to ``<shard>.h5.corrupt``, replacing an earlier one) to be trained again.
    """
    d = Path(zoo_dir) / "shards"
    if not d.exists():
        return {}
    clean_orphans(d)
    done = {}
    for f in sorted(d.glob("*.h5")):
        try:
            Shard(f).verify()
        except CorruptFileError as e:
            aside = f.with_name(f.name + ".corrupt")
            os.replace(f, aside)
            warnings.warn(f"{e}; moved aside to '{aside.name}', it will be trained again", stacklevel=2)
            continue
        done[f.stem] = f
    return done
