"""Training a segmentation model further on corrected outlines of one scene: :func:`fine_tune`.

The loop of Baraka et al. (2020), *Machine Learning for Glacier Monitoring in the Hindu Kush
Himalaya*, section 5: an expert corrects the predicted polygons of a scene (``xglacier
review``), the model learns from the corrections, the scene (or the next one) is segmented
again. :func:`fine_tune` rasterizes the corrected polygons on the scene's grid, cuts the
scene into a training part and a held-out block (a strip along one edge that no training
tile reaches), trains a few epochs at a small learning rate (normalised with the parent's
statistics, or with those of the scene's training part: never the held-out block's),
stops early on the held-out block, and saves a new checkpoint whose JSON records what it
learned from.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
import xarray as xr

from .._validate import check_choice, check_flag, check_int, check_number
from ..errors import InputError, ParameterError, XGlacierWarning
from ..forecasting.train import lr_factor
from ..nn.checkpoint import checkpoint_paths, load_model, save_model
from ..nn.loop import check_fit_options, model_device, train_epochs
from .corrections import class_codes, read_polygons, statuses
from .finetune_average import WeightAverage
from .finetune_data import HOLDOUT_SIDES, _holdout_side, _labels, _model, _scene, _tiles
from .finetune_radiometry import RadiometricGain
from .losses import LOSSES, l1_penalty, segmentation_loss
from .metrics import confusion_matrix, scores
from .models.base import SegmentationModel
from .tiles import IGNORE
from .tileset import SegmentationTiles

__all__ = ["HOLDOUT_SIDES", "REFIT_EPOCHS", "SCHEDULES", "STATISTICS", "fine_tune"]

#: Normalisation of the fine-tuned model: the parent's statistics, or the corrected scene's training part.
STATISTICS = ("parent", "scene")
#: Learning rate over the steps of a run: constant, or a cosine decay to 0 at the last epoch.
SCHEDULES = ("constant", "cosine")
#: How long the refit on the whole scene trains: the best epoch on the strip, or every epoch.
REFIT_EPOCHS = ("best", "all")
_FUNC = "fine_tune"


# -- training -------------------------------------------------------------------------------


def _evaluate(net: SegmentationModel, tiles: SegmentationTiles, loss_fn: Any, batch_size: int
              ) -> tuple[float, dict[str, float]]:
    """Loss and IoU per class (and ``glacier``: every class but background) on ``tiles``, eval mode."""
    names = list(net.classes)
    device = model_device(net)
    net.eval()
    total, count = 0.0, 0
    cm = np.zeros((len(names), len(names) + 1), np.int64)
    with torch.no_grad():
        for xb, yb in tiles.to_torch(batch_size=batch_size):
            xb, yb = xb.to(device), yb.to(device)
            logits = net(net.normalise(xb))
            total += float(loss_fn(logits, yb)) * len(xb)
            count += len(xb)
            pred = net.probabilities(logits).argmax(dim=1).to("cpu").numpy().astype(np.uint8)
            cm += np.asarray(confusion_matrix(yb.to("cpu").numpy(), pred, len(names), ignore=IGNORE))
    merge = {"glacier": names[1:]} if len(names) > 2 else None
    table = scores(cm, classes=names, merge=merge)
    iou = {str(k): float(v) for k, v in table["iou"].items()}
    iou.setdefault("glacier", iou[names[1]])
    return total / count, iou


def _fit(net: SegmentationModel, train: SegmentationTiles, held: SegmentationTiles | None, loss_fn: Any,
         opts: dict[str, Any], progress: bool) -> pd.DataFrame:
    """Train on ``train`` with :func:`train_epochs`; with ``held``, stop early on its loss.

    With ``opts["average_last"]`` the weights returned are the mean of those at the end of
    the run's last epochs (``history.attrs["averaged_epochs"]`` of them), not the best epoch's.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ParameterError(f"{_FUNC}: model {type(net).__name__!r} has no trainable parameters")
    device, batch_size = model_device(net), opts["batch_size"]
    ious: list[float] = []

    gain = RadiometricGain(net.channels, opts["radiometric"])

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        xb, yb = (t.to(device) for t in batch)
        xb = gain(xb)
        data = loss_fn(net(net.normalise(xb)), yb)
        return data + l1_penalty(net, lam=opts["l1"]), data, len(xb)

    def held_loss() -> float:
        value, iou = _evaluate(net, held, loss_fn, batch_size)
        ious.append(iou["glacier"])
        return value

    average = WeightAverage(net, opts["epochs"], opts["average_last"]) if opts["average_last"] else None

    def setup() -> tuple[torch.optim.Optimizer, Any]:
        loader = train.to_torch(batch_size=batch_size, shuffle=True, seed=opts["seed"],
                                augment=opts["augment"])
        return torch.optim.Adam(params, lr=opts["lr"]), loader if average is None else average.wrap(loader)

    history = train_epochs(
        _FUNC, net, params, setup=setup,
        step=step, val_loss=None if held is None else held_loss, epochs=opts["epochs"],
        patience=opts["patience"], clip=None, seed=opts["seed"], progress=progress, loss_label=opts["loss"],
        hint=f"lower lr={opts['lr']} or check the scene's features for extreme values",
        lr_factor=lr_factor("cosine", 0.0) if opts["schedule"] == "cosine" else None)
    history["holdout_iou"] = ious[:len(history)] if held is not None else np.nan
    if average is not None:
        history.attrs["averaged_epochs"] = average.apply(train, batch_size)
    return history


def _train(net: SegmentationModel, train: SegmentationTiles, held: SegmentationTiles,
           whole: SegmentationTiles | None, *, opts: dict[str, Any], progress: bool
           ) -> tuple[SegmentationModel, pd.DataFrame, dict[str, Any]]:
    """Fine-tune, stopping early on ``held``; then (``whole``) again from the start on every tile.

    With ``opts["statistics"] == "scene"`` the model is normalised with the statistics of
    ``train`` (never ``held``) after the parent is scored. Returns the model, the history of
    the run scored on ``held`` and the held-out scores.
    """
    loss_fn = segmentation_loss(net, loss=opts["loss"], class_weights=opts["class_weights"], ignore=IGNORE)
    loss_before, iou_before = _evaluate(net, held, loss_fn, opts["batch_size"])
    if opts["statistics"] == "scene":
        net.set_statistics(*(np.asarray(v, np.float64).tolist() for v in train.statistics()))
    start = copy.deepcopy(net) if whole is not None else None
    history = _fit(net, train, held, loss_fn, opts, progress)
    loss_after, iou_after = _evaluate(net, held, loss_fn, opts["batch_size"])
    if not loss_after < loss_before:
        warnings.warn(f"{_FUNC}: no epoch lowered the loss on the held-out block ({loss_before:.4g} "
                      f"before, {loss_after:.4g} at best): the corrections did not generalise within "
                      "the scene; try a smaller lr or more corrected polygons", XGlacierWarning, stacklevel=3)
    result = {"holdout_loss_before": loss_before, "holdout_loss_after": loss_after,
              "holdout_iou_before": iou_before, "holdout_iou_after": iou_after}
    if start is not None:
        # the held-out strip chose the number of epochs (or the budget does); now every
        # correction is learned
        epochs = int(opts["epochs"] if opts["refit_epochs"] == "all" else history.attrs["best_epoch"])
        _fit(start, whole, None, loss_fn, {**opts, "epochs": epochs, "patience": None}, progress)
        net = start.eval()
        result["refit_epochs"] = epochs
    return net, history, result


def _record(feats: xr.DataArray, held: xr.DataArray, side: str, corrections: dict[str, Any],
            parent: dict[str, Any], training: dict[str, Any], result: dict[str, Any],
            history: pd.DataFrame, normalisation: tuple[list[float], list[float]]) -> dict[str, Any]:
    """What the new checkpoint's JSON says about this round of fine-tuning."""
    mean, std = normalisation
    time = feats.coords["time"].values if "time" in feats.coords and feats["time"].ndim == 0 else None
    return {
        "corrections": corrections,
        "scene": {"time": None if time is None else str(pd.Timestamp(time)),
                  "crs": feats.rio.crs.to_string(), "bounds": list(feats.rio.bounds(recalc=True)),
                  "shape": [feats.sizes["y"], feats.sizes["x"]]},
        "holdout": {"side": side, "fraction": training.pop("holdout"),
                    "bounds": list(held.rio.bounds(recalc=True)),
                    "shape": [held.sizes["y"], held.sizes["x"]]},
        "training": {**training, "epochs_run": len(history), "best_epoch": int(history.attrs["best_epoch"]),
                     "stopped_early": bool(history.attrs["stopped_early"]),
                     "statistics": training["statistics"], "mean": mean, "std": std},
        "scores": result,
        "parent": {k: parent.get(k) for k in ("checkpoint", "sha256", "created")},
    }


def fine_tune(
    model: SegmentationModel | str | os.PathLike[str],
    scene_features: xr.DataArray,
    corrected_polygons: gpd.GeoDataFrame | str | os.PathLike[str],
    *,
    column: str | None = None,
    classes: str | Mapping[Any, str] | None = None,
    layer: str | None = None,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 8,
    tile_size: int | None = None,
    stride: int | None = None,
    holdout: float = 0.25,
    holdout_side: str = "auto",
    patience: int | None = 5,
    loss: str = "dice+ce",
    class_weights: Any = None,
    l1: float = 0.0,
    augment: bool = True,
    radiometric: float = 0.0,
    refit: bool = True,
    refit_epochs: str = "best",
    statistics: str = "parent",
    schedule: str = "constant",
    average_last: int | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> tuple[SegmentationModel, pd.DataFrame]:
    """Train a segmentation model further on the corrected polygons of one scene.

    The polygons are rasterized on the scene's grid (reprojected to its CRS first when
    they are in another; pixels with a missing channel are left out). A strip along one
    edge of the scene (``holdout`` of its height or width) is held out: training tiles are
    cut from the rest of the scene only, so that no training tile holds a pixel of it,
    and the loss on the strip decides when to stop (``patience``) and which epoch is best.
    With ``refit`` (default) the model is then trained again from the parent's weights on
    the whole scene, strip included, for that many epochs, so that it learns every
    correction; the held-out scores recorded are those of the first run. By default the
    model keeps its normalisation statistics (those of its original training split);
    ``statistics="scene"`` replaces them with the statistics of the scene's training part
    (the held-out strip excluded, for both runs). Training is
    :func:`~xglacier.nn.loop.train_epochs` (Adam, random turns and flips), as in
    :func:`~xglacier.segmentation.train.fit_segmentation`. The input model is not
    changed: a copy is trained. See ``docs/fine-tuning.md``.

    Parameters
    ----------
    model
        A :class:`~xglacier.segmentation.models.SegmentationModel` or the path of its
        checkpoint.
    scene_features
        ``(channel, y, x)`` features of the corrected scene (:func:`xglacier.features`),
        with the model's channels in its order and a CRS; y and x may run either way.
    corrected_polygons
        GeoDataFrame or vector file of the corrected outlines (from ``xglacier review``).
        A ``status`` column (``predicted``, ``edited``, ``added``, ``deleted``) is counted
        and ``deleted`` rows burn nothing; a layer whose name contains ``deleted`` is counted.
    column, classes
        Each polygon's class: ``column`` names a column of class names or of class indices
        of the model (default ``class_name``, else ``class``, as :func:`xglacier.polygonize`
        writes); ``classes`` maps its values to the model's class names, or is one class
        name for every polygon (an outline without class column). A two-class model needs
        neither. Pixels outside every polygon are background.
    layer
        Layer of a multi-layer file (default: the one layer whose name lacks ``deleted``).
    epochs, lr, batch_size, patience, loss, class_weights, l1, augment, seed
        As :func:`~xglacier.segmentation.train.fit_segmentation`, with defaults for
        fine-tuning: fewer epochs, no L1 penalty (the weights start trained, not random).
    radiometric
        Radiometric augmentation: each training tile's reflectance bands are multiplied by
        random gains, one per band, log-uniform in ``[exp(-radiometric), exp(radiometric)]``,
        and its normalised-difference indices changed to match
        (:mod:`~xglacier.segmentation.finetune_radiometry`); for a next scene from another
        sensor or date. ``0``: none.
    refit
        Train again on the whole scene for the best number of epochs (see above);
        ``False`` returns the weights of the best epoch of the run without the strip.
    refit_epochs
        How long the refit trains: ``"best"`` the best epoch of the run on the strip, or
        ``"all"`` every one of ``epochs`` (with ``schedule="cosine"`` the whole schedule,
        down to a rate of 0). On a small strip the best epoch is noisy: an early one leaves
        the refit short of fitting the corrected scene itself (docs/fine-tuning.md); the
        strip then only measures, and the epochs decide.
    statistics
        ``"parent"``: normalise with the parent's statistics (the scene is normalised as
        every scene the model has seen; ``segment``'s out-of-distribution check keeps
        comparing with the original training data). ``"scene"``: the per-channel mean and
        standard deviation of the training tiles of this scene (never the held-out strip),
        stored in the new checkpoint; for a scene far outside the parent's data (another
        region, elevation, sensor), at the cost of a first layer that must re-adapt.
    schedule
        ``"constant"`` learning rate, or ``"cosine"``: decayed from ``lr`` to 0 over the
        run's ``epochs`` (and over the refit's epochs), so the weights settle at the end
        instead of jumping between epochs.
    average_last
        Return the mean of the weights at the end of each of the last ``average_last``
        epochs of a run (the run on the strip, scored there, and the refit) instead of
        one epoch's weights (Izmailov et al. 2018, stochastic weight averaging), with the
        batch-norm statistics measured again on the run's tiles: less dependent on where
        the last steps happened to land. Needs ``patience=None`` (the mean replaces the
        pick of the best epoch); best with ``schedule="cosine"``. ``None``: no averaging.
    tile_size, stride
        Training tiles (default: the model's ``patch_size``, every half tile).
    holdout, holdout_side
        Fraction of the scene's height (``north``/``south``) or width (``east``/``west``)
        held out; ``"auto"``: the side whose strip is closest to half glacier.
    out
        Write the fine-tuned model there (safetensors + JSON, see
        :func:`xglacier.save_model`); its JSON ``extra.fine_tuning`` lists every round.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    (SegmentationModel, pandas.DataFrame)
        The fine-tuned model (eval mode) and the history of :func:`xglacier.fit` plus
        ``holdout_iou`` (glacier IoU on the held-out strip per epoch); ``history.attrs``
        also holds ``fine_tuning`` (the record written in the checkpoint) and ``checkpoint``.

    Raises
    ------
    InputError
        Features without CRS, channels or valid pixels; polygons without CRS, outside the
        scene, with unknown classes or statuses; unreadable files.
    ParameterError
        A bad keyword value, a model that is not a trainable SegmentationModel, ``out`` equal
        to the parent checkpoint.

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, xarray as xr
    >>> from shapely import box
    >>> from xglacier.models import UNet
    >>> ndsi = np.where(np.arange(32)[None, :] < 16, 0.9, -0.2) * np.ones((32, 1), "f4")
    >>> f = xr.DataArray(ndsi[None].astype("f4"), dims=("channel", "y", "x"), coords={
    ...     "channel": ["ndsi"], "y": 3000.0 - 30 * np.arange(32), "x": 30.0 * np.arange(32)}
    ...     ).rio.write_crs("EPSG:32611")
    >>> ice = gpd.GeoDataFrame(geometry=[box(-15, 2055, 465, 3015)], crs="EPSG:32611")
    >>> model = UNet(["ndsi"], ["background", "glacier"], depth=1, base_channels=4, patch_size=16)
    >>> tuned, history = fine_tune(model, f, ice, epochs=2, lr=1e-2, holdout_side="north")
    >>> history.attrs["fine_tuning"]["holdout"]["side"], list(history.columns[-2:])
    ('north', ['best', 'holdout_iou'])
    """
    for label, value in (("batch_size", batch_size), ("seed", seed)):
        check_int(_FUNC, label, value, low=0 if label == "seed" else 1)
    check_fit_options(_FUNC, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clip=None,
                      seed=seed)
    check_number(_FUNC, "holdout", holdout, low=0, high=0.5, low_open=True)
    check_number(_FUNC, "l1", l1, low=0)
    check_choice(_FUNC, "holdout_side", holdout_side, HOLDOUT_SIDES)
    check_choice(_FUNC, "loss", loss, LOSSES)
    check_flag(_FUNC, "augment", augment)
    check_number(_FUNC, "radiometric", radiometric, low=0, high=1)
    check_flag(_FUNC, "refit", refit)
    check_choice(_FUNC, "refit_epochs", refit_epochs, REFIT_EPOCHS)
    check_choice(_FUNC, "statistics", statistics, STATISTICS)
    check_choice(_FUNC, "schedule", schedule, SCHEDULES)
    check_int(_FUNC, "average_last", average_last, low=1, high=epochs, allow_none=True)
    if average_last is not None and patience is not None:
        raise ParameterError(f"{_FUNC}: average_last={average_last} with patience={patience}; the average "
                             "of the last epochs replaces early stopping: pass patience=None")
    net, parent = _model(model)
    size = check_int(_FUNC, "tile_size", net.patch_size if tile_size is None else tile_size, low=8)
    stride = check_int(_FUNC, "stride", max(1, size // 4) if stride is None else stride, low=1)
    if out is not None and isinstance(model, (str, os.PathLike)) and (
            checkpoint_paths(out)[0].resolve() == checkpoint_paths(model)[0].resolve()):
        raise ParameterError(f"{_FUNC}: out={str(out)!r} is the checkpoint being fine-tuned; write the "
                             "new model elsewhere (the parent is kept for the record)")
    feats = _scene(scene_features, net)
    gdf, source = read_polygons(_FUNC, corrected_polygons, layer)
    if len(gdf) == 0:
        raise InputError(f"{_FUNC}: corrected_polygons holds no polygon; expected the corrected outlines")
    burn, by_status = statuses(_FUNC, gdf)
    names = tuple(net.classes)
    codes, used = class_codes(_FUNC, gdf, names, column, classes)
    labels, crs_info = _labels(gdf, codes, burn, feats, names)
    side = _holdout_side(labels, holdout_side, float(holdout))
    train, held, whole, held_f = _tiles(feats, labels, side, float(holdout), size, stride, names, refit)
    opts = {"epochs": epochs, "lr": float(lr), "batch_size": batch_size, "patience": patience, "loss": loss,
            "class_weights": class_weights, "l1": float(l1), "augment": bool(augment), "seed": seed,
            "refit": refit, "refit_epochs": refit_epochs, "statistics": statistics, "schedule": schedule,
            "average_last": average_last, "radiometric": float(radiometric)}
    net, history, result = _train(net, train, held, whole, opts=opts, progress=progress)
    corrections = {**source, "n_polygons": len(gdf), "by_status": by_status, "column": used,
                   "by_class": {n: int((codes[burn] == i).sum()) for i, n in enumerate(names) if i},
                   **crs_info}
    training = {**opts, "holdout": float(holdout), "tile_size": size, "stride": stride,
                "train_tiles": len(train), "holdout_tiles": len(held)}
    record = _record(feats, held_f, side, corrections, parent, training, result, history,
                     (list(net.config["mean"]), list(net.config["std"])))
    rounds = [*parent["extra"].get("fine_tuning", []), record]
    extra = {**parent["extra"], "fine_tuning": rounds}
    history.attrs.update(fine_tuning=record, checkpoint=None)
    net.eval()
    net.checkpoint_meta = {"extra": extra, "weights": {}, "variable": parent["variable"]}
    if out is not None:
        path = save_model(net, out, variable=parent["variable"] or "features",
                          metrics={"holdout_iou": result["holdout_iou_after"]}, extra=extra)
        net.checkpoint_meta = load_model(path).checkpoint_meta
        history.attrs["checkpoint"] = path
    return net, history
