"""The zoo: a population of trained models on disk. The ``training.core`` modules alone touch the zoo's files.

A zoo is a directory (schema in ``docs/zoo-format.md``)::

    ZOO/manifest.json            config, schema version, package version, planned models, shards
    ZOO/shards/<shard>.h5        one HDF5 file per trained batch: model table + stacked checkpoints
    ZOO/fingerprints/<key>.h5    cached fingerprints, keyed by extractor, version, params and step
    ZOO/results/<name>.json      clusters, scorecards and other analysis results
    ZOO/probes.h5                probe sets of imported zoos (sweeps get theirs from the task)

Every file is written under a temporary name and renamed into place when complete, so a crash
leaves either the old state or the new, never half a file; HDF5 files are built in memory and
written by Python, so a full disk is one error, not a crash inside HDF5. Every dataset carries
xxh3 checksums, one per model row, verified when it is read: a file that fails them, or that HDF5
cannot parse, is a :class:`CorruptFileError` naming it. Readers see the union of the shards as one
population, in the manifest's planned order, and can stream parameters in chunks of models.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from training.core.errors import CorruptFileError, UserError
from training.core.files import clean_zoo_orphans, json_default, read_json, write_json
from training.core.integrity import (
    CHANGED_COLUMNS,
    FINGERPRINT_FORMAT,
    MANIFEST,
    SCHEMA_VERSION,
    h5_writer,
    reading,
)
from training.core.manifest import read_manifest
from training.core.schema import (
    RESULT_SCHEMAS,
    cache_header,
    check_cache_rows,
    mismatch,
    model_set_hash,
)
from training.core.shards import (
    ModelTable,
    Shard,
    as_array,
    column_from_h5,
    missing,
    to_python,
)


def _warn_changed_columns(path: Path, version: int, task: str) -> None:
    """Warn that a zoo written before a schema version that changed its task's columns holds their earlier meaning."""
    for since, tasks in sorted(CHANGED_COLUMNS.items()):
        if version < since and task in tasks:
            cols, why = tasks[task]
            warnings.warn(f"zoo '{path}' was written with schema version {version}: its columns {', '.join(cols)} have "
                          f"their meaning before version {since} ({why}); retrain it for the current one "
                          "(docs/zoo-format.md, Versions)", stacklevel=3)


class Zoo:
    """A population on disk. Open with :meth:`Zoo.open`.

    ``model_ids`` lists the trained models in planned order; ``models`` is their metadata table;
    ``params(step)`` gives stacked parameters ``{name: [n_models, ...]}`` in ``model_ids`` order.
    """

    def __init__(self, path: Path, manifest: dict, shards: list[Shard], corrupt: list[tuple[Path, str]]):
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self.corrupt = corrupt
        planned = [m["model_id"] for m in manifest.get("planned", [])]
        rank = {mid: i for i, mid in enumerate(planned)}
        rows = []  # (rank, shard index, row)
        for si, sh in enumerate(shards):
            for r, mid in enumerate(sh.table["model_id"]):
                rows.append((rank.get(mid, len(rank) + len(rows)), si, r))
        rows.sort()
        seen: set[str] = set()
        self._loc: list[tuple[int, int]] = []
        for _, si, r in rows:
            mid = shards[si].table["model_id"][r]
            if mid in seen:  # a model is in exactly one shard; keep the first if a stray copy exists
                continue
            seen.add(mid)
            self._loc.append((si, r))
        cols: dict[str, list[Any]] = {}
        all_cols = list(dict.fromkeys(c for sh in shards for c in sh.table))
        for si, r in self._loc:
            for c in all_cols:
                col = shards[si].table.get(c)
                cols.setdefault(c, []).append(col[r] if col is not None else missing(c, shards))
        self.models = ModelTable({c: as_array(v) for c, v in cols.items()})
        self.model_ids: list[str] = [str(m) for m in self.models.columns.get("model_id", [])]
        self._index = {m: i for i, m in enumerate(self.model_ids)}

    # -- opening ---------------------------------------------------------------------------------
    module_factory = None  # set for zoos built from in-memory modules (no importable factory), or by the user's --arch
    trust_code = False  # may the code this zoo names (an imported zoo's factory, a sweep's module:Class task) be imported?

    @classmethod
    def open(cls, path: str | Path, strict: bool = True, verify: bool = True, trust_code: bool = False) -> "Zoo":
        """Open a zoo directory. ``strict=False`` skips corrupt shards (listed in ``.corrupt``);
        ``verify=False`` skips checking shard data against its checksums (see docs/zoo-format.md).

        Opening reads data only. ``trust_code=True`` allows running the zoo's models with code the
        zoo names (see "Trust model" in ``docs/zoo-format.md``); without it that is refused.
        """
        p = Path(path)
        if not (p / MANIFEST).exists():
            if not p.exists():
                raise UserError(f"zoo '{p}' does not exist")
            raise UserError(f"'{p}' is not a zoo (no {MANIFEST})")
        manifest = read_manifest(p)
        version = manifest["schema_version"]
        if version > SCHEMA_VERSION:
            raise CorruptFileError(f"zoo '{p}' has schema version {version}; this basin-fingerprint reads up to {SCHEMA_VERSION}")
        shards, corrupt = [], []
        planned_in = {m["model_id"]: m["shard"] for m in manifest["planned"]}
        for f in sorted((p / "shards").glob("*.h5")):
            try:
                sh = Shard(f, verify)
                stray = next((str(m) for m in sh.table["model_id"] if planned_in.get(str(m), f.stem) != f.stem), None)
                if stray is not None:  # e.g. one shard file copied over another
                    raise CorruptFileError(f"zoo shard '{f}' holds model '{stray}', which the manifest plans in shard "
                                           f"'{planned_in[stray]}'")
            except CorruptFileError as e:
                if strict:
                    raise
                corrupt.append((f, str(e)))
                warnings.warn(str(e), stacklevel=2)
                continue
            unplanned = next((str(m) for m in sh.table["model_id"] if str(m) not in planned_in), None)
            if unplanned is not None:  # the manifest is the damaged file (e.g. `planned` cut short)
                raise CorruptFileError(f"zoo manifest '{p / MANIFEST}' is corrupt: shard '{f.name}' holds model "
                                       f"'{unplanned}', which its 'planned' list ({len(planned_in)} models) does not have")
            shards.append(sh)
        zoo = cls(p, manifest, shards, corrupt)
        zoo.trust_code = bool(trust_code)
        _warn_changed_columns(p, version, str((manifest.get("task") or {}).get("name", "")))
        return zoo

    # -- population ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.model_ids)

    @property
    def n_models(self) -> int:
        return len(self.model_ids)

    def require_models(self) -> None:
        """A one-line error when the zoo holds no model yet (a sweep stopped before its first shard):
        the first column read would otherwise be named as unknown."""
        if not self.model_ids:
            planned = len(self.manifest.get("planned", []))
            raise UserError(f"zoo '{self.path}' holds no trained models yet (0 of its {planned} planned; an interrupted "
                            "sweep? `fingerprint sweep ... --resume` trains them)")

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def task_name(self) -> str | None:
        return self.manifest.get("task", {}).get("name")

    @property
    def task_params(self) -> dict:
        return self.manifest.get("task", {}).get("params", {})

    @property
    def family_spec(self) -> dict:
        return self.manifest.get("family", {})

    @property
    def steps(self) -> list[int]:
        """Every stored checkpoint step (a model may lack some: see :meth:`models_at`)."""
        return sorted({s for sh in self.shards for s in sh.steps})

    @property
    def common_steps(self) -> list[int]:
        """Checkpoint steps that every model has."""
        common: set[int] | None = None
        for sh in self.shards:
            for r in range(sh.n_models):
                have = {s for s in sh.steps if sh.present[s][r]}
                common = have if common is None else common & have
        return sorted(common or [])

    def models_at(self, step: int) -> list[str]:
        """Ids of the models that have a checkpoint at ``step``, in ``model_ids`` order."""
        return [mid for mid, (si, r) in zip(self.model_ids, self._loc)
                if step in self.shards[si].present and self.shards[si].present[step][r]]

    @property
    def n_params(self) -> int:
        """Parameters per model (0 for an empty zoo)."""
        if not self.shards:
            return 0
        return int(sum(math.prod(shape[1:]) for shape in self.shards[0].param_shapes.values()))

    def index(self, model_ids: Sequence[str]) -> np.ndarray:
        try:
            return np.asarray([self._index[m] for m in model_ids], dtype=int)
        except KeyError as e:
            raise UserError(f"unknown model id {e.args[0]!r} in zoo '{self.path}'") from None

    def params(self, step: int | None = None, model_ids: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Stacked parameters ``{name: [n_models, ...]}`` at ``step`` (each model's final step by default)."""
        ids = self.model_ids if model_ids is None else list(model_ids)
        idx = self.index(ids)
        loc = np.asarray(self._loc, dtype=np.int64).reshape(-1, 2)[idx]  # [n, (shard, row)]
        steps = np.asarray(self.models["final_step"], dtype=np.int64)[idx] if step is None else np.full(len(idx), int(step))
        out: dict[str, np.ndarray] = {}
        first, first_shapes = None, None  # the shard whose parameter shapes `out` was allocated from
        for si, s in sorted(set(zip(loc[:, 0].tolist(), steps.tolist()))):
            pos = np.flatnonzero((loc[:, 0] == si) & (steps == s))
            rows = loc[pos, 1]
            present = self.shards[si].present.get(s)
            missing = pos if present is None else pos[~np.asarray(present)[rows]]
            if len(missing):
                bad = ids[missing[0]]
                raise UserError(f"model '{bad}' has no checkpoint at step {s} (its steps: {self.model_steps(bad)})")
            shapes = {k: tuple(shape[1:]) for k, shape in self.shards[si].param_shapes.items()}
            if not out:
                out = {k: np.empty((len(ids), *shape), dtype=np.float32) for k, shape in shapes.items()}
                first, first_shapes = self.shards[si].path.name, shapes
            elif shapes != first_shapes and isinstance(self.config.get("model"), dict) and self.config["model"].get("sweep"):
                raise UserError(f"the models span the model.sweep architectures of zoo '{self.path}' (shards '{first}' and "
                                f"'{self.shards[si].path.name}'), whose parameters cannot be stacked: ask for the models of one "
                                "group at a time (its 'group' column)")
            elif shapes != first_shapes:
                raise CorruptFileError(f"the models of shards '{first}' and '{self.shards[si].path.name}' of zoo '{self.path}' have "
                                       f"different parameter shapes ({first_shapes} vs {shapes}): one is corrupt, or they cannot be stacked")
            self.shards[si].read_params(s, rows, out=out, pos=pos)
        return {k: torch.from_numpy(v) for k, v in out.items()}

    def optimizer_state(self, step: int, model_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """Optimiser buffers ``{"<param>/<buffer>": [n, ...], "step": scalar}`` saved at ``step``.

        Present only for sweeps trained with ``train.save_optimizer_state = true``.
        """
        idx = self.index(model_ids)
        parts: list[tuple[list[int], dict[str, np.ndarray]]] = []
        for si in sorted({self._loc[i][0] for i in idx}):
            pos = [p for p, i in enumerate(idx) if self._loc[i][0] == si]
            rows = np.asarray([self._loc[idx[p]][1] for p in pos])
            st = self.shards[si].read_optimizer_state(step, rows) if step in self.shards[si].present else None
            if st is None:
                raise UserError(f"zoo '{self.path}' has no optimizer state at step {step} for model '{model_ids[pos[0]]}' "
                                "(train with train.save_optimizer_state = true)")
            parts.append((pos, st))
        out: dict[str, np.ndarray] = {}
        for pos, st in parts:
            for k, v in st.items():
                if k == "step":
                    out[k] = v
                    continue
                if k not in out:
                    out[k] = np.empty((len(idx), *v.shape[1:]), dtype=v.dtype)
                out[k][pos] = v
        return {k: torch.as_tensor(v) for k, v in out.items()}

    def model_steps(self, model_id: str) -> list[int]:
        si, r = self._loc[self.index([model_id])[0]]
        sh = self.shards[si]
        return [s for s in sh.steps if sh.present[s][r]]

    def iter_chunks(self, chunk_size: int = 256, step: int | None = None, model_ids: Sequence[str] | None = None
                    ) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
        """Stream ``(model_ids, params)`` in chunks of at most ``chunk_size`` models."""
        ids = self.model_ids if model_ids is None else list(model_ids)
        for i in range(0, len(ids), chunk_size):
            chunk = ids[i : i + chunk_size]
            yield chunk, self.params(step, chunk)

    def metrics(self, step: int) -> ModelTable:
        """Per-checkpoint metrics and diagnostics of every model at ``step`` (NaN / '' where absent)."""
        cols: dict[str, list[Any]] = {}
        per_shard = {si: (self.shards[si].read_metrics(step) if step in self.shards[si].present else {}) for si in range(len(self.shards))}
        names = list(dict.fromkeys(c for m in per_shard.values() for c in m))
        for si, r in self._loc:
            m = per_shard[si]
            present = step in self.shards[si].present and self.shards[si].present[step][r]
            for c in names:
                v = m[c][r] if (c in m and present) else None
                cols.setdefault(c, []).append(v)
        out = {"model_id": np.asarray(self.model_ids, dtype=object)}
        for c, v in cols.items():
            if all(x is None or isinstance(x, (str, bytes)) for x in v):
                out[c] = np.asarray(["" if x is None else to_python(x) for x in v], dtype=object)
            else:
                out[c] = np.asarray([np.nan if x is None else float(x) for x in v])
        return ModelTable(out)

    # -- fingerprints cache ----------------------------------------------------------------------
    def model_set_hash(self, model_ids: Sequence[str] | None = None) -> str:
        return model_set_hash(self.model_ids if model_ids is None else model_ids)

    def save_fingerprint(self, key: str, values: np.ndarray, model_ids: Sequence[str], meta: dict[str, Any],
                         extra: dict[str, np.ndarray] | None = None) -> Path:
        """Store a fingerprint ``values`` ``[n_models, d]`` (features) or ``[n_models, n_models]`` (distances)."""
        path = self.path / "fingerprints" / f"{key}.h5"
        clean_zoo_orphans(self.path)
        with h5_writer(path, cache=True) as w:
            f = w.file
            f.attrs["format"] = FINGERPRINT_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["meta"] = json.dumps({**meta, "key": key, "model_set": self.model_set_hash(model_ids), "created": time.time()}, default=json_default)
            w.put(f, "values", np.asarray(values, dtype=np.float32))
            w.put(f, "model_ids", np.asarray([str(m) for m in model_ids], dtype=object))
            if extra:
                g = f.create_group("extra")
                for k, v in extra.items():
                    w.put(g, k, np.asarray(v))
        return path

    def load_fingerprint(self, key: str) -> tuple[np.ndarray, list[str], dict[str, Any]] | None:
        """``(values, model_ids, meta)``, or ``None`` when not cached. A cache file that cannot be read,
        fails its checksums or does not hold one row per model id is a :class:`CorruptFileError`."""
        path = self.path / "fingerprints" / f"{key}.h5"
        if not path.exists():
            return None
        label = f"fingerprint cache '{path}'"
        with reading(label), h5py.File(path, "r") as f:
            meta, check = cache_header(f, path, label)
            ids = [str(m) for m in check(f["model_ids"], column_from_h5(f["model_ids"]))]
            values = check(f["values"], f["values"][()])
            if "extra" in f:
                meta["extra"] = {k: check(ds, column_from_h5(ds)) for k, ds in f["extra"].items()}
        check_cache_rows(values, ids, meta, label)
        return values, ids, meta

    def remove_fingerprints(self, keys: Sequence[str]) -> list[str]:
        """Remove the cache entries ``keys`` (``fingerprints/<key>.h5``; one unlink each, so a reader
        sees an entry whole or not at all). Returns the keys that were there. A key that is not a
        plain file name is a :class:`UserError`."""
        bad = [k for k in keys if not k or "/" in k or "\\" in k or k.startswith(".")]
        if bad:  # checked before anything is removed
            raise UserError(f"'{bad[0]}' is not a fingerprint cache key (a name like 'ood-outputs-0123456789ab')")
        removed = []
        for key in keys:
            path = self.path / "fingerprints" / f"{key}.h5"
            try:
                path.unlink()
            except FileNotFoundError:  # another process removed it first
                continue
            removed.append(key)
        return removed

    def list_fingerprints(self) -> list[dict[str, Any]]:
        """The metadata of every cached fingerprint, with its ``shape``."""
        out = []
        for path in sorted((self.path / "fingerprints").glob("*.h5")):
            label = f"fingerprint cache '{path}'"
            with reading(label), h5py.File(path, "r") as f:
                meta, _ = cache_header(f, path, label)
                meta["shape"] = list(f["values"].shape)
            out.append(meta)
        return out

    # -- analysis results ------------------------------------------------------------------------
    def save_result(self, name: str, obj: Any) -> Path:
        path = self.path / "results" / f"{name}.json"
        clean_zoo_orphans(self.path)
        write_json(path, obj)
        return path

    def load_result(self, name: str) -> Any | None:
        """A stored result (None if there is none), checked against the structure its readers rely on
        (:data:`RESULT_SCHEMAS`)."""
        path = self.path / "results" / f"{name}.json"
        if not path.exists():
            return None
        obj = read_json(path)
        problem = mismatch(obj, RESULT_SCHEMAS.get(name, object))
        if problem:
            raise CorruptFileError(f"result file '{path}' is corrupt: {problem}")
        return obj

    def list_results(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "results").glob("*.json"))


