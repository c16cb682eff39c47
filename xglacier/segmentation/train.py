"""Training a segmentation model on :class:`~xglacier.segmentation.tiles.SegmentationTiles`.

:func:`fit_segmentation` is the paper's recipe — Adam with learning rate 1e-4, the Dice
loss, an L1 weight penalty of 5e-4 added to it — run by the same loop as the
forecasting :func:`xglacier.fit` (seeding, tqdm bar, divergence check, early stopping on
the validation loss with the best weights restored, the same history table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from .._validate import check_choice, check_number, check_samples
from ..errors import InputError, ParameterError
from ..nn.loop import check_fit_options, model_device, train_epochs
from .losses import LOSSES, l1_penalty, segmentation_loss
from .models.base import SegmentationModel
from .models.unet import CombinedBinary
from .tiles import SegmentationTiles

__all__ = ["fit_segmentation"]


def _check_tiles(label: str, tiles: Any, model: SegmentationModel, allow_none: bool = False) -> None:
    check_samples("fit_segmentation", label, tiles, SegmentationTiles,
                   "SegmentationTiles (segmentation_tiles(...) or its .split())", allow_none)
    if tiles is None:
        return
    model.check_channels(tiles.channels, where=f"{label} tiles")
    if tuple(tiles.classes) != tuple(model.classes):
        raise InputError(f"fit_segmentation: {label} tiles have classes {list(tiles.classes)}; the model "
                         f"predicts {list(model.classes)} (relabel the tiles with .binary(...) or "
                         ".relabel(...), or build the model with the tiles' classes)")


def fit_segmentation(
    model: SegmentationModel,
    train: SegmentationTiles,
    val: SegmentationTiles | None = None,
    *,
    epochs: int = 50,
    batch_size: int = 8,
    lr: float = 1e-4,
    l1: float = 5e-4,
    loss: str = "dice",
    class_weights: Sequence[float] | str | None = None,
    smooth: float = 1.0,
    patience: int | None = 10,
    clip: float | None = None,
    augment: bool = True,
    statistics: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Train a segmentation model in place on training tiles; return the training history.

    Before training, the per-channel mean and standard deviation of the *training* tiles
    (NaN ignored) are set on the model (``statistics=True``) together with the tile
    size, so that they travel in its checkpoint; inputs are normalised with them and NaN
    becomes 0 after normalisation. Each epoch visits every training tile once in a seeded
    random order (turned and flipped at random with ``augment``), minimising the loss
    plus ``l1 * sum(|w|)`` over the convolution weights with Adam. With ``val``, the loss
    on the validation tiles (eval mode: no dropout, no augmentation, no penalty) is
    computed after every epoch; training stops when it has not improved for
    ``patience`` epochs, and the weights of the best epoch are restored.

    Parameters
    ----------
    model
        A :class:`~xglacier.segmentation.models.SegmentationModel` (e.g.
        :class:`~xglacier.models.UNet`) with the tiles' channels (same order) and classes.
        A :class:`~xglacier.models.CombinedBinary` is trained part by part instead.
    train, val
        Tiles from :func:`~xglacier.segmentation.tiles.segmentation_tiles` (``split()``);
        ``val=None`` trains all ``epochs`` and keeps the final weights.
    epochs, batch_size
        Maximum passes over ``train``; tiles per batch.
    lr
        Adam learning rate (the paper: 1e-4).
    l1
        Weight of the L1 penalty added to the loss (the paper: 5e-4; 0 disables it).
    loss
        ``"dice"`` (the paper), ``"ce"`` or ``"dice+ce"``; see
        :func:`~xglacier.segmentation.losses.segmentation_loss`.
    class_weights
        ``None``, ``"generalised"`` (Dice only) or one weight per class.
    smooth
        Dice smoothing.
    patience
        Epochs without a lower validation loss before stopping; ``None`` never stops early.
    clip
        Maximum gradient norm; ``None`` (default) disables clipping.
    augment
        Random 90-degree turns and flips of the training tiles.
    statistics
        Compute the normalisation statistics on ``train`` and set them on the model;
        ``False`` keeps the model's (fine-tuning).
    seed
        Seeds the order, the augmentation, dropout and the global random streams (restored
        afterwards): the same seed on the same model and tiles gives the same weights.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        As :func:`xglacier.fit`: ``epoch, train_loss, val_loss, lr, seconds, best``, with
        ``attrs`` ``best_epoch`` and ``stopped_early``. ``train_loss`` is the loss
        without the penalty (comparable to ``val_loss``); ``attrs["l1_penalty"]`` holds
        the penalty of the final weights.

    Raises
    ------
    ParameterError
        A bad keyword value, or a model that cannot be trained this way.
    InputError
        Tiles of the wrong kind, empty, or with other channels or classes than the model.
    xglacier.errors.TrainingDivergedError
        The loss became NaN or infinite (the best weights so far are restored).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xglacier.models import UNet
    >>> from xglacier.segmentation.tiles import segmentation_tiles
    >>> rng = np.random.default_rng(0)
    >>> bright = rng.random((1, 32, 32), dtype="f4")
    >>> f = xr.DataArray(bright, dims=("channel", "y", "x"),
    ...                  coords={"channel": ["green"], "y": np.arange(32.0), "x": np.arange(32.0)})
    >>> lab = xr.DataArray((bright[0] > 0.5).astype("u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})
    >>> tiles = segmentation_tiles(f, lab, size=16, classes=["background", "glacier"])
    >>> model = UNet(["green"], ["background", "glacier"], depth=1, base_channels=4, binary_head=True)
    >>> history = fit_segmentation(model, tiles, epochs=4, batch_size=2, lr=1e-2, progress=False)
    >>> history.columns.tolist(), model.patch_size
    (['epoch', 'train_loss', 'val_loss', 'lr', 'seconds', 'best'], 16)
    >>> bool(history.train_loss.iloc[-1] < history.train_loss.iloc[0])
    True
    """
    func = "fit_segmentation"
    if isinstance(model, CombinedBinary):
        raise ParameterError(f"{func}: a CombinedBinary model is trained part by part: fit its clean "
                             "model on tiles.binary('clean_ice') and its debris model on "
                             "tiles.binary('debris_covered_ice')")
    if not isinstance(model, SegmentationModel):
        raise ParameterError(f"{func}: model is a {type(model).__name__}; expected a SegmentationModel "
                             "(e.g. xglacier.models.UNet)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ParameterError(f"{func}: model {type(model).__name__!r} has no trainable parameters")
    check_fit_options(func, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clip=clip,
                      seed=seed)
    check_number(func, "l1", l1, low=0)
    check_choice(func, "loss", loss, LOSSES)
    _check_tiles("train", train, model)
    _check_tiles("val", val, model, allow_none=True)
    if val is not None and val.ignore != train.ignore:
        raise InputError(f"{func}: val tiles use ignore={val.ignore}, train tiles {train.ignore}")
    loss_fn = segmentation_loss(model, loss=loss, class_weights=class_weights, smooth=smooth,
                                ignore=train.ignore)

    if statistics:
        model.set_statistics(*train.statistics())
    model.set_patch_size(train.size)
    device = model_device(model)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        xb, yb = (t.to(device) for t in batch)
        data = loss_fn(model(model.normalise(xb)), yb)
        return data + l1_penalty(model, lam=l1), data, len(xb)

    def val_loss() -> float:
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for xb, yb in val.to_torch(batch_size=batch_size):
                xb, yb = xb.to(device), yb.to(device)
                total += float(loss_fn(model(model.normalise(xb)), yb)) * len(xb)
                count += len(xb)
        return total / count

    history = train_epochs(
        func, model, params,
        setup=lambda: (torch.optim.Adam(params, lr=lr),
                       train.to_torch(batch_size=batch_size, shuffle=True, seed=int(seed),
                                      augment=augment)),
        step=step, val_loss=None if val is None else val_loss,
        epochs=epochs, patience=patience, clip=clip, seed=int(seed), progress=progress,
        loss_label=loss, hint=f"lower lr={lr}, set clip, or check the tiles for extreme values",
    )
    with torch.no_grad():
        history.attrs["l1_penalty"] = float(l1_penalty(model, lam=l1))
    return history
