"""Training of forecasting models on :class:`~xglacier.PatchSet` samples.

:func:`fit` trains a model with AdamW, gradient clipping, teacher forcing and early
stopping on the validation loss (the paper's Table 1 recipe); :func:`evaluate` (in
:mod:`xglacier.forecasting.evaluate`, re-exported here) scores models beside the naive
baselines with bootstrap confidence intervals, so that a skill claim can be checked.

Typical use (slow, not run as a doctest)::

    train, val, test = ndsi.glacier.patches(size=50, stride=10).split(by="time")
    model = xglacier.models.SALSTM(preset="small")
    history = fit(model, train, val, epochs=40)
    table = evaluate({"SA-LSTM-H": model}, test)
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from .._validate import check_choice, check_flag, check_number
from ..errors import InputError, ParameterError, TrainingDivergedError
from ..nn.loop import check_fit_options, model_device, train_epochs
from .checks import check_compatible, check_output, check_patchset
from .evaluate import evaluate
from .patches import PatchSet

__all__ = ["TrainingDivergedError", "evaluate", "fit"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOSSES: dict[str, LossFn] = {
    "mse": nn.functional.mse_loss,
    "mae": nn.functional.l1_loss,
}


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
            check_output("fit", type(model).__name__, pred, yb)
            total += float(loss_fn(pred, yb)) * len(xb)
            count += len(xb)
    return total / count


def fit(
    model: nn.Module,
    train: PatchSet,
    val: PatchSet | None = None,
    *,
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

    ``model``, ``train`` and ``val`` are positional; every other option is keyword-only.

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
    check_fit_options("fit", epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clip=clip,
                      seed=seed)
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)
    patience = None if patience is None else int(patience)
    check_number("fit", "weight_decay", weight_decay, low=0)
    check_number("fit", "teacher_forcing", teacher_forcing, low=0, high=1)
    check_flag("fit", "progress", progress)
    # a callable is the loss itself; otherwise one of the named losses
    loss_fn = loss if callable(loss) else _LOSSES[check_choice("fit", "loss", loss, sorted(_LOSSES))]
    check_patchset("fit", "train", train)
    check_patchset("fit", "val", val, allow_none=True)
    check_compatible("fit", name, model, train, "train")
    if val is not None:
        check_compatible("fit", name, model, val, "val")
        if (val.plan.size, val.plan.n_in, val.plan.n_out) != (train.plan.size, train.plan.n_in,
                                                               train.plan.n_out):
            raise InputError("fit: val samples differ from train samples in size, n_in or n_out")

    device = model_device(model)
    n_out = train.plan.n_out
    loss_label = loss if isinstance(loss, str) else "training"

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        xb, yb = (t.to(device) for t in batch)
        pred = model(xb, n_out=n_out, targets=yb, teacher_forcing=teacher_forcing)
        check_output("fit", name, pred, yb)
        batch_loss = loss_fn(pred, yb)
        return batch_loss, batch_loss, len(xb)

    return train_epochs(
        "fit", model, params,
        setup=lambda: (torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
                       train.to_torch(batch_size=batch_size, shuffle=True, seed=seed)),
        step=step,
        val_loss=None if val is None else (
            lambda: _mean_loss(model, val, loss_fn, batch_size, device, n_out)),
        epochs=epochs, patience=patience, clip=clip, seed=seed, progress=progress,
        loss_label=loss_label, hint=f"lower lr={lr}, set clip, or check the samples for extreme values",
    )
