"""Feature cubes for glacier segmentation: reflectance bands, spectral indices, elevation, slope.

:func:`features` stacks the channels of Baraka et al., *Machine Learning for Glacier
Monitoring in the Hindu Kush Himalaya* (2020): Landsat bands, NDSI, NDWI, NDVI, SRTM
elevation and slope, into one ``(channel, y, x)`` DataArray with named channels, on grids
with ``y`` and ``x`` running either way.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds

from .._attrs import georeference, with_history
from .._validate import check_bands, check_number, check_reflectance, get_band
from ..errors import DimensionError, InputError, MissingBandError, ParameterError
from ..landsat import REFLECTANCE_BANDS
from ..preprocess.indices import ndsi, ndvi, ndwi
from ..preprocess.terrain import slope as terrain_slope
from .grid import format_bounds, yx_chunks

#: Spectral indices :func:`features` knows, with the function computing each.
INDICES: dict[str, Any] = {
    "ndsi": ndsi,
    "ndwi": ndwi,  # Gao's, the one Baraka et al. (2020) cite
    "ndwi_mcfeeters": lambda ds: ndwi(ds, kind="mcfeeters"),
    "ndvi": ndvi,
}
#: The two bands ``(a, b)`` of each index of :data:`INDICES`: ``(a - b) / (a + b)``.
INDEX_BANDS: dict[str, tuple[str, str]] = {
    "ndsi": ("green", "swir16"), "ndwi": ("nir08", "swir16"), "ndvi": ("nir08", "red"),
    "ndwi_mcfeeters": ("green", "nir08"),
}


def _select_time(ds: xr.Dataset, time: Any) -> xr.Dataset:
    if "time" not in ds.dims:
        if time is not None:
            raise ParameterError(
                f"features: time={time!r} given but the Dataset has no 'time' dimension "
                f"(dimensions {tuple(ds.dims)})"
            )
        return ds
    n = ds.sizes["time"]
    if time is None:
        if n != 1:
            raise DimensionError(
                f"features: the Dataset has {n} scenes along 'time'; pass time= (a label such as "
                "'2020-08-16' or an integer position) to pick one, or composite first"
            )
        return ds.isel(time=0)
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        if not -n <= time < n:
            raise ParameterError(f"features: time={time} is out of range for {n} scenes")
        return ds.isel(time=int(time))
    try:
        out = ds.sel(time=time)
    except (KeyError, ValueError, TypeError) as err:
        first, last = (str(ds["time"].values[i])[:19] for i in (0, -1)) if "time" in ds.coords else ("?", "?")
        raise ParameterError(
            f"features: time={time!r} matches no scene; expected a time label between {first} and "
            f"{last} or an integer position"
        ) from err
    if "time" in out.dims and out.sizes["time"] == 1:  # a partial date string ("2020-08-16")
        out = out.isel(time=0)
    if "time" in out.dims:
        raise ParameterError(
            f"features: time={time!r} selects {out.sizes['time']} scenes; expected exactly one"
        )
    return out


def _open_dem(dem: xr.DataArray | str | os.PathLike) -> tuple[xr.DataArray, str]:
    """Return the DEM as a float ``(y, x)`` DataArray with NaN nodata, and how to name it."""
    if isinstance(dem, (str, os.PathLike)):
        path = Path(dem)
        label = f"DEM file {str(path)!r}"
        if not path.exists():
            raise InputError(f"features: {label} does not exist")
        try:
            da = rioxarray.open_rasterio(path, masked=True)
        except (RasterioIOError, OSError) as err:
            raise InputError(f"features: {label} cannot be read as a raster: {err}") from err
    elif isinstance(dem, xr.DataArray):
        da = dem
        label = f"DEM {dem.name!r}" if dem.name is not None else "DEM DataArray"
    else:
        raise InputError(
            f"features: dem is a {type(dem).__name__}; expected a DataArray with a CRS or a raster path"
        )
    if "band" in da.dims:
        if da.sizes["band"] != 1:
            raise DimensionError(f"features: {label} has {da.sizes['band']} bands; expected one")
        da = da.squeeze("band", drop=True)
    if set(da.dims) != {"y", "x"}:
        raise DimensionError(f"features: {label} has dimensions {da.dims}; expected ('y', 'x')")
    if da.rio.crs is None:
        raise InputError(f"features: {label} has no CRS; expected one readable with dem.rio.crs")
    da = da.transpose("y", "x")
    nodata = da.rio.nodata
    if not np.issubdtype(da.dtype, np.floating):
        da = da.astype(np.float64)
    if nodata is not None and not np.isnan(nodata):
        da = da.where(da != nodata)
    return da.rio.write_nodata(np.nan, encoded=False), label


def _dem_on_grid(
    dem: xr.DataArray | str | os.PathLike, grid: xr.Dataset, max_missing: float
) -> tuple[np.ndarray, str]:
    """Reproject the DEM onto the grid (bilinear); check that it covers the grid."""
    da, label = _open_dem(dem)
    crs = grid.rio.crs
    if crs is None:
        raise InputError("features: the Dataset has no CRS (ds.rio.crs is None); a DEM needs one to be "
                         "reprojected onto the cube's grid")
    # from the coordinates (recalc): a GeoTransform stored before the cube was sorted, flipped
    # or cut (``sortby("y")`` keeps it) would put the cube elsewhere
    res_x, res_y = (abs(r) for r in grid.rio.resolution(recalc=True))
    left, bottom, right, top = grid.rio.bounds(recalc=True)
    dem_bounds = da.rio.bounds(recalc=True)
    in_grid = transform_bounds(da.rio.crs, crs, *dem_bounds, densify_pts=21)
    extents = (f"{label} covers {format_bounds(dem_bounds)} in {da.rio.crs}, i.e. {format_bounds(in_grid)} "
               f"in the cube's CRS; the cube covers {format_bounds((left, bottom, right, top))}")
    if in_grid[0] >= right or in_grid[2] <= left or in_grid[1] >= top or in_grid[3] <= bottom:
        raise InputError(f"features: {label} does not overlap the cube: {extents}")
    # read only the part of the DEM around the cube (margins of 3 cube and 3 DEM pixels)
    margin = 3 * max(res_x, res_y)
    x0, y0, x1, y1 = transform_bounds(crs, da.rio.crs, left - margin, bottom - margin, right + margin,
                                      top + margin, densify_pts=21)
    dx, dy = (3 * abs(r) for r in da.rio.resolution(recalc=True))
    xs = slice(x0 - dx, x1 + dx) if da.x[0] <= da.x[-1] else slice(x1 + dx, x0 - dx)
    ys = slice(y0 - dy, y1 + dy) if da.y[0] <= da.y[-1] else slice(y1 + dy, y0 - dy)
    da = da.sel(x=xs, y=ys)
    if da.sizes["x"] < 2 or da.sizes["y"] < 2:
        raise InputError(f"features: {label} does not cover the cube: {extents}")
    # a DEM is one 2-D raster, small beside the cube: it is read and reprojected here
    out = da.load().rio.reproject_match(grid, resampling=Resampling.bilinear, nodata=np.nan)
    z = np.asarray(out.values, np.float32)
    if z.shape != (grid.sizes["y"], grid.sizes["x"]):  # pragma: no cover - rioxarray contract
        raise InputError(f"features: {label} reprojected to shape {z.shape}; expected the cube's")
    missing = float(np.isnan(z).mean())
    if missing > max_missing:
        raise InputError(
            f"features: {label} does not cover the cube: {100 * missing:.1f}% of the cube's pixels have "
            f"no elevation (outside the DEM or nodata), more than dem_max_missing={max_missing:g}; "
            f"{extents}"
        )
    return z, label


def _requested(ds: xr.Dataset, bands: Any, indices: Any, dem: Any, elevation: bool, slope: bool,
               time: Any) -> tuple[xr.Dataset, list[Hashable], list[str], list[str]]:
    """The scene and the channels asked for: ``(scene, bands, indices, terrain channels)``, checked."""
    if isinstance(indices, str):
        indices = [indices]
    unknown = [i for i in indices if i not in INDICES]
    if unknown:
        raise ParameterError(f"features: unknown indices {unknown}; expected some of {list(INDICES)}")
    ds = _select_time(ds, time)
    if bands is None:
        bands = [b for b in REFLECTANCE_BANDS if b in ds.data_vars]
        if not bands and not indices and dem is None:
            raise MissingBandError(
                f"features: the Dataset has none of the reflectance bands {list(REFLECTANCE_BANDS)}; "
                f"variables present: {sorted(map(str, ds.data_vars))}"
            )
    elif isinstance(bands, str) or len(bands):
        bands = check_bands("features", ds, bands)
    terrain = [name for name, on in (("elevation", elevation), ("slope", slope)) if on and dem is not None]
    if dem is not None and not terrain:
        raise ParameterError("features: dem given but elevation=False and slope=False; expected at least "
                             "one terrain channel (or dem=None)")
    names = [*bands, *indices, *terrain]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ParameterError(f"features: channels {dup} are requested twice; expected each once")
    if not names:
        raise ParameterError("features: no channel requested (bands, indices and dem are all empty)")
    return ds, list(bands), list(indices), terrain


def _spectral(ds: xr.Dataset, bands: list[Hashable], indices: list[str]) -> tuple[list[Any], list[str]]:
    """The band and index channels (float32 arrays, lazy on Dask) and their units."""
    channels: list[Any] = []
    for b in bands:
        band = check_reflectance(get_band(ds, b, role="band"))
        if band.dims != ("y", "x"):
            raise DimensionError(f"features: band {b!r} has dimensions {band.dims}; expected ('y', 'x')")
        channels.append(band.data.astype(np.float32))
    for name in indices:
        try:
            idx = INDICES[name](ds)
        except MissingBandError as err:
            raise MissingBandError(f"features: index {name!r} needs a band that is missing: {err}") from err
        channels.append(idx.transpose("y", "x").data.astype(np.float32))
    return channels, ["1"] * len(channels)


def _terrain(ds: xr.Dataset, z: np.ndarray, terrain: list[str]) -> tuple[list[Any], list[str]]:
    """Elevation and / or slope channels from the DEM on the cube's grid, chunked like the cube."""
    chunks = yx_chunks(ds)
    z_data: Any = z if chunks is None else dsa.from_array(z, chunks=chunks)
    channels, units = [], []
    if "elevation" in terrain:
        channels.append(z_data)
        units.append("m")
    if "slope" in terrain:
        # slope needs the cube's CRS for its metric pixel size
        grid = georeference(xr.DataArray(z_data, dims=("y", "x"), coords={"y": ds["y"], "x": ds["x"]}), ds)
        channels.append(terrain_slope(grid).data)
        units.append("degree")
    return channels, units


def features(
    ds: xr.Dataset,
    *,
    bands: Sequence[str] | None = None,
    indices: Sequence[str] = ("ndsi", "ndwi", "ndvi"),
    dem: xr.DataArray | str | os.PathLike | None = None,
    slope: bool = True,
    elevation: bool = True,
    time: Any = None,
    dem_max_missing: float = 0.01,
) -> xr.DataArray:
    """Stack reflectance bands, spectral indices, elevation and slope into a feature cube.

    The channels of Baraka et al. (2020), *Machine Learning for Glacier Monitoring in the
    Hindu Kush Himalaya*: multispectral bands, NDSI, NDWI (Gao's, which they cite), NDVI
    and, given a DEM, elevation and slope.

    The DEM may be in any CRS and resolution: it is reprojected onto the cube's grid with
    rioxarray (``reproject_match``, bilinear), then slope is computed on the cube's grid
    with Horn's 3x3 gradient and the true metric pixel size (projected CRS: the grid
    spacing in the CRS's linear unit; geographic CRS: the length of a degree at each
    row's latitude on the CRS's ellipsoid), see :func:`xglacier.preprocess.terrain.slope`.
    A DEM in geographic coordinates is therefore handled exactly like any other: its
    elevations are resampled, never its degrees used as metres.

    Laziness: on a Dask-backed cube the result is Dask-backed with the cube's ``y``/``x``
    chunks and one chunk per channel, and nothing of the cube is computed; slope is a
    ``map_overlap`` with a one-pixel halo, so the result does not depend on the chunking.
    The DEM (one 2-D raster, only the part around the cube) is read and reprojected when
    ``features`` is called, so that a DEM that does not cover the cube fails at once.

    Parameters
    ----------
    ds
        Scene cube (``y, x`` or ``time, y, x``) with float reflectance bands named by
        STAC common name (``blue, green, red, nir08, swir16, swir22``); ``y`` and ``x``
        may run either way (its grid is read from the coordinates, not from a stored
        ``GeoTransform``).
    bands
        Reflectance bands to include, in this order; ``None``: every one of
        ``blue, green, red, nir08, swir16, swir22`` present in ``ds``; ``()``: none.
    indices
        Spectral indices to add, in this order: ``"ndsi"``, ``"ndwi"`` (Gao),
        ``"ndwi_mcfeeters"``, ``"ndvi"``. They need their bands in ``ds`` even when
        those are not in ``bands``.
    dem
        Elevation in metres: a DataArray with a CRS (``dem.rio.crs``), or the path of
        a raster file (opened with rioxarray, nodata masked). ``None``: no terrain channel.
    slope, elevation
        Add the ``slope`` (degrees) and ``elevation`` (m) channels when ``dem`` is given.
    time
        Scene to use when ``ds`` has a ``time`` dimension with more than one scene: a
        label (``"2020-08-16"``, a datetime) or an integer position.
    dem_max_missing
        Largest fraction of the cube's pixels allowed without elevation after
        reprojection (outside the DEM or DEM nodata) before :class:`InputError`.

    Returns
    -------
    xarray.DataArray
        ``float32``, named ``features``, dimensions ``(channel, y, x)``: a string
        ``channel`` coordinate (bands, then indices, then ``elevation``, ``slope``) and a
        ``channel_units`` coordinate along it; the cube's ``x``, ``y``, CRS and scalar
        coordinates (the scene's ``time``, ``id``, ...).

    Raises
    ------
    MissingBandError
        A band in ``bands``, or one an index needs, is not in ``ds``.
    DimensionError
        ``ds`` has several scenes and no ``time=``, or a band is not ``(y, x)``.
    InputError
        The DEM has no CRS, does not overlap the cube, or leaves more than
        ``dem_max_missing`` of it without elevation; the cube has no CRS.
    ParameterError
        Unknown index, duplicated channel, no channel at all, or a ``time`` that
        selects no scene or several.

    Examples
    --------
    >>> import xglacier
    >>> from xglacier.segmentation.features import features
    >>> cube, truth = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> dem = truth.dem.rio.write_crs(cube.rio.crs)
    >>> f = features(cube, dem=dem, time=0)
    >>> f.sizes["channel"], f.channel.values[-5:].tolist()
    (11, ['ndsi', 'ndwi', 'ndvi', 'elevation', 'slope'])
    """
    if not isinstance(ds, xr.Dataset):
        raise InputError(
            f"features: expected a Dataset with one variable per band, got {type(ds).__name__}"
            + (f" named {ds.name!r}" if isinstance(ds, xr.DataArray) else "")
        )
    check_number("features", "dem_max_missing", dem_max_missing, low=0, high=1, high_open=True)
    ds, bands, indices, terrain = _requested(ds, bands, indices, dem, elevation, slope, time)
    channels, units = _spectral(ds, bands, indices)
    dem_label = None
    if terrain:
        z, dem_label = _dem_on_grid(dem, ds, dem_max_missing)
        more, more_units = _terrain(ds, z, terrain)
        channels += more
        units += more_units

    if any(isinstance(c, dsa.Array) for c in channels):
        data = dsa.stack([c if isinstance(c, dsa.Array) else dsa.from_array(c, chunks=-1)
                          for c in channels])
    else:
        data = np.stack([np.asarray(c) for c in channels])
    names = [*bands, *indices, *terrain]
    coords: dict[Hashable, Any] = {
        k: v for k, v in ds.coords.items() if set(v.dims) <= {"y", "x"}
    }
    coords["channel"] = ("channel", np.array(names, dtype=str))
    coords["channel_units"] = ("channel", np.array(units, dtype=str))
    out = xr.DataArray(data, dims=("channel", "y", "x"), coords=coords, name="features")
    params: dict[str, Any] = {"channels": names, "dem": dem_label}
    if "time" in ds.coords and ds["time"].ndim == 0:
        params["time"] = str(pd.Timestamp(ds["time"].values))
    out.attrs = with_history({"long_name": "segmentation feature cube"}, "features", source=ds, **params)
    return georeference(out, ds)
