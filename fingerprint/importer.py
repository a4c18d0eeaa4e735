"""Bring your own models: build a zoo from checkpoints (or modules) trained elsewhere.

``import_checkpoints`` reads a directory of ``*.safetensors`` / ``*.pt`` / ``*.pth`` state dicts
(torch files strictly with ``weights_only=True``: a pickle that would run code is refused), checks
every tensor against the user's architecture (``module:factory``), optionally joins a metadata CSV
(lineage, labels to score against, free columns) and probe sets, and writes a zoo. Everything is
validated before anything is written, and the zoo is built in a temporary directory that is renamed
into place only when complete.
"""

from __future__ import annotations

import atexit
import csv
import importlib
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.core import store as zoo_io
from training.core.errors import PluginError, UserError
from training.core.outputs import check_output

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
SHARD_SIZE = 256
# ``module:factory`` specs the user named in this process (import, from_modules, --arch): an imported
# zoo naming one of them runs the user's own code, so reading it needs no --trust-code
TRUSTED_FACTORIES: set[str] = set()


def factory_dir(spec: str) -> str | None:
    """The directory that makes ``module`` of ``module:attr`` importable (where the import found it),
    recorded so that the zoo's architecture can be rebuilt from another working directory."""
    mod = spec.partition(":")[0]
    file = getattr(sys.modules.get(mod), "__file__", None)
    if not file:
        return None
    root = Path(file).resolve().parent
    for _ in range(mod.count(".") + (Path(file).name == "__init__.py")):
        root = root.parent
    return str(root)


def resolve_factory(spec: str, directory: str | None) -> Any:
    """:func:`resolve` for a zoo's architecture factory, retrying with the directory it was imported
    from on ``sys.path``."""
    try:
        return resolve(spec, "architecture factory")
    except PluginError:
        if not directory or directory in sys.path or not Path(directory).is_dir():
            raise
        sys.path.append(directory)
        return resolve(spec, "architecture factory")


def resolve(spec: str, what: str) -> Any:
    """Import ``module:attr`` (``what`` names it in errors)."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise UserError(f"{what} must be given as module:name, got {spec!r}")
    try:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001 - the user's module itself may raise anything while importing
        raise PluginError(f"{what} '{spec}' cannot be imported: {type(e).__name__}: {e}") from None
    return obj


def build_template(factory: Callable[[], nn.Module], label: str) -> nn.Module:
    try:
        m = factory()
    except Exception as e:  # noqa: BLE001
        raise PluginError(f"architecture factory '{label}' raised {type(e).__name__}: {e}") from None
    if not isinstance(m, nn.Module):
        raise PluginError(f"architecture factory '{label}' returned {type(m).__name__}, not an nn.Module")
    return m


def load_state_dict(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from one checkpoint file; never unpickles arbitrary objects."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # torch's note on pickle protocols is not the user's business
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, or a pickle weights_only refuses
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            # torch's own text suggests weights_only=False (code execution): keep only its reason
            why = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \d+|Unsupported class \S+)", str(e))
            raise UserError(f"{what} '{path}' is not a plain state_dict: refusing to unpickle arbitrary objects"
                            f" ({why.group(1) if why else 'it holds Python objects besides tensors'})") from None
        raise UserError(f"{what} '{path}' cannot be read (corrupt or truncated?): {msg[:200]}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise UserError(f"{what} '{path}' is not a state_dict (a mapping of names to tensors)")
    return sd


def check_against(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    missing = [k for k in expected if k not in sd]
    if missing:
        raise UserError(f"checkpoint '{path}' is missing key '{missing[0]}' for this architecture"
                        f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    extra = [k for k in sd if k not in expected]
    if extra:
        raise UserError(f"checkpoint '{path}' has unexpected key '{extra[0]}' for this architecture"
                        f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}")
    for k, t in expected.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise UserError(f"checkpoint '{path}' key '{k}' has shape {list(sd[k].shape)}, the architecture expects {list(t.shape)}")
        if not torch.isfinite(sd[k].float()).all():
            raise UserError(f"checkpoint '{path}' key '{k}' holds NaN or inf")


def read_metadata(path: Path, model_ids: Sequence[str], strict: bool = False) -> dict[str, np.ndarray]:
    """CSV with a ``model_id`` column; numeric columns become numbers, others strings.

    Column names become HDF5 dataset names in every shard's model table, so each must be a plain,
    unique, non-empty name; every row has exactly the header's fields. A file that covers only some
    of the models is a warning naming how many it misses, and with ``strict`` an error.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM from spreadsheet exports is not part of a name
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]  # (line where the row ends, fields); blank lines skipped
    except OSError as e:
        raise UserError(f"metadata file '{path}' cannot be read: {e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"metadata file '{path}' is not a UTF-8 CSV ({e})") from None
    if not rows or "model_id" not in rows[0][1]:
        raise UserError(f"metadata file '{path}' needs a 'model_id' column (and one row per model)")
    header = rows[0][1]
    _check_columns(f"metadata file '{path}'", header)
    known = set(model_ids)
    by_id: dict[str, dict[str, str]] = {}
    for line, r in rows[1:]:
        if len(r) != len(header):
            what = (f"an extra field '{r[len(header)]}'" if len(r) > len(header) else f"no field for column '{header[len(r)]}'")
            raise UserError(f"metadata file '{path}' row {line} has {len(r)} fields for the header's {len(header)} ({what})")
        row = dict(zip(header, r))
        mid = row["model_id"].strip()
        if mid not in known:
            raise UserError(f"metadata file '{path}' row {line} names unknown model '{mid}' (checkpoints are named by file stem, e.g. '{model_ids[0]}')")
        if mid in by_id:
            raise UserError(f"metadata file '{path}' row {line} names model '{mid}' a second time")
        by_id[mid] = row
    missing = [m for m in model_ids if m not in by_id]
    if missing:
        gap = (f"metadata file '{path}' covers {len(by_id)} of {len(model_ids)} models: {len(missing)} have no row "
               f"(e.g. {', '.join(missing[:3])})")
        if strict:
            raise UserError(f"{gap}; --strict refuses a file that does not cover every model")
        warnings.warn(f"{gap}; their columns are left blank (pass --strict to refuse)", stacklevel=2)
    cols = [c for c in header if c != "model_id"]
    out: dict[str, np.ndarray] = {}
    for c in cols:
        vals = [(by_id.get(m) or {}).get(c, "") or "" for m in model_ids]
        try:
            nums = [float(v) for v in vals]
            out[c] = np.asarray([int(x) if x.is_integer() else x for x in nums]) if all(x.is_integer() for x in nums) else np.asarray(nums)
        except ValueError:
            out[c] = np.asarray(vals, dtype=object)
    return out


def check_name(name: Any) -> str | None:
    """Why ``name`` cannot name an HDF5 dataset of ours (None when it can): a '/' would nest it in
    groups, '.' is the group itself, and control characters break one-line messages."""
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if "/" in name:
        return "it contains '/', which HDF5 reads as nested groups"
    if name in (".", ".."):
        return f"'{name}' names the group itself in HDF5"
    if not name.isprintable():
        return "it contains a control character"
    return None


def _check_columns(where: str, header: Sequence[str]) -> None:
    """Column names (``where`` names their source in messages): valid HDF5 names, unique, not reserved."""
    for i, c in enumerate(header):
        why = check_name(c)
        if why:
            raise UserError(f"{where} column {i + 1} ({c!r}) cannot be a column name: {why}; rename it")
        if c in header[:i]:
            raise UserError(f"{where} has two columns named '{c}' (columns {header.index(c) + 1} and {i + 1}); rename one")
    reserved = set(zoo_io.CORE_COLUMNS) - {"parent_id", "init_seed", "data_seed", "group"}
    clash = [c for c in header if c in reserved and c != "model_id"]
    if clash:
        raise UserError(f"{where} column '{clash[0]}' is reserved (reserved: {', '.join(sorted(reserved))})")


def load_probes(spec: str | Path | None) -> dict[str, torch.Tensor]:
    """Probe sets from ``module:function`` (returning a dict or a tensor) or a ``.pt``/``.safetensors`` file."""
    if spec is None:
        return {}
    s = str(spec)
    if ":" in s and not Path(s).exists():
        fn = resolve(s, "probe function")
        try:
            probes = fn()
        except Exception as e:  # noqa: BLE001
            raise PluginError(f"probe function '{s}' raised {type(e).__name__}: {e}") from None
    else:
        probes = load_state_dict(Path(s), "probe file") if Path(s).exists() else None
        if probes is None:
            raise UserError(f"probe file '{s}' not found")
    return check_probes(probes, s)


def check_probes(probes: Any, s: str) -> dict[str, torch.Tensor]:
    """Named probe sets ``{name: [n_probes, *input_shape]}``: names that can name HDF5 datasets,
    non-empty real-valued finite inputs, one input shape for all (``s`` names their source)."""
    if isinstance(probes, torch.Tensor):
        probes = {"in_dist": probes}
    if not isinstance(probes, dict) or not probes or not all(isinstance(v, torch.Tensor) for v in probes.values()):
        raise UserError(f"probes '{s}' must be a tensor or a non-empty dict of named tensors [n_probes, ...]")
    out: dict[str, torch.Tensor] = {}
    for k, v in probes.items():
        name = str(k)
        why = check_name(name)
        if why:
            raise UserError(f"probes '{s}': {name!r} cannot name a probe set: {why}")
        if name in out:
            raise UserError(f"probes '{s}' name probe set '{name}' twice")
        if v.dim() < 1 or v.shape[0] == 0:
            raise UserError(f"probe set '{name}' of '{s}' has shape {list(v.shape)}; give at least one input, [n_probes, *input_shape]")
        if v.is_complex() or v.dtype == torch.bool:
            raise UserError(f"probe set '{name}' of '{s}' holds {v.dtype}; probes are real numbers (floats, or integer tokens)")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"probe set '{name}' of '{s}' holds NaN or inf")
        out[name] = v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
    shapes = {n: list(v.shape[1:]) for n, v in out.items()}
    first = next(iter(out))
    odd = next((n for n in out if shapes[n] != shapes[first]), None)
    if odd is not None:
        raise UserError(f"probe set '{odd}' of '{s}' has inputs of shape {shapes[odd]}, probe set '{first}' {shapes[first]}: "
                        "every probe set feeds the same models")
    return out


def _check_forward(template: nn.Module, probes: dict[str, torch.Tensor], layers: Sequence[str], label: str) -> int:
    names = dict(template.named_modules())
    if any(not l for l in layers):
        raise UserError(f"an empty layer name names the whole model '{label}', not a submodule (valid: {', '.join([n for n in names if n][:30])})")
    bad = [l for l in layers if l not in names]
    if bad:
        valid = [n for n in names if n]
        raise UserError(f"unknown layer '{bad[0]}' for architecture '{label}' (valid: {', '.join(valid[:30])})")
    if not probes:
        return -1
    n_out = -1
    for name, x in probes.items():  # every set: they share a shape, not necessarily a dtype
        try:
            with torch.no_grad():
                out = template.eval()(x[:2])
            n_out = int(out.shape[-1])
        except Exception as e:  # noqa: BLE001
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UserError(f"probe set '{name}' {list(x.shape)} does not run through '{label}': {type(e).__name__}: {msg}") from None
    return n_out


def write_imported_zoo(out: Path, model_ids: list[str], state_dicts: list[dict[str, torch.Tensor]],
                       family: dict[str, Any], metadata: dict[str, np.ndarray] | None, probes: dict[str, torch.Tensor],
                       source: str, overwrite: bool = False) -> Path:
    """Write the zoo into a temporary sibling directory, then rename it onto ``out``."""
    out = Path(out)
    check_output(out, overwrite=overwrite)  # --overwrite replaces only a zoo (the caller checked its inputs)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output '{out}' already exists; pass --overwrite to replace it")
    if len(set(model_ids)) != len(model_ids):
        dup = next(m for m in model_ids if model_ids.count(m) > 1)
        raise UserError(f"two checkpoints map to model id '{dup}' (ids are file stems; rename one)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = zoo_io.staging_dir(out)  # named after this process, so a later import can remove it if it is killed
    try:
        n = len(model_ids)
        shards = []
        for s0 in range(0, n, SHARD_SIZE):
            ids = model_ids[s0 : s0 + SHARD_SIZE]
            sds = state_dicts[s0 : s0 + SHARD_SIZE]
            k = len(ids)
            table: dict[str, Any] = {
                "model_id": ids, "kind": ["imported"] * k, "group": [""] * k, "task": [""] * k, "arch": ["module"] * k,
                "init_seed": np.full(k, -1, np.int64), "data_seed": np.full(k, -1, np.int64), "parent_id": [""] * k,
                "spawn_step": np.full(k, -1, np.int64), "variant": np.zeros(k, np.int64), "final_step": np.zeros(k, np.int64),
                "diverged": np.zeros(k, bool), "diverged_step": np.full(k, -1, np.int64),
            }
            for c, v in (metadata or {}).items():
                table[c] = v[s0 : s0 + SHARD_SIZE]
            params = {name: torch.stack([sd[name].float() for sd in sds]) for name in sds[0]}
            name = f"import-{s0 // SHARD_SIZE:04d}"
            zoo_io.write_shard(tmp, zoo_io.ShardData(shard=name, table=table, checkpoints={0: params},
                                                     attrs={"family": family, "kind": "imported"}))
            shards.append({"name": name, "phase": 0, "n_models": k})
        if probes:
            zoo_io.write_probes(tmp, probes)
        zoo_io.write_manifest(tmp, {
            "kind": "zoo", "source": source, "created": time.time(), "config": {},
            "task": {"name": None, "params": {}}, "family": family,
            "planned": [{"model_id": m, "shard": f"import-{i // SHARD_SIZE:04d}", "kind": "imported"} for i, m in enumerate(model_ids)],
            "shards": shards, "models_per_batch": SHARD_SIZE,
        })
        zoo_io.publish_mode(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def import_checkpoints(src: str | Path, arch: str, out: str | Path, metadata: str | Path | None = None,
                       probes: str | Path | None = None, layers: Sequence[str] = (), overwrite: bool = False,
                       on_file: Callable[[Path], None] | None = None, strict: bool = False) -> Path:
    """``fingerprint import``: a directory of checkpoints + ``module:factory`` -> a zoo.

    ``strict`` refuses a metadata CSV that does not cover every checkpoint (else a warning).
    """
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"checkpoint directory '{src}' " + ("is a file: give the directory that holds the checkpoints"
                                                            if src.exists() else "does not exist"))
    files = sorted(p for p in src.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if not files:
        raise UserError(f"no checkpoints in '{src}' (looked for {', '.join('*' + s for s in CHECKPOINT_SUFFIXES)})")
    ids = [model_id_of(f) for f in files]
    meta = read_metadata(Path(metadata), ids, strict) if metadata else None  # before the slow part: a typo fails at once
    factory = resolve(arch, "architecture factory")
    TRUSTED_FACTORIES.add(arch)  # the user named it: reading the zoo in this process may build it again
    module_file = getattr(sys.modules.get(arch.partition(":")[0]), "__file__", None)
    probe_file = Path(probes) if probes is not None and Path(probes).exists() else None
    # before any checkpoint is read or anything deleted: --out may not be, hold or sit in what is read
    check_output(Path(out), {"checkpoint directory": src, "metadata file": metadata, "probe file": probe_file,
                             "architecture module": module_file}, overwrite=overwrite)
    template = build_template(factory, arch)
    expected = template.state_dict()
    layers = list(dict.fromkeys(layers))
    probe_sets = load_probes(probes)
    n_out = _check_forward(template, probe_sets, layers, arch)
    sds = []
    for f in files:
        sd = load_state_dict(f)
        check_against(sd, expected, f)
        sds.append({k: sd[k] for k in expected})
        if on_file:
            on_file(f)
    input_shape = list(next(iter(probe_sets.values())).shape[1:]) if probe_sets else []
    family = {"arch": "module", "factory": arch, "layers": layers, "input_shape": input_shape, "n_out": n_out,
              "n_params": int(sum(math.prod(t.shape) for t in expected.values())), "factory_dir": factory_dir(arch)}
    return write_imported_zoo(Path(out), ids, sds, family, meta, probe_sets, "import", overwrite)


def model_id_of(path: Path) -> str:
    """A checkpoint's model id (its file stem), which the zoo stores as UTF-8 and prints in one-line messages."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name come back as surrogates
        raise UserError(f"checkpoint file name {os.fsencode(path.name)!r} in '{path.parent}' is not valid UTF-8; "
                        "rename it (model ids are file stems)") from None
    if not path.stem.isprintable() or not path.stem.strip():
        raise UserError(f"checkpoint file name {path.name!r} in '{path.parent}' cannot be a model id (empty or with a "
                        "control character); rename it")
    return path.stem


def zoo_from_modules(modules: Sequence[nn.Module], out: str | Path | None = None, metadata: dict[str, Sequence[Any]] | None = None,
                     model_ids: Sequence[str] | None = None, probes: dict[str, torch.Tensor] | None = None,
                     layers: Sequence[str] = (), factory: str | Callable[[], nn.Module] | None = None, overwrite: bool = False):
    """``Zoo.from_modules``: a list of same-architecture modules -> an opened :class:`~fingerprint.Zoo`."""
    import copy

    if not modules:
        raise UserError("Zoo.from_modules needs at least one module")
    ids = list(model_ids) if model_ids is not None else [f"m{i}" for i in range(len(modules))]
    if len(ids) != len(modules):
        raise UserError(f"{len(ids)} model_ids for {len(modules)} modules")
    odd = next((m for m in ids if not isinstance(m, str) or not m.strip() or not m.isprintable()), None)
    if odd is not None or any(not isinstance(m, str) for m in ids):
        raise UserError(f"model id {odd!r} cannot be a model id: ids are non-empty printable strings")
    template = copy.deepcopy(modules[0]).cpu().eval()
    expected = template.state_dict()
    sds = []
    for mid, m in zip(ids, modules):
        sd = {k: v.detach().cpu() for k, v in m.state_dict().items()}
        check_against(sd, expected, Path(f"<module {mid}>"))
        sds.append(sd)
    meta = None
    if metadata:
        meta = {}
        _check_columns("Zoo.from_modules metadata", ["model_id", *metadata])
        for c, v in metadata.items():
            if len(v) != len(ids):
                raise UserError(f"metadata column '{c}' has {len(v)} values for {len(ids)} modules")
            meta[c] = np.asarray(list(v), dtype=object) if any(isinstance(x, str) for x in v) else np.asarray(list(v))
    probe_sets = check_probes(probes, "Zoo.from_modules probes") if probes else {}
    if isinstance(factory, str):
        TRUSTED_FACTORIES.add(factory)  # the user named it for these modules
    label = factory if isinstance(factory, str) else f"{type(template).__module__}:{type(template).__qualname__}"
    layers = list(dict.fromkeys(layers))
    n_out = _check_forward(template, probe_sets, layers, label)
    family = {"arch": "module", "factory": factory if isinstance(factory, str) else None, "class": label, "layers": layers,
              "input_shape": list(next(iter(probe_sets.values())).shape[1:]) if probe_sets else [], "n_out": n_out}
    if out is None:  # a scratch zoo for this session: removed when the interpreter exits
        target = Path(tempfile.mkdtemp(prefix="zoo-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
    else:
        target = Path(out)
    write_imported_zoo(target, ids, sds, family, meta, probe_sets, "modules", overwrite or out is None)
    z = zoo_io.Zoo.open(target)
    z.module_factory = factory if callable(factory) else (lambda: copy.deepcopy(template))
    return z
