"""What a checkpoint's JSON says, and whether it fits the data a model is applied to.

The JSON half of a checkpoint (see :mod:`xglacier.nn.checkpoint`) records the model class
and the keyword arguments that rebuild it, the patch size and frame counts, the input
variable and its value range, for segmentation models the channel and class names,
metrics, the SHA-256 of the weights file and the xglacier / torch versions.
:func:`model_metadata` builds it (refusing what JSON cannot hold before anything is
written), :func:`read_metadata` reads and checks it, :func:`check_expected` compares it
with the data.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, CheckpointNotFoundError, ParameterError

__all__ = ["FORMAT", "FORMAT_VERSION", "check_expected", "checkpoint_paths", "model_metadata",
           "read_metadata"]

#: Name of the checkpoint format, written in every JSON file.
FORMAT = "xglacier-model"
#: Version of the JSON layout; a reader refuses files from a newer version.
FORMAT_VERSION = 1

_SUFFIXES = (".json", ".safetensors")


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``(.json, .safetensors)`` files of checkpoint ``path`` (given with or without suffix).

    Examples
    --------
    >>> [p.name for p in checkpoint_paths("runs/salstm.json")]
    ['salstm.json', 'salstm.safetensors']
    >>> [p.name for p in checkpoint_paths("runs/v1.2")]
    ['v1.2.json', 'v1.2.safetensors']
    """
    base = Path(os.fspath(path))
    if base.suffix in _SUFFIXES:
        base = base.with_suffix("")
    # append rather than with_suffix: "v1.2" must not lose its ".2"
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")



# -- JSON -----------------------------------------------------------------------------------


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (NaN -> None); CheckpointError naming ``where`` otherwise."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return _jsonable(value.to_dict(orient="records"), where)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _jsonable(value.item(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise CheckpointError(f"save_model: {where} is a {type(value).__name__}, which JSON cannot "
                          "hold; use numbers, strings, lists and dicts")


def _value_range(value_range: Any) -> list[float] | None:
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ParameterError(f"save_model: value_range={value_range!r}; expected (low, high) "
                             "finite numbers with low <= high")
    return [lo, hi]


def _names_of(model: nn.Module) -> dict[str, list[str]]:
    """Channel and class names of a segmentation model (nothing for other models)."""
    out = {}
    for key in ("channels", "classes"):
        names = getattr(model, key, None)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            out[key] = list(names)
    return out


def _xglacier_version() -> str:
    import xglacier  # late: xglacier may import this module while initialising

    return str(getattr(xglacier, "__version__", "unknown"))


def model_metadata(model: nn.Module, *, variable: str | None = None,
                   value_range: tuple[float, float] | None = None, metrics: Any = None,
                   extra: Mapping[str, Any] | None = None, weights_file: str = "") -> dict[str, Any]:
    """The JSON metadata :func:`~xglacier.nn.checkpoint.save_model` writes for ``model``.

    Everything that can make a save fail is checked here, before anything is written:
    a model without a dict ``config`` or integer ``patch_size`` / ``n_in`` / ``n_out``,
    values JSON cannot hold, a bad ``value_range``. The weights' SHA-256 is added by the
    writer once the weights are on disk.

    Examples
    --------
    >>> import torch
    >>> class Scale(torch.nn.Module):
    ...     config, patch_size, n_in, n_out = {"factor": 2}, 4, 1, 1
    >>> meta = model_metadata(Scale(), variable="ndsi", value_range=(-1, 1))
    >>> meta["class"], meta["config"], meta["value_range"]
    ('Scale', {'factor': 2}, [-1.0, 1.0])
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"save_model: model is a {type(model).__name__}; expected a torch.nn.Module")
    name = type(model).__name__
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise CheckpointError(f"save_model: model {name!r} has no dict 'config' of constructor "
                              "keyword arguments; it could not be rebuilt when loading")
    shape = {attr: getattr(model, attr, None) for attr in ("patch_size", "n_in", "n_out")}
    missing = [attr for attr, v in shape.items() if not isinstance(v, (int, np.integer))]
    if missing:
        raise CheckpointError(f"save_model: model {name!r} lacks integer attribute(s) {missing}; "
                              "a checkpoint records them to refuse data that does not fit")
    if variable is not None and not isinstance(variable, str):
        raise ParameterError(f"save_model: variable={variable!r}; expected the variable name (str)")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "module": type(model).__module__,
        "config": _jsonable(dict(config), "model.config"),
        **{k: int(v) for k, v in shape.items()},
        "trainable": bool(getattr(model, "trainable", True)),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "variable": variable,
        **_names_of(model),
        "value_range": _value_range(value_range),
        "metrics": _jsonable(metrics, "metrics"),
        "extra": _jsonable(extra, "extra"),
        "weights": {"file": weights_file},
        "xglacier_version": _xglacier_version(),
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# -- reading and comparing ------------------------------------------------------------------


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of checkpoint ``path``, checked for format and version.

    Examples
    --------
    >>> read_metadata("nowhere/model")
    Traceback (most recent call last):
    ...
    xglacier.errors.CheckpointNotFoundError: checkpoint metadata nowhere/model.json does not exist
    """
    json_path, _ = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointNotFoundError(f"checkpoint metadata {json_path} does not exist")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint metadata {json_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not an xglacier model checkpoint "
                              f"(expected \"format\": \"{FORMAT}\")")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{json_path}: format_version={version!r}; expected a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has checkpoint format version {version}, written by xglacier "
            f"{meta.get('xglacier_version', '?')}; this xglacier reads versions up to "
            f"{FORMAT_VERSION}: upgrade xglacier"
        )
    for key, kind in (("class", str), ("config", dict), ("patch_size", int), ("n_in", int),
                      ("n_out", int), ("weights", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{json_path}: field {key!r} is missing or not a {kind.__name__}")
    return meta


def _expected(expect: Any) -> dict[str, Any]:
    """What ``expect`` says the data looks like: patch_size, n_in, n_out, variable, channels, classes."""
    from xglacier.forecasting.patches import PatchSet  # late: avoid a cycle when xglacier imports models

    if isinstance(expect, PatchSet):
        p = expect.plan
        return {"patch_size": p.size, "n_in": p.n_in, "n_out": p.n_out, "variable": expect.da.name}
    if hasattr(expect, "channels") and hasattr(expect, "classes") and hasattr(expect, "statistics"):
        return {"channels": list(expect.channels)}  # SegmentationTiles: the channels matter
    if isinstance(expect, Mapping):
        known = {"patch_size", "size", "n_in", "n_out", "variable", "channels", "classes"}
        unknown = sorted(map(str, set(expect) - known))
        if unknown:
            raise ParameterError(f"load_model: expect has unknown key(s) {unknown}; expected some of "
                                 f"{sorted(known - {'size'})}")
        out = dict(expect)
        if "size" in out:
            out.setdefault("patch_size", out.pop("size"))
        return out
    if hasattr(expect, "dims") and hasattr(expect, "name"):
        if "channel" in expect.dims:  # a feature cube: its channel names, in order
            if "channel" not in expect.coords:
                raise ParameterError("load_model: expect is a feature DataArray without a 'channel' "
                                     "coordinate; name the channels to check them")
            return {"variable": expect.name, "channels": [str(c) for c in expect["channel"].values]}
        return {"variable": expect.name}  # another DataArray: only its name
    raise ParameterError(f"load_model: expect is a {type(expect).__name__}; expected a PatchSet, "
                         "SegmentationTiles, a DataArray or a dict")


def check_expected(meta: dict[str, Any], expect: Any, json_path: str | os.PathLike[str]) -> None:
    """Raise :class:`CheckpointError` naming every field where ``meta`` and ``expect`` differ.

    ``expect`` is what ``load_model(expect=...)`` takes: a PatchSet, SegmentationTiles,
    a (feature) DataArray or a dict of ``patch_size``, ``n_in``, ``n_out``, ``variable``,
    ``channels``, ``classes``.

    Examples
    --------
    >>> meta = {"patch_size": 8, "n_in": 4, "n_out": 4, "variable": "ndsi"}
    >>> check_expected(meta, {"patch_size": 8, "variable": "ndsi"}, "run.json")
    >>> check_expected(meta, {"n_in": 2}, "run.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xglacier.errors.CheckpointError: checkpoint run.json ...: n_in: checkpoint has 4, data has 2
    """
    want = _expected(expect)
    diffs = []
    for key in ("patch_size", "n_in", "n_out"):
        if want.get(key) is not None and int(want[key]) != meta[key]:
            diffs.append(f"{key}: checkpoint has {meta[key]}, data has {want[key]}")
    # a name on both sides is required to compare: an unnamed variable cannot differ
    have_var, want_var = meta.get("variable"), want.get("variable")
    if have_var is not None and want_var is not None and str(want_var) != have_var:
        diffs.append(f"variable: checkpoint was trained on {have_var!r}, data is {want_var!r}")
    for key in ("channels", "classes"):
        if want.get(key) is None:
            continue
        wanted = [str(c) for c in want[key]]
        have = meta.get(key)
        if have is None:
            diffs.append(f"{key}: the checkpoint records no {key[:-1]} names, data has {wanted}")
        elif list(have) != wanted:
            order = " (same names, other order)" if sorted(have) == sorted(wanted) else ""
            diffs.append(f"{key}: checkpoint was trained on {list(have)}, data has {wanted}{order}")
    if diffs:
        raise CheckpointError(f"checkpoint {json_path} does not match the data: " + "; ".join(diffs))
