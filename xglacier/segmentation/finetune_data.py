"""The corrected scene of :func:`~xglacier.segmentation.finetune.fine_tune` as tiles.

The model and the scene checked, the corrected polygons rasterized on the scene's grid, and
the scene cut into a training part and a held-out strip along one edge that no training
tile reaches.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import shapely
import torch
import xarray as xr

from ..errors import InputError, ParameterError
from ..nn.checkpoint import checkpoint_paths, load_model
from .grid import format_bounds
from .labels import rasterize
from .models.base import SegmentationModel
from .models.unet import CombinedBinary
from .segment import check_features
from .tiles import IGNORE, segmentation_tiles
from .tileset import SegmentationTiles

#: Where the held-out block lies: a strip along the scene's north, south, east or west edge.
HOLDOUT_SIDES = ("auto", "north", "south", "east", "west")
_FUNC = "fine_tune"


def _model(model: Any) -> tuple[SegmentationModel, dict[str, Any]]:
    """A trainable copy of ``model`` (a model or a checkpoint path) and what it came from."""
    if isinstance(model, (str, os.PathLike)):
        json_path, _ = checkpoint_paths(model)
        loaded = load_model(model)
        parent = {"checkpoint": json_path.name}
    elif isinstance(model, torch.nn.Module):
        # a copy: the caller keeps the model it passed, to compare or to fine-tune again
        loaded, parent = copy.deepcopy(model), {"checkpoint": None}
    else:
        raise ParameterError(f"{_FUNC}: model is a {type(model).__name__}; expected a SegmentationModel "
                             "(e.g. xglacier.models.UNet) or the path of its checkpoint")
    if isinstance(loaded, CombinedBinary):
        raise ParameterError(f"{_FUNC}: model is a CombinedBinary; fine-tune its clean and debris models "
                             "one by one (each is a SegmentationModel)")
    if not isinstance(loaded, SegmentationModel):
        raise ParameterError(f"{_FUNC}: model is a {type(loaded).__name__}; expected a SegmentationModel")
    meta = getattr(loaded, "checkpoint_meta", None) or {}
    parent.update(sha256=meta.get("weights", {}).get("sha256"), created=meta.get("created"),
                  variable=meta.get("variable"), extra=meta.get("extra") or {})
    return loaded, parent


def _scene(features: Any, model: SegmentationModel) -> xr.DataArray:
    """The features, checked, north-up (y descending, x ascending) and in memory."""
    feats = check_features(_FUNC, features, model.channels)
    for dim in ("y", "x"):
        if dim not in feats.coords or feats.sizes[dim] < 2:
            raise InputError(f"{_FUNC}: scene_features needs a {dim!r} coordinate of at least 2 pixels; "
                             f"it has {feats.sizes[dim]}")
    if feats.rio.crs is None:
        raise InputError(f"{_FUNC}: scene_features has no CRS (features.rio.crs is None); the corrected "
                         "polygons cannot be placed on its grid")
    # one orientation inside: a scene stored y-ascending trains exactly like its north-up copy
    feats = feats.sortby("y", ascending=False).sortby("x").load()
    if not np.isfinite(feats.values).all(axis=0).any():
        raise InputError(f"{_FUNC}: scene_features has no pixel where every channel is valid (all NaN "
                         "or infinite); expected a scene with data")
    return feats




def _labels(gdf: gpd.GeoDataFrame, codes: np.ndarray, burn: np.ndarray, feats: xr.DataArray,
            names: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    """The class map of the corrected polygons on the scene's grid; IGNORE where an input is missing."""
    crs = pyproj.CRS.from_user_input(feats.rio.crs)
    if gdf.crs is None:
        raise InputError(f"{_FUNC}: the corrected polygons have no CRS; expected the CRS they were drawn "
                         f"in (the scene's is {crs.name})")
    reprojected = not pyproj.CRS.from_user_input(gdf.crs).equals(crs)
    in_scene = gdf.to_crs(crs) if reprojected else gdf
    grid = shapely.box(*feats.rio.bounds(recalc=True))
    polys = in_scene[burn]
    if len(polys) and not polys.intersects(grid).any():
        raise InputError(f"{_FUNC}: the corrected polygons do not overlap the scene: they cover "
                         f"{format_bounds(polys.total_bounds)} in the scene's CRS, the scene covers "
                         f"{format_bounds(grid.bounds)}")
    if len(polys):
        burned = gpd.GeoDataFrame({"code": codes[burn]}, geometry=polys.geometry.to_numpy(), crs=crs)
        table = {n: i for i, n in enumerate(names) if i}
        labels = rasterize(burned, feats.isel(channel=0, drop=True), column="code", classes=table).values
    else:  # every polygon deleted: the whole scene is background
        labels = np.zeros((feats.sizes["y"], feats.sizes["x"]), np.uint8)
    labels = np.where(np.isfinite(feats.values).all(axis=0), labels, IGNORE).astype(np.uint8)
    return labels, {"crs": str(gdf.crs.to_string()), "reprojected": bool(reprojected)}


def _strip(side: str, shape: tuple[int, int], fraction: float) -> tuple[slice, slice]:
    """Row and column slices of the held-out strip along ``side`` of a north-up grid."""
    h, w = shape
    ky, kx = max(1, round(fraction * h)), max(1, round(fraction * w))
    return {"north": (slice(0, ky), slice(None)), "south": (slice(h - ky, h), slice(None)),
            "west": (slice(None), slice(0, kx)), "east": (slice(None), slice(w - kx, w))}[side]


def _holdout_side(labels: np.ndarray, side: str, fraction: float) -> str:
    """``side``, or for ``"auto"`` the strip whose labelled pixels are closest to half glacier."""
    if side != "auto":
        return side
    best, best_balance = "north", -1.0
    for name in HOLDOUT_SIDES[1:]:
        lab = labels[_strip(name, labels.shape, fraction)]
        lab = lab[lab != IGNORE]
        balance = min(float((lab > 0).mean()), float((lab == 0).mean())) if lab.size else -1.0
        if balance > best_balance:
            best, best_balance = name, balance
    return best


def _split(feats: xr.DataArray, labels: np.ndarray, side: str, fraction: float
           ) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray, xr.DataArray]:
    """(train features, train labels, held-out features, held-out labels): two disjoint rectangles."""
    rows, cols = _strip(side, labels.shape, fraction)
    h, w = labels.shape
    hold = np.zeros((h, w), bool)
    hold[rows, cols] = True
    keep_rows = np.flatnonzero(~hold.all(axis=1)) if side in ("north", "south") else np.arange(h)
    keep_cols = np.flatnonzero(~hold.all(axis=0)) if side in ("east", "west") else np.arange(w)
    lab = xr.DataArray(labels, dims=("y", "x"), coords={"y": feats.y, "x": feats.x})
    held = (feats.isel(y=rows, x=cols), lab.isel(y=rows, x=cols))
    train = (feats.isel(y=keep_rows, x=keep_cols), lab.isel(y=keep_rows, x=keep_cols))
    for name, (_, part) in (("training part", train), ("held-out block", held)):
        if not (part.values != IGNORE).any():
            raise InputError(f"{_FUNC}: the {name} of the scene (held-out strip: {side}, "
                             f"holdout={fraction}) has no pixel with valid data; choose another "
                             "holdout_side or holdout fraction")
    return train[0], train[1], held[0], held[1]


def _tiles(feats: xr.DataArray, labels: np.ndarray, side: str, fraction: float, size: int, stride: int,
           names: tuple[str, ...], refit: bool
           ) -> tuple[SegmentationTiles, SegmentationTiles, SegmentationTiles | None, xr.DataArray]:
    """Training tiles, held-out tiles, (``refit``) tiles of the whole scene, held-out features."""
    train_f, train_l, held_f, held_l = _split(feats, labels, side, fraction)
    train = segmentation_tiles(train_f, train_l, size=size, stride=stride, classes=names,
                               min_glacier_fraction=0.0)
    held = segmentation_tiles(held_f, held_l, size=size, classes=names, min_glacier_fraction=0.0)
    whole = None
    if refit:
        lab = xr.DataArray(labels, dims=("y", "x"), coords={"y": feats.y, "x": feats.x})
        whole = segmentation_tiles(feats, lab, size=size, stride=stride, classes=names,
                                   min_glacier_fraction=0.0)
    return train, held, whole, held_f
