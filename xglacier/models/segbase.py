"""Common interface of every segmentation model (U-Net, combined binary models, ...).

A segmentation model maps a ``(batch, channel, y, x)`` tensor of *raw* features (the
values of :func:`xglacier.features`, NaN allowed) to class probabilities
``(batch, class, y, x)``. It carries what it was trained on: the channel names in order,
the class names, and the per-channel normalisation statistics of the training split, so
that :func:`xglacier.segment` can refuse features that do not match and nobody has to
remember how inputs were scaled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ParameterError


def _names(cls_name: str, label: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ParameterError(f"{cls_name}: {label}={values!r}; expected a non-empty sequence of names")
    names = tuple(str(v) for v in values)
    if len(set(names)) != len(names):
        raise ParameterError(f"{cls_name}: {label}={list(names)} has duplicates")
    return names


def _stats(cls_name: str, label: str, values: Any, n: int, default: float) -> list[float]:
    if values is None:
        return [default] * n
    out = [float(v) for v in values]
    if len(out) != n:
        raise ParameterError(f"{cls_name}: {label} has {len(out)} values; expected one per channel ({n})")
    if any(v != v for v in out):  # NaN statistics would turn every input into NaN
        raise ParameterError(f"{cls_name}: {label}={out} holds NaN")
    return out


class SegmentationModel(nn.Module):
    """Base class: ``predict_proba(raw features) -> class probabilities``.

    Subclasses call ``super().__init__(channels=..., classes=..., mean=..., std=...,
    **more)`` and implement ``forward(x_normalised) -> logits`` with
    :attr:`out_channels` output channels: one per class, or a single channel (the logit
    of the second class) for a two-class model with a sigmoid head. All keywords are kept
    in ``self.config`` so that ``type(m)(**m.config)`` rebuilds the model, statistics
    included (this is what checkpoints store).

    Parameters
    ----------
    channels
        Names of the input channels, in order (``features(...).channel``).
    classes
        Names of the output classes; index 0 is the background.
    mean, std
        Per-channel normalisation statistics (default 0 and 1: no scaling). Inputs are
        normalised as ``(x - mean) / std`` and NaN becomes 0 (the training mean) after.
    patch_size
        Tile size the model was trained on (recorded in checkpoints; inference may use
        any size).
    """

    def __init__(self, channels: Sequence[str], classes: Sequence[str],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 patch_size: int = 512, binary_head: bool = False, **config: Any) -> None:
        super().__init__()
        name = type(self).__name__
        self.channels = _names(name, "channels", channels)
        self.classes = _names(name, "classes", classes)
        if len(self.classes) < 2:
            raise ParameterError(f"{name}: classes={list(self.classes)}; expected at least two "
                                 "(background first)")
        if binary_head and len(self.classes) != 2:
            raise ParameterError(f"{name}: binary_head=True needs exactly two classes, got "
                                 f"{list(self.classes)}")
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise ParameterError(f"{name}: patch_size={patch_size!r}; expected a positive integer")
        n = len(self.channels)
        mean_l = _stats(name, "mean", mean, n, 0.0)
        std_l = _stats(name, "std", std, n, 1.0)
        if any(not v > 0 for v in std_l):
            raise ParameterError(f"{name}: std={std_l}; every value must be > 0")
        # not persistent: the statistics live in the config (JSON), not twice in the weights
        self.register_buffer("mean", torch.tensor(mean_l, dtype=torch.float32).view(1, n, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std_l, dtype=torch.float32).view(1, n, 1, 1),
                             persistent=False)
        self.binary_head = bool(binary_head)
        self.out_channels = 1 if self.binary_head else len(self.classes)
        # the attributes checkpoints record for every model
        self.patch_size, self.n_in, self.n_out = patch_size, n, len(self.classes)
        self.config = {"channels": list(self.channels), "classes": list(self.classes),
                       "mean": mean_l, "std": std_l, "patch_size": patch_size,
                       "binary_head": self.binary_head, **config}

    def set_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Replace the normalisation statistics (computed on the training split)."""
        name = type(self).__name__
        n = len(self.channels)
        mean_l = _stats(name, "mean", mean, n, 0.0)
        std_l = _stats(name, "std", std, n, 1.0)
        if any(not v > 0 for v in std_l):
            raise ParameterError(f"{name}: std={std_l}; every value must be > 0")
        self.mean.copy_(torch.tensor(mean_l).view(1, n, 1, 1))
        self.std.copy_(torch.tensor(std_l).view(1, n, 1, 1))
        self.config.update(mean=mean_l, std=std_l)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel, NaN replaced by 0 afterwards."""
        if x.ndim != 4 or x.shape[1] != len(self.channels):
            raise InputError(f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected "
                             f"(batch, {len(self.channels)} channels {list(self.channels)}, y, x)")
        z = (x - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn ``forward``'s logits into class probabilities ``(batch, class, y, x)``."""
        if self.binary_head:
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits, dim=1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities for raw features ``x`` (normalised here)."""
        return self.probabilities(self(self.normalise(x)))

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
