"""Corrected polygons (``xglacier review``'s output) as training labels: read, classes, status.

What :func:`xglacier.segmentation.finetune.fine_tune` needs from a corrected map: the
polygons of its main layer with the file's checksum and the number of deleted polygons
(a layer whose name contains ``deleted``), each polygon's class among a model's classes,
and which polygons count (``status``). Errors name the calling function ``func``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._atomic import file_sha256
from ..errors import InputError, ParameterError

__all__ = ["STATUSES", "class_codes", "read_polygons", "statuses"]

#: Values of the ``status`` column written by ``xglacier review``; ``deleted`` rows burn nothing.
STATUSES = ("predicted", "edited", "added", "deleted")




def read_polygons(func: str, corrected: Any, layer: str | None) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """The corrected polygons and where they come from (file name, checksum, deleted ones)."""
    if isinstance(corrected, gpd.GeoSeries):
        corrected = gpd.GeoDataFrame(geometry=corrected)
    if isinstance(corrected, gpd.GeoDataFrame):
        wkb = shapely.to_wkb(corrected.geometry.to_numpy())
        digest = hashlib.sha256(b"".join(w or b"" for w in wkb))
        digest.update(corrected.drop(columns=corrected.geometry.name).to_json().encode())
        return corrected, {"file": None, "sha256": digest.hexdigest(), "layer": None, "deleted_layer": None}
    if not isinstance(corrected, (str, os.PathLike)):
        raise InputError(f"{func}: corrected_polygons is a {type(corrected).__name__}; expected a "
                         "GeoDataFrame (or GeoSeries) or the path of a vector file (GeoPackage, "
                         "GeoJSON, shapefile)")
    import pyogrio

    path = Path(corrected)
    if not path.is_file():
        raise InputError(f"{func}: corrected_polygons file {str(path)!r} does not exist")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as err:  # pyogrio.errors.DataSourceError and friends
        raise InputError(f"{func}: corrected_polygons file {str(path)!r} cannot be read as a vector "
                         f"file: {err}") from err
    deleted = [name for name in layers if "deleted" in name.lower()]
    if layer is None:
        kept = [name for name in layers if name not in deleted]
        if len(kept) != 1:
            raise InputError(f"{func}: corrected_polygons file {str(path)!r} has layers {layers}; pass "
                             "layer= to name the one holding the corrected polygons")
        layer = kept[0]
    elif layer not in layers:
        raise InputError(f"{func}: layer={layer!r} is not in {str(path)!r}; its layers: {layers}")
    gdf = gpd.read_file(path, layer=layer)
    n_deleted = sum(int(pyogrio.read_info(path, layer=name)["features"]) for name in deleted)
    return gdf, {"file": path.name, "sha256": file_sha256(path), "layer": layer,
                 "deleted_layer": n_deleted if deleted else None}


def class_codes(func: str, gdf: gpd.GeoDataFrame, names: tuple[str, ...], column: str | None,
                 classes: Any) -> tuple[np.ndarray, str | None]:
    """The model class index (1..K-1) of every polygon, and the column it was read from."""
    if isinstance(classes, str):
        if column is not None:
            raise ParameterError(f"{func}: classes={classes!r} gives every polygon one class; drop "
                                 f"column={column!r} or pass classes as a mapping of its values")
        if classes not in names[1:]:
            raise ParameterError(f"{func}: classes={classes!r}; expected one of the model's classes "
                                 f"{list(names[1:])}")
        return np.full(len(gdf), names.index(classes), np.int64), None
    if column is None:
        found = [c for c in ("class_name", "class") if c in gdf.columns]
        if not found:
            if len(names) == 2 and classes is None:
                return np.ones(len(gdf), np.int64), None  # one glacier class: no choice to make
            raise InputError(f"{func}: the polygons have no 'class_name' or 'class' column and the model "
                             f"has classes {list(names[1:])}; pass column= or classes= (one class name "
                             "for every polygon)")
        column = found[0]
    if column not in gdf.columns:
        raise ParameterError(f"{func}: column={column!r} is not a column of the polygons; columns: "
                             f"{[c for c in gdf.columns if c != gdf.geometry.name]}")
    values = gdf[column]
    if values.isna().any():
        raise InputError(f"{func}: column {column!r} has {int(values.isna().sum())} polygons without "
                         "a class; expected a class for every polygon")
    if classes is not None and not isinstance(classes, Mapping):
        raise ParameterError(f"{func}: classes={classes!r}; expected a class name (str) or a mapping "
                             f"of the values of column {column!r} to the model's classes")
    mapping = dict(classes or {})
    if not mapping and pd.api.types.is_integer_dtype(values):
        mapping = {i: n for i, n in enumerate(names)}  # polygonize's codes: the model's class indices
    out = np.empty(len(gdf), np.int64)
    for k, value in enumerate(values.tolist()):
        name = mapping.get(value, value)
        if name not in names:
            raise InputError(f"{func}: column {column!r} holds {value!r}, which is not one of the model's "
                             f"classes {list(names)}; map it with classes={{{value!r}: ...}}")
        out[k] = names.index(name)
    if (out == 0).any():
        raise InputError(f"{func}: {int((out == 0).sum())} polygons have the background class "
                         f"{names[0]!r}; background needs no polygon (delete them)")
    if column == "class_name" and "class" in gdf.columns and classes is None:
        codes = gdf["class"].to_numpy()
        if pd.api.types.is_integer_dtype(gdf["class"]) and (codes != out).any():
            raise InputError(f"{func}: columns 'class' and 'class_name' disagree on "
                             f"{int((codes != out).sum())} polygons; pass column= to say which one holds "
                             "the corrected class")
    return out, column


def statuses(func: str, gdf: gpd.GeoDataFrame) -> tuple[np.ndarray, dict[str, int] | None]:
    """Which polygons burn (not ``deleted``) and the number of polygons by ``status``."""
    if "status" not in gdf.columns:
        return np.ones(len(gdf), bool), None
    status = gdf["status"].astype(str)
    unknown = sorted(set(status) - set(STATUSES))
    if unknown:
        raise InputError(f"{func}: the 'status' column holds {unknown}; expected {list(STATUSES)} "
                         "(as written by xglacier review)")
    return (status != "deleted").to_numpy(), {s: int((status == s).sum()) for s in STATUSES}
