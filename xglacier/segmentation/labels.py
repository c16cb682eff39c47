"""Label maps from glacier outlines: :func:`rasterize`.

Outlines (GeoDataFrame or vector file, any CRS) -> ``uint8`` class map on a cube's grid,
holes kept, explicit priority where classes overlap. The way back (polygons, areas,
vector files) is :mod:`xglacier.segmentation.vectors`; its functions are importable from
here too.

Class codes are integers 1-254; 0 is background and 255
(:data:`~xglacier.segmentation.classes.NODATA`) is kept for pixels without a class. Class
names travel with label maps as CF ``flag_values`` / ``flag_meanings`` attributes (as
:data:`xglacier.datasets.CLASSES`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
import xarray as xr
from affine import Affine
from dask.base import tokenize
from rasterio import features as rio_features

from .._attrs import georeference, with_history
from ..errors import DimensionError, InputError, ParameterError
from .classes import NODATA, class_table, flag_attrs, is_code
from .grid import format_bounds, yx_chunks
from .vectors import VECTOR_DRIVERS, geodesic_area, polygonize, write_vector

__all__ = ["VECTOR_DRIVERS", "geodesic_area", "polygonize", "rasterize", "write_vector"]

_POLYGONAL = {"Polygon", "MultiPolygon"}


def _read_outlines(
    outlines: gpd.GeoDataFrame | gpd.GeoSeries | str | os.PathLike,
) -> tuple[gpd.GeoDataFrame, str]:
    if isinstance(outlines, gpd.GeoSeries):
        outlines = gpd.GeoDataFrame(geometry=outlines)
    if isinstance(outlines, gpd.GeoDataFrame):
        gdf, label = outlines, "outlines GeoDataFrame"
    elif isinstance(outlines, (str, os.PathLike)):
        path = Path(outlines)
        label = f"outline file {str(path)!r}"
        if not path.exists():
            raise InputError(f"rasterize: {label} does not exist")
        try:
            gdf = gpd.read_file(path)
        except Exception as err:  # pyogrio.errors.DataSourceError and friends
            raise InputError(f"rasterize: {label} cannot be read as a vector file: {err}") from err
    else:
        raise InputError(
            f"rasterize: outlines is a {type(outlines).__name__}; expected a GeoDataFrame or the path "
            "of a vector file"
        )
    if len(gdf) == 0:
        raise InputError(f"rasterize: {label} is empty (no feature); expected glacier outline polygons")
    if gdf.crs is None:
        raise InputError(f"rasterize: {label} has no CRS; expected outlines with a coordinate "
                         "reference system")
    geom = gdf.geometry
    keep = geom.notna() & ~geom.is_empty
    if not keep.any():
        raise InputError(f"rasterize: {label} holds {len(gdf)} features but no geometry")
    gdf = gdf[keep]
    kinds = set(gdf.geom_type)
    if kinds - _POLYGONAL:
        raise InputError(
            f"rasterize: {label} holds {sorted(kinds - _POLYGONAL)} geometries; expected Polygon or "
            "MultiPolygon"
        )
    return gdf, label


def _grid(like: xr.DataArray | xr.Dataset, what: str) -> tuple[Affine, tuple[int, int], Any]:
    if not isinstance(like, (xr.DataArray, xr.Dataset)):
        raise InputError(f"{what}: like is a {type(like).__name__}; expected a DataArray or Dataset")
    if "y" not in like.dims or "x" not in like.dims:
        raise DimensionError(f"{what}: like has dimensions {tuple(like.dims)}; expected 'y' and 'x'")
    crs = like.rio.crs
    if crs is None:
        raise InputError(f"{what}: like has no CRS (like.rio.crs is None); expected a georeferenced grid")
    return like.rio.transform(recalc=True), (like.sizes["y"], like.sizes["x"]), crs


def _codes(
    gdf: gpd.GeoDataFrame, label: str, table: dict[str, int], column: Hashable | None
) -> tuple[np.ndarray, dict[int, str]]:
    """Class code of every outline and the name of every code."""
    if column is None:
        if not table:
            return np.ones(len(gdf), np.uint8), {1: "glacier"}
        burn = {n: c for n, c in table.items() if c != 0}
        if len(burn) != 1:
            raise ParameterError(
                f"rasterize: classes={table!r} without column=; expected a column= holding each outline's "
                "class, or a single class for every outline (e.g. classes={'glacier': 1})"
            )
        (name, code), = burn.items()
        return np.full(len(gdf), code, np.uint8), {code: name}
    if column not in gdf.columns:
        raise ParameterError(
            f"rasterize: column={column!r} is not a column of {label}; columns: "
            f"{[c for c in gdf.columns if c != gdf.geometry.name]}"
        )
    values = gdf[column]
    if values.isna().any():
        raise ParameterError(f"rasterize: column {column!r} of {label} has {int(values.isna().sum())} "
                             "missing values; expected a class for every outline")
    by_code = {c: n for n, c in table.items()}
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(np.float64)
        if not np.all(v == np.round(v)):
            raise ParameterError(f"rasterize: column {column!r} of {label} holds non-integer values; "
                                 "expected integer class codes or class names")
        codes = v.astype(np.int64)
        found = sorted(set(codes.tolist()))
        if table:
            unknown = [c for c in found if c not in by_code or c == 0]
            expect = sorted(c for c in by_code if c != 0)
        else:
            unknown = [c for c in found if not 1 <= c <= NODATA - 1]
            expect = f"1-{NODATA - 1}"
        if unknown:
            raise ParameterError(
                f"rasterize: column {column!r} of {label} holds unknown class codes {unknown[:10]}; "
                f"expected codes in {expect} (0: background, {NODATA}: nodata)")
        names = {c: by_code[c] for c in found} if table else {c: f"class_{c}" for c in found}
        return codes.astype(np.uint8), names
    if not table:
        raise ParameterError(
            f"rasterize: column {column!r} of {label} holds names such as {values.iloc[0]!r}; pass "
            "classes= mapping each name to a code, e.g. {'clean_ice': 1, 'debris_covered_ice': 2}"
        )
    names_in = values.astype(str)
    found = sorted(set(names_in))
    unknown = [n for n in found if n not in table or table[n] == 0]
    if unknown:
        raise ParameterError(f"rasterize: column {column!r} of {label} holds class names {unknown[:10]} "
                             f"not in classes (or mapped to background 0); classes: {table}")
    codes = names_in.map(table).to_numpy(np.int64)
    return codes.astype(np.uint8), {table[n]: n for n in found}


def _ranks(
    codes: np.ndarray, names: dict[int, str], table: dict[str, int], priority: Sequence[Any] | None
) -> np.ndarray:
    """Burn order: higher rank is burned later and wins. Default: the higher code wins."""
    rank = {c: c for c in range(256)}
    if priority is not None:
        if isinstance(priority, (str, int)):
            priority = [priority]
        lookup = {**table, **{n: c for c, n in names.items()}}
        order = []
        for p in priority:
            if is_code(p) and 1 <= p <= 255:
                order.append(int(p))
            elif isinstance(p, str) and lookup.get(p, 0) != 0:
                order.append(lookup[p])
            else:
                raise ParameterError(
                    f"rasterize: priority entry {p!r} is neither a class code 1-255 nor a class name of "
                    f"{sorted(n for n, c in lookup.items() if c)}"
                )
        if len(set(order)) != len(order):
            raise ParameterError(f"rasterize: priority={list(priority)!r} names a class twice")
        for k, c in enumerate(order):  # first listed wins: it gets the highest rank
            rank[c] = 1000 - k
    return np.array([rank[int(c)] for c in codes])


def _burn_block(
    template: np.ndarray, shapes: list[tuple[Any, int]], bounds: np.ndarray, transform: Affine,
    all_touched: bool, block_info: dict | None = None,
) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    window = transform @ Affine.translation(c0, r0)
    return _burn(shapes, bounds, window, (r1 - r0, c1 - c0), all_touched)


def _burn(
    shapes: list[tuple[Any, int]], bounds: np.ndarray, transform: Affine, shape: tuple[int, int],
    all_touched: bool,
) -> np.ndarray:
    # geometries whose bounding box misses the window cannot burn a pixel in it
    x0, y0 = transform @ (0, 0)
    x1, y1 = transform @ (shape[1], shape[0])
    xmin, xmax, ymin, ymax = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    hit = (bounds[:, 0] <= xmax) & (bounds[:, 2] >= xmin) & (bounds[:, 1] <= ymax) & (bounds[:, 3] >= ymin)
    todo = [s for s, h in zip(shapes, hit, strict=True) if h]
    if not todo:
        return np.zeros(shape, np.uint8)
    return rio_features.rasterize(todo, out_shape=shape, transform=transform, fill=0, dtype="uint8",
                                  all_touched=all_touched)


def rasterize(
    outlines: gpd.GeoDataFrame | gpd.GeoSeries | str | os.PathLike,
    like: xr.DataArray | xr.Dataset,
    *,
    classes: Mapping[Any, Any] | None = None,
    column: Hashable | None = None,
    priority: Sequence[Any] | None = None,
    all_touched: bool = False,
) -> xr.DataArray:
    """Burn glacier outlines into a ``uint8`` class map on the grid of ``like``.

    Outlines are reprojected to ``like``'s CRS with geopandas and burned with
    :func:`rasterio.features.rasterize`: a pixel takes an outline's class when its centre
    lies inside the polygon (or, with ``all_touched=True``, when the polygon touches it).
    Interior rings (rock outcrops, nunataks) stay background.

    Classes:

    - default (``classes=None, column=None``): every outline is class 1, ``"glacier"``;
    - ``column="code"`` holding integer codes 1-254 (names ``class_<code>``, or the names
      given by ``classes``);
    - ``column="type", classes={"clean_ice": 1, "debris_covered_ice": 2}`` with the column
      holding the names; ``classes`` may also map codes to names, so
      :data:`xglacier.datasets.CLASSES` can be passed as is (its 0 entry names the background);
    - ``classes={"debris_covered_ice": 2}`` without ``column``: every outline in that class.

    Where outlines of different classes overlap, the class ranked first in ``priority``
    wins (then the next ...); classes not listed rank below the listed ones, and among
    themselves the higher code wins (the default: debris-covered ice, 2, over clean ice, 1).

    Laziness: when ``like`` is Dask-backed, the result is Dask-backed with ``like``'s
    ``y``/``x`` chunks and each chunk is rasterized on its own window (only the outlines
    whose bounding box meets it); a pixel is decided by its centre alone, so chunks give
    the same map as one piece, ties aside (a pixel centre exactly on an outline edge,
    decided by GDAL's floating-point scanline arithmetic). Otherwise NumPy-backed.

    Parameters
    ----------
    outlines
        GeoDataFrame (or GeoSeries) or path of a vector file (shapefile, GeoPackage, GeoJSON, ...) of
        Polygon / MultiPolygon outlines, in any CRS.
    like
        DataArray or Dataset with ``y``, ``x`` coordinates and a CRS (``like.rio.crs``).
    classes
        Class names and codes, ``{name: code}`` or ``{code: name}``; see above.
    column
        Column of ``outlines`` holding each outline's class (name or integer code).
    priority
        Class names or codes, the one that wins overlaps first.
    all_touched
        Burn every pixel an outline touches, not only those whose centre it covers.

    Returns
    -------
    xarray.DataArray
        ``uint8`` ``(y, x)`` named ``labels`` with ``like``'s coordinates and CRS and CF
        ``flag_values`` / ``flag_meanings`` (``0 = background``).

    Raises
    ------
    InputError
        Missing, unreadable or empty file; no CRS (outlines or ``like``); non-polygon
        geometries; outlines that do not overlap ``like``'s extent.
    ParameterError
        Unknown ``column``, class values not in ``classes``, a bad ``priority``.

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, xarray as xr, rioxarray
    >>> from shapely import box
    >>> like = xr.DataArray(np.zeros((4, 6)), dims=("y", "x"),
    ...                     coords={"y": [35.0, 25.0, 15.0, 5.0], "x": 5.0 + 10 * np.arange(6)}
    ...                     ).rio.write_crs("EPSG:32632")
    >>> gdf = gpd.GeoDataFrame({"type": ["clean_ice", "debris_covered_ice"]},
    ...                        geometry=[box(0, 0, 40, 40), box(30, 0, 60, 20)], crs="EPSG:32632")
    >>> lab = rasterize(gdf, like, classes={"clean_ice": 1, "debris_covered_ice": 2}, column="type")
    >>> lab.values
    array([[1, 1, 1, 1, 0, 0],
           [1, 1, 1, 1, 0, 0],
           [1, 1, 1, 2, 2, 2],
           [1, 1, 1, 2, 2, 2]], dtype=uint8)
    >>> lab.attrs["flag_meanings"]
    'background clean_ice debris_covered_ice'
    """
    transform, shape, crs = _grid(like, "rasterize")
    gdf, label = _read_outlines(outlines)
    table = class_table("rasterize", classes)
    codes, names = _codes(gdf, label, table, column)
    if NODATA in names:
        raise ParameterError(f"rasterize: class code {NODATA} ({names[NODATA]!r}) is the label of pixels "
                             f"without a class (segmentation.classes.NODATA); expected codes 1-{NODATA - 1}")
    rank = _ranks(codes, names, table, priority)

    src_bounds = gdf.total_bounds
    gdf = gdf.to_crs(pyproj.CRS.from_user_input(crs))
    gx0, gy0 = transform @ (0, 0)
    gx1, gy1 = transform @ (shape[1], shape[0])
    grid_bounds = (min(gx0, gx1), min(gy0, gy1), max(gx0, gx1), max(gy0, gy1))
    if not gdf.intersects(shapely.box(*grid_bounds)).any():
        raise InputError(
            f"rasterize: {label} does not overlap the grid of like: the outlines cover "
            f"{format_bounds(src_bounds)} in their CRS ({format_bounds(gdf.total_bounds)} in like's CRS), "
            f"the grid covers {format_bounds(grid_bounds)}"
        )
    order = np.argsort(rank, kind="stable")  # burned in this order: the last burned wins
    geoms = gdf.geometry.to_numpy()[order]
    shapes = [(g, int(c)) for g, c in zip(geoms, codes[order], strict=True)]
    bounds = shapely.bounds(geoms)

    chunks = yx_chunks(like)
    if chunks is None:
        data: Any = _burn(shapes, bounds, transform, shape, all_touched)
    else:
        tok = tokenize(shapely.to_wkb(geoms).tolist(), codes[order].tolist(), tuple(transform),
                                shape, chunks, all_touched)
        template = dsa.zeros(shape, chunks=chunks, dtype=np.uint8)
        data = template.map_blocks(_burn_block, shapes, bounds, transform, all_touched, dtype=np.uint8,
                                   meta=np.array((), np.uint8), name=f"rasterize-{tok}")
    out = xr.DataArray(data, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]}, name="labels")
    out.attrs = with_history(
        {"long_name": "glacier class", **flag_attrs(names)}, "rasterize",
        outlines=label, column=column, classes=table or None, priority=priority, all_touched=all_touched,
    )
    return georeference(out, like)
