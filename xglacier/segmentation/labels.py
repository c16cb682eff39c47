"""Label maps from glacier outlines and polygons back from label maps.

- :func:`rasterize`: outlines (GeoDataFrame or vector file, any CRS) -> ``uint8`` class
  map on a cube's grid, holes kept, explicit priority where classes overlap;
- :func:`polygonize`: class map -> GeoDataFrame of polygons with class, name and
  area in m² (geodesic, valid in any CRS), holes kept, tolerances in metres;
- :func:`write_vector`: GeoJSON / GeoPackage, written atomically.

Class codes are integers 1-255; 0 is background. Class names travel with label maps as
CF ``flag_values`` / ``flag_meanings`` attributes (as :data:`xglacier.datasets.CLASSES`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
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

from .._attrs import with_history
from ..errors import DimensionError, InputError, ParameterError

#: Vector formats :func:`write_vector` writes, by file suffix.
VECTOR_DRIVERS: dict[str, str] = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}

_POLYGONAL = {"Polygon", "MultiPolygon"}


# --------------------------------------------------------------------------- classes
def _class_table(classes: Mapping[Any, Any] | None, what: str) -> dict[str, int]:
    """Normalise ``classes`` to ``{name: code}``; accepts ``{name: code}`` or ``{code: name}``."""
    if classes is None:
        return {}
    if not isinstance(classes, Mapping) or not classes:
        raise ParameterError(
            f"{what}: classes={classes!r}; expected a non-empty mapping of class names to codes, "
            "e.g. {'clean_ice': 1, 'debris_covered_ice': 2} (or codes to names, as xglacier.datasets.CLASSES)"
        )
    items = list(classes.items())

    def is_code(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if all(isinstance(k, str) and is_code(v) for k, v in items):
        table = {k: int(v) for k, v in items}
    elif all(is_code(k) and isinstance(v, str) for k, v in items):
        table = {v: int(k) for k, v in items}
    else:
        raise ParameterError(
            f"{what}: classes={dict(classes)!r}; expected names (str) mapped to integer codes, "
            "or integer codes mapped to names"
        )
    bad = {k: v for k, v in table.items() if not 0 <= v <= 255}
    if bad:
        raise ParameterError(f"{what}: class codes {bad} outside 0-255; expected uint8 codes "
                             "(0 = background)")
    codes = list(table.values())
    if len(set(codes)) != len(codes):
        raise ParameterError(f"{what}: classes={dict(classes)!r} gives the same code to several names")
    return table


def _meaning(name: str) -> str:
    return "_".join(str(name).split())  # CF flag_meanings are blank-separated words


def _flag_attrs(names: Mapping[int, str]) -> dict[str, Any]:
    codes = sorted({0, *names})
    meanings = {0: "background", **{c: n for c, n in names.items()}}
    return {
        "flag_values": [int(c) for c in codes],
        "flag_meanings": " ".join(_meaning(meanings[c]) for c in codes),
    }


# --------------------------------------------------------------------------- inputs
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


def _yx_chunks(like: xr.DataArray | xr.Dataset) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    arrays = [like] if isinstance(like, xr.DataArray) else list(like.data_vars.values())
    for a in arrays:
        if isinstance(a.data, dsa.Array) and "y" in a.dims and "x" in a.dims:
            return a.chunks[a.get_axis_num("y")], a.chunks[a.get_axis_num("x")]
    return None


def _fmt(bounds: Sequence[float]) -> str:
    return "(" + ", ".join(f"{b:.6g}" for b in bounds) + ")"


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
            unknown = [c for c in found if not 1 <= c <= 255]
            expect = "1-255"
        if unknown:
            raise ParameterError(f"rasterize: column {column!r} of {label} holds unknown class codes "
                                 f"{unknown[:10]}; expected codes in {expect} (0 is background)")
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
            if isinstance(p, (int, np.integer)) and not isinstance(p, bool) and 1 <= p <= 255:
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
    classes: Mapping[Any, Any] | None = None,
    *,
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
    - ``column="code"`` holding integer codes 1-255 (names ``class_<code>``, or the names
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
    >>> lab = rasterize(gdf, like, {"clean_ice": 1, "debris_covered_ice": 2}, column="type")
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
    table = _class_table(classes, "rasterize")
    codes, names = _codes(gdf, label, table, column)
    rank = _ranks(codes, names, table, priority)

    src_bounds = gdf.total_bounds
    gdf = gdf.to_crs(pyproj.CRS.from_user_input(crs))
    gx0, gy0 = transform @ (0, 0)
    gx1, gy1 = transform @ (shape[1], shape[0])
    grid_bounds = (min(gx0, gx1), min(gy0, gy1), max(gx0, gx1), max(gy0, gy1))
    if not gdf.intersects(shapely.box(*grid_bounds)).any():
        raise InputError(
            f"rasterize: {label} does not overlap the grid of like: the outlines cover {_fmt(src_bounds)} "
            f"in their CRS ({_fmt(gdf.total_bounds)} in like's CRS), the grid covers {_fmt(grid_bounds)}"
        )
    order = np.argsort(rank, kind="stable")  # burned in this order: the last burned wins
    geoms = gdf.geometry.to_numpy()[order]
    shapes = [(g, int(c)) for g, c in zip(geoms, codes[order], strict=True)]
    bounds = shapely.bounds(geoms)

    chunks = _yx_chunks(like)
    if chunks is None:
        data: Any = _burn(shapes, bounds, transform, shape, all_touched)
    else:
        tok = tokenize(shapely.to_wkb(geoms).tolist(), codes[order].tolist(), tuple(transform),
                                shape, chunks, all_touched)
        template = dsa.zeros(shape, chunks=chunks, dtype=np.uint8)
        data = template.map_blocks(_burn_block, shapes, bounds, transform, all_touched, dtype=np.uint8,
                                   meta=np.array((), np.uint8), name=f"rasterize-{tok}")
    coords = {"y": like["y"], "x": like["x"]}
    if "spatial_ref" in like.coords:
        coords["spatial_ref"] = like.coords["spatial_ref"]
    out = xr.DataArray(data, dims=("y", "x"), coords=coords, name="labels")
    out.attrs = with_history(
        {"long_name": "glacier class", **_flag_attrs(names)}, "rasterize",
        outlines=label, column=column, classes=table or None, priority=priority, all_touched=all_touched,
    )
    out = out.rio.write_crs(crs)
    out.encoding["grid_mapping"] = "spatial_ref"
    return out


# --------------------------------------------------------------------------- polygonize
def _names_from_attrs(attrs: Mapping[str, Any]) -> dict[int, str]:
    values, meanings = attrs.get("flag_values"), attrs.get("flag_meanings")
    if values is None or not isinstance(meanings, str):
        return {}
    values = list(np.atleast_1d(values))
    words = meanings.split()
    if len(words) != len(values):
        return {}
    return {int(v): w for v, w in zip(values, words, strict=True)}


def _metric_crs(crs: pyproj.CRS, gdf: gpd.GeoDataFrame) -> tuple[pyproj.CRS | None, float]:
    """A CRS in which to measure lengths in metres (None: the data's own) and its unit factor."""
    if crs.is_projected:
        return None, crs.axis_info[0].unit_conversion_factor
    return gdf.estimate_utm_crs(), 1.0


def geodesic_area(gdf: gpd.GeoSeries | gpd.GeoDataFrame) -> np.ndarray:
    """Area in m² of each polygon on the ellipsoid of its CRS (any CRS; holes subtracted).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import box
    >>> a = geodesic_area(gpd.GeoSeries([box(0, 0, 1, 1)], crs="EPSG:4326"))
    >>> round(float(a[0]) / 1e9, 3)  # km² / 1000 of a 1-degree cell on the equator
    12.309
    """
    geo = gdf.geometry if isinstance(gdf, gpd.GeoDataFrame) else gdf
    if geo.crs is None:
        raise InputError("geodesic_area: the geometries have no CRS; expected one")
    geodetic = pyproj.CRS.from_user_input(geo.crs).geodetic_crs
    lonlat = geo.to_crs(geodetic)
    geod = geodetic.get_geod()
    out = np.empty(len(lonlat))
    for k, g in enumerate(lonlat.to_numpy()):
        if g is None or g.is_empty:
            out[k] = 0.0
            continue
        # exterior counter-clockwise, holes clockwise: holes count negative
        out[k] = abs(geod.geometry_area_perimeter(shapely.orient_polygons(g, exterior_cw=False))[0])
    return out


def polygonize(
    labels: xr.DataArray,
    *,
    simplify: float | None = None,
    min_area: float | None = None,
    classes: Mapping[Any, Any] | None = None,
    connectivity: int = 4,
) -> gpd.GeoDataFrame:
    """Turn a class map into polygons: one per connected region of each class, holes kept.

    Regions come from :func:`rasterio.features.shapes` (pixel edges, so outlines follow
    the grid); background (0) is not returned. Areas are geodesic, on the ellipsoid of the
    labels' CRS (:func:`geodesic_area`), so they are true m² in any CRS, geographic and
    non-equal-area projections included.

    A Dask-backed ``labels`` is computed here (the whole map is needed to follow regions
    across chunks).

    Parameters
    ----------
    labels
        Integer (or boolean) class map, dimensions ``(y, x)``, with a CRS (``labels.rio.crs``).
    simplify
        Douglas-Peucker tolerance in metres (``shapely.simplify(preserve_topology=True)``,
        per polygon: neighbours sharing an edge may then leave slivers between them). In a
        geographic CRS polygons are simplified in their UTM zone and transformed back.
    min_area
        Drop polygons smaller than this many m² (measured after simplification). Holes are
        kept whatever their size; a small region dropped inside another leaves its hole.
    classes
        Class names, ``{name: code}`` or ``{code: name}``; default: the labels' CF
        ``flag_values`` / ``flag_meanings``, else ``class_<code>``.
    connectivity
        4 or 8: pixels sharing only a corner belong to one region with 8.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``class`` (int), ``class_name``, ``area_m2``, ``geometry`` (Polygon,
        interior rings kept), in the labels' CRS, sorted by class then decreasing area.

    Examples
    --------
    >>> import numpy as np, xarray as xr, rioxarray
    >>> lab = np.ones((5, 5), np.uint8)
    >>> lab[2, 2] = 0  # an outcrop: a hole
    >>> lab[0, 4] = 2
    >>> da = xr.DataArray(lab, dims=("y", "x"), coords={"y": 5200045.0 - 10 * np.arange(5),
    ...                   "x": 500005.0 + 10 * np.arange(5)}).rio.write_crs("EPSG:32632")
    >>> gdf = polygonize(da, classes={"clean_ice": 1, "debris_covered_ice": 2})
    >>> gdf[["class", "class_name"]].values.tolist(), len(gdf.geometry[0].interiors)
    ([[1, 'clean_ice'], [2, 'debris_covered_ice']], 1)

    23 and 1 pixels of 10 m x 10 m in UTM grid metres; UTM shrinks distances by the
    scale factor 0.9996 on its central meridian, so true areas are 0.08 % larger:

    >>> gdf.area_m2.round(1).tolist()
    [2301.8, 100.1]
    """
    if not isinstance(labels, xr.DataArray):
        raise InputError(f"polygonize: labels is a {type(labels).__name__}; expected a DataArray")
    if labels.dims != ("y", "x"):
        raise DimensionError(f"polygonize: labels {labels.name!r} has dimensions {labels.dims}; "
                             "expected ('y', 'x')")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"polygonize: labels {labels.name!r} has dtype {labels.dtype}; expected integer "
                         "class codes (0 = background)")
    if connectivity not in (4, 8):
        raise ParameterError(f"polygonize: connectivity={connectivity!r}; expected 4 or 8")
    for name, value in (("simplify", simplify), ("min_area", min_area)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ParameterError(f"polygonize: {name}={value!r}; expected a non-negative number (metres)")
    crs = labels.rio.crs
    if crs is None:
        raise InputError(f"polygonize: labels {labels.name!r} have no CRS; expected one readable with "
                         "labels.rio.crs")
    names = {c: n for n, c in _class_table(classes, "polygonize").items()} or _names_from_attrs(labels.attrs)
    transform = labels.rio.transform(recalc=True)
    arr = np.asarray(labels.values)  # computed: regions run across chunks
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
        raise InputError(f"polygonize: labels {labels.name!r} hold codes outside 0-{np.iinfo(np.int32).max}")
    arr = arr.astype(np.uint8 if arr.size == 0 or arr.max() <= 255 else np.int32, copy=False)

    geoms, codes = [], []
    regions = rio_features.shapes(arr, mask=arr != 0, connectivity=connectivity, transform=transform)
    for geom, value in regions:
        geoms.append(shapely.geometry.shape(geom))
        codes.append(int(value))
    pcrs = pyproj.CRS.from_user_input(crs)
    gdf = gpd.GeoDataFrame({"class": np.array(codes, dtype=np.int64)}, geometry=geoms, crs=pcrs)
    if simplify and len(gdf):
        metric, factor = _metric_crs(pcrs, gdf)
        work = gdf.geometry if metric is None else gdf.geometry.to_crs(metric)
        work = work.simplify(simplify / factor, preserve_topology=True)
        gdf = gdf.set_geometry(work if metric is None else work.to_crs(pcrs))
    gdf["class_name"] = [names.get(c, f"class_{c}") for c in gdf["class"]]
    gdf["area_m2"] = geodesic_area(gdf) if len(gdf) else np.array([], np.float64)
    if min_area:
        gdf = gdf[gdf["area_m2"] >= min_area]
    gdf = gdf.sort_values(["class", "area_m2"], ascending=[True, False], kind="stable")
    return gdf[["class", "class_name", "area_m2", "geometry"]].reset_index(drop=True)


# --------------------------------------------------------------------------- writing
def write_vector(gdf: gpd.GeoDataFrame, path: str | os.PathLike) -> Path:
    """Write polygons to GeoJSON (``.geojson``, ``.json``) or GeoPackage (``.gpkg``), atomically.

    The file is written under a temporary name in the same folder, then renamed over
    ``path``: an existing file is replaced whole, and a failed write leaves nothing. The
    layer is named after the file's stem.

    Examples
    --------
    ::

        gdf = xglacier.polygonize(labels, simplify=15, min_area=10_000)
        write_vector(gdf, "outlines.gpkg")
    """
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InputError(f"write_vector: expected a GeoDataFrame, got {type(gdf).__name__}")
    path = Path(path)
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ParameterError(
            f"write_vector: cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}; "
            f"expected one of {sorted(VECTOR_DRIVERS)}"
        )
    if not path.parent.is_dir():
        raise InputError(f"write_vector: folder {str(path.parent)!r} does not exist")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        gdf.to_file(tmp, driver=driver, layer=path.stem, engine="pyogrio")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
