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

from ..._validate import check_int
from ...errors import InputError, ParameterError

__all__ = ["SegmentationModel"]


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
    if any(v != v or v in (float("inf"), float("-inf")) for v in out):
        # NaN or infinite statistics would turn every input into NaN or 0
        raise ParameterError(f"{cls_name}: {label}={out}; expected finite numbers")
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
    binary_head
        Two classes only: one output channel whose sigmoid is the probability of the
        second class (the paper's binary models), instead of a softmax over two channels.

    Examples
    --------
    >>> import torch
    >>> class PerPixel(SegmentationModel):  # a 1x1 convolution: the smallest model
    ...     def __init__(self, channels, classes, **kw):
    ...         super().__init__(channels, classes, **kw)
    ...         self.conv = torch.nn.Conv2d(len(self.channels), self.out_channels, 1)
    ...     def forward(self, x):
    ...         return self.conv(x)
    >>> model = PerPixel(["green", "swir16"], ["background", "glacier"], binary_head=True)
    >>> x = torch.full((1, 2, 4, 4), float("nan"))     # NaN features are allowed
    >>> tuple(model.predict_proba(x).shape), model.out_channels
    ((1, 2, 4, 4), 1)
    >>> type(model)(**model.config).classes
    ('background', 'glacier')
    """

    def __init__(self, channels: Sequence[str], classes: Sequence[str], *,
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
        patch_size = check_int(name, "patch_size", patch_size, low=1)
        n = len(self.channels)
        mean_l, std_l = _mean_std(name, mean, std, n)
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
        """Replace the normalisation statistics (computed on the training split).

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> model = UNet(["green", "dem"], ["background", "glacier"], depth=1, base_channels=2)
        >>> model.set_statistics([0.3, 4500.0], [0.2, 600.0])
        >>> model.config["mean"], model.config["std"]
        ([0.3, 4500.0], [0.2, 600.0])
        """
        mean_l, std_l = _mean_std(type(self).__name__, mean, std, len(self.channels))
        n = len(self.channels)
        self.mean.copy_(torch.tensor(mean_l).view(1, n, 1, 1))
        self.std.copy_(torch.tensor(std_l).view(1, n, 1, 1))
        self.config.update(mean=mean_l, std=std_l)

    def set_patch_size(self, size: int) -> None:
        """Record the tile size the model is trained on (kept in ``config`` and checkpoints).

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> model = UNet(["green"], ["background", "glacier"], depth=1, base_channels=2)
        >>> model.set_patch_size(128)
        >>> model.patch_size, model.config["patch_size"]
        (128, 128)
        """
        size = check_int(type(self).__name__, "patch_size", size, low=1)
        self.patch_size = size
        self.config["patch_size"] = size

    def training_statistics(self) -> tuple[list[float], list[float]] | None:
        """Per-channel ``(mean, std)`` of the training data, or ``None`` if none were set.

        What :func:`xglacier.segment` compares a scene with (``ood_sigmas``). The defaults
        (all 0 and all 1: no scaling) mean that no statistics were recorded.

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> model = UNet(["dem"], ["background", "glacier"], depth=1, base_channels=2)
        >>> model.training_statistics() is None
        True
        >>> model.set_statistics([4500.0], [600.0])
        >>> model.training_statistics()
        ([4500.0], [600.0])
        """
        mean, std = list(self.config["mean"]), list(self.config["std"])
        if all(m == 0 for m in mean) and all(s == 1 for s in std):
            return None
        return mean, std

    def check_channels(self, channels: Sequence[str], *, where: str = "input") -> None:
        """Raise :class:`~xglacier.errors.InputError` unless ``channels`` are the model's, in order.

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> model = UNet(["green", "swir16"], ["background", "glacier"], depth=1, base_channels=2)
        >>> model.check_channels(["green", "swir16"])
        >>> model.check_channels(["swir16", "green"], where="features")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        xglacier.errors.InputError: UNet: features have channels ['swir16', 'green']; the model expects ...
        """
        got = [str(c) for c in channels]
        if got != list(self.channels):
            raise InputError(f"{type(self).__name__}: {where} have channels {got}; the model expects "
                             f"{list(self.channels)} (same names, same order)")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel, NaN replaced by 0 afterwards.

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> model = UNet(["dem"], ["background", "glacier"], depth=1, base_channels=2,
        ...              mean=[4000.0], std=[500.0])
        >>> model.normalise(torch.tensor([[[[4500.0, float("nan")]]]])).tolist()
        [[[[1.0, 0.0]]]]
        """
        if x.ndim != 4 or x.shape[1] != len(self.channels):
            raise InputError(f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected "
                             f"(batch, {len(self.channels)} channels {list(self.channels)}, y, x)")
        z = (x - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn ``forward``'s logits into class probabilities ``(batch, class, y, x)``.

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> model = UNet(["green"], ["background", "glacier"], depth=1, base_channels=2,
        ...              binary_head=True)
        >>> model.probabilities(torch.zeros(1, 1, 1, 1)).flatten().tolist()
        [0.5, 0.5]
        """
        if self.binary_head:
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits, dim=1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities for raw features ``x`` (normalised here).

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> model = UNet(["green", "swir16"], ["background", "clean", "debris"], depth=2,
        ...              base_channels=4).eval()
        >>> p = model.predict_proba(torch.rand(1, 2, 9, 7))
        >>> tuple(p.shape), bool(torch.allclose(p.sum(dim=1), torch.ones(1, 9, 7)))
        ((1, 3, 9, 7), True)
        """
        return self.probabilities(self(self.normalise(x)))

    def n_parameters(self) -> int:
        """Number of trainable parameters.

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> UNet(["green"], ["background", "glacier"], depth=1, base_channels=2).n_parameters()
        434
        """
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _mean_std(name: str, mean: Any, std: Any, n: int) -> tuple[list[float], list[float]]:
    mean_l = _stats(name, "mean", mean, n, 0.0)
    std_l = _stats(name, "std", std, n, 1.0)
    if any(not v > 0 for v in std_l):
        raise ParameterError(f"{name}: std={std_l}; every value must be > 0")
    return mean_l, std_l
