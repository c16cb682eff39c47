"""What every PyTorch model of xglacier shares: the training loop, seeding, devices,
batching, checkpoints (safetensors + JSON, never pickle) and the registry of model classes.

Modules: ``loop`` (``train_epochs``, ``check_fit_options``, ``seeded``, ``model_device``),
``batches`` (``BatchLoader``), ``checkpoint`` (``save_model``, ``load_model``), ``metadata``
(the checkpoint JSON and its compatibility checks), ``registry`` (``register_model``),
``tiling`` (windows of tiled inference, ``blend_weight``) and ``shift`` (inputs far outside
a model's training statistics).

Forecasting (:mod:`xglacier.forecasting`) and segmentation (:mod:`xglacier.segmentation`)
build on these public functions; nothing here knows about patches or tiles. ``tiling`` and
``shift`` need only NumPy and Dask; the package's own names (``load_model``, ...) import
torch on first use, so that :func:`xglacier.segment` can use ``shift`` without it.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "checkpoint_paths": "checkpoint",
    "load_model": "checkpoint",
    "read_metadata": "checkpoint",
    "save_model": "checkpoint",
    "register_model": "registry",
    "registered_models": "registry",
}

_MODULES = ("batches", "checkpoint", "loop", "metadata", "registry", "shift", "tiling")

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xglacier.nn' has no attribute {name!r}")
