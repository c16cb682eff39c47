"""The registry of model classes that checkpoints refer to by name.

A checkpoint's JSON names its model class (``"class": "SALSTM"``); :func:`load_model`
rebuilds the model from this registry, never from pickled code. Every xglacier model
class registers itself with :func:`register_model`; user classes can do the same, or be
passed to ``load_model(..., model_classes=...)``.

>>> from xglacier.nn.registry import registered_models
>>> {"SALSTM", "UNet"} <= set(registered_models())
True
"""

from __future__ import annotations

import importlib

from ..errors import ParameterError

_REGISTRY: dict[str, type] = {}

# The packages whose import registers xglacier's own models.
_MODEL_PACKAGES = ("xglacier.forecasting.models", "xglacier.segmentation.models")


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` loadable from checkpoints by its class name.

    Examples
    --------
    >>> from torch import nn
    >>> @register_model
    ... class Doubling(nn.Module):
    ...     def forward(self, x):
    ...         return 2 * x
    >>> registered_models()["Doubling"] is Doubling
    True
    """
    name = cls.__name__
    known = _REGISTRY.get(name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ParameterError(
            f"register_model: a model class named {name!r} is already registered "
            f"({known.__module__}.{known.__qualname__}); expected unique class names"
        )
    _REGISTRY[name] = cls
    return cls


def registered_models() -> dict[str, type]:
    """Every registered model class by name (xglacier's own models are always included)."""
    for package in _MODEL_PACKAGES:
        importlib.import_module(package)
    return dict(_REGISTRY)
