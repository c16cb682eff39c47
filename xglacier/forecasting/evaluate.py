"""Honest evaluation of forecasting models: every test sample once, beside the naive baselines.

:func:`evaluate` scores models on :class:`~xglacier.PatchSet` samples beside persistence,
seasonal persistence, climatology and linear trend, with paired percentile bootstrap
confidence intervals, so that a skill claim can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_flag, check_int, check_number
from ..errors import ParameterError
from ..nn.loop import model_device
from .checks import check_compatible, check_output, check_patchset
from .patches import PatchSet

__all__ = ["evaluate"]


def _frames_per_year(ps: PatchSet) -> int | None:
    """Frames per year of a regular time axis (4 for quarterly composites), else None."""
    if "time" not in ps.da.coords or ps.da.sizes["time"] < 2:
        return None
    days = np.diff(ps.da["time"].values).astype("timedelta64[s]").astype(np.float64) / 86400.0
    step = float(np.median(days))
    if step <= 0:
        return None
    per_year = 365.25 / step
    # monthly steps vary from 28 to 31 days: accept a few percent off a whole number
    return round(per_year) if abs(per_year - round(per_year)) < 0.05 * per_year else None


def _baselines(ps: PatchSet, period: int | None) -> dict[str, nn.Module]:
    try:
        from .models import Climatology, LinearTrend, Persistence, SeasonalPersistence
    except ImportError as err:  # the models package is optional for training alone
        raise ImportError(
            f"evaluate: the baselines need xglacier.models ({err}); pass baselines=False"
        ) from err
    p = ps.plan
    kw = {"patch_size": p.size, "n_in": p.n_in, "n_out": p.n_out}
    out: dict[str, nn.Module] = {"persistence": Persistence(**kw)}
    period = period if period is not None else (_frames_per_year(ps) or 4)
    if period <= p.n_in:
        out["seasonal_persistence"] = SeasonalPersistence(**kw, period=period)
    out["climatology"] = Climatology(**kw)
    out["linear_trend"] = LinearTrend(**kw)
    return out


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of the rows of ``values`` (N, C).

    Every column is resampled with the same draws (paired: models and leads compared on
    the same resamples). Draws are turned into per-row counts in chunks, so that a mean
    is one matrix product and memory stays bounded for large N.
    """
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, values.shape[1]))
    step = max(1, chunk_elems // n)
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n)
        out[start:start + b] = counts.reshape(b, n) @ values / n
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


def _sample_errors(named: dict[str, nn.Module], test: PatchSet, batch_size: int) -> np.ndarray:
    """Per-sample, per-lead errors ``(model, metric [se, ae], sample, lead)`` in float64.

    One pass over the samples, every model on each batch: each sample is gathered once and
    predicted once by every model (eval mode, no gradients, no teacher forcing); the
    models' training modes are given back afterwards.
    """
    n, n_out, names = len(test), test.plan.n_out, list(named)
    errors = np.empty((len(names), 2, n, n_out))
    states = {key: model.training for key, model in named.items()}
    devices = {key: model_device(model) for key, model in named.items()}
    pos = 0
    try:
        for model in named.values():
            model.eval()
        with torch.no_grad():
            for xb, yb in test.to_torch(batch_size=batch_size, shuffle=False):
                k = len(xb)
                for m, key in enumerate(names):
                    pred = named[key](xb.to(devices[key]), n_out=n_out, targets=None,
                                      teacher_forcing=0.0)
                    check_output("evaluate", key, pred, yb)
                    diff = pred.detach().to("cpu", torch.float64) - yb.to(torch.float64)
                    errors[m, 0, pos:pos + k] = diff.square().mean(dim=(2, 3)).numpy()
                    errors[m, 1, pos:pos + k] = diff.abs().mean(dim=(2, 3)).numpy()
                pos += k
    finally:
        for key, model in named.items():
            model.train(states[key])
    if pos != n:  # the loader's contract; a silent shortfall would bias every figure
        raise RuntimeError(f"evaluate: {pos} samples were predicted out of {n}")
    return errors


def _table(errors: np.ndarray, names: list[str], n_boot: int, seed: int, ci: float) -> pd.DataFrame:
    """Point estimates and bootstrap intervals per model, metric and lead, as the output table."""
    n_models, _, n, n_out = errors.shape
    # columns: per model and metric, leads 1..n_out then the mean over leads
    per_sample = np.concatenate([errors, errors.mean(axis=3, keepdims=True)], axis=3)
    values = per_sample.transpose(2, 0, 1, 3).reshape(n, -1)
    point = values.mean(axis=0)
    if n_boot:
        boot = _bootstrap_means(values, n_boot, seed)
        low, high = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    else:
        low = high = np.full_like(point, np.nan)
    shape = (n_models, 2, n_out + 1)
    point, low, high = (a.reshape(shape) for a in (point, low, high))
    rows = []
    leads: list[int | str] = [*range(1, n_out + 1), "all"]
    for m, key in enumerate(names):
        for j, lead in enumerate(leads):
            rows.append({
                "model": key, "lead": lead,
                "mse": point[m, 0, j], "mse_low": low[m, 0, j], "mse_high": high[m, 0, j],
                "mae": point[m, 1, j], "mae_low": low[m, 1, j], "mae_high": high[m, 1, j],
                "n": n,
            })
    table = pd.DataFrame(rows)
    table.attrs.update(n_boot=n_boot, ci=ci, seed=seed)
    return table


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
) -> pd.DataFrame:
    """MSE and MAE of each model and of the naive baselines on the test samples, with intervals.

    Every test sample is predicted exactly once by every model (eval mode, no gradients,
    no teacher forcing). Per-sample errors (the mean over the patch's pixels, per lead
    time) are computed once; the overall figure of a model is their mean over samples
    and leads, which equals the pixel-wise MSE/MAE since every sample has as many pixels.
    Confidence intervals are percentile bootstrap intervals from resampling the test
    samples ``n_boot`` times, with the same resamples for every model and lead.

    Samples of overlapping patches are correlated, so the intervals are narrower than
    with independent samples; compare models on a spatial or temporal split with large
    strides when the intervals matter.

    Parameters
    ----------
    models
        ``{name: model}``, one model (named by its class), or ``None`` for the baselines
        alone. Models follow the forward interface of :func:`fit`.
    test
        The test samples.
    baselines
        Also score ``persistence`` (last input frame), ``seasonal_persistence`` (the same
        season one year earlier, when the inputs reach that far), ``climatology`` (mean
        of the inputs) and ``linear_trend`` from :mod:`xglacier.models`.
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
        the time axis (4 for quarterly composites, 12 for monthly), else 4.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, lead, mse, mse_low, mse_high, mae, mae_low, mae_high, n``: for
        each model, one row per lead time (1 .. n_out) then one with ``lead="all"``; ``n``
        is the number of test samples.

    Examples
    --------
    >>> import numpy as np, pandas as pd, torch, xarray as xr, xglacier
    >>> cube = xr.DataArray(np.arange(6.0, dtype="f4")[:, None, None] * np.ones((6, 4, 4), "f4"),
    ...     dims=("time", "y", "x"), coords={"time": pd.date_range("2020", periods=6, freq="3MS")})
    >>> ps = xglacier.patches(cube, size=4, stride=4, n_in=2, n_out=2)
    >>> class Last(torch.nn.Module):
    ...     def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
    ...         return x[:, -1:].expand(-1, n_out, -1, -1)
    >>> table = evaluate({"last": Last()}, ps, baselines=False, n_boot=100)
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
    check_patchset("evaluate", "test", test)
    if baselines:
        extra = _baselines(test, period)
        clash = sorted(set(extra) & set(named))
        if clash:
            raise ParameterError(f"evaluate: model names {clash} are baseline names; rename them "
                                 "or pass baselines=False")
        named.update(extra)
    if not named:
        raise ParameterError("evaluate: no model to score (models is empty and baselines=False)")
    for key, model in named.items():
        check_compatible("evaluate", key, model, test, "test")
    return _table(_sample_errors(named, test, batch_size), list(named), n_boot, seed, ci)
