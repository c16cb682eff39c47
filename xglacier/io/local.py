"""Scene cubes from local rasters: :func:`open_scenes`.

The files are single-band rasters (GeoTIFF, COG, anything GDAL opens), one per band and
scene, as Landsat Collection 2 Level-2 and HLS are distributed. Which band and scene a
file holds comes from its name (:mod:`xglacier.io.files.names`) or from ``band_names``;
every scene is put on one grid, checked pixel for pixel (:mod:`xglacier.io.files.grid`);
pixels are read lazily (:mod:`xglacier.io.files.read`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from .._attrs import georeference, with_history
from .._validate import check_choice, check_int, check_number
from ..errors import GridMismatchError, MetadataError, ParameterError
from .files.grid import crs_label, describe, flip, placement, target_grid
from .files.read import BandStack, Source
from .files.scenes import (
    Scene,
    classify_all,
    cloud_cover,
    expand,
    group,
    headers,
    is_integer_band,
    pick_bands,
    scaling,
)
from .load import SPATIAL_CHUNK, _attrs, _strings

#: Fill of integer bands where a scene has no data and its file declares no nodata.
_INTEGER_FILL = {"qa_pixel": 1, "fmask": 255}


def open_scenes(
    paths: Any,
    *,
    bands: str | Sequence[str] | None = None,
    band_names: Mapping[str, str] | None = None,
    like: xr.DataArray | xr.Dataset | None = None,
    crs: Any = None,
    resolution: float | None = None,
    resampling: str | None = None,
    scale: float | None = None,
    offset: float | None = None,
    nodata: float | None = None,
    chunks: Mapping[str, int] | int | None = None,
) -> xr.Dataset:
    """Open local single-band rasters as a lazy scene cube ``(time, y, x)``.

    Parameters
    ----------
    paths
        A file, a folder (its files whose names are recognised; others, such as a DEM or
        a shapefile, are left out), a glob pattern (``"scenes/**/*.tif"``), or a list of
        them. A file named explicitly must be recognised.
    bands
        Bands to keep, by STAC common name (``"green"``, ``"swir16"``, ``"qa_pixel"``,
        ``"fmask"``). Default: the bands every scene has.
    band_names
        ``{pattern: band}``: glob patterns on the file name (on the full path if the
        pattern has a ``/``) giving the band of files whose names are not recognised, or
        overriding the name. Such files are grouped into scenes by folder and time.
    like
        A DataArray or Dataset whose grid (``x``, ``y``, CRS) the cube takes.
    crs, resolution
        Output CRS and pixel size; the grid covers every file, its pixels aligned on
        theirs. Default (no ``like``, ``crs``, ``resolution``): the grid of the first
        scene (north-up).
    resampling
        ``None`` (default): a file that is not exactly on the grid (another CRS, pixel
        size, origin or shape) raises :class:`~xglacier.errors.GridMismatchError` naming
        it and both grids. A rasterio resampling name (``"nearest"``, ``"bilinear"``,
        ``"cubic"``, ...): such files are warped onto the grid; quality bands always by
        nearest neighbour. On a shared pixel lattice (a whole-pixel offset) ``"nearest"``
        is an exact crop or pad. Files on the grid are never resampled; south-up files
        (``y`` ascending) on it are read upside down, exactly.
    scale, offset, nodata
        Override the scaling ``DN * scale + offset`` and the nodata DN of reflectance files.
        Default: the file's tags (GDAL scale/offset/nodata), else the product's (Landsat C2
        L2: ``DN * 0.0000275 - 0.2``, nodata 0; HLS: ``DN * 1e-4``, nodata -9999); float
        files without tags are taken as physical values. Tags that contradict the product
        raise :class:`~xglacier.errors.MetadataError`.
    chunks
        Spatial chunk size (int, or ``{"y": ..., "x": ...}``). Default: the file's blocks,
        grouped up to 1024 pixels. Along ``time``, one chunk per scene (one file per task).

    Returns
    -------
    xarray.Dataset
        One variable per band: reflectance as float32 with NaN where there is no data,
        quality bands (``qa*``, ``fmask``) as their integer type. Coordinates: ``time``
        (from the file names, ``YYYYMMDD`` or ``YYYYDDD``, else the tags ``SENSING_TIME``,
        ``DATE_ACQUIRED``), pixel-centre ``x``/``y``, and per scene ``id``, ``platform``,
        ``cloud_cover`` (NaN unless a tag says) and ``source_crs``; a CF ``spatial_ref``.
        Lazy: only headers are read until it is computed.

    Raises
    ------
    ParameterError, MetadataError, MissingBandError, TimeAxisError, GridMismatchError
        Before anything is read; :class:`~xglacier.errors.AssetError` when a file cannot
        be read while computing.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, rasterio
    >>> from affine import Affine
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for code, dn in (("B03", 1200), ("B06", 300)):
    ...     with rasterio.open(folder / f"glacier_2020229_{code}_L30.tif", "w", driver="GTiff",
    ...                        width=4, height=3, count=1, dtype="int16", nodata=-9999,
    ...                        crs="EPSG:32611", transform=Affine(30, 0, 477870, 0, -30, 5784480)) as f:
    ...         f.write(np.full((1, 3, 4), dn, "int16"))
    >>> cube = open_scenes(folder)
    >>> list(cube.data_vars), str(cube.time.values[0])[:10], round(float(cube.swir16[0, 0, 0]), 6)
    (['green', 'swir16'], '2020-08-16', 0.03)
    """
    res = _check(resolution, resampling, scale, offset, nodata, band_names)
    files = classify_all(expand(paths), band_names)
    heads = headers([f.path for f in files])
    scenes = group(files, heads)
    bands = pick_bands(scenes, bands)
    first = scenes[0].files[bands[0]].path
    grid = target_grid([heads[first].grid] + [heads[s.files[b].path].grid for s in scenes for b in bands],
                       like=like, crs=crs, resolution=res, first=str(first))
    chunk = _chunks(chunks, heads[first].block, grid.shape)
    data_vars = {}
    for band in bands:
        sources = [_source(s, band, grid, heads, resampling, (scale, offset, nodata)) for s in scenes]
        integer = is_integer_band(band)
        dtype = _dtype(band, scenes, heads) if integer else np.dtype("float32")
        stack = BandStack(band, sources, grid, dtype, integer, resampling or "nearest")
        data_vars[band] = xr.Variable(("time", "y", "x"), stack.to_dask(chunk), _attrs(band, integer))
    coords = _coords(scenes, grid, like, heads, bands[0])
    attrs = with_history({"source": f"{len(scenes)} scenes of local rasters read by xglacier.open_scenes"},
                         "open_scenes", bands=bands, grid=describe(grid), resampling=resampling)
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return georeference(ds, None, crs=grid.crs).rio.write_transform(grid.transform)


def _check(resolution: Any, resampling: Any, scale: Any, offset: Any, nodata: Any,
           band_names: Any) -> float | None:
    res = check_number("open_scenes", "resolution", resolution, low=0, low_open=True, allow_none=True)
    if resampling is not None:
        check_choice("open_scenes", "resampling", resampling, [r.name for r in rasterio.enums.Resampling])
    check_number("open_scenes", "scale", scale, allow_none=True)
    check_number("open_scenes", "offset", offset, allow_none=True)
    if nodata is not None and not (isinstance(nodata, numbers.Real) and not isinstance(nodata, bool)):
        raise ParameterError(f"open_scenes: nodata={nodata!r}; expected a number (NaN allowed) or None")
    if offset is not None and scale is None:
        raise ParameterError("open_scenes: offset= needs scale= (DN * scale + offset)")
    if band_names is not None and (not isinstance(band_names, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in band_names.items())):
        raise ParameterError(f"open_scenes: band_names={band_names!r}; expected a dict of file name or "
                             "glob pattern -> band name")
    return res


def _chunks(chunks: Any, block: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """(y, x) chunk sizes: given, or whole file blocks grouped up to SPATIAL_CHUNK pixels."""
    if chunks is None:
        return tuple(min(n, max(1, SPATIAL_CHUNK // b) * b) for b, n in zip(block, shape, strict=True))
    if isinstance(chunks, numbers.Integral) and not isinstance(chunks, bool):
        chunks = {"y": chunks, "x": chunks}
    if not isinstance(chunks, Mapping) or set(chunks) - {"y", "x"}:
        raise ParameterError(f"open_scenes: chunks={chunks!r}; expected an int or a dict with keys y, x "
                             "(along time there is one chunk per scene)")
    return tuple(min(n, check_int("open_scenes", f"chunks[{d!r}]", chunks.get(d, SPATIAL_CHUNK), low=1))
                 for d, n in zip(("y", "x"), shape, strict=True))


def _source(scene: Scene, band: str, grid: Any, heads: Mapping, resampling: str | None,
            user: tuple[Any, Any, Any]) -> Source:
    f = scene.files[band]
    head = heads[f.path]
    # sources are read north-up; an ascending grid is flipped once, at the end
    where = placement(head.grid, flip(grid) if grid.transform.e > 0 else grid)
    if where is None:
        if resampling is None:
            raise GridMismatchError(
                f"open_scenes: {f.path} is not on the grid of the cube: it is {describe(head.grid)}, the "
                f"grid is {describe(grid)}; pass resampling='nearest' (or 'bilinear', ...) to resample it "
                "onto the grid, or like= / crs= and resolution= to choose another grid")
        where = "warp"
    if is_integer_band(band):
        fill = head.nodata if head.nodata is not None and float(head.nodata).is_integer() \
            else _INTEGER_FILL.get(band, 0)
        return Source(str(f.path), where, 1.0, 0.0, head.nodata, float(fill), head.stamp)
    s, o, nd = scaling(f, head, user)
    return Source(str(f.path), where, s, o, None if nd is None else float(nd), float("nan"), head.stamp)


def _dtype(band: str, scenes: list[Scene], heads: Mapping) -> np.dtype:
    types = {np.dtype(heads[s.files[band].path].dtype) for s in scenes}
    if any(t.kind not in "iu" for t in types):
        raise MetadataError(f"open_scenes: quality band {band!r} is stored as {sorted(map(str, types))} in "
                            "some files; expected integer bit flags")
    return np.result_type(*types)


def _coords(scenes: list[Scene], grid: Any, like: Any, heads: Mapping, band: str) -> dict[str, Any]:
    x, y = (like["x"].values, like["y"].values) if like is not None else (grid.x, grid.y)
    return {
        "time": pd.DatetimeIndex([s.time for s in scenes]).as_unit("ns"),
        "y": y, "x": x,
        "id": ("time", _strings(s.id for s in scenes)),
        "platform": ("time", _strings(s.platform for s in scenes)),
        "cloud_cover": ("time", np.array([cloud_cover(s, heads) for s in scenes], dtype=np.float64),
                        {"long_name": "scene cloud cover", "units": "percent"}),
        "source_crs": ("time", _strings(crs_label(heads[s.files[band].path].grid.crs) for s in scenes),
                       {"long_name": "CRS of the scene before resampling"}),
    }
