"""Polygons from label maps, their geodesic areas, and vector files written atomically.

- :func:`polygonize`: class map -> GeoDataFrame of polygons with class, name and
  area in m² (geodesic, valid in any CRS), holes kept, tolerances in metres;
- :func:`geodesic_area`: area in m² of polygons on the ellipsoid of their CRS;
- :func:`write_vector`: GeoJSON / GeoPackage, written atomically.

Class codes are integers 1-254; 0 is background and 255
(:data:`~xglacier.segmentation.classes.NODATA`) marks pixels without a class. Class names
come from ``classes=`` or the label map's CF ``flag_values`` / ``flag_meanings`` attributes
(see :mod:`xglacier.segmentation.classes`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
import xarray as xr
from rasterio import features as rio_features

from .._atomic import atomic_path
from .._validate import check_choice, check_number
from ..errors import DimensionError, EmptyOutputWarning, InputError, ParameterError
from .classes import NODATA, class_table, flag_names

__all__ = ["VECTOR_DRIVERS", "geodesic_area", "polygonize", "write_vector"]

#: Vector formats :func:`write_vector` writes, by file suffix.
VECTOR_DRIVERS: dict[str, str] = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}


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
    the grid, whichever way ``y`` and ``x`` run); background (0) and nodata
    (:data:`~xglacier.segmentation.classes.NODATA`, 255: pixels whose inputs were
    missing) are never returned, and a region of a class around them has a hole there.
    Only the label map's classes are traced: when ``classes=`` or the labels' CF flags
    name them, any other code in the map is an :class:`InputError`. Areas are geodesic,
    on the ellipsoid of the labels' CRS (:func:`geodesic_area`), so they are true m² in
    any CRS, geographic and non-equal-area projections included.

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
        The classes, ``{name: code}`` or ``{code: name}``; default: the labels' CF
        ``flag_values`` / ``flag_meanings``, else every code 1-254, named ``class_<code>``.
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
    check_choice("polygonize", "connectivity", connectivity, (4, 8))
    simplify = check_number("polygonize", "simplify", simplify, low=0, allow_none=True)
    min_area = check_number("polygonize", "min_area", min_area, low=0, allow_none=True)
    crs = labels.rio.crs
    if crs is None:
        raise InputError(f"polygonize: labels {labels.name!r} have no CRS; expected one readable with "
                         "labels.rio.crs")
    names = {c: n for n, c in class_table("polygonize", classes).items()} or flag_names(labels.attrs)
    transform = labels.rio.transform(recalc=True)
    arr = np.asarray(labels.values)  # computed: regions run across chunks
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
        raise InputError(f"polygonize: labels {labels.name!r} hold codes outside 0-{np.iinfo(np.int32).max}")
    arr = arr.astype(np.uint8 if arr.size == 0 or arr.max() <= 255 else np.int32, copy=False)
    traced = (arr != 0) & (arr != NODATA)
    known = sorted(c for c in names if c not in (0, NODATA))
    if names:
        unknown = sorted(set(np.unique(arr[traced]).tolist()) - set(known))
        if unknown:
            raise InputError(
                f"polygonize: labels {labels.name!r} hold codes {unknown[:10]} that are not among their "
                f"classes {known} ({'classes=' if classes is not None else 'flag_values'}); expected only "
                f"those, 0 (background) and {NODATA} (nodata)")

    geoms, codes = [], []
    regions = rio_features.shapes(arr, mask=traced, connectivity=connectivity, transform=transform)
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
    gdf["class_name"] = pd.Series([names.get(c, f"class_{c}") for c in gdf["class"]], dtype=object,
                                  index=gdf.index)
    gdf["area_m2"] = geodesic_area(gdf) if len(gdf) else np.array([], np.float64)
    if min_area:
        gdf = gdf[gdf["area_m2"] >= min_area]
    gdf = gdf.sort_values(["class", "area_m2"], ascending=[True, False], kind="stable")
    return gdf[["class", "class_name", "area_m2", "geometry"]].reset_index(drop=True)


def write_vector(gdf: gpd.GeoDataFrame, path: str | os.PathLike) -> Path:
    """Write polygons to GeoJSON (``.geojson``, ``.json``) or GeoPackage (``.gpkg``), atomically.

    The file is written under a temporary name in the same folder, then renamed over
    ``path``: an existing file is replaced whole, and a failed write leaves nothing. The
    layer is named after the file's stem. An empty GeoDataFrame (no polygon) is still
    written, as a valid file without features, with an :class:`EmptyOutputWarning`: a
    map with nothing on it is more often a failed model than a glacier-free scene.

    Examples
    --------
    ::

        gdf = xglacier.polygonize(labels, simplify=15, min_area=10_000)
        write_vector(gdf, "outlines.gpkg")
    """
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InputError(f"write_vector: expected a GeoDataFrame, got {type(gdf).__name__}")
    if gdf.active_geometry_name is None:
        raise InputError("write_vector: the GeoDataFrame has no geometry column; expected polygons "
                         "(e.g. from polygonize)")
    path = Path(path)
    driver = VECTOR_DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ParameterError(
            f"write_vector: cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}; "
            f"expected one of {sorted(VECTOR_DRIVERS)}"
        )
    if not path.parent.is_dir():
        raise InputError(f"write_vector: folder {str(path.parent)!r} does not exist")
    if len(gdf) == 0:
        warnings.warn(f"write_vector: the GeoDataFrame is empty; {str(path)!r} is written without any "
                      "feature (did the segmentation find nothing?)", EmptyOutputWarning, stacklevel=2)
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, driver=driver, layer=path.stem, engine="pyogrio")
    return path
