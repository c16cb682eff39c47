"""Search a STAC API for Landsat scenes and load them as a lazy scene cube.

:func:`search` asks a STAC API (pystac-client) for the items of a collection over a
bounding box and a period, with a cloud limit; :func:`load` turns items into the scene
cube of the data model (``docs/data-model.md``) through stackstac or odc-stac, on a grid
that :mod:`xglacier.io._grid` computes once, so both engines agree and a request that
matches the source grid returns exactly that grid.

Neither function can be shown as a doctest (they need a server or files); see
``docs/io.md`` and ``examples/search_load_write.py``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from urllib3.util.retry import Retry

from .._attrs import provenance
from ..errors import (
    AssetError,
    EmptySearchError,
    MetadataError,
    ParameterError,
    SkippedSceneWarning,
    StacError,
)
from ..landsat import QA_BAND, REFLECTANCE_BANDS
from ._bands import decode, plan
from ._grid import make_grid, overlaps, target_crs
from ._items import ItemInfo, as_item_list, engine_item, item_info

#: Microsoft Planetary Computer's STAC API; its assets need signing (see :func:`search`).
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

#: HTTP statuses worth retrying: timeouts, rate limiting and server-side failures.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)

#: Default spatial chunk size (pixels) of :func:`load`.
SPATIAL_CHUNK = 1024

#: Pixels per chunk that the default time chunking aims at (16 MB of float32): four
#: 1024x1024 scenes, or more scenes of a small area; per-task overhead then stays small.
TARGET_CHUNK_PIXELS = 4 * 1024 * 1024


# --------------------------------------------------------------------------- validation
def check_bbox(bbox: Any, func: str = "search") -> tuple[float, float, float, float]:
    """Return ``bbox`` as four floats ``(west, south, east, north)`` in degrees, or raise.

    Examples
    --------
    >>> check_bbox([77.488, 31.993, 77.821, 32.225])
    (77.488, 31.993, 77.821, 32.225)
    """
    expected = "expected (west, south, east, north) in degrees with west < east and south < north"
    if isinstance(bbox, str | bytes) or not isinstance(bbox, Sequence | np.ndarray) or len(bbox) != 4:
        raise ParameterError(f"{func}: bbox={bbox!r}; {expected}")
    if not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in bbox):
        raise ParameterError(f"{func}: bbox={bbox!r} holds non-numeric or non-finite values; {expected}")
    w, s, e, n = (float(v) for v in bbox)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise ParameterError(
            f"{func}: bbox={bbox!r} is outside [-180, 180] x [-90, 90] (projected coordinates?); {expected}"
        )
    if s >= n:
        raise ParameterError(f"{func}: bbox={bbox!r} has south >= north; {expected}")
    if w >= e:
        raise ParameterError(
            f"{func}: bbox={bbox!r} has west >= east (bounding boxes across the antimeridian are not "
            f"supported: split them); {expected}"
        )
    return (w, s, e, n)


def _date(value: Any, name: str) -> str:
    """An ISO 8601 string for pystac-client: a date stays a date (the API spans the whole day)."""
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ParameterError(f"search: {name}={value!r} is not a date or datetime: {err}") from err
    if t is pd.NaT:
        raise ParameterError(f"search: {name}={value!r} is not a date or datetime")
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    if isinstance(value, str) and len(value.strip()) <= 10 and t == t.normalize():
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------- search
def _stac_io(retries: int, backoff: float, timeout: float, headers: Mapping[str, str] | None):
    from pystac_client.stac_api_io import StacApiIO

    retry = Retry(
        total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False,
        respect_retry_after_header=True,
    )
    return StacApiIO(headers=dict(headers or {}), timeout=timeout, max_retries=retry)


def _keep(item: Any, max_cloud: float | None, platforms: Sequence[str] | None) -> bool:
    """The client-side equivalent of the server-side query (a missing property fails it)."""
    props = item.properties
    if max_cloud is not None:
        cc = props.get("eo:cloud_cover")
        if cc is None or not float(cc) <= max_cloud:
            return False
    if platforms is not None:
        if str(props.get("platform", "")).lower() not in {p.lower() for p in platforms}:
            return False
    return True


def search(
    bbox: Sequence[float],
    start: Any,
    end: Any,
    max_cloud: float | None = 20,
    collection: str = "landsat-c2-l2",
    url: str = PLANETARY_COMPUTER,
    platforms: Sequence[str] | None = ("landsat-8", "landsat-9"),
    modifier: Callable[[Any], Any] | None = None,
    *,
    max_items: int | None = None,
    page_size: int = 100,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Find the scenes of ``collection`` over ``bbox`` between ``start`` and ``end``.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in degrees (WGS 84); validated.
    start, end
        Period, inclusive: dates (``"2020-01-01"``; an end date covers its whole day) or
        datetimes (taken as UTC when naive).
    max_cloud
        Largest ``eo:cloud_cover`` in percent (``None``: no limit). Items without a
        cloud cover are left out when a limit is set.
    collection, url
        STAC collection id and API root; the default is Microsoft Planetary Computer.
    platforms
        Keep these ``platform`` values only (``None``: all).
    modifier
        Called on every returned item, e.g. ``planetary_computer.sign_inplace`` to sign
        the asset URLs of the Planetary Computer (``pip install planetary-computer``;
        not a dependency of xglacier).
    max_items, page_size
        Stop after ``max_items`` items; items per page requested from the server.
    retries, backoff, timeout
        Timeouts, connection failures and HTTP 408/429/5xx are retried ``retries``
        times, waiting ``backoff * 2**n`` seconds (a ``Retry-After`` header is obeyed);
        ``timeout`` is the per-request limit in seconds.
    headers
        Extra HTTP headers (e.g. an API key).

    Returns
    -------
    pystac.ItemCollection
        The items, sorted by time (then id).

    Raises
    ------
    ParameterError
        Bad ``bbox``, dates or limits.
    StacError
        The API cannot be reached after the retries or answers with an error; the
        message names the URL and what was asked.
    EmptySearchError
        Nothing matched.

    Notes
    -----
    The cloud and platform limits are sent with the STAC ``query`` extension (or
    ``filter``, CQL2) when the server advertises it in its conformance classes;
    otherwise they are applied here, on ``eo:cloud_cover`` and ``platform``, with the
    same result.

    Examples
    --------
    It needs a STAC API, so it is not run here::

        items = xglacier.search(bbox=(77.488, 31.993, 77.821, 32.225),
                                start="2013-01-01", end="2022-01-01", max_cloud=20,
                                modifier=planetary_computer.sign_inplace)
    """
    from pystac import ItemCollection
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses

    bbox = check_bbox(bbox, "search")
    t0, t1 = _date(start, "start"), _date(end, "end")
    if pd.Timestamp(t0) > pd.Timestamp(t1):
        raise ParameterError(f"search: start={start!r} is after end={end!r}")
    if max_cloud is not None and not (isinstance(max_cloud, numbers.Real) and 0 <= max_cloud <= 100):
        raise ParameterError(f"search: max_cloud={max_cloud!r}; expected a percentage in [0, 100] or None")
    if isinstance(platforms, str):
        platforms = (platforms,)
    if retries < 0 or backoff < 0 or timeout <= 0 or page_size < 1:
        raise ParameterError("search: retries and backoff must be >= 0, timeout > 0, page_size >= 1")
    asked = (
        f"collection {collection!r}, bbox {list(bbox)}, {t0}/{t1}, max_cloud {max_cloud}, "
        f"platforms {list(platforms) if platforms else None}"
    )

    try:
        # timeout and headers again: Client.open resets those of the stac_io it is given
        client = Client.open(url, stac_io=_stac_io(retries, backoff, timeout, headers), modifier=modifier,
                             timeout=timeout, headers=dict(headers or {}))
    except Exception as err:  # APIError, requests' errors, bad JSON: all mean "no usable API"
        raise StacError(
            f"search: could not open the STAC API at {url} (after {retries} retries) to search "
            f"{asked}: {err}"
        ) from err

    query = filt = None
    server_side = False
    if client.conforms_to(ConformanceClasses.QUERY):
        query = {}
        if max_cloud is not None:
            query["eo:cloud_cover"] = {"lte": max_cloud}
        if platforms:
            query["platform"] = {"in": list(platforms)}
        query, server_side = query or None, True
    elif client.conforms_to(ConformanceClasses.FILTER):
        args: list[dict[str, Any]] = []
        if max_cloud is not None:
            args.append({"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]})
        if platforms:
            args.append({"op": "in", "args": [{"property": "platform"}, list(platforms)]})
        filt = ({"op": "and", "args": args} if len(args) > 1 else args[0]) if args else None
        server_side = True

    try:
        result = client.search(
            collections=[collection], bbox=list(bbox), datetime=f"{t0}/{t1}", query=query,
            filter=filt, filter_lang="cql2-json" if filt else None, max_items=max_items,
            limit=page_size,
        )
        found = list(result.items())
    except Exception as err:  # APIError after the retries, or a malformed answer
        raise StacError(
            f"search: the STAC API at {url} failed while searching {asked} (after {retries} retries): {err}"
        ) from err

    # applied in any case: it costs nothing and guards against servers that ignore the query
    kept = [i for i in found if _keep(i, max_cloud, platforms)]
    if not kept:
        hint = ""
        if not found:
            try:
                known = client.get_collection(collection) is not None
            except Exception:  # only used to word the error below
                known = False
            if not known:
                hint = f" (the API has no collection {collection!r})"
        else:
            hint = f" ({len(found)} items exceed the cloud or platform limit)"
        where = "by the server" if server_side else "on the client"
        raise EmptySearchError(
            f"search: no item at {url} for {asked}{hint}; limits applied {where}"
        )
    kept.sort(key=lambda i: (pd.Timestamp(i.datetime or i.properties.get("start_datetime")), i.id))
    return ItemCollection(kept, clone_items=False)


# --------------------------------------------------------------------------------- load
def _attrs(band: str, integer: bool) -> dict[str, str]:
    if integer:
        long_name = "Landsat Collection 2 QA_PIXEL bit flags" if band == QA_BAND else f"{band} (unscaled)"
        return {"long_name": long_name, "units": "1"}
    if band in REFLECTANCE_BANDS:
        return {"long_name": f"{band} surface reflectance", "units": "1"}
    return {"long_name": band}


def _probe(info: ItemInfo) -> str | None:
    """Open every asset of an item and read its last block; the failure, or None."""
    for a in info.assets.values():
        try:
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(a.href) as src:
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
    """Validated chunk sizes; ``time`` is left out unless given (see :func:`_time_chunk`)."""
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


def _time_chunk(chunk: Mapping[str, int], shape: tuple[int, int], scenes: int) -> int:
    """Scenes per chunk: enough for about TARGET_CHUNK_PIXELS per chunk (at most 64)."""
    tile = min(chunk["y"], shape[0]) * min(chunk["x"], shape[1])
    return int(np.clip(TARGET_CHUNK_PIXELS // tile, 1, min(64, scenes)))


def load(
    items: Any,
    bands: str | Sequence[str] = ("green", "swir16", "qa_pixel"),
    resolution: float = 30,
    crs: Any = None,
    bbox: Sequence[float] | None = None,
    chunks: Mapping[str, int] | int | None = None,
    engine: str = "stackstac",
    *,
    resampling: str = "nearest",
    on_error: str = "raise",
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

    if isinstance(bands, str):
        bands = [bands]
    bands = list(bands)
    if not bands or len(set(bands)) != len(bands) or not all(isinstance(b, str) and b for b in bands):
        raise ParameterError(f"load: bands={bands!r}; expected distinct, non-empty band names")
    if not isinstance(resolution, numbers.Real) or not resolution > 0:
        raise ParameterError(f"load: resolution={resolution!r}; expected a positive number (CRS units)")
    if bbox is not None:
        bbox = check_bbox(bbox, "load")
    if engine not in ENGINES:
        raise ParameterError(f"load: engine={engine!r}; expected one of {sorted(ENGINES)}")
    if on_error not in ("raise", "skip"):
        raise ParameterError(f"load: on_error={on_error!r}; expected 'raise' or 'skip'")
    chunk = _chunks(chunks)
    try:
        resampling = rasterio.enums.Resampling[resampling].name
    except KeyError:
        raise ParameterError(
            f"load: resampling={resampling!r}; expected one of {[r.name for r in rasterio.enums.Resampling]}"
        ) from None

    records = as_item_list(items)
    if not records:
        raise ParameterError("load: items is empty; nothing to load (did the search find anything?)")
    infos = sorted((item_info(r, bands) for r in records), key=lambda i: (i.time, i.id))
    ids = pd.Index([i.id for i in infos])
    if ids.has_duplicates:
        raise MetadataError(f"load: items {sorted(set(ids[ids.duplicated()]))} are given more than once")
    if on_error == "skip":
        with ThreadPoolExecutor(max_workers=8) as pool:
            failures = list(pool.map(_probe, infos))
        dropped = [f for f in failures if f]
        if dropped:
            warnings.warn(
                f"load: dropped {len(dropped)} of {len(infos)} scenes with unreadable assets: "
                + "; ".join(dropped), SkippedSceneWarning, stacklevel=2,
            )
            infos = [i for i, f in zip(infos, failures, strict=True) if not f]
        if not infos:
            raise AssetError("load: every scene has an unreadable asset; nothing left to load")

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
        chunk["time"] = _time_chunk(chunk, grid.shape, len(infos))
    plans = {b: plan(b, [i.assets[b] for i in infos]) for b in bands}
    engine_items = [engine_item(i) for i in infos]
    raw: dict[str, dsa.Array] = {}
    for read in dict.fromkeys(plans.values()):  # one engine call per (dtype, fill)
        group = [b for b in bands if plans[b] == read]
        raw.update(ENGINES[engine](engine_items, group, grid, chunk, resampling, read.dtype, read.fill))
    data_vars = {}
    for band in bands:
        assets = [i.assets[band] for i in infos]
        data = decode(raw[band], plans[band], assets)
        data_vars[band] = xr.Variable(("time", "y", "x"), data, _attrs(band, assets[0].integer))
    coords = {
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
    history = provenance(
        "load", bands=bands, resolution=float(resolution), crs=grid.crs.to_string(),
        bbox=list(bbox) if bbox else None, engine=engine, resampling=resampling,
    )
    ds = xr.Dataset(data_vars, coords=coords, attrs={
        "source": f"STAC items read by xglacier.load (engine {engine})", "history": history,
    })
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    for name in ds.data_vars:
        ds[name].encoding["grid_mapping"] = "spatial_ref"
    return ds

