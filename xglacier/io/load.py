"""Load STAC items as a lazy scene cube through stackstac or odc-stac.

:func:`load` turns items into the scene cube of the data model (``docs/data-model.md``)
on a grid that :mod:`xglacier.io._grid` computes once, so both engines agree and a
request that matches the source grid returns exactly that grid. It cannot be shown as a
doctest (it needs readable assets); see ``docs/io.md``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .._attrs import georeference, provenance
from .._validate import check_choice, check_number
from ..errors import AssetError, MetadataError, ParameterError, SkippedSceneWarning
from ..landsat import QA_BAND, REFLECTANCE_BANDS
from ._bands import decode, plan
from ._grid import make_grid, overlaps, target_crs
from ._http import http_options
from ._items import ItemInfo, as_item_list, engine_item, item_info
from .search import check_bbox

#: Default spatial chunk size (pixels) of :func:`load`.
SPATIAL_CHUNK = 1024

#: Pixels per chunk that the default time chunking aims at (16 MB of float32): four
#: 1024x1024 scenes, or more scenes of a small area; per-task overhead then stays small.
TARGET_CHUNK_PIXELS = 4 * 1024 * 1024


# --------------------------------------------------------------------------------- load
def _attrs(band: str, integer: bool) -> dict[str, str]:
    if integer:
        long_name = "Landsat Collection 2 QA_PIXEL bit flags" if band == QA_BAND else f"{band} (unscaled)"
        return {"long_name": long_name, "units": "1"}
    if band in REFLECTANCE_BANDS:
        return {"long_name": f"{band} surface reflectance", "units": "1"}
    return {"long_name": band}


def _probe(info: ItemInfo, http_timeout: float) -> str | None:
    """Open every asset of an item and read its last block; the failure, or None."""
    for a in info.assets.values():
        try:
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", **http_options(http_timeout)), \
                    rasterio.open(a.href) as src:
                bh, bw = src.block_shapes[0]
                row, col = (src.height - 1) // bh * bh, (src.width - 1) // bw * bw
                src.read(1, window=((row, min(row + bh, src.height)), (col, min(col + bw, src.width))))
        except Exception as err:  # any failure to open or decode drops the scene (reported)
            return f"{info.id}: asset {a.key!r} ({a.href}): {err}"
    return None


def _strings(values: Iterable[Any]) -> np.ndarray:
    """Variable-length strings (object dtype): what netCDF and Zarr store without fuss."""
    return np.array([str(v) for v in values], dtype=object)


def _chunks(chunks: Mapping[str, int] | int | None) -> dict[str, int]:
    """Validated chunk sizes; ``time`` is left out unless given (see :func:`time_chunk`)."""
    if chunks is None:
        chunks = {}
    if isinstance(chunks, numbers.Integral):
        chunks = {"y": int(chunks), "x": int(chunks)}
    if not isinstance(chunks, Mapping) or set(chunks) - {"time", "y", "x"}:
        raise ParameterError(f"load: chunks={chunks!r}; expected a dict with keys among time, y, x")
    out = {"y": SPATIAL_CHUNK, "x": SPATIAL_CHUNK, **{k: int(v) for k, v in chunks.items()}}
    if min(out.values()) < 1:
        raise ParameterError(f"load: chunks={chunks!r}; chunk sizes must be >= 1")
    return out


def time_chunk(chunk: Mapping[str, int], shape: tuple[int, int], scenes: int) -> int:
    """Scenes per chunk: enough for about TARGET_CHUNK_PIXELS per chunk (at most 64)."""
    tile = min(chunk["y"], shape[0]) * min(chunk["x"], shape[1])
    return int(np.clip(TARGET_CHUNK_PIXELS // tile, 1, min(64, scenes)))


def load(
    items: Any,
    *,
    bands: str | Sequence[str] = ("green", "swir16", "qa_pixel"),
    resolution: float = 30,
    crs: Any = None,
    bbox: Sequence[float] | None = None,
    chunks: Mapping[str, int] | int | None = None,
    engine: str = "stackstac",
    resampling: str = "nearest",
    on_error: str = "raise",
    http_timeout: float = 60.0,
) -> xr.Dataset:
    """Load STAC items as a lazy scene cube ``(time, y, x)``, one variable per band.

    Parameters
    ----------
    items
        A ``pystac.ItemCollection`` (what :func:`search` returns), a list of
        ``pystac.Item`` or item dicts.
    bands
        Band names: STAC ``common_name`` (``blue, green, red, nir08, swir16, swir22``),
        ``qa_pixel``, or any asset key. Each is matched to an asset by key, then by the
        ``common_name``, then the ``name`` of its ``eo:bands`` (or STAC 1.1 ``bands``), so
        ``swir16`` works whatever the provider calls the asset.
    resolution
        Pixel size in units of the CRS (metres).
    crs
        Output CRS (``"EPSG:32643"``, an EPSG code, WKT). ``None``: the UTM zone of the
        centre of ``bbox``; without ``bbox``, the items' own CRS when they share one, else
        the UTM zone of the centre of their footprints. Items in other zones are
        reprojected (``resampling``) onto this one grid.
    bbox
        ``(west, south, east, north)`` in degrees; the grid covers it, snapped outwards
        to whole pixels. ``None``: the union of the items' footprints.
    chunks
        Dask chunk sizes, e.g. ``{"time": 1, "y": 512, "x": 512}`` (an int sets y and x).
        Default: 1024x1024 pixels, and along ``time`` as many scenes as make about 4
        million pixels per chunk (4 scenes of 1024x1024, up to 64 of a small area):
        reading and reducing cost less per pixel than with one task per scene.
    engine
        ``"stackstac"`` or ``"odc"`` (odc-stac): the same Dataset either way.
    resampling
        Resampling for items not on the output grid (``"nearest"``, ``"bilinear"``, ...).
    on_error
        ``"raise"``: an asset that cannot be read raises :class:`~xglacier.errors.AssetError`
        naming it, when the data is computed. ``"skip"``: every asset is opened now
        (its header and last block are read, no other pixel) and scenes with an
        unreadable asset are dropped with a :class:`~xglacier.errors.SkippedSceneWarning`.
    http_timeout
        Seconds a read of a remote asset may receive nothing (or take to connect) before it
        fails as an :class:`~xglacier.errors.AssetError` naming the asset, instead of hanging
        its Dask task (and a batch run's glacier) forever. A slow transfer that still moves
        is not cut.

    Returns
    -------
    xarray.Dataset
        Reflectance bands as float32 scaled with each asset's ``raster:bands``
        scale/offset (Landsat C2 L2 ``DN * 0.0000275 - 0.2`` where absent), nodata as
        NaN; bands named ``qa*`` as unscaled integers (``qa_pixel``: uint16, 1 = fill
        outside the scenes). Coordinates: pixel-centre ``x``/``y``; ``time`` (UTC,
        sorted); per scene ``id``, ``platform``, ``cloud_cover`` (from
        ``eo:cloud_cover``) and ``source_crs``; a CF ``spatial_ref``. Lazy: nothing is
        read until computed. Every attribute and coordinate can be written to NetCDF
        or Zarr as it is.

    Raises
    ------
    ParameterError, MissingBandError, MetadataError, AssetError

    Notes
    -----
    The grid is aligned on the source pixels: loading items at their own resolution and
    CRS without ``bbox`` gives exactly their grid (shape, transform), and with ``bbox``
    a subset of it. Items with the same timestamp stay separate scenes.

    Examples
    --------
    It needs STAC items whose assets can be read, so it is not run here::

        cube = xglacier.load(items, bands=["green", "swir16", "qa_pixel"], resolution=30)
        cube = xglacier.load(items, engine="odc", chunks={"y": 512, "x": 512})
    """
    from ._engines import ENGINES

    bands, resampling = _check_load(bands, resolution, engine, on_error, resampling, ENGINES)
    http_timeout = float(check_number("load", "http_timeout", http_timeout, low=0, low_open=True))
    bbox = None if bbox is None else check_bbox(bbox, "load")
    chunk = _chunks(chunks)
    records = as_item_list(items)
    if not records:
        raise ParameterError("load: items is empty; nothing to load (did the search find anything?)")
    infos = sorted((item_info(r, bands) for r in records), key=lambda i: (i.time, i.id))
    ids = pd.Index([i.id for i in infos])
    if ids.has_duplicates:
        raise MetadataError(f"load: items {sorted(set(ids[ids.duplicated()]))} are given more than once")
    if on_error == "skip":
        infos = _readable(infos, http_timeout)

    out_crs = target_crs(crs, bbox, infos)
    grid = make_grid(infos, out_crs, float(resolution), bbox)
    inside = [i for i in infos if overlaps(i, grid)]
    if not inside:
        raise ParameterError(
            f"load: none of the {len(infos)} items overlaps bbox={list(bbox) if bbox else None} "
            f"(grid {grid.shape[0]}x{grid.shape[1]} in {grid.crs.to_string()})"
        )
    infos = inside
    if "time" not in chunk:
        chunk["time"] = time_chunk(chunk, grid.shape, len(infos))
    plans = {b: plan(b, [i.assets[b] for i in infos]) for b in bands}
    engine_items = [engine_item(i) for i in infos]
    raw: dict[str, dsa.Array] = {}
    for read in dict.fromkeys(plans.values()):  # one engine call per (dtype, fill)
        group = [b for b in bands if plans[b] == read]
        raw.update(ENGINES[engine](engine_items, group, grid, chunk, resampling, read.dtype, read.fill,
                                   http_timeout=http_timeout))
    data_vars = {}
    for band in bands:
        assets = [i.assets[band] for i in infos]
        data = decode(raw[band], plans[band], assets)
        data_vars[band] = xr.Variable(("time", "y", "x"), data, _attrs(band, assets[0].integer))
    history = provenance(
        "load", bands=bands, resolution=float(resolution), crs=grid.crs.to_string(),
        bbox=list(bbox) if bbox else None, engine=engine, resampling=resampling,
    )
    ds = xr.Dataset(data_vars, coords=_scene_coords(infos, grid), attrs={
        "source": f"STAC items read by xglacier.load (engine {engine})", "history": history,
    })
    return georeference(ds, None, crs=grid.crs).rio.write_transform(grid.transform)


def _check_load(bands: Any, resolution: Any, engine: Any, on_error: Any, resampling: Any,
                engines: Mapping[str, Any]) -> tuple[list[str], str]:
    """Validated band list and resampling name of :func:`load`."""
    if isinstance(bands, str):
        bands = [bands]
    bands = list(bands)
    if not bands or len(set(bands)) != len(bands) or not all(isinstance(b, str) and b for b in bands):
        raise ParameterError(f"load: bands={bands!r}; expected distinct, non-empty band names")
    check_number("load", "resolution", resolution, low=0, low_open=True)
    check_choice("load", "engine", engine, sorted(engines))
    check_choice("load", "on_error", on_error, ("raise", "skip"))
    try:
        return bands, rasterio.enums.Resampling[resampling].name
    except KeyError:
        raise ParameterError(
            f"load: resampling={resampling!r}; expected one of {[r.name for r in rasterio.enums.Resampling]}"
        ) from None


def _readable(infos: list[ItemInfo], http_timeout: float) -> list[ItemInfo]:
    """The items whose assets all open; the others dropped with one warning naming them."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = list(pool.map(lambda info: _probe(info, http_timeout), infos))
    dropped = [f for f in failures if f]
    if dropped:
        warnings.warn(
            f"load: dropped {len(dropped)} of {len(infos)} scenes with unreadable assets: "
            + "; ".join(dropped), SkippedSceneWarning, stacklevel=3,
        )
        infos = [i for i, f in zip(infos, failures, strict=True) if not f]
    if not infos:
        raise AssetError("load: every scene has an unreadable asset; nothing left to load")
    return infos


def _scene_coords(infos: list[ItemInfo], grid: Any) -> dict[str, Any]:
    """Grid coordinates and per-scene metadata along ``time``."""
    return {
        "time": pd.DatetimeIndex([i.time for i in infos]).as_unit("ns"),
        "y": grid.y, "x": grid.x,
        "id": ("time", _strings(i.id for i in infos)),
        "platform": ("time", _strings(i.properties.get("platform") or "" for i in infos)),
        "cloud_cover": ("time", np.array(
            [np.nan if i.properties.get("eo:cloud_cover") is None else float(i.properties["eo:cloud_cover"])
             for i in infos], dtype=np.float64), {"long_name": "scene cloud cover", "units": "percent"}),
        "source_crs": ("time", _strings(i.crs_label for i in infos),
                       {"long_name": "CRS of the scene before resampling"}),
    }
