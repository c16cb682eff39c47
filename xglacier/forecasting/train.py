"""Training and honest evaluation of forecasting models on :class:`~xglacier.PatchSet` samples.

:func:`fit` trains a model with AdamW, gradient clipping, teacher forcing and early
stopping on the validation loss (the paper's Table 1 recipe); :func:`evaluate` scores
models beside the naive baselines (persistence, seasonal persistence, climatology,
linear trend) with bootstrap confidence intervals, so that a skill claim can be checked.

Typical use (slow, not run as a doctest)::

    train, val, test = ndsi.glacier.patches(size=50, stride=10).split(by="time")
    model = xglacier.models.SALSTM(preset="small")
    history = fit(model, train, val, epochs=40)
    table = evaluate({"SA-LSTM-H": model}, test)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_number, check_samples
from ..errors import InputError, ParameterError, TrainingDivergedError
from ..nn.loop import model_device, train_epochs
from .patches import PatchSet

__all__ = ["TrainingDivergedError", "evaluate", "fit"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOSSES: dict[str, LossFn] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
}


# -- checks ---------------------------------------------------------------------------------


def _check_patchset(func: str, label: str, ps: Any, allow_none: bool = False) -> None:
    check_samples(func, label, ps, PatchSet, "a PatchSet (xglacier.patches(...) or its .split())",
                   allow_none)


def _check_compatible(func: str, name: str, model: nn.Module, ps: PatchSet, label: str) -> None:
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


def _check_output(func: str, name: str, pred: Any, target: torch.Tensor) -> None:
    if not isinstance(pred, torch.Tensor) or pred.shape != target.shape:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise InputError(f"{func}: model {name!r} returned {shape}; expected a tensor of shape "
                         f"{tuple(target.shape)} (batch, n_out, size, size)")


# -- fit ------------------------------------------------------------------------------------


def _mean_loss(model: nn.Module, ps: PatchSet, loss_fn: LossFn, batch_size: int,
               device: torch.device, n_out: int) -> float:
    """Sample-weighted mean loss over a PatchSet, in eval mode, without teacher forcing."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for xb, yb in ps.to_torch(batch_size=batch_size, shuffle=False):
            xb, yb = xb.to(device), yb.to(device)
            pred = model(xb, n_out=n_out, targets=None, teacher_forcing=0.0)
            _check_output("fit", type(model).__name__, pred, yb)
            total += float(loss_fn(pred, yb)) * len(xb)
            count += len(xb)
    return total / count


def fit(
    model: nn.Module,
    train: PatchSet,
    val: PatchSet | None = None,
    epochs: int = 40,
    batch_size: int = 100,
    lr: float = 1e-4,
    weight_decay: float = 1e-3,
    teacher_forcing: float = 0.5,
    patience: int | None = 5,
    clip: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
    loss: str | LossFn = "mse",
) -> pd.DataFrame:
    """Train ``model`` in place on the samples of ``train``; return the training history.

    Each epoch visits every training sample once in a seeded random order, with AdamW,
    gradient-norm clipping and teacher forcing (at each recursive step the model is fed
    the true frame instead of its prediction with probability ``teacher_forcing``; this
    happens in training only). With ``val``, the loss on the validation samples (eval
    mode: no dropout, no teacher forcing) is computed after every epoch; training stops
    when it has not improved for ``patience`` epochs, and the weights of the best epoch
    are restored.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` with ``forward(x, n_out=None, targets=None,
        teacher_forcing=0.0)`` mapping ``(B, n_in, P, P)`` to ``(B, n_out, P, P)``, with
        trainable parameters. Its ``patch_size``, ``n_in`` and ``n_out`` attributes (when
        present) must be those of the PatchSets. Trained on the device it is on.
    train, val
        Training and validation samples (see ``PatchSet.split``); ``val=None`` trains all
        ``epochs`` without early stopping and keeps the final weights.
    epochs
        Maximum number of passes over ``train``.
    batch_size, lr, weight_decay
        Mini-batch size and AdamW settings (the paper: 100, 1e-4, 1e-3).
    teacher_forcing
        Probability in [0, 1] passed to ``forward`` during training.
    patience
        Epochs without a lower validation loss before stopping; ``None`` never stops
        early (the best weights are still restored).
    clip
        Maximum gradient norm; ``None`` disables clipping.
    seed
        Seeds the shuffling, the weights' random draws (dropout, teacher forcing) and the
        global torch/NumPy/``random`` streams during the fit; their previous states are
        restored afterwards. The same seed on the same model and data gives the same
        weights (on CPU).
    progress
        Show a tqdm progress bar over the batches.
    loss
        ``"mse"`` (the paper), ``"mae"``, or a callable ``loss(pred, target) -> scalar``.

    Returns
    -------
    pandas.DataFrame
        One row per epoch run: ``epoch`` (from 1), ``train_loss`` (mean over the training
        samples, in training mode), ``val_loss`` (NaN without ``val``), ``lr``,
        ``seconds`` and ``best`` (True on the epoch whose weights the model holds now).
        ``attrs`` hold ``best_epoch`` and ``stopped_early``.

    Raises
    ------
    ParameterError
        A bad keyword value, or a model without trainable parameters (a baseline).
    InputError
        The model's patch size or frame counts differ from the samples', or its output
        has the wrong shape.
    TrainingDivergedError
        The training or validation loss became NaN or infinite (lower ``lr``, check the
        inputs); the weights of the best epoch so far are restored first.

    Examples
    --------
    >>> import numpy as np, pandas as pd, torch, xarray as xr, xglacier
    >>> cube = xr.DataArray(np.random.default_rng(0).random((8, 8, 8), dtype="f4"),
    ...     dims=("time", "y", "x"), coords={"time": pd.date_range("2020", periods=8, freq="3MS")})
    >>> train, val, _ = xglacier.patches(cube, size=4, stride=4, n_in=2, n_out=1).split(test=0.2, val=0.2)
    >>> class Last(torch.nn.Module):  # scaled last frame: one trainable weight
    ...     patch_size, n_in, n_out = 4, 2, 1
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = torch.nn.Parameter(torch.zeros(()))
    ...     def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
    ...         return self.w * x[:, -1:]
    >>> history = fit(Last(), train, val, epochs=3, lr=0.1, progress=False)
    >>> history.columns.tolist()
    ['epoch', 'train_loss', 'val_loss', 'lr', 'seconds', 'best']
    >>> bool(history.train_loss.iloc[-1] < history.train_loss.iloc[0])
    True
    """
    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise ParameterError(f"fit: model is a {name}; expected a torch.nn.Module")
    params = [p for p in model.parameters() if p.requires_grad]
    if getattr(model, "trainable", True) is False or not params:
        raise ParameterError(
            f"fit: model {name!r} has no trainable parameters (a baseline?); nothing to fit, "
            "pass it to evaluate() as it is"
        )
    check_number("fit", "epochs", epochs, low=1, integer=True)
    check_number("fit", "batch_size", batch_size, low=1, integer=True)
    check_number("fit", "lr", lr, low=0, low_open=True)
    check_number("fit", "weight_decay", weight_decay, low=0)
    check_number("fit", "teacher_forcing", teacher_forcing, low=0, high=1)
    if patience is not None:
        check_number("fit", "patience", patience, low=1, integer=True)
    if clip is not None:
        check_number("fit", "clip", clip, low=0, low_open=True)
    check_number("fit", "seed", seed, low=0, integer=True)
    if callable(loss):
        loss_fn = loss
    elif loss in _LOSSES:
        loss_fn = _LOSSES[loss]
    else:
        raise ParameterError(f"fit: loss={loss!r}; expected one of {sorted(_LOSSES)} or a callable")
    _check_patchset("fit", "train", train)
    _check_patchset("fit", "val", val, allow_none=True)
    _check_compatible("fit", name, model, train, "train")
    if val is not None:
        _check_compatible("fit", name, model, val, "val")
        if (val.plan.size, val.plan.n_in, val.plan.n_out) != (train.plan.size, train.plan.n_in,
                                                               train.plan.n_out):
            raise InputError("fit: val samples differ from train samples in size, n_in or n_out")

    device = model_device(model)
    n_out = train.plan.n_out
    loss_label = loss if isinstance(loss, str) else "training"

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        xb, yb = (t.to(device) for t in batch)
        pred = model(xb, n_out=n_out, targets=yb, teacher_forcing=teacher_forcing)
        _check_output("fit", name, pred, yb)
        batch_loss = loss_fn(pred, yb)
        return batch_loss, batch_loss, len(xb)

    return train_epochs(
        "fit", model, params,
        setup=lambda: (torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
                       train.to_torch(batch_size=batch_size, shuffle=True, seed=int(seed))),
        step=step,
        val_loss=None if val is None else (
            lambda: _mean_loss(model, val, loss_fn, batch_size, device, n_out)),
        epochs=epochs, patience=patience, clip=clip, seed=int(seed), progress=progress,
        loss_label=loss_label, hint=f"lower lr={lr}, set clip, or check the samples for extreme values",
    )


# -- evaluate -------------------------------------------------------------------------------


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


def evaluate(
    models: Mapping[str, nn.Module] | nn.Module | None,
    test: PatchSet,
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
    check_number("evaluate", "n_boot", n_boot, low=0, integer=True)
    check_number("evaluate", "batch_size", batch_size, low=1, integer=True)
    check_number("evaluate", "seed", seed, low=0, integer=True)
    check_number("evaluate", "ci", ci, low=0, low_open=True)
    if ci >= 1:
        raise ParameterError(f"evaluate: ci={ci!r}; expected a confidence level between 0 and 1")
    if period is not None:
        check_number("evaluate", "period", period, low=1, integer=True)
    _check_patchset("evaluate", "test", test)
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
        _check_compatible("evaluate", key, model, test, "test")

    plan = test.plan
    n, n_out, names = len(test), plan.n_out, list(named)
    # per-sample, per-lead errors: (model, metric [se, ae], sample, lead), in float64
    errors = np.empty((len(names), 2, n, n_out))
    states = {key: model.training for key, model in named.items()}
    devices = {key: model_device(model) for key, model in named.items()}
    pos = 0
    try:
        for model in named.values():
            model.eval()
        with torch.no_grad():
            # one pass over the samples, every model on each batch: each sample is
            # gathered once and predicted once by every model
            for xb, yb in test.to_torch(batch_size=batch_size, shuffle=False):
                k = len(xb)
                for m, key in enumerate(names):
                    pred = named[key](xb.to(devices[key]), n_out=n_out, targets=None,
                                      teacher_forcing=0.0)
                    _check_output("evaluate", key, pred, yb)
                    diff = pred.detach().to("cpu", torch.float64) - yb.to(torch.float64)
                    errors[m, 0, pos:pos + k] = diff.square().mean(dim=(2, 3)).numpy()
                    errors[m, 1, pos:pos + k] = diff.abs().mean(dim=(2, 3)).numpy()
                pos += k
    finally:
        for key, model in named.items():
            model.train(states[key])
    if pos != n:  # the loader's contract; a silent shortfall would bias every figure
        raise RuntimeError(f"evaluate: {pos} samples were predicted out of {n}")

    # columns: per model and metric, leads 1..n_out then the mean over leads
    per_sample = np.concatenate([errors, errors.mean(axis=3, keepdims=True)], axis=3)
    values = per_sample.transpose(2, 0, 1, 3).reshape(n, -1)
    point = values.mean(axis=0)
    if n_boot:
        boot = _bootstrap_means(values, n_boot, seed)
        low, high = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    else:
        low = high = np.full_like(point, np.nan)
    shape = (len(names), 2, n_out + 1)
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
