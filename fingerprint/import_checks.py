"""What the importer checks before it writes anything: checkpoints, metadata, probe sets, forward passes.

Torch checkpoint files load strictly with ``weights_only=True`` (a pickle that would run code is
refused); every tensor is compared with the architecture's template; metadata CSVs and probe sets
are read and checked against the models they describe. Each problem is one :class:`UserError` line.
Longer than ~400 lines: every check of what a user gives, each with the message that names the culprit.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fingerprint.usercode import resolve
from training.core import store as zoo_io
from training.core.errors import PluginError, UserError
from training.families.module import not_a_tensor, output_not_a_tensor


def _load(path: Path, what: str) -> Any:
    """What one checkpoint file holds, read without unpickling arbitrary objects."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with warnings.catch_warnings():  # torch's note on pickle protocols is not the user's business
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, or a pickle weights_only refuses
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            # torch's own text suggests weights_only=False (code execution): keep only its reason
            why = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \d+|Unsupported class \S+)", str(e))
            raise UserError(f"{what} '{path}' is not a plain state_dict: refusing to unpickle arbitrary objects"
                            f" ({why.group(1) if why else 'it holds Python objects besides tensors'}); a training "
                            "checkpoint with such objects beside the weights (args, RNG state) imports once its "
                            "weights are saved alone: torch.save(ckpt['model'], path)") from None
        raise UserError(f"{what} '{path}' cannot be read (corrupt or truncated?): {_first_sentence(msg)}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_state_dict(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from one checkpoint file; never unpickles arbitrary objects."""
    sd = _load(path, what)
    sd = sd["state_dict"] if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict) else sd
    if not (isinstance(sd, dict) and (not sd or _is_state_dict(sd))):  # an empty mapping is one of no tensors
        raise UserError(f"{what} '{path}' is not a state_dict (a mapping of names to tensors)")
    return sd


def read_checkpoint(path: Path, state_key: str | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """``(state_dict, key)`` of one checkpoint file: the file's own ``{name: tensor}`` (``key`` None),
    or the one under a top-level key of a training checkpoint (``{"model": sd, "step": 100}``).

    ``state_key`` names that key; without it the key is ``state_dict`` (Lightning's) if present,
    else the only top-level value that is a state_dict. Several candidates, or none, are a
    :class:`UserError` listing the file's top-level keys."""
    obj = _load(path, "checkpoint")
    if state_key is not None:
        if not isinstance(obj, dict) or state_key not in obj:
            keys = ", ".join(map(str, list(obj)[:12])) if isinstance(obj, dict) else f"it holds a {type(obj).__name__}"
            raise UserError(f"checkpoint '{path}' has no top-level key '{state_key}' (--state-key; its keys: {keys})")
        if not _is_state_dict(obj[state_key]):
            raise UserError(f"checkpoint '{path}' key '{state_key}' holds {_kind(obj[state_key])}, not a state_dict "
                            "(a mapping of names to tensors)")
        return obj[state_key], state_key
    if _is_state_dict(obj):
        return obj, None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint '{path}' holds {_kind(obj)}, not a state_dict (a mapping of names to tensors)")
    inner = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v)]
    if "state_dict" in inner:
        return obj["state_dict"], "state_dict"
    if len(inner) == 1:
        return obj[inner[0]], inner[0]
    keys = ", ".join(f"{k} ({_kind(v).split(' ', 1)[1]})" for k, v in list(obj.items())[:12]) + (", ..." if len(obj) > 12 else "")
    if inner:
        raise UserError(f"checkpoint '{path}' holds {len(inner)} state_dicts, under {', '.join(repr(k) for k in inner)}: "
                        f"name the one to import with --state-key KEY (its top-level keys: {keys})")
    if not obj:
        raise UserError(f"checkpoint '{path}' is an empty dict: no weights to import")
    raise UserError(f"checkpoint '{path}' is not a state_dict (a mapping of names to tensors), nor holds one under a "
                    f"top-level key: its keys are {keys}")


def _kind(v: Any) -> str:
    """A few words on a checkpoint entry: ``a tensor [32, 10]``, ``a dict of 3``, ``an int``."""
    name = type(v).__name__
    a = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(v, torch.Tensor):
        return f"a tensor {list(v.shape)}"
    if isinstance(v, (dict, list, tuple)):
        return f"{a} {name} of {len(v)}"
    return f"{a} {name}"


def _first_sentence(msg: str, limit: int = 200) -> str:
    """A library's error text cut to its first sentence, and at a word within ``limit`` characters."""
    msg = re.split(r"(?<=[.!?])\s", msg, maxsplit=1)[0]
    if len(msg) <= limit:
        return msg
    return msg[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " ..."


# Key prefixes a training wrapper adds to every key, not part of the model: stripped when every key
# has one and the keys without it are the architecture's, exactly (see strip_wrapper_prefix).
WRAPPER_PREFIXES = {"module.": "DataParallel / DistributedDataParallel", "_orig_mod.": "torch.compile"}


def strip_wrapper_prefix(sd: dict[str, torch.Tensor], expected: Any) -> tuple[dict[str, torch.Tensor], str]:
    """``sd`` without the wrapper prefixes (``module.``, ``_orig_mod.``, in any nesting) that every
    one of its keys carries, and the prefix stripped (``""``: none) — only when the keys without it
    are exactly the architecture's (``expected``), so a model whose own submodule is named
    ``module`` is never renamed, and a partial match is left for :func:`check_against` to explain."""
    keys, prefix = list(sd), ""
    while keys and not set(keys) <= set(expected):
        p = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys)), None)
        if p is None:
            break
        keys, prefix = [k[len(p):] for k in keys], prefix + p
    if not prefix or set(keys) != set(expected):
        return sd, ""
    return {k[len(prefix):]: v for k, v in sd.items()}, prefix


def _prefix_hint(sd: dict[str, torch.Tensor], expected: Any) -> str:
    """Why a checkpoint's keys may not match: a dotted prefix every key carries (and the
    architecture's keys do not), and whether the keys without it would match."""
    keys = list(sd)
    shared = []  # the leading components every key has (each key keeps at least its own name)
    for parts in zip(*(k.split(".")[:-1] for k in keys)):
        if len(set(parts)) > 1:
            break
        shared.append(parts[0])
    for n in range(1, len(shared) + 1):
        prefix = ".".join(shared[:n]) + "."
        if {k[len(prefix):] for k in keys} == set(expected):
            break
    else:
        prefix = shared[0] + "." if shared else ""
    if not prefix or all(k.startswith(prefix) for k in expected):
        return ""
    wrapper = next((f" ({w})" for p, w in WRAPPER_PREFIXES.items() if prefix.startswith(p)), "")
    if {k[len(prefix):] for k in keys} == set(expected):
        return (f"; every key starts with '{prefix}'{wrapper} and matches without it: save the inner module's "
                f"state_dict, or strip '{prefix}' from the keys")
    inner = {k[len(prefix):] for k in keys}
    gap = next((f"'{k}' is missing" for k in expected if k not in inner), None) or \
        next(f"'{k}' is unexpected" for k in sorted(inner) if k not in expected)
    return f"; every key starts with '{prefix}'{wrapper}, but even without it key {gap}"


def check_against(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    more = lambda ks: f" (and {len(ks) - 1} more)" if len(ks) > 1 else ""  # noqa: E731
    if missing:
        also = f" and has unexpected key '{extra[0]}'{more(extra)}" if extra else ""
        raise UserError(f"checkpoint '{path}' is missing key '{missing[0]}' for this architecture{more(missing)}{also}"
                        f"{_prefix_hint(sd, expected) if extra else ''}")
    if extra:
        raise UserError(f"checkpoint '{path}' has unexpected key '{extra[0]}' for this architecture{more(extra)}")
    for k, t in expected.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise UserError(f"checkpoint '{path}' key '{k}' has shape {list(sd[k].shape)}, the architecture expects {list(t.shape)}")
        if not torch.isfinite(sd[k].float()).all():
            raise UserError(f"checkpoint '{path}' key '{k}' holds NaN or inf: a diverged model cannot be fingerprinted; "
                            "import the others (move this file out, and its row from the --metadata CSV)")


def read_metadata(path: Path, model_ids: Sequence[str], strict: bool = False, named_by: str = "file stem") -> dict[str, np.ndarray]:
    """CSV with a ``model_id`` column; numeric columns become numbers, others strings (``named_by``: what names a model).

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
            raise UserError(f"metadata file '{path}' row {line} names unknown model '{mid}' (models are named by {named_by}, e.g. '{model_ids[0]}')")
        if mid in by_id:
            raise UserError(f"metadata file '{path}' row {line} names model '{mid}' a second time")
        by_id[mid] = row
    missing = [m for m in model_ids if m not in by_id]
    if missing:
        gap = (f"metadata file '{path}' covers {len(by_id)} of {len(model_ids)} models: {len(missing)} {'has' if len(missing) == 1 else 'have'} no row "
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
                        "a zoo's probe sets share one input shape (fingerprints build inputs from one set for another and "
                        "compare sets); for inputs of another shape (longer sequences), import the same checkpoints into a "
                        "second zoo with those probes (docs/import.md)")
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
    seen: dict[str, object] = {}
    hooks = [names[l].register_forward_hook(lambda _m, _i, o, l=l: seen.__setitem__(l, o)) for l in layers]
    try:
        for name, x in probes.items():  # every set: they share a shape, not necessarily a dtype
            try:
                with torch.no_grad():
                    out = template.eval()(x[:2])
            except Exception as e:  # noqa: BLE001
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                tried = f" (tried on its first {len(x[:2])}, {list(x[:2].shape)})" if len(x) > 2 else ""
                raise UserError(f"probe set '{name}' {list(x.shape)} does not run through '{label}'{tried}: "
                                f"{type(e).__name__}: {msg}") from None
            n_out = output_width(out, label)
    finally:
        for h in hooks:
            h.remove()
    for l in layers:  # an activation is one tensor: a GRU's (output, h) is refused here, not at extraction
        bad = not_a_tensor(l, seen[l]) if l in seen else None
        if bad:
            raise UserError(bad)
    ids = token_ids_as_floats(template, probes)
    if ids:
        warnings.warn(ids, stacklevel=2)
    return n_out


def token_ids_as_floats(template: nn.Module, probes: dict[str, torch.Tensor]) -> str | None:
    """A warning when a module with an ``nn.Embedding`` gets probe sets of whole numbers stored as
    floats: token ids the forward casts. Extractors read a float probe as a vector and perturb it
    (``anomalous-inputs`` scales and shifts it), which gives fractional or out-of-range ids: the
    seventh outside audit saw a bare ``IndexError`` at extraction. ``None`` otherwise."""
    emb = [m for m in template.modules() if isinstance(m, nn.Embedding)]
    if not emb:
        return None
    sets = [n for n, x in probes.items() if x.is_floating_point() and x.numel() and bool((x == x.round()).all())
            and float(x.min()) >= 0 and float(x.max()) < max(m.num_embeddings for m in emb)]
    if not sets:
        return None
    return (f"probe set{'s' if len(sets) > 1 else ''} {', '.join(repr(n) for n in sets)} hold{'' if len(sets) > 1 else 's'} "
            "whole numbers stored as floats and the module has an nn.Embedding: if they are token ids, save them as an "
            "integer tensor (torch.long); extractors read float probes as vectors and perturb them (anomalous-inputs), "
            "which makes fractional or out-of-range ids")


def output_width(out: Any, label: str) -> int:
    """The number of outputs per input (the last axis) of one forward pass of architecture ``label``;
    a tuple, dict or HF ``ModelOutput`` is a :class:`UserError` saying what came back and what to do."""
    bad = output_not_a_tensor(label, out)
    if bad:
        raise UserError(bad)
    if out.dim() == 0:
        raise UserError(f"architecture '{label}' returns a 0-d tensor from forward (a loss?): make forward return the "
                        "outputs, one row per input ([batch, ...])")
    return int(out.shape[-1])


def load_data(spec: Any, template: nn.Module, label: str, input_shape: Sequence[int] | None
              ) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """Labelled data for an imported zoo, checked: ``(x [N, *input_shape], y [N, ...], loss)``.

    ``spec`` is ``module:function`` (called with no arguments, returning ``(x, y)`` tensors) or the
    pair itself; ``None`` gives ``None``. Integer ``y`` and float one-hot rows are class indices (cross-entropy);
    other float ``y`` targets of the outputs' shape (``regression``: squared error). ``x``: the probes' shape."""
    if spec is None:
        return None
    s = spec if isinstance(spec, str) else "data"
    if isinstance(spec, str):
        fn = resolve(spec, "data function")
        try:
            spec = fn()
        except Exception as e:  # noqa: BLE001 - the user's function may raise anything
            raise PluginError(f"data function '{s}' raised {type(e).__name__}: {e}") from None
    if not isinstance(spec, (tuple, list)) or len(spec) != 2 or not all(isinstance(t, torch.Tensor) for t in spec):
        raise UserError(f"data '{s}' must be a pair of tensors (x [N, *input_shape], y [N, ...]), got {type(spec).__name__}")
    x, y = (t.detach().cpu() for t in spec)
    if x.dim() < 1 or len(x) == 0 or len(y) != len(x):
        raise UserError(f"data '{s}': x {list(x.shape)} and y {list(y.shape)} need the same number (> 0) of examples")
    for name, t in (("x", x), ("y", y)):
        if t.is_complex() or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
            raise UserError(f"data '{s}': {name} holds complex, NaN or inf values")
    if input_shape is not None and list(x.shape[1:]) != list(input_shape):
        raise UserError(f"data '{s}': inputs of shape {list(x.shape[1:])}, the probe sets' are {list(input_shape)}")
    x = x.float() if x.is_floating_point() else x
    try:
        with torch.no_grad():
            out = template.eval()(x[:2])
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"data '{s}' x {list(x.shape)} does not run through '{label}': {type(e).__name__}: {msg}") from None
    n_out = output_width(out, label)
    if y.is_floating_point() and y.dim() == 2 and y.shape[1] == n_out >= 2 and bool((y.sort(1).values == torch.eye(n_out)[-1]).all()):
        y = y.argmax(1)  # one-hot rows are class labels (an outside audit: read as regression targets before)
    if y.dtype == torch.bool or not y.is_floating_point():
        if y.dim() != 1 or int(y.min()) < 0 or int(y.max()) >= n_out:
            raise UserError(f"data '{s}': integer y are class indices [N] in [0, {n_out}) for the model's {n_out} outputs, "
                            f"got shape {list(y.shape)}, values {int(y.min())}..{int(y.max())}"
                            + ("; a one-output model is a regression: give float y (e.g. y.float())" if n_out == 1 else ""))
        return x, y.long(), "classification"
    if list(y.shape[1:]) != list(out.shape[1:]) and not (y.dim() == 1 and n_out == 1):
        raise UserError(f"data '{s}': float y are regression targets of the outputs' shape {list(out.shape[1:])}, "
                        f"got {list(y.shape[1:])} per example (class labels: give integer y)")
    return x, y.float(), "regression"
