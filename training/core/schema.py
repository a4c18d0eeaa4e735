"""The structure of the zoo's JSON results and fingerprint-cache metadata, checked when read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from training.core.errors import CorruptFileError
from training.core.integrity import FINGERPRINT_FORMAT, Checks, open_checks

# -- the structure of JSON files and cache metadata ----------------------------------------------
_NUMBER = (int, float)
# What readers of results/<name>.json rely on (other results are free-form): a schema is a type (or
# a tuple of types), ``[item]`` for a list, or ``{key: schema}`` for an object, where a key ending
# in "?" may be absent and keys not listed are free.
RESULT_SCHEMAS: dict[str, Any] = {
    "basins": {"fingerprints": [{"fingerprint": str}], "scorecard": [{"fingerprint": str}],
               "settings?": dict, "keys?": [str], "options?": dict,
               "rest?": {"excluded": [str], "result": (dict, type(None))}},
    "scorecard": {"scorecard": [{"fingerprint": str}]},
    "forecast": {"forecast": [{"fingerprint": str, "step": int, "fraction": _NUMBER}], "earliest_90?": dict},
    "extraction_failures": {"failures": [{"key": str, "spec": str, "model_set": str, "error": str}]},
    "goodhart": {"basin": str, "fingerprint": str, "detector": dict, "settings": dict,
                 "selection": [{"keep": _NUMBER, "purity": _NUMBER, "looks_only": _NUMBER}],
                 "optimization": [{"lambda": _NUMBER, "detector_says": (_NUMBER, type(None)), "truly": (_NUMBER, type(None))}]},
}
CACHE_META_SCHEMA = {"key": str, "model_set": str, "extractor": str, "output?": str, "params?": dict}


def _json_type(obj: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number" if isinstance(obj, _NUMBER) else type(obj).__name__)


def mismatch(obj: Any, schema: Any, where: str = "") -> str | None:
    """Where ``obj`` departs from ``schema`` (see :data:`RESULT_SCHEMAS`), as a phrase; None if it conforms."""
    here = f"'{where}'" if where else "the top level"
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            return f"{here} must be an object, found {_json_type(obj)}"
        for key, sub in schema.items():
            name = key.rstrip("?")
            if name not in obj:
                if key.endswith("?"):
                    continue
                return f"'{where + '.' if where else ''}{name}' is missing"
            problem = mismatch(obj[name], sub, f"{where + '.' if where else ''}{name}")
            if problem:
                return problem
        return None
    if isinstance(schema, list):
        if not isinstance(obj, list):
            return f"{here} must be a list, found {_json_type(obj)}"
        for i, item in enumerate(obj):
            problem = mismatch(item, schema[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    types = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(obj, bool) and bool not in types and object not in types:  # JSON true is not a number
        return f"{here} must be {_json_type(types[0]())}, found a boolean"
    if not isinstance(obj, types):
        return f"{here} must be {_json_type(types[0]())}, found {_json_type(obj)}"
    return None


def cache_header(f: h5py.File, path: Path, label: str) -> tuple[dict[str, Any], Checks]:
    """A fingerprint cache's checked metadata and the checks for its datasets."""
    check = open_checks(f, label, FINGERPRINT_FORMAT, "fingerprint cache")
    try:
        meta = json.loads(f.attrs["meta"])
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{label} is corrupt: its 'meta' is not valid JSON ({e})") from None
    problem = mismatch(meta, CACHE_META_SCHEMA, "meta")
    if problem:
        raise CorruptFileError(f"{label} is corrupt: {problem}")
    if meta["key"] != path.stem:
        raise CorruptFileError(f"{label} is corrupt: its meta names key '{meta['key']}', not '{path.stem}'")
    return meta, check


def model_set_hash(model_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(model_ids).encode()).hexdigest()[:16]


def check_cache_rows(values: np.ndarray, ids: list[str], meta: dict[str, Any], label: str) -> None:
    """One row of values per model id (and a square matrix for distances), for the model set named in meta."""
    n = len(ids)
    # distances to landmarks ([n, L]) were stored as "distances" before they were stored as features: still read
    square = values.ndim != 2 or meta.get("output") != "distances" or values.shape[1] == n or "landmarks" in meta
    if values.ndim != 2 or values.shape[0] != n or not square:
        raise CorruptFileError(f"{label} is corrupt: its values have shape {list(values.shape)} for {n} model ids")
    if model_set_hash(ids) != meta["model_set"]:
        raise CorruptFileError(f"{label} is corrupt: its {n} model ids are not the model set its meta names")


