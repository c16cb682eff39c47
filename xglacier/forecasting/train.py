"""Training of forecasting models on :class:`~xglacier.PatchSet` samples.

:func:`fit` trains a model with AdamW under a training recipe: ``recipe="default"`` (a
warm-up and cosine learning-rate schedule, gradient clipping, input normalisation stored
in the model, early stopping on a leak-free validation split; found by experiment on the
small presets, see docs/forecasting.md) or ``recipe="paper"`` (Müller et al. 2023, Table 2);
every setting can be overridden by its keyword. :func:`evaluate` (in
:mod:`xglacier.forecasting.evaluate`, re-exported here) scores models beside the naive
baselines with bootstrap confidence intervals, so that a skill claim can be checked.

Typical use (slow, not run as a doctest)::

    train, val, test = ndsi.glacier.patches(size=20, stride=10).split(by="time")
    model = xglacier.models.SALSTM(preset="small", residual="seasonal")
    history = fit(model, train, val)
    table = evaluate({"SA-LSTM-H": model}, test)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_choice, check_flag, check_int, check_number
from ..errors import InputError, ParameterError, TrainingDivergedError
from ..nn.batches import BatchLoader
from ..nn.loop import check_fit_options, model_device, train_epochs
from .checks import (
    check_compatible,
    check_observed_targets,
    check_output,
    check_patchset,
    check_period,
    model_extras,
    uses_climate,
    uses_gaps,
)
from .evaluate import _frames_per_year, evaluate
from .gaps import GapSource
from .patches import PatchSet

__all__ = ["RECIPES", "TrainingDivergedError", "evaluate", "fit", "lr_factor", "training_statistics"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOSSES: dict[str, LossFn] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
}


# -- recipes --------------------------------------------------------------------------------

#: The training recipes of :func:`fit`: ``"default"`` (found by experiment on the small
#: presets, 2 CPU cores; see docs/forecasting.md) and ``"paper"`` (Müller et al. 2023, Table 2).
RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(epochs=30, batch_size=32, lr=2e-3, weight_decay=1e-3, schedule="cosine",
                    warmup=0.05, teacher_forcing=0.0, patience=6, clip=1.0, augment=False,
                    normalize=True, gap_rate=0.25),
    "paper": dict(epochs=40, batch_size=100, lr=1e-4, weight_decay=1e-3, schedule="constant",
                  warmup=0.0, teacher_forcing=0.5, patience=5, clip=0.0, augment=False,
                  normalize=False, gap_rate=0.0),
}

SCHEDULES = ("cosine", "onecycle", "constant")


def lr_factor(schedule: str, warmup: float) -> Callable[[int, int], float]:
    """The learning-rate multiplier ``f(step, total)`` of a schedule with a linear warm-up.

    ``"cosine"``: linear warm-up over the first ``warmup`` fraction of the steps, then a
    cosine decay to 0 at the last step; ``"onecycle"``: the same warm-up, then a linear decay
    to 0; ``"constant"``: the warm-up, then 1.

    Examples
    --------
    >>> f = lr_factor("cosine", 0.1)  # 10 warm-up steps of 100, then 90 of decay
    >>> [round(f(s, 100), 3) for s in (0, 9, 10, 99)]
    [0.1, 1.0, 1.0, 0.0]
    >>> round(f(10 + 89 // 2, 100), 2)  # half-way through the decay (steps 10 .. 99)
    0.51
    """
    check_choice("fit", "schedule", schedule, SCHEDULES)
    check_number("fit", "warmup", warmup, low=0, high=1, high_open=True)

    def factor(step: int, total: int) -> float:
        n_warm = round(warmup * total)
        if step < n_warm:
            return (step + 1) / n_warm
        if schedule == "constant":
            return 1.0
        progress = (step - n_warm) / max(1, total - n_warm - 1)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return factor


def _resolve(recipe: str, given: dict[str, Any]) -> dict[str, Any]:
    """The recipe's settings, overridden by the keywords given (not None)."""
    out = dict(RECIPES[check_choice("fit", "recipe", recipe, sorted(RECIPES))])
    out.update({k: v for k, v in given.items() if v is not None})
    return out


def _augmented(xb: torch.Tensor, yb: torch.Tensor, more: dict[str, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One random turn by a multiple of 90 degrees and flip, the same for inputs, targets and
    the other per-pixel frames of ``more`` (the climate; the per-frame gap flags stay)."""
    k = int(torch.randint(0, 4, ()))
    flip = bool(torch.randint(0, 2, ()))

    def turn(t: torch.Tensor) -> torch.Tensor:
        t = torch.rot90(t, k, dims=(2, 3)) if k else t
        return torch.flip(t, dims=(3,)) if flip else t

    return turn(xb), turn(yb), {key: turn(v) if v.ndim == 4 else v for key, v in more.items()}


def training_statistics(ps: PatchSet, *, limit: int = 4096) -> tuple[float, float]:
    """Mean and standard deviation of the input frames of (at most ``limit``) samples of ``ps``.

    The samples are taken evenly over ``ps`` (all of them when there are fewer), so the
    cost is bounded on large sets. A constant input gets ``std = 1``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr, xglacier
    >>> cube = xr.DataArray(np.arange(2 * 4 * 4, dtype="f4").reshape(2, 4, 4), dims=("time", "y", "x"),
    ...     coords={"time": pd.date_range("2020", periods=2, freq="3MS")})
    >>> training_statistics(xglacier.patches(cube, size=4, stride=4, n_in=1, n_out=1))
    (7.5, 4.6097722286464435)
    """
    n = len(ps)
    if n == 0:
        raise InputError("fit: no training samples; statistics need training samples")
    index = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
    total, square, count = 0.0, 0.0, 0
    for start in range(0, index.size, 256):
        x, _ = ps.gather(index[start:start + 256])
        x = x.astype(np.float64)
        total += float(x.sum())
        square += float(np.square(x).sum())
        count += x.size
    mean = total / count
    std = math.sqrt(max(square / count - mean * mean, 0.0))
    return mean, std if std > 1e-12 else 1.0


# -- fit ------------------------------------------------------------------------------------


def _source(model: nn.Module, ps: PatchSet, gap_rate: float, seed: int) -> PatchSet | GapSource:
    """What ``model`` is fed: the samples, with their gaps (and ``gap_rate`` hidden frames) for a
    model that reads gaps, and the targets' season means for one that reads the climate."""
    climate = uses_climate(model)
    if not (uses_gaps(model) or climate):
        return ps
    return GapSource(ps, rate=gap_rate if uses_gaps(model) else 0.0, seed=seed, climate=climate,
                     period=getattr(model, "period", 4))


def _mean_loss(model: nn.Module, ps: PatchSet, loss_fn: LossFn, batch_size: int,
               device: torch.device, n_out: int, gap_rate: float = 0.0, seed: int = 0) -> float:
    """Sample-weighted mean loss over a PatchSet, in eval mode, without teacher forcing.

    A model that reads gaps gets the PatchSet's own and, at ``gap_rate``, hidden frames: the
    same ones at every call (a fresh source with the same seed).
    """
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in BatchLoader(_source(model, ps, gap_rate, seed), batch_size=batch_size, shuffle=False):
            xb, yb = batch[0].to(device), batch[1].to(device)
            more = model_extras(model, batch, device)
            pred = model(xb, n_out=n_out, targets=None, teacher_forcing=0.0, **more)
            check_output("fit", type(model).__name__, pred, yb)
            total += float(loss_fn(pred, yb)) * len(xb)
            count += len(xb)
    return total / count


def fit(
    model: nn.Module,
    train: PatchSet,
    val: PatchSet | None = None,
    *,
    recipe: str = "default",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    schedule: str | None = None,
    warmup: float | None = None,
    teacher_forcing: float | None = None,
    patience: int | None = None,
    clip: float | None = None,
    augment: bool | None = None,
    normalize: bool | None = None,
    gap_rate: float | None = None,
    seed: int = 0,
    progress: bool = True,
    loss: str | LossFn = "mse",
) -> pd.DataFrame:
    """Train ``model`` in place on the samples of ``train``; return the training history.

    Each epoch visits every training sample once in a seeded random order, with AdamW,
    a learning-rate schedule, gradient-norm clipping and teacher forcing (at each recursive
    step the model is fed the true frame instead of its prediction with probability
    ``teacher_forcing``; in training only). With ``val``, the loss on the validation
    samples (eval mode: no dropout, no teacher forcing) is computed before training and
    after every epoch; training stops when it has not improved for ``patience`` epochs, and
    the weights of the best epoch are restored (the initial weights when no epoch beat
    them: a residual model, which starts from its reference forecast, never ends worse on
    the validation samples than that reference). Take ``train`` and ``val`` from
    ``PatchSet.split(by="time")``: no training window reaches a validation target frame.
    A model with ``residual="history"`` is given each sample's climate (its targets' season
    means over every year before them, :mod:`xglacier.forecasting.history`) with the frames.

    Every option left at ``None`` comes from ``recipe``:

    ===================  =========  ==========  ============================================
    option               "default"  "paper"     meaning
    ===================  =========  ==========  ============================================
    ``epochs``           30         40          maximum passes over ``train``
    ``batch_size``       32         100         samples per optimizer step
    ``lr``               2e-3       1e-4        peak AdamW learning rate
    ``weight_decay``     1e-3       1e-3        AdamW weight decay
    ``schedule``         "cosine"   "constant"  ``"cosine"``, ``"onecycle"``, ``"constant"``
                                                (see :func:`lr_factor`)
    ``warmup``           0.05       0           fraction of the steps of linear warm-up
    ``teacher_forcing``  0          0.5         probability in [0, 1]
    ``patience``         6          5           epochs without a lower validation loss
    ``clip``             1.0        off         maximum gradient norm
    ``augment``          False      False       random 90-degree turns and flips
    ``normalize``        True       False       set input statistics from ``train``
    ``gap_rate``         0.25       0           share of training samples with one input
                                                frame hidden (models with ``gaps``)
    ===================  =========  ==========  ============================================

    ``"default"`` was found by experiment on the small presets on 2 CPU cores (the numbers
    are in docs/forecasting.md); ``"paper"`` is Table 2 of Müller et al. (2023), which
    names no schedule, clipping or normalisation (dropout is the model's own setting).
    Pass ``patience=0`` never to stop early (the best weights are still restored) and
    ``clip=0`` not to clip.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` with ``forward(x, n_out=None, targets=None,
        teacher_forcing=0.0)`` mapping ``(B, n_in, P, P)`` to ``(B, n_out, P, P)``, with
        trainable parameters. Its ``patch_size``, ``n_in`` and ``n_out`` attributes (when
        present) must be those of the PatchSets. Trained on the device it is on.
    train, val
        Training and validation samples; ``val=None`` trains all ``epochs`` without early
        stopping and keeps the final weights.
    recipe
        ``"default"`` or ``"paper"``: the settings of the options left at ``None``.
    epochs, batch_size, lr, weight_decay, schedule, warmup, teacher_forcing, patience, clip
        See the table.
    augment
        Turn and flip the training patches at random (inputs and targets alike). Off by
        default: glacier flow, terminus retreat and hill shade have a direction on the
        ground, and a turned patch shows a glacier flowing or lit the wrong way.
    normalize
        Set the model's input statistics (``model.set_statistics(mean, std)`` of
        :func:`training_statistics` on ``train``), kept in its ``config`` and so in its
        checkpoint. ``True`` needs a model with ``set_statistics`` (every learned
        :mod:`xglacier.models` model; the recipe's ``True`` skips other models); ``False``
        keeps the model's own.
    gap_rate
        For models that read missing-frame flags (``gaps=True``, an option of the
        :mod:`xglacier.models` models): in this share of the training samples, one input frame
        drawn at random (not the last) is hidden as a missing quarter is: replaced by the
        linear interpolation in time of its neighbours, as ``composite`` fills an empty
        period, and flagged (:class:`~xglacier.forecasting.gaps.GapSource`); the data's own
        gaps (``PatchSet.input_gaps``) are flagged too. The validation samples get the same
        share of hidden frames (the same ones at every epoch), so that early stopping weighs
        how the model handles a missing quarter, which a validation split of a few windows
        rarely holds. Without it the
        model never meets a missing quarter in training, since ``patches`` drops the windows
        whose *target* is missing, and it carries the interpolation of a gap forward as if
        observed (docs/forecasting.md measures what that costs). Other models ignore it.
    seed
        Seeds the shuffling, the augmentation, the weights' random draws (dropout, teacher
        forcing) and the global torch/NumPy/``random`` streams during the fit; their
        previous states are restored afterwards. The same seed on the same model and data
        gives the same weights (on CPU).
    progress
        Show a tqdm progress bar over the batches.
    loss
        ``"mse"`` (the paper), ``"mae"``, or a callable ``loss(pred, target) -> scalar``.

    ``model``, ``train`` and ``val`` are positional; every other option is keyword-only.

    Returns
    -------
    pandas.DataFrame
        One row per epoch run: ``epoch`` (from 1), ``train_loss`` (mean over the training
        samples, in training mode), ``val_loss`` (NaN without ``val``), ``lr`` (the rate of
        the epoch's last step), ``seconds`` and ``best`` (True on the epoch whose weights the
        model holds now). ``attrs`` hold ``best_epoch`` (0: the initial weights were kept),
        ``stopped_early``, ``start_val_loss`` (before training; NaN without ``val``) and
        ``recipe`` (the settings used).

    Raises
    ------
    ParameterError
        A bad keyword value, or a model without trainable parameters (a baseline).
    InputError
        The model's patch size or frame counts differ from the samples', its output has the
        wrong shape, its seasonal residual period differs from the samples' frames per year, or
        a training or validation target pixel was NaN and ``nan="fill"`` invented it.
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
    opt = _resolve(recipe, dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
        warmup=warmup, teacher_forcing=teacher_forcing, patience=patience, clip=clip, augment=augment,
        normalize=normalize, gap_rate=gap_rate))
    factor = _check_options(opt, seed, progress)
    loss_fn = loss if callable(loss) else _LOSSES[check_choice("fit", "loss", loss, sorted(_LOSSES))]
    _check_data(model, train, val)
    if opt["normalize"] and not hasattr(model, "set_statistics"):
        if normalize:  # asked for by name; the recipe's default skips models without statistics
            raise ParameterError(f"fit: normalize=True but model {name!r} has no set_statistics(mean, "
                                 "std); pass normalize=False")
        opt["normalize"] = False
    if opt["normalize"]:
        model.set_statistics(*training_statistics(train))

    device = model_device(model)
    n_out, tf, augment = train.plan.n_out, opt["teacher_forcing"], opt["augment"]
    lr, wd, batch_size = opt["lr"], opt["weight_decay"], opt["batch_size"]
    gap_rate = float(opt["gap_rate"])

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, int]:
        xb, yb = batch[0].to(device), batch[1].to(device)
        more = model_extras(model, batch, device)
        if augment:
            xb, yb, more = _augmented(xb, yb, more)
        pred = model(xb, n_out=n_out, targets=yb, teacher_forcing=tf, **more)
        check_output("fit", name, pred, yb)
        batch_loss = loss_fn(pred, yb)
        return batch_loss, batch_loss, len(xb)

    history = train_epochs(
        "fit", model, params,
        setup=lambda: (torch.optim.AdamW(params, lr=lr, weight_decay=wd),
                       BatchLoader(_source(model, train, gap_rate, seed), batch_size=batch_size,
                                   shuffle=True, seed=seed)),
        step=step,
        val_loss=None if val is None else (
            lambda: _mean_loss(model, val, loss_fn, batch_size, device, n_out, gap_rate, seed + 1)),
        epochs=opt["epochs"], patience=opt["patience"] or None, clip=opt["clip"] or None, seed=seed,
        progress=progress, loss_label=loss if isinstance(loss, str) else "training",
        hint=f"lower lr={lr}, set clip, or check the samples for extreme values", lr_factor=factor,
        validate_start=True,
    )
    history.attrs["recipe"] = {"recipe": recipe, **opt}
    return history


def _check_options(opt: dict[str, Any], seed: Any, progress: Any) -> Callable[[int, int], float] | None:
    """Check the resolved options (and convert them in place); the learning-rate schedule."""
    # 0 switches early stopping or clipping off (None means "the recipe's")
    check_int("fit", "patience", opt["patience"], low=0)
    check_number("fit", "clip", opt["clip"], low=0)
    check_fit_options("fit", epochs=opt["epochs"], batch_size=opt["batch_size"], lr=opt["lr"],
                      patience=opt["patience"] or None, clip=opt["clip"] or None, seed=seed)
    for key in ("epochs", "batch_size", "patience"):
        opt[key] = int(opt[key])
    check_number("fit", "weight_decay", opt["weight_decay"], low=0)
    check_number("fit", "teacher_forcing", opt["teacher_forcing"], low=0, high=1)
    check_number("fit", "gap_rate", opt["gap_rate"], low=0, high=1)
    check_flag("fit", "augment", opt["augment"])
    check_flag("fit", "normalize", opt["normalize"])
    check_flag("fit", "progress", progress)
    factor = lr_factor(opt["schedule"], opt["warmup"])
    return None if opt["schedule"] == "constant" and opt["warmup"] == 0 else factor


def _check_data(model: nn.Module, train: PatchSet, val: PatchSet | None) -> None:
    name = type(model).__name__
    check_patchset("fit", "train", train)
    check_patchset("fit", "val", val, allow_none=True)
    check_compatible("fit", name, model, train, "train")
    if val is not None:
        check_compatible("fit", name, model, val, "val")
        if (val.plan.size, val.plan.n_in, val.plan.n_out) != (train.plan.size, train.plan.n_in,
                                                               train.plan.n_out):
            raise InputError("fit: val samples differ from train samples in size, n_in or n_out")
    check_period("fit", name, model, _frames_per_year(train), "the samples have")
    for label, ps in (("train", train), ("val", val)):
        if ps is not None:
            check_observed_targets("fit", label, ps, "a model trained or selected on them learns invented "
                                   "values")
