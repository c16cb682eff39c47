"""Common interface of every forecasting model (learned or baseline)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import ParameterError


class ForecastModel(nn.Module):
    """A model mapping ``(B, n_in, P, P)`` frames to ``(B, n_out, P, P)`` frames.

    Subclasses call ``super().__init__(patch_size=..., n_in=..., n_out=..., **more)``; all
    keywords are kept in ``self.config`` so that ``type(m)(**m.config)`` rebuilds the model
    (this is what checkpoints store).
    """

    trainable = True

    def __init__(self, patch_size: int, n_in: int, n_out: int, **config: Any) -> None:
        super().__init__()
        for label, value in (("patch_size", patch_size), ("n_in", n_in), ("n_out", n_out)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"{type(self).__name__}: {label}={value!r}; expected a positive integer")
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.config = {"patch_size": patch_size, "n_in": n_in, "n_out": n_out, **config}

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, x: torch.Tensor) -> None:
        want = (self.n_in, self.patch_size, self.patch_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ParameterError(
                f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected (batch, {want[0]}, "
                f"{want[1]}, {want[2]})"
            )

    @staticmethod
    def _use_truth(targets: torch.Tensor | None, teacher_forcing: float, training: bool) -> bool:
        """Teacher forcing: feed the true frame back instead of the prediction, at random."""
        return (targets is not None and training and teacher_forcing > 0
                and bool(torch.rand(()) < teacher_forcing))


def resolve_preset(cls_name: str, preset: str | None, presets: dict[str, dict[str, Any]],
                   given: dict[str, Any]) -> dict[str, Any]:
    """Merge a named preset with explicitly given keywords (explicit ones win)."""
    if preset is None:
        return given
    if preset not in presets:
        raise ParameterError(f"{cls_name}: preset={preset!r}; expected one of {sorted(presets)}")
    return {**presets[preset], **{k: v for k, v in given.items() if v is not None}}
