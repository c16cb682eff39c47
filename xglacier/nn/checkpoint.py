"""Model checkpoints: weights as safetensors, everything else as readable JSON.

A checkpoint ``<path>`` is two files written side by side:

- ``<path>.safetensors``: the ``state_dict`` tensors (no pickle: loading a checkpoint
  cannot run code);
- ``<path>.json``: the model class and the keyword arguments that rebuild it, the patch
  size and frame counts, the input variable and its value range, for segmentation models
  the channel and class names (the normalisation statistics are in the keyword
  arguments), metrics, the SHA-256 of the weights file and the xglacier / torch versions.

:func:`load_model` rebuilds the model from a registry of classes and refuses a
checkpoint that does not match the data it will be applied to.

Examples
--------
Typical use (not run as a doctest)::

    save_model(model, "runs/salstm", variable="ndsi", value_range=(-1, 1), metrics=table)
    model = load_model("runs/salstm", expect=test_patches)   # raises CheckpointError on mismatch
    unet = load_model("runs/unet", expect=features)          # features' channels, in order
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError, CheckpointNotFoundError, ParameterError, XGlacierError
from .registry import registered_models

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointNotFoundError",
    "checkpoint_paths",
    "load_model",
    "read_metadata",
    "save_model",
]

#: Name of the checkpoint format, written in every JSON file.
FORMAT = "xglacier-model"
#: Version of the JSON layout; a reader refuses files from a newer version.
FORMAT_VERSION = 1

_SUFFIXES = (".json", ".safetensors")


# -- paths and atomic writes ----------------------------------------------------------------


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


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary path in ``target``'s folder, renamed onto ``target`` if the block succeeds.

    Same folder, so that ``os.replace`` is an atomic rename on one file system: readers see
    the old file or the new one, never a half-written one.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    variable: str | None = None,
    value_range: tuple[float, float] | None = None,
    metrics: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as ``<path>.safetensors`` (weights) and ``<path>.json`` (how to rebuild it).

    Both files are written atomically (temporary file, then rename), weights first: the
    JSON records the weights' SHA-256, so an interrupted save can leave an old JSON but
    never one that :func:`load_model` accepts with the wrong weights.

    Parameters
    ----------
    model
        A module with ``config`` (the JSON-serialisable keyword arguments that rebuild it,
        ``type(model)(**model.config)``), ``patch_size``, ``n_in`` and ``n_out``.
    path
        Checkpoint path, with or without ``.json`` / ``.safetensors``; folders are created.
    variable
        Name of the input variable the model was trained on (``"ndsi"``); checked by
        ``load_model(expect=...)``.
    value_range
        ``(low, high)`` of the training inputs, for checking or scaling new inputs.
    metrics
        Evaluation results: a dict, list, or the DataFrame of
        :func:`xglacier.training.evaluate`.
    extra
        Any other JSON-serialisable information (training history summary, split, ...).

    Returns
    -------
    pathlib.Path
        The JSON file.

    Examples
    --------
    >>> import tempfile, torch
    >>> class Scale(torch.nn.Module):
    ...     def __init__(self, patch_size=2, n_in=1, n_out=1):
    ...         super().__init__()
    ...         self.config = dict(patch_size=patch_size, n_in=n_in, n_out=n_out)
    ...         self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
    ...         self.w = torch.nn.Parameter(torch.tensor(2.0))
    ...     def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
    ...         return self.w * x
    >>> folder = tempfile.mkdtemp()
    >>> save_model(Scale(), f"{folder}/scale", variable="ndsi").name
    'scale.json'
    >>> model = load_model(f"{folder}/scale", expect={"variable": "ndsi"},
    ...                    model_classes={"Scale": Scale})
    >>> model(torch.ones(1, 1, 2, 2)).sum().item()
    8.0
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
    json_path, weights_path = checkpoint_paths(path)
    # everything that can fail is checked before anything is written
    meta: dict[str, Any] = {
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
        "weights": {"file": weights_path.name},
        "xglacier_version": _xglacier_version(),
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        # safetensors refuses tensors sharing memory (tied weights): store copies
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        tensors[key] = t
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "xglacier_class": name,
                                               "xglacier_format_version": str(FORMAT_VERSION)})
        meta["weights"]["sha256"] = _sha256(tmp)
    with _atomic(json_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return json_path


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


# -- load -----------------------------------------------------------------------------------


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


def _check_expect(meta: dict[str, Any], expect: Any, json_path: Path) -> None:
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


def load_model(
    path: str | os.PathLike[str],
    expect: Any = None,
    model_classes: Mapping[str, type] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, in eval mode.

    Parameters
    ----------
    path
        Checkpoint path, with or without ``.json`` / ``.safetensors``.
    expect
        What the model will be applied to: a :class:`~xglacier.PatchSet` (patch size,
        n_in, n_out and variable name are checked), a feature DataArray with a
        ``channel`` dimension or :class:`~xglacier.segmentation.data.SegmentationTiles`
        (the channel names and their order are checked), another DataArray (its name is
        checked), or a dict with some of ``patch_size``, ``n_in``, ``n_out``,
        ``variable``, ``channels``, ``classes``. A variable is compared only when both
        the checkpoint and ``expect`` name one.
    model_classes
        ``{class name: class}`` to rebuild from; default every class registered with
        :func:`xglacier.nn.register_model`.
    device
        Where the weights are loaded.

    Returns
    -------
    torch.nn.Module
        The model, with ``checkpoint_meta`` (the JSON metadata) attached.

    Raises
    ------
    CheckpointNotFoundError
        The JSON or the safetensors file is missing.
    CheckpointError
        Not a checkpoint, a newer format, an unknown class, weights that do not fit the
        configuration or were not written with this JSON, or a mismatch with ``expect``
        (naming each field that differs).

    Examples
    --------
    See :func:`save_model`.
    """
    json_path, weights_path = checkpoint_paths(path)
    meta = read_metadata(json_path)
    if expect is not None:
        _check_expect(meta, expect, json_path)
    if model_classes is None:
        model_classes = registered_models()
    cls = model_classes.get(meta["class"])
    if cls is None:
        raise CheckpointError(f"checkpoint {json_path} holds a {meta['class']!r} model; known classes: "
                              f"{sorted(model_classes)} (pass model_classes= for your own)")
    if not weights_path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint weights {weights_path} do not exist (next to {json_path.name})")
    sha = meta["weights"].get("sha256")
    if sha is not None and _sha256(weights_path) != sha:
        raise CheckpointError(f"checkpoint weights {weights_path} are not the ones {json_path.name} was "
                              "written with (SHA-256 differs): the pair is inconsistent; save again")
    try:
        model = cls(**meta["config"])
    except (TypeError, ValueError, XGlacierError) as err:
        raise CheckpointError(f"checkpoint {json_path}: {meta['class']}(**config) failed with config "
                              f"{meta['config']}: {err}") from err
    for key in ("patch_size", "n_in", "n_out"):
        if getattr(model, key, meta[key]) != meta[key]:
            raise CheckpointError(f"checkpoint {json_path}: the rebuilt model has {key}="
                                  f"{getattr(model, key)} but the checkpoint records {meta[key]}")
    try:
        state = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint weights {weights_path} cannot be read: {err}") from err
    want = model.state_dict()
    problems = []
    if missing := sorted(set(want) - set(state)):
        problems.append(f"missing tensors {missing}")
    if unexpected := sorted(set(state) - set(want)):
        problems.append(f"unexpected tensors {unexpected}")
    problems += [f"{k}: weights {tuple(state[k].shape)}, model {tuple(want[k].shape)}"
                 for k in sorted(set(want) & set(state)) if state[k].shape != want[k].shape]
    if problems:
        raise CheckpointError(f"checkpoint weights {weights_path} do not fit {meta['class']} with "
                              f"config {meta['config']}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    model.to(device)
    model.checkpoint_meta = meta
    return model.eval()
