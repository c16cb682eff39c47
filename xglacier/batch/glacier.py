"""One glacier: its outline, its own UTM grid, and the whole pipeline that makes its products.

:func:`read_outlines` turns an outline file (an RGI region, any vector file) into
:class:`Glacier` records; :func:`utm_crs` and :func:`glacier_bbox` give each glacier its own
UTM zone and buffered box; :func:`process_glacier` runs search (or local scenes) -> load ->
mask / filter / align / fill -> NDSI composites -> the chosen products, writes each product
atomically and returns the glacier's summary row; :func:`is_transient` says whether a
failure is worth retrying.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from .._atomic import remove, temporary_path
from .._validate import check_number
from ..errors import (
    AssetError,
    EmptySearchError,
    InputError,
    ParameterError,
    StacError,
    XGlacierError,
    XGlacierWarning,
)
from ..io.local import open_scenes
from ..io.stac import load, search
from ..io.store import to_netcdf
from ..segmentation.vectors import geodesic_area, write_vector
from . import limits, steps
from .config import BatchConfig
from .models import cached_model

#: Final names of the products in a glacier's folder.
NDSI, FLOW, SEGMENTATION, FORECAST = "ndsi.zarr", "flow.nc", "segmentation.gpkg", "forecast.nc"
PRODUCT_FILES = (NDSI, FLOW, SEGMENTATION, FORECAST)


@dataclass(frozen=True)
class Glacier:
    """One glacier: ``id`` (used as its folder name), ``geometry`` (shapely, EPSG:4326) and
    ``area_km2`` (geodesic area of the outline)."""

    id: str
    geometry: Any
    area_km2: float


def _outline_frame(outlines: Any) -> gpd.GeoDataFrame:
    if isinstance(outlines, gpd.GeoDataFrame):
        return outlines
    if isinstance(outlines, str | os.PathLike):
        path = Path(outlines)
        if not path.exists():
            raise InputError(f"read_outlines: {path} does not exist; expected a vector file of outlines")
        try:
            return gpd.read_file(path)
        except Exception as err:  # pyogrio's errors vary by driver: all mean "not readable"
            raise InputError(f"read_outlines: cannot read {path} as a vector file: {err}") from err
    raise InputError(f"read_outlines: outlines is a {type(outlines).__name__}; expected a GeoDataFrame "
                     "or the path of a vector file")


def read_outlines(outlines: Any, *, id_column: str | None = "RGIId") -> list[Glacier]:
    """The glaciers of an outline table, in its order, with WGS 84 geometries.

    Parameters
    ----------
    outlines
        A GeoDataFrame, or the path of a vector file (GeoPackage, shapefile, GeoJSON...),
        one (Multi)Polygon per row, in any CRS.
    id_column
        Column of unique glacier ids (RGI: ``RGIId``); they name the output folders, so
        they may not hold ``/`` or ``\\`` nor be ``.`` or ``..``. ``None``: ``RGIId`` when
        the table has it, else the row numbers (``"0"``, ``"1"``...), for a caller that
        needs the geometries and not the ids (an outline drawn by hand has no RGI id).

    Raises
    ------
    InputError
        The file is missing or unreadable, the table has no CRS or no ``id_column``, an id
        is missing, duplicated or not a folder name, or a geometry is missing, empty or not
        a polygon; the message names the row (and id) at fault.

    Examples
    --------
    >>> from shapely import box
    >>> gdf = gpd.GeoDataFrame({"RGIId": ["RGI60-14.00005"]}, geometry=[box(77.5, 32.1, 77.55, 32.15)],
    ...                        crs="EPSG:4326")
    >>> [(g.id, round(g.area_km2, 1)) for g in read_outlines(gdf)]
    [('RGI60-14.00005', 26.2)]
    """
    gdf = _outline_frame(outlines)
    if gdf.crs is None:
        raise InputError("read_outlines: the outlines have no CRS; expected one (e.g. EPSG:4326)")
    if id_column is None and "RGIId" not in gdf.columns:
        ids = [str(row) for row in range(len(gdf))]
    else:
        ids = _ids(gdf, id_column or "RGIId")
    for row, (gid, geom) in enumerate(zip(ids, gdf.geometry, strict=True)):
        if geom is None or geom.is_empty:
            raise InputError(f"read_outlines: row {row} (id {gid!r}) has an empty geometry")
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise InputError(f"read_outlines: row {row} (id {gid!r}) is a {geom.geom_type}; expected a "
                             "Polygon or MultiPolygon outline")
    wgs = gdf.geometry.to_crs("EPSG:4326")
    areas = geodesic_area(wgs) / 1e6
    return [Glacier(gid, geom, float(a)) for gid, geom, a in zip(ids, wgs, areas, strict=True)]


def _ids(gdf: Any, id_column: str) -> list[str]:
    """The ids of ``id_column``, checked: present, unique, usable as folder names."""
    if id_column not in gdf.columns:
        raise InputError(f"read_outlines: no id column {id_column!r}; columns: {list(gdf.columns)} "
                         "(pass id_column=)")
    ids = []
    for row, value in enumerate(gdf[id_column]):
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        if not text:
            raise InputError(f"read_outlines: row {row} has no id in column {id_column!r}")
        if "/" in text or "\\" in text or text in (".", ".."):
            raise InputError(f"read_outlines: row {row} has id {text!r} in column {id_column!r}; ids name "
                             "folders, so they may not hold '/' or '\\' nor be '.' or '..'")
        ids.append(text)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
    if len(dup):
        rows = [i for i, v in enumerate(ids) if v == dup[0]]
        raise InputError(f"read_outlines: id {dup[0]!r} of column {id_column!r} is in rows {rows}; "
                         "expected unique ids")
    return ids


def utm_crs(geometry: Any) -> pyproj.CRS:
    """The WGS 84 UTM zone (north or south) of the centroid of a lon/lat geometry.

    Examples
    --------
    >>> from shapely import Point
    >>> utm_crs(Point(77.5, 32.2)).to_epsg(), utm_crs(Point(-70.1, -33.4)).to_epsg()
    (32643, 32719)
    """
    if geometry is None or geometry.is_empty:
        raise InputError("utm_crs: the geometry is empty; expected a glacier outline in lon/lat")
    c = geometry.centroid
    lon, lat = float(c.x), float(c.y)
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"utm_crs: centroid ({lon}, {lat}) is not in degrees; expected EPSG:4326")
    zone = min(int((lon + 180) // 6) + 1, 60)
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def glacier_bbox(glacier: Glacier, *, buffer_m: float
                 ) -> tuple[pyproj.CRS, tuple[float, float, float, float]]:
    """The glacier's UTM CRS and its outline's bounds there, widened by ``buffer_m`` metres.

    Examples
    --------
    >>> from shapely import box
    >>> g = Glacier("g", box(77.5, 32.1, 77.55, 32.15), 26.1)
    >>> crs, (x0, y0, x1, y1) = glacier_bbox(g, buffer_m=500)
    >>> crs.to_epsg(), round(x1 - x0), round(y1 - y0)
    (32643, 5848, 6655)
    """
    buffer_m = check_number("glacier_bbox", "buffer_m", buffer_m, low=0)
    crs = utm_crs(glacier.geometry)
    x0, y0, x1, y1 = gpd.GeoSeries([glacier.geometry], crs="EPSG:4326").to_crs(crs).total_bounds
    return crs, (float(x0 - buffer_m), float(y0 - buffer_m), float(x1 + buffer_m), float(y1 + buffer_m))


def _modifier(spec: str | None) -> Any:
    if spec is None:
        return None
    module, name = spec.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ParameterError(f"process_glacier: modifier={spec!r} cannot be imported: {err}") from err


def _stac_items(bbox: tuple[float, ...], config: BatchConfig) -> list[Any]:
    """The items of every configured collection; EmptySearchError only when all are empty."""
    start, end = config.datetime.split("/")
    found, empty = [], []
    for collection in config.collections:
        try:
            found += list(search(bbox, start, end, max_cloud=config.max_cloud, collection=collection,
                                 url=config.stac_url, platforms=config.platforms,
                                 modifier=_modifier(config.modifier), retries=config.retries,
                                 backoff=config.backoff_s, timeout=config.timeout_s,
                                 budget=limits.budget()))
        except EmptySearchError as err:
            empty.append(str(err))
    if not found:
        raise EmptySearchError("; ".join(empty))
    return found


def glacier_scenes(glacier: Glacier, config: BatchConfig, *, paths: Any = None,
                   where: str | None = None) -> xr.Dataset:
    """The lazy scene cube over the glacier's buffered box, on its UTM grid at
    ``config.resolution``: opened from ``paths`` (files, folders, globs) when given, else
    searched and loaded from ``config.stac_url``, or opened from ``config.local_scenes``
    (``{id}`` replaced by the glacier's id). ``where`` starts error messages."""
    where = where or f"process_glacier: glacier {glacier.id!r}"
    crs, bounds = glacier_bbox(glacier, buffer_m=config.buffer_m)
    bands = list(config.bands)
    if paths is not None or config.local_scenes is not None:
        if paths is None:
            paths = config.local_scenes.replace("{id}", glacier.id)
        cube = open_scenes(paths, bands=bands, crs=crs, resolution=config.resolution, resampling="nearest")
    elif config.stac_url is not None:
        west, south, east, north = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True) \
            .transform_bounds(*bounds, densify_pts=21)
        items = _stac_items((west, south, east, north), config)
        cube = load(items, bands=bands, resolution=config.resolution, crs=crs,
                    bbox=(west, south, east, north), engine=config.engine)
    else:
        raise ParameterError(f"{where}: the configuration names no source of scenes; set stac_url or "
                             "local_scenes")
    return steps.clip(cube, bounds, where)


def _clear_products(folder: Path) -> None:
    """Remove the products of an earlier attempt or configuration, each renamed aside first
    (one atomic step) so that no half-deleted store is ever seen at a final path."""
    for name in PRODUCT_FILES:
        path = folder / name
        if path.exists() or path.is_symlink():
            aside = temporary_path(path)
            os.rename(path, aside)
            remove(aside)


@contextlib.contextmanager
def local_scheduler(threads: int) -> Iterator[None]:
    """The glacier's own Dask scheduler, set explicitly: synchronous for one thread, else a
    local thread pool (a bare ``compute()`` inside a cluster task would go to the cluster)."""
    if threads == 1:
        with dask.config.set(scheduler="synchronous"):
            yield
    else:
        with dask.config.set(scheduler="threads", num_workers=threads):
            yield


@contextlib.contextmanager
def _recorded(into: list[str]) -> Iterator[None]:
    """Collect xglacier's warnings as text (the summary row carries them); others go on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", XGlacierWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, XGlacierWarning):
                    text = f"{w.category.__name__}: {w.message}"
                    if text not in into:
                        into.append(text)
    for w in caught:
        if not issubclass(w.category, XGlacierWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def process_glacier(glacier: Glacier, folder: str | os.PathLike[str], config: BatchConfig) -> dict[str, Any]:
    """Run the whole pipeline for one glacier and write its products into ``folder``.

    Scenes over the glacier's buffered UTM box (:func:`glacier_scenes`) -> scene cloud limit,
    cloud mask, missing-pixel filter, ECC alignment, gap filling -> NDSI composites, written
    as ``ndsi.zarr`` (with the composites of ``config.flow_band``) -> the products of
    ``config.products``: ``flow.nc`` (surface velocity between composites of the flow band,
    noise floor over stable ground outside the outline), ``segmentation.gpkg`` (the polygons
    of each year's late-summer composite, column ``year``), ``forecast.nc``
    (``config.forecast_steps`` composites beyond the last). Each product is written under a
    temporary name and renamed: it exists at its final path only when complete. The products
    of an earlier attempt are removed first (renamed aside, then deleted), so the folder never
    mixes attempts or configurations; a rerun writes the same values again. The glacier's
    graph runs on a local scheduler with ``config.threads`` threads, never on a cluster. No
    retry, no status file: that is the orchestrator's work. Inside a batch task the glacier's
    :mod:`~xglacier.batch.limits` are active: each step (``scenes``, ``composites``,
    ``write ndsi``, ``flow``, ``segment``, ``forecast``) first checks the glacier's deadline
    (``glacier_timeout_s``), and the search takes its retries from the glacier's budget.

    Returns
    -------
    dict
        The summary row (scalars): ``id``, ``outline_area_km2``, ``scenes_used``,
        ``scenes_dropped``, ``alignment_failures``, ``periods`` (composites),
        ``area_km2_<year>`` per segmented year (all glacier polygons in the box) and
        ``connected_area_km2_<year>`` (those touching the outline), ``speed_glacier_m_a`` and
        ``speed_stable_m_a``
        (medians of the per-pixel median speed over the glacier and over stable ground; NaN
        without ``flow``), ``forecast_skill`` (MSE skill on the last ``forecast_steps``
        composites against the better of persistence and seasonal persistence, named by
        ``forecast_skill_reference``; NaN without a model or enough history), ``warnings``
        (xglacier warnings, as text) and ``seconds``.

    Raises
    ------
    EmptySearchError, EmptySceneError, InputError, ParameterError, CheckpointError
        Permanent: the same input fails again (:func:`is_transient` is False).
    GlacierTimeout
        Only inside a batch task, past the glacier's ``glacier_timeout_s``.
    StacError, AssetError, TimeoutError, OSError
        Transient ones (network, server) among them: see :func:`is_transient`.

    Examples
    --------
    Needs scenes; see ``docs/single-glacier.md``::

        glaciers = read_outlines("rgi14.gpkg")
        row = process_glacier(glaciers[0], "out/RGI60-14.00005", load_config("run.toml"))
    """
    t0 = time.perf_counter()
    if not isinstance(glacier, Glacier):
        raise ParameterError(f"process_glacier: glacier is a {type(glacier).__name__}; expected a Glacier "
                             "(see read_outlines)")
    if not isinstance(config, BatchConfig):
        raise ParameterError(f"process_glacier: config is a {type(config).__name__}; expected a BatchConfig")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a folder never mixes attempts: what is there after a failure is this attempt's, complete
    _clear_products(folder)
    where = f"process_glacier: glacier {glacier.id!r}"
    notes: list[str] = []
    row: dict[str, Any] = {"id": glacier.id, "outline_area_km2": glacier.area_km2}
    with local_scheduler(config.threads), _recorded(notes):
        limits.step("scenes")  # in a batch task: checks the glacier's deadline, names the step
        cube = glacier_scenes(glacier, config)
        limits.step("composites")
        comps, summer, counts = steps.composites(cube, config, where)
        row.update(counts, periods=int(comps.sizes["time"]))
        limits.step("write ndsi")
        steps.write(comps, folder / NDSI, where)
        row.update(speed_glacier_m_a=np.nan, speed_stable_m_a=np.nan, forecast_skill=np.nan,
                   forecast_skill_reference="")
        if "flow" in config.products:
            limits.step("flow")
            vel, speeds = steps.velocity(comps[config.flow_band], glacier.geometry)
            to_netcdf(vel, folder / FLOW)
            row.update(speeds)
        if "segment" in config.products:
            limits.step("segment")
            scenes = summer if summer is not None else comps.isel(time=slice(0, 0))
            polys, areas = steps.segment_years(scenes, cached_model(config.segment_model), config,
                                               glacier.geometry)
            write_vector(polys, folder / SEGMENTATION)
            row.update(areas)
        if "forecast" in config.products:
            limits.step("forecast")
            model = cached_model(config.forecast_model)
            series = steps.forecast_variable(comps, model, where)
            to_netcdf(steps.forecast_product(series, model, config.forecast_steps), folder / FORECAST)
            row["forecast_skill"], row["forecast_skill_reference"] = steps.forecast_skill(
                series, model, config.forecast_steps)
    row["warnings"] = " | ".join(notes)[:2000]
    row["seconds"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------ failures
_NETWORK_TEXT = re.compile(
    r"https?://|s3://|gs://|/vsi(curl|s3|gs|az|adls|oss|swift)|timed? ?out|connection (refused|reset|"
    r"aborted|error)|HTTP response code: (408|429|5\d\d)|temporar(il)?y (unavailable|failure)|"
    r"name resolution|network is unreachable", re.IGNORECASE)
_NETWORK_ERRNO = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT,
                  errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN}
_NETWORK_MODULES = ("requests", "urllib3", "aiohttp", "httpx", "botocore", "fsspec", "pystac_client")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 20:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _network(exc: BaseException) -> bool:
    """A network failure: by type, errno, the library that raised it, or what it says."""
    for e in _chain(exc):
        if isinstance(e, TimeoutError | ConnectionError):
            return True
        if type(e).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        if isinstance(e, OSError) and e.errno in _NETWORK_ERRNO:
            return True
        if _NETWORK_TEXT.search(str(e)):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` (with a fresh search) may succeed.

    Permanent (False): an empty search (:class:`~xglacier.errors.EmptySearchError`), bad input
    (:class:`~xglacier.errors.InputError` and its subclasses, :class:`~xglacier.errors.EmptySceneError`
    included), bad settings (:class:`~xglacier.errors.ParameterError`), checkpoints
    (:class:`~xglacier.errors.CheckpointError`), a local file that cannot be read, and any other
    exception (a bug fails the same way twice). Transient (True): a STAC API that cannot be
    reached or answers with an error (:class:`~xglacier.errors.StacError`), an asset read over
    the network that failed (:class:`~xglacier.errors.AssetError` naming a URL or caused by a
    network error; an expired signature included), :class:`TimeoutError`, :class:`ConnectionError`
    and other network ``OSError`` s.

    Examples
    --------
    >>> is_transient(StacError("search: ... 503")), is_transient(EmptySearchError("search: no item"))
    (True, False)
    >>> is_transient(AssetError("cannot read asset 'https://x/B3.tif': HTTP response code: 403"))
    True
    >>> is_transient(AssetError("open_scenes: cannot read band 'green' from /data/B3.tif: not a TIFF"))
    False
    """
    if isinstance(exc, EmptySearchError):
        return False
    if isinstance(exc, StacError):
        return True
    if isinstance(exc, AssetError):
        return _network(exc)
    if isinstance(exc, XGlacierError):
        return False
    if isinstance(exc, OSError | TimeoutError) or type(exc).__module__.split(".")[0] in _NETWORK_MODULES:
        return _network(exc)
    return False
