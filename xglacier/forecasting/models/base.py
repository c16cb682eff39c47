"""Common interface of every forecasting model (learned or baseline)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..._validate import check_choice, check_int
from ...errors import InputError


class ForecastModel(nn.Module):
    """A model mapping ``(B, n_in, P, P)`` frames to ``(B, n_out, P, P)`` frames.

    Subclasses call ``super().__init__(patch_size=..., n_in=..., n_out=..., **more)``; all
    keywords are kept in ``self.config`` so that ``type(m)(**m.config)`` rebuilds the model
    (this is what checkpoints store). Sizes are Python or NumPy integers (kept as ``int``).

    Examples
    --------
    >>> import numpy as np
    >>> ForecastModel(patch_size=np.int64(8), n_in=4, n_out=2).config
    {'patch_size': 8, 'n_in': 4, 'n_out': 2}
    """

    trainable = True

    def __init__(self, *, patch_size: int, n_in: int, n_out: int, **config: Any) -> None:
        super().__init__()
        name = type(self).__name__
        patch_size, n_in, n_out = (check_int(name, label, value, low=1) for label, value in
                                   (("patch_size", patch_size), ("n_in", n_in), ("n_out", n_out)))
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.config = {"patch_size": patch_size, "n_in": n_in, "n_out": n_out, **config}

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, x: torch.Tensor) -> None:
        want = (self.n_in, self.patch_size, self.patch_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise InputError(
                f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected (batch, {want[0]}, "
                f"{want[1]}, {want[2]})"
            )

    @staticmethod
    def _use_truth(targets: torch.Tensor | None, teacher_forcing: float, training: bool) -> bool:
        """Teacher forcing: feed the true frame back instead of the prediction, at random."""
        return (targets is not None and training and teacher_forcing > 0
                and bool(torch.rand(()) < teacher_forcing))


def resolve_preset(cls_name: str, preset: str | None, presets: dict[str, dict[str, Any]],
                   given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Keywords given (not None) win over the named preset, the preset over ``defaults``.

    The integer keywords among ``patch_size``, ``n_in``, ``n_out``, ``hidden``, ``layers``,
    ``heads`` and ``kernel`` are checked (NumPy integers accepted, bools refused) and made ``int``.

    Examples
    --------
    >>> resolve_preset("M", "small", {"small": {"layers": 2}}, {"layers": None, "n_in": 3},
    ...                {"layers": 3, "n_in": 4})
    {'layers': 2, 'n_in': 3}
    """
    base = dict(defaults)
    if preset is not None:
        base.update(presets[check_choice(cls_name, "preset", preset, sorted(presets))])
    kw = {k: v if v is not None else base.get(k) for k, v in given.items()}
    for key in ("patch_size", "n_in", "n_out", "hidden", "layers", "heads", "kernel"):
        if key in kw:
            kw[key] = check_int(cls_name, key, kw[key], low=1, allow_none=key == "hidden")
    return kw
