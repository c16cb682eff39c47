"""Honest evaluation of forecasting models: every test sample once, beside the naive baselines.

:func:`evaluate` scores models on :class:`~xglacier.PatchSet` samples beside persistence,
seasonal persistence, climatology and linear trend, with their skill against the best
baseline and paired percentile bootstrap confidence intervals over spatial blocks (see
:mod:`xglacier.forecasting.skill`), so that a skill claim can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_choice, check_flag, check_int, check_number, frames_per_year
from ..errors import ParameterError
from ..nn.loop import model_device
from .checks import (
    check_compatible,
    check_observed_targets,
    check_output,
    check_patchset,
    check_period,
    model_extras,
    uses_climate,
)
from .patches import PatchSet
from .skill import bootstrap_means, pixel_blocks

__all__ = ["evaluate"]


def _frames_per_year(ps: PatchSet) -> int | None:
    """Frames per year of the samples' time axis (4 for quarterly composites), else None."""
    return frames_per_year(ps.da["time"].values) if "time" in ps.da.coords else None


def _baselines(ps: PatchSet, period: int | None) -> dict[str, nn.Module]:
    try:
        from . import models as m
    except ImportError as err:  # the models package is optional for training alone
        raise ImportError(
            f"evaluate: the baselines need xglacier.models ({err}); pass baselines=False"
        ) from err
    p = ps.plan
    kw = {"patch_size": p.size, "n_in": p.n_in, "n_out": p.n_out}
    out: dict[str, nn.Module] = {"persistence": m.Persistence(**kw)}
    period = period if period is not None else _frames_per_year(ps)
    # without a whole number of frames per year (period None) no season comes back
    if period is not None and period <= p.n_in:
        out["seasonal_persistence"] = m.SeasonalPersistence(**kw, period=period)
    if period is not None and 2 * period <= p.n_in:  # one year of inputs: seasonal persistence again
        out["seasonal_climatology"] = m.SeasonalClimatology(**kw, period=period)
    if period is not None and period <= p.n_in:
        out["history_climatology"] = m.HistoryClimatology(**kw, period=period)
    out["climatology"] = m.Climatology(**kw)
    out["linear_trend"] = m.LinearTrend(**kw)
    return out


def _named_models(models: Mapping[str, nn.Module] | nn.Module | None) -> dict[str, nn.Module]:
    """``models`` as ``{name: module}`` (one module is named by its class)."""
    if models is None:
        named: dict[str, nn.Module] = {}
    elif isinstance(models, nn.Module):
        named = {type(models).__name__: models}
    elif isinstance(models, Mapping):
        named = dict(models)
    else:
        raise ParameterError(f"evaluate: models is a {type(models).__name__}; expected a dict "
                             "{name: torch.nn.Module}, one module, or None")
    for key, model in named.items():
        if not isinstance(model, nn.Module):
            raise ParameterError(f"evaluate: models[{key!r}] is a {type(model).__name__}; "
                                 "expected a torch.nn.Module")
    return named


def _errors(named: dict[str, nn.Module], test: PatchSet, batch_size: int, cells: np.ndarray | None,
            n_cells: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sample errors ``(model, metric [se, ae], sample, lead)`` and per-block error sums.

    One pass over the samples, every model on each batch: each sample is gathered once and
    predicted once by every model (eval mode, no gradients, no teacher forcing); the
    models' training modes are given back afterwards. With ``cells`` (the block number of
    every pixel of the grid), the pixel errors are also summed per spatial block:
    ``(model, metric, block, lead)``.
    """
    n, n_out, size, names = len(test), test.plan.n_out, test.plan.size, list(named)
    errors = np.empty((len(names), 2, n, n_out))
    blocks = None if cells is None else np.zeros((len(names), 2, n_cells, n_out))
    lead = np.arange(n_out)
    ii, jj = np.mgrid[0:size, 0:size]
    states = {key: model.training for key, model in named.items()}
    devices = {key: model_device(model) for key, model in named.items()}
    climate = [getattr(m, "period", None) for m in named.values() if uses_climate(m)]
    pos = 0
    try:
        for model in named.values():
            model.eval()
        with torch.no_grad():
            for batch in test.to_torch(batch_size=batch_size, shuffle=False, gaps=True,
                                       climate=bool(climate), period=climate[0] if climate else 4):
                xb, yb, k = batch[0], batch[1], len(batch[0])
                if cells is not None:
                    y0, x0 = (test.plan.samples[pos:pos + k, i, None, None] for i in (1, 2))
                    # (sample, row, col, lead) -> block * n_out + lead
                    where = (cells[y0 + ii, x0 + jj][..., None] * n_out + lead).ravel()
                for m, key in enumerate(names):
                    more = model_extras(named[key], batch, devices[key])
                    pred = named[key](xb.to(devices[key]), n_out=n_out, targets=None,
                                      teacher_forcing=0.0, **more)
                    check_output("evaluate", key, pred, yb)
                    diff = (pred.detach().to("cpu", torch.float64) - yb.to(torch.float64)).numpy()
                    for j, err in enumerate((np.square(diff), np.abs(diff))):
                        errors[m, j, pos:pos + k] = err.mean(axis=(2, 3))
                        if blocks is not None:
                            blocks[m, j] += np.bincount(where, err.transpose(0, 2, 3, 1).ravel(),
                                                        minlength=n_cells * n_out).reshape(n_cells, n_out)
                pos += k
    finally:
        for key, model in named.items():
            model.train(states[key])
    if pos != n:  # the loader's contract; a silent shortfall would bias every figure
        raise RuntimeError(f"evaluate: {pos} samples were predicted out of {n}")
    return errors, blocks


def _block_pixels(test: PatchSet, cells: np.ndarray, n_cells: int) -> np.ndarray:
    """How many (sample, pixel) pairs fall in each block, over all test patches."""
    size = test.plan.size
    ny, nx = test.plan.shape[1:]
    # +1/-1 at each patch's corners; the cumulative sums are the number of patches per pixel
    corners = np.zeros((ny + 1, nx + 1))
    y0, x0 = test.plan.samples[:, 1], test.plan.samples[:, 2]
    for dy, dx, sign in ((0, 0, 1), (size, 0, -1), (0, size, -1), (size, size, 1)):
        np.add.at(corners, (y0 + dy, x0 + dx), sign)
    cover = corners.cumsum(0).cumsum(1)[:-1, :-1]
    return np.bincount(cells.ravel(), cover.ravel(), minlength=n_cells)


def _intervals(errors: np.ndarray, blocks: np.ndarray | None, pixels: np.ndarray | None, n_boot: int,
               seed: int, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates ``(model, metric, lead + all)``, bootstrap replicates and interval bounds."""
    n_models, _, n, n_out = errors.shape
    shape = (n_models, 2, n_out + 1)
    # columns: per model and metric, leads 1..n_out then the mean over leads
    per_sample = np.concatenate([errors, errors.mean(axis=3, keepdims=True)], axis=3)
    point = per_sample.mean(axis=2)
    if not n_boot:
        return point, np.empty((0, *shape)), np.full((2, *shape), np.nan)
    if blocks is None or pixels is None:
        sums, sizes = per_sample.transpose(2, 0, 1, 3).reshape(n, -1), np.ones(n)
    else:
        keep = pixels > 0
        full = np.concatenate([blocks, blocks.mean(axis=3, keepdims=True)], axis=3)[:, :, keep]
        sums, sizes = full.transpose(2, 0, 1, 3).reshape(int(keep.sum()), -1), pixels[keep]
    boot = bootstrap_means(sums, sizes, n_boot, seed).reshape(n_boot, *shape)
    return point, boot, np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)


def _skill(point: np.ndarray, boot: np.ndarray, names: list[str], baselines: list[str], reference: str,
           ci: float) -> tuple[np.ndarray, list[str | None]]:
    """Skill ``1 - MSE / MSE_ref`` (model, lead + all, [value, low, high]) and the reference per lead."""
    n_models, _, n_leads = point.shape
    out = np.full((n_models, n_leads, 3), np.nan)
    refs: list[str | None] = []
    for j in range(n_leads):
        if reference == "best":
            pool = [names.index(b) for b in baselines]
            r = min(pool, key=lambda i: point[i, 0, j]) if pool else None
        else:
            r = names.index(reference)
        refs.append(None if r is None else names[r])
        if r is None or not point[r, 0, j] > 0:  # no reference, or one without error: undefined
            continue
        out[:, j, 0] = 1 - point[:, 0, j] / point[r, 0, j]
        if boot.shape[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                rep = 1 - boot[:, :, 0, j] / boot[:, r, None, 0, j]
            out[:, j, 1:] = np.quantile(rep, [(1 - ci) / 2, (1 + ci) / 2], axis=0).T
    return out, refs


def _table(names: list[str], point: np.ndarray, bounds: np.ndarray, skill: np.ndarray,
           refs: list[str | None], n: int) -> pd.DataFrame:
    """The output table: one row per model and lead time (then ``"all"``)."""
    rows = []
    n_leads = point.shape[2]
    leads: list[int | str] = [*range(1, n_leads), "all"]
    for m, key in enumerate(names):
        for j, lead in enumerate(leads):
            rows.append({
                "model": key, "lead": lead,
                "mse": point[m, 0, j], "mse_low": bounds[0, m, 0, j], "mse_high": bounds[1, m, 0, j],
                "mae": point[m, 1, j], "mae_low": bounds[0, m, 1, j], "mae_high": bounds[1, m, 1, j],
                "skill": skill[m, j, 0], "skill_low": skill[m, j, 1], "skill_high": skill[m, j, 2],
                "skill_reference": refs[j], "n": n,
            })
    return pd.DataFrame(rows)


def evaluate(
    models: Mapping[str, nn.Module] | nn.Module | None,
    test: PatchSet,
    *,
    baselines: bool = True,
    n_boot: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    ci: float = 0.95,
    period: int | None = None,
    bootstrap: str = "block",
    block: int | None = None,
    reference: str = "best",
) -> pd.DataFrame:
    """MSE, MAE and skill of each model and of the naive baselines on the test samples, with intervals.

    Every test sample is predicted exactly once by every model (eval mode, no gradients,
    no teacher forcing). Per-sample errors (the mean over the patch's pixels, per lead
    time) are computed once; the overall figure of a model is their mean over samples
    and leads, which equals the pixel-wise MSE/MAE since every sample has as many pixels.

    Skill is ``1 - MSE / MSE_reference`` per lead time: 1 for a perfect forecast, 0 for
    one as good as the reference, negative for a worse one. By default the reference of
    each row is the best baseline at that lead (lowest MSE on these test samples, named
    in ``skill_reference``): picked in hindsight on the evaluation set, it makes the skill
    a conservative figure.

    Confidence intervals are percentile bootstrap intervals, with the same resamples for
    every model and lead (so skill intervals are paired). Overlapping patches share
    pixels and neighbouring pixels have correlated errors, so resampling samples one by
    one (``bootstrap="sample"``) gives intervals that are too narrow. The default
    resamples spatial blocks instead: the grid is cut into ``block`` x ``block`` pixel
    squares, the error of every (sample, pixel, lead) is summed into the block of its
    pixel, and whole blocks (all their time windows together) are drawn with replacement.
    Errors correlated over distances longer than the block still give too narrow
    intervals; and the intervals are over space for the test period: they say nothing
    about another year.

    Parameters
    ----------
    models
        ``{name: model}``, one model (named by its class), or ``None`` for the baselines
        alone. Models follow the forward interface of :func:`fit`.
    test
        The test samples.
    baselines
        Also score ``persistence`` (last input frame), ``seasonal_persistence`` (the same
        season one year earlier, when the inputs reach that far), ``seasonal_climatology``
        (mean of the inputs of the same season, when the inputs cover two years or more),
        ``history_climatology`` (mean of the same season over every year before the window's
        first target, inputs or not, leaving out interpolated frames: the long-term
        climatology; when the frames per year are known), ``climatology`` (mean of the
        inputs) and ``linear_trend`` from :mod:`xglacier.models`.
    n_boot
        Bootstrap resamples; 0 leaves the interval columns NaN.
    batch_size
        Samples per forward pass.
    seed
        Seed of the bootstrap draws.
    ci
        Confidence level of the intervals.
    period
        Frames per seasonal cycle for ``seasonal_persistence``; by default inferred from
        the time axis (4 for quarterly composites, 12 for monthly); without a whole number
        of frames per year the seasonal baselines are left out. A value that is not the
        samples' frames per year raises :class:`~xglacier.errors.ParameterError`.
    bootstrap
        ``"block"`` (spatial blocks) or ``"sample"`` (samples one by one, too narrow for
        overlapping patches; for comparison).
    block
        Side of the blocks in pixels, at least the patch size; by default twice the patch
        size. The number of blocks the test samples cover is ``attrs["n_blocks"]``: with
        fewer than about 10 the intervals are unreliable (use a larger test area, or blocks
        down to the patch size).
    reference
        ``"best"`` (the best baseline at each lead) or the name of a scored model or
        baseline (e.g. ``"seasonal_persistence"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, lead, mse, mse_low, mse_high, mae, mae_low, mae_high, skill,
        skill_low, skill_high, skill_reference, n``: for each model, one row per lead
        time (1 .. n_out) then one with ``lead="all"``; ``n`` is the number of test
        samples; skill is NaN without a reference (``baselines=False`` and
        ``reference="best"``) or where the reference has no error. ``attrs`` hold
        ``n_boot, ci, seed, bootstrap, block, n_blocks, reference``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, torch, xarray as xr, xglacier
    >>> cube = xr.DataArray(np.arange(6.0, dtype="f4")[:, None, None] * np.ones((6, 4, 4), "f4"),
    ...     dims=("time", "y", "x"), coords={"time": pd.date_range("2020", periods=6, freq="3MS")})
    >>> ps = xglacier.patches(cube, size=4, stride=4, n_in=2, n_out=2)
    >>> class Last(torch.nn.Module):
    ...     def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
    ...         return x[:, -1:].expand(-1, n_out, -1, -1)
    >>> table = evaluate({"last": Last()}, ps, baselines=False, n_boot=100, bootstrap="sample")
    >>> table[["model", "lead", "mse", "mae", "n"]].to_string(index=False)
    'model lead  mse  mae  n\\n last    1  1.0  1.0  3\\n last    2  4.0  2.0  3\\n last  all  2.5  1.5  3'
    """
    named = _named_models(models)
    n_boot = check_int("evaluate", "n_boot", n_boot, low=0)
    batch_size = check_int("evaluate", "batch_size", batch_size, low=1)
    seed = check_int("evaluate", "seed", seed, low=0)
    ci = check_number("evaluate", "ci", ci, low=0, high=1, low_open=True, high_open=True)
    period = check_int("evaluate", "period", period, low=1, allow_none=True)
    check_flag("evaluate", "baselines", baselines)
    check_choice("evaluate", "bootstrap", bootstrap, ("block", "sample"))
    check_patchset("evaluate", "test", test)
    check_observed_targets("evaluate", "test", test, "a score against them scores invented values")
    size = test.plan.size
    block = check_int("evaluate", "block", 2 * size if block is None else block, low=size)
    per_year = _frames_per_year(test)
    if period is not None and per_year is not None and period != per_year:
        raise ParameterError(f"evaluate: period={period} but the test samples have {per_year} frames per "
                             f"year; seasonal persistence would read another season (leave period=None)")
    for key, model in named.items():
        check_period("evaluate", key, model, per_year, "the test samples have")
    extra = _baselines(test, period) if baselines else {}
    clash = sorted(set(extra) & set(named))
    if clash:
        raise ParameterError(f"evaluate: model names {clash} are baseline names; rename them "
                             "or pass baselines=False")
    named.update(extra)
    if not named:
        raise ParameterError("evaluate: no model to score (models is empty and baselines=False)")
    if reference != "best" and reference not in named:
        raise ParameterError(f"evaluate: reference={reference!r}; expected 'best' or one of {sorted(named)}")
    for key, model in named.items():
        check_compatible("evaluate", key, model, test, "test")
    cells, n_cells, pixels = None, 0, None
    if bootstrap == "block" and n_boot:
        cells, n_cells = pixel_blocks(test.plan.shape[1:], block)
        pixels = _block_pixels(test, cells, n_cells)
    errors, blocks = _errors(named, test, batch_size, cells, n_cells)
    point, boot, bounds = _intervals(errors, blocks, pixels, n_boot, seed, ci)
    skill, refs = _skill(point, boot, list(named), list(extra), reference, ci)
    table = _table(list(named), point, bounds, skill, refs, len(test))
    table.attrs.update(n_boot=n_boot, ci=ci, seed=seed, bootstrap=bootstrap,
                       block=block if bootstrap == "block" else None,
                       n_blocks=int((pixels > 0).sum()) if pixels is not None else None,
                       reference=reference)
    return table
