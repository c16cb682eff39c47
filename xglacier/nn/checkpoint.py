"""Model checkpoints: weights as safetensors, everything else as readable JSON.

A checkpoint ``<path>`` is two files written side by side:

- ``<path>.safetensors``: the ``state_dict`` tensors (no pickle: loading a checkpoint
  cannot run code);
- ``<path>.json``: the model class and the keyword arguments that rebuild it, the patch
  size and frame counts, the input variable and its value range, for segmentation models
  the channel and class names (the normalisation statistics are in the keyword
  arguments), metrics, the SHA-256 of the weights file and the xglacier / torch versions
  (see :mod:`xglacier.nn.metadata`).

:func:`load_model` rebuilds the model from the registry of model classes
(:func:`xglacier.nn.register_model`) and refuses a checkpoint that does not match the
data it will be applied to.

Examples
--------
Typical use (not run as a doctest)::

    save_model(model, "runs/salstm", variable="ndsi", value_range=(-1, 1), metrics=table)
    model = load_model("runs/salstm", expect=test_patches)   # raises CheckpointError on mismatch
    unet = load_model("runs/unet", expect=features)          # features' channels, in order
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize
from torch import nn

from .._atomic import atomic_path, file_sha256
from ..errors import CheckpointError, CheckpointNotFoundError, XGlacierError
from .metadata import (
    FORMAT,
    FORMAT_VERSION,
    check_expected,
    checkpoint_paths,
    model_metadata,
    read_metadata,
)
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




def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict on the CPU, contiguous; tied weights as copies (safetensors refuses shared memory)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        tensors[key] = t
    return tensors


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
    json_path, weights_path = checkpoint_paths(path)
    # everything that can fail is checked before anything is written
    meta = model_metadata(model, variable=variable, value_range=value_range, metrics=metrics,
                          extra=extra, weights_file=weights_path.name)
    tensors = _tensors(model)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # serialised here and written by us: safetensors' own save_file creates its file with mode
    # 0o600 whatever the umask, and a checkpoint is meant to be shared like any other output
    data = serialize(tensors, metadata={"format": "pt", "xglacier_class": meta["class"],
                                        "xglacier_format_version": str(FORMAT_VERSION)})
    with atomic_path(weights_path) as tmp:
        tmp.write_bytes(data)
        meta["weights"]["sha256"] = file_sha256(tmp)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return json_path


def load_model(
    path: str | os.PathLike[str],
    *,
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
        ``channel`` dimension or :class:`~xglacier.segmentation.tiles.SegmentationTiles`
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
        check_expected(meta, expect, json_path)
    if model_classes is None:
        model_classes = registered_models()
    cls = model_classes.get(meta["class"])
    if cls is None:
        raise CheckpointError(f"checkpoint {json_path} holds a {meta['class']!r} model; known classes: "
                              f"{sorted(model_classes)} (register your own with "
                              "xglacier.nn.register_model, or pass model_classes=)")
    if not weights_path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint weights {weights_path} do not exist (next to {json_path.name})")
    sha = meta["weights"].get("sha256")
    if sha is not None and file_sha256(weights_path) != sha:
        raise CheckpointError(f"checkpoint weights {weights_path} are not the ones {json_path.name} was "
                              "written with (SHA-256 differs): the pair is inconsistent; save again")
    # keywords a class gained after checkpoints of it were written: such a checkpoint is
    # rebuilt as it was trained (LEGACY_CONFIG), never with the newer default
    config = {**getattr(cls, "LEGACY_CONFIG", {}), **meta["config"]}
    try:
        model = cls(**config)
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
