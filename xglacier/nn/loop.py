"""The one training loop of xglacier, with seeding and device helpers.

Forecasting (:func:`xglacier.fit`) and segmentation (:func:`xglacier.fit_segmentation`)
differ in what a batch is and what the loss is; they hand those in as callables and
share everything else: seeded shuffling, divergence checks, gradient clipping, early
stopping with the best weights restored, the progress bar and the history table.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .._validate import check_int, check_number
from ..errors import TrainingDivergedError

__all__ = ["check_fit_options", "model_device", "seeded", "train_epochs"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch, NumPy and ``random`` inside the block and restore their states after.

    Models may draw teacher-forcing coins or dropout masks from any of them; restoring
    the states keeps ``fit`` from changing the caller's random streams.
    """
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)  # noqa: NPY002  (legacy global stream: models may use it)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def check_fit_options(func: str, *, epochs: Any, batch_size: Any, lr: Any, patience: Any, clip: Any,
                      seed: Any) -> None:
    """Check the keywords every ``fit`` hands to :func:`train_epochs`, naming ``func`` in errors.

    Called before a ``fit`` changes anything (statistics, patch size), so that a bad
    keyword leaves the model as it was.

    Examples
    --------
    >>> check_fit_options("fit", epochs=10, batch_size=8, lr=1e-3, patience=None, clip=None, seed=0)
    >>> check_fit_options("fit", epochs=True, batch_size=8, lr=1e-3, patience=None, clip=None, seed=0)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: fit: epochs=True; expected an integer >= 1
    """
    check_int(func, "epochs", epochs, low=1)
    check_int(func, "batch_size", batch_size, low=1)
    check_number(func, "lr", lr, low=0, low_open=True)
    check_int(func, "patience", patience, low=1, allow_none=True)
    check_number(func, "clip", clip, low=0, low_open=True, allow_none=True)
    check_int(func, "seed", seed, low=0)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (the GPU keeps room for training)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_epochs(
    func: str,
    model: nn.Module,
    params: list[torch.nn.Parameter],
    *,
    setup: Callable[[], tuple[torch.optim.Optimizer, Any]],
    step: Callable[[Any], tuple[torch.Tensor, torch.Tensor, int]],
    val_loss: Callable[[], float] | None,
    epochs: int,
    patience: int | None,
    clip: float | None,
    seed: int,
    progress: bool,
    loss_label: str,
    hint: str,
    lr_factor: Callable[[int, int], float] | None = None,
    validate_start: bool = False,
) -> pd.DataFrame:
    """The training loop shared by every ``fit`` of xglacier (forecasting, segmentation).

    Inside :func:`seeded` it calls ``setup()`` for the optimizer and the training
    loader (a re-iterable whose batches come in a new seeded order every epoch), then
    for each epoch and batch: ``step(batch) -> (objective, reported, n)`` (the tensor to
    minimise, the loss to report, the batch's sample count), a divergence check,
    backward, gradient clipping, an optimizer step and the tqdm bar. After each epoch
    ``val_loss()`` (which must put the model in eval mode) gives the validation loss;
    early stopping after ``patience`` epochs without improvement, restoring the best
    weights (also when training diverges). Returns the history DataFrame of ``fit``.

    ``lr_factor(step, total)``, when given, scales every parameter group's initial learning
    rate before optimizer step ``step`` (from 0) of ``total = epochs * batches`` (a warm-up
    and decay schedule); without it the optimizer's rates are left alone.
    ``validate_start=True`` computes the validation loss of the weights before training too
    (``attrs["start_val_loss"]``): if no epoch beats it, those weights are restored and
    ``best_epoch`` is 0 (no row is ``best``); a model that starts from a good forecast (a
    residual model starts from its reference) then never ends worse on the validation set.
    """
    name = type(model).__name__
    device = model_device(model)
    rows: list[dict[str, Any]] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    stopped_early = False
    was_training = model.training

    def restored() -> str:
        if best_state is None:
            return ""
        model.load_state_dict(best_state)
        return f" (weights of epoch {best_epoch} restored)"

    with seeded(seed, device):
        optimizer, loader = setup()
        start_val = math.nan
        if validate_start and val_loss is not None:
            start_val = val_loss()
            if math.isfinite(start_val):
                best_loss, best_state = start_val, _cpu_state(model)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        total_steps, n_step = epochs * len(loader), 0
        bar = tqdm(total=epochs * len(loader), disable=not progress, unit="batch",
                   desc=f"{func} {name}", dynamic_ncols=True)
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                model.train()
                total, count = 0.0, 0
                for batch in loader:
                    optimizer.zero_grad(set_to_none=True)
                    objective, reported, n = step(batch)
                    value = float(objective.detach())
                    if not math.isfinite(value):
                        raise TrainingDivergedError(
                            f"{func}: the {loss_label} loss of model {name!r} became {value} in epoch "
                            f"{epoch}; {hint}" + restored())
                    objective.backward()
                    if clip is not None:
                        nn.utils.clip_grad_norm_(params, clip)
                    if lr_factor is not None:
                        factor = lr_factor(n_step, total_steps)
                        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                            group["lr"] = base * factor
                    n_step += 1
                    optimizer.step()
                    total += float(reported.detach()) * n
                    count += n
                    bar.update()
                    bar.set_postfix(epoch=epoch, loss=f"{total / count:.4g}", refresh=False)
                train_loss = total / count
                val = val_loss() if val_loss is not None else math.nan
                if val_loss is not None and not math.isfinite(val):
                    raise TrainingDivergedError(
                        f"{func}: the validation loss of model {name!r} is {val} after epoch "
                        f"{epoch}; check the validation samples; {hint}" + restored())
                if val_loss is None or val < best_loss:
                    best_loss, best_epoch = val, epoch
                    if val_loss is not None:
                        best_state = _cpu_state(model)
                rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val,
                             "lr": optimizer.param_groups[0]["lr"],
                             "seconds": time.perf_counter() - start})
                if val_loss is not None:
                    bar.set_postfix(epoch=epoch, loss=f"{train_loss:.4g}", val=f"{val:.4g}")
                if patience is not None and val_loss is not None and epoch - best_epoch >= patience:
                    stopped_early = epoch < epochs
                    break
        finally:
            bar.close()
            model.train(was_training)
    if best_state is not None:
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "lr", "seconds"])
    history["best"] = history["epoch"] == best_epoch
    history.attrs.update(best_epoch=best_epoch, stopped_early=stopped_early)
    if validate_start:
        history.attrs["start_val_loss"] = start_val
    return history
