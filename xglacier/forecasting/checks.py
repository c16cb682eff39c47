"""Checks shared by :func:`~xglacier.fit` and :func:`~xglacier.evaluate`: samples, model fit, output."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._validate import check_samples
from ..errors import InputError
from .kernels import gather_patches
from .patches import PatchSet


def check_patchset(func: str, label: str, ps: Any, allow_none: bool = False) -> None:
    """:class:`~xglacier.errors.InputError` unless ``ps`` is a non-empty :class:`PatchSet`."""
    check_samples(func, label, ps, PatchSet, "a PatchSet (xglacier.patches(...) or its .split())",
                  allow_none)


def check_compatible(func: str, name: str, model: nn.Module, ps: PatchSet, label: str) -> None:
    """The model's patch size and frame counts must be those of the PatchSet's plan.

    Attributes the model does not define are not checked (any ``nn.Module`` following the
    forward signature can be trained); the output shape is checked on the first batch.
    """
    plan = ps.plan
    diffs = [
        f"{attr}={getattr(model, attr)} but {label} has {want}"
        for attr, want in (("patch_size", plan.size), ("n_in", plan.n_in), ("n_out", plan.n_out))
        if getattr(model, attr, None) is not None and getattr(model, attr) != want
    ]
    if diffs:
        raise InputError(f"{func}: model {name!r} does not fit the samples: " + "; ".join(diffs))


def check_observed_targets(func: str, label: str, ps: PatchSet, why: str) -> None:
    """:class:`InputError` when ``nan="fill"`` put ``fill_value`` in place of a NaN target pixel.

    A score against a filled target scores an invented value (0 by default: bare rock in
    NDSI), and a model trained on one learns it, both looking like ordinary figures. Filled
    *input* frames are what a forecast does with a gap, and are accepted.
    """
    if ps.nan != "fill":
        return  # gathering raises NaNInPatchError itself
    cube, p = ps.load(), ps.plan
    nan_frames = np.isnan(cube).any(axis=(1, 2))
    t0 = p.samples[:, 0]
    maybe = np.flatnonzero(np.any([nan_frames[t0 + p.n_in + j] for j in range(p.n_out)], axis=0))
    for start in range(0, maybe.size, 256):
        rows = p.samples[maybe[start:start + 256]].copy()
        rows[:, 0] += p.n_in  # gather the targets alone
        x, y = (np.empty((len(rows), k, p.size, p.size), np.float32) for k in (0, p.n_out))
        gather_patches(cube, rows, p.size, 0, p.n_out, x, y)
        bad = np.flatnonzero(np.isnan(y).any(axis=(1, 2, 3)))
        if bad.size:
            t, y0, x0 = p.samples[maybe[start + bad[0]]]
            raise InputError(
                f"{func}: the {label} samples have NaN target pixels, the first in the sample at time index "
                f"{t}, y0={y0}, x0={x0} of variable {ps.da.name!r}, which nan='fill' replaced by "
                f"fill_value={ps.fill_value}; {why}. Fill the gaps first (fill_gaps, composite) or use "
                "samples whose targets were observed"
            )


def check_output(func: str, name: str, pred: Any, target: torch.Tensor) -> None:
    """:class:`~xglacier.errors.InputError` unless ``pred`` is a tensor shaped like ``target``."""
    if not isinstance(pred, torch.Tensor) or pred.shape != target.shape:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise InputError(f"{func}: model {name!r} returned {shape}; expected a tensor of shape "
                         f"{tuple(target.shape)} (batch, n_out, size, size)")


def check_period(func: str, name: str, model: Any, per_year: int | None, label: str) -> None:
    """:class:`~xglacier.errors.InputError` when ``model`` reads seasons ``model.period`` frames
    apart (a seasonal baseline, or a seasonal residual) but the data have ``per_year`` frames per
    year (or no whole number): quarterly seasons read from monthly frames are four months back.
    ``label`` names the data with its verb ("the samples have")."""
    period = getattr(model, "period", None)
    if period is None:
        return
    if getattr(model, "trainable", True):  # a learned model reads the period only for its residual
        residual = getattr(model, "residual", None)
        if residual is None:
            return
        from .models.base import SEASONAL_RESIDUALS  # a model with a residual is xglacier's

        if residual not in SEASONAL_RESIDUALS:
            return
    if per_year is None:
        raise InputError(f"{func}: model {name!r} reads the same season period={period} frames back, but "
                         f"{label} no whole number of frames per year: no season comes back")
    if period != per_year:
        raise InputError(f"{func}: model {name!r} reads the same season period={period} frames, but "
                         f"{label} {per_year} frames per year; build the model with period={per_year}")


def uses_gaps(model: Any) -> bool:
    """Whether ``model`` reads ``forward(..., missing=)``: learned xglacier models with ``gaps=True``."""
    return getattr(model, "gaps", False) is True


def uses_climate(model: Any) -> bool:
    """Whether ``model`` needs ``forward(..., climate=)``: ``residual="history"`` models and the
    ``HistoryClimatology`` baseline."""
    return getattr(model, "reads_climate", False) is True


def model_extras(model: Any, batch: tuple[torch.Tensor, ...], device: Any) -> dict[str, torch.Tensor]:
    """The keywords ``model`` reads from a ``(x, y, gaps, climate)`` batch of a
    :class:`~xglacier.forecasting.gaps.GapSource` (``missing``, ``climate``)."""
    more = {}
    if uses_gaps(model) and len(batch) > 2:
        more["missing"] = batch[2].to(device)
    if uses_climate(model):
        more["climate"] = batch[3].to(device)
    return more
