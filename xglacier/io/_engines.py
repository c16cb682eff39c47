"""Reading engines of :func:`xglacier.load`: stackstac and odc-stac on an explicit grid.

Both return the raw digital numbers of every band in the dtype asked for (the asset's
own integer type, or float32, exact for 16-bit data), with ``fill`` outside the assets and
where the file flags nodata, on exactly the
:class:`~xglacier.io._grid.Grid` they are given, lazily: one Dask task per chunk, and
nothing is opened before the graph is computed. Scaling is applied afterwards, by
xglacier, identically for both engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as dsa
import numpy as np
from odc.loader import RioDriver, RioReader
from rasterio.enums import Resampling
from stackstac.rio_reader import AutoParallelRioReader

from ..errors import AssetError, ParameterError
from ._grid import Grid
from ._http import http_options


class AssetReader(AutoParallelRioReader):
    """stackstac's reader, with failures re-raised as :class:`AssetError` naming the asset."""

    def read(self, window: Any, **kwargs: Any) -> np.ndarray:
        try:
            fast = self._plain_read(window)
            return fast if fast is not None else super().read(window, **kwargs)
        except AssetError:
            raise
        except Exception as err:
            cause = err.__cause__ if err.__cause__ is not None else err
            raise AssetError(f"cannot read asset {self.url!r}: {cause}") from err

    def _plain_read(self, window: Any) -> np.ndarray | None:
        """An unmasked read where masking could change nothing; None where it could.

        Without a warp, with no rescaling, and when the file's nodata is the fill value
        (or the file has none), stackstac's masked read followed by filling the masked
        pixels gives exactly the raw pixels: reading them directly saves a mask pass.
        """
        reader = self.dataset
        if self.scale_offset != (1, 0) or getattr(reader, "_vrt_params", True) is not None:
            return None
        ds = reader.dataset
        fill = self.fill_value
        if ds.count != 1 or (ds.nodata is not None and not (
                ds.nodata == fill or (np.isnan(ds.nodata) and np.isnan(fill)))):
            return None
        with self.gdal_env.read:
            return ds.read(1, window=window, out_dtype=self.dtype)


class OdcAssetReader(RioReader):
    """odc-loader's rasterio reader, with failures re-raised as :class:`AssetError`."""

    def read(self, cfg: Any, dst_geobox: Any, **kwargs: Any) -> Any:
        try:
            return super().read(cfg, dst_geobox, **kwargs)
        except Exception as err:
            raise AssetError(f"cannot read asset {self._src.uri!r}: {err}") from err


class OdcAssetDriver(RioDriver):
    """odc-loader's rasterio driver that opens :class:`OdcAssetReader` readers, with the GDAL
    ``options`` (:func:`http_options`) added to the environment its tasks read in."""

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.options = dict(options or {})

    def capture_env(self) -> dict[str, Any]:
        return {**super().capture_env(), **self.options}

    def open(self, src: Any, ctx: Any) -> OdcAssetReader:
        return OdcAssetReader(src, ctx)




def _check_grid(name: str, xs: np.ndarray, ys: np.ndarray, grid: Grid) -> None:
    """The engine must return exactly the requested grid (half a pixel or a row is a bug)."""
    h, w = grid.shape
    tol = 1e-6 * grid.resolution
    if (len(ys), len(xs)) != (h, w) or not (
        np.allclose(xs, grid.x, rtol=0, atol=tol) and np.allclose(ys, grid.y, rtol=0, atol=tol)
    ):
        raise AssetError(
            f"load: engine {name!r} returned a {len(ys)}x{len(xs)} grid starting at "
            f"({xs[:1]}, {ys[:1]}); expected {h}x{w} pixel centres starting at "
            f"({grid.x[0]}, {grid.y[0]})"
        )


def read_stackstac(
    items: Sequence[Mapping[str, Any]], bands: Sequence[str], grid: Grid,
    chunks: Mapping[str, int], resampling: str, dtype: str = "float32", fill: float = np.nan,
    http_timeout: float = 60.0,
) -> dict[str, dsa.Array]:
    """Raw DNs per band, ``(time, y, x)`` Dask arrays of ``dtype``, through ``stackstac.stack``."""
    import stackstac

    epsg = grid.crs.to_epsg()
    if epsg is None:
        raise ParameterError(
            f"load: engine='stackstac' needs an output CRS with an EPSG code, got {grid.crs.to_wkt()[:80]!r}"
            "...; pass crs='EPSG:...' or use engine='odc'"
        )
    arr = stackstac.stack(
        list(items), assets=list(bands), epsg=epsg, resolution=grid.resolution,
        bounds=grid.bounds, snap_bounds=False, resampling=Resampling[resampling],
        chunksize=(chunks["time"], 1, chunks["y"], chunks["x"]), dtype=np.dtype(dtype),
        fill_value=np.dtype(dtype).type(fill), rescale=False, sortby_date=False, xy_coords="center",
        properties=False, band_coords=False, errors_as_nodata=(), reader=AssetReader,
        gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(always=http_options(http_timeout)),
    )
    _check_grid("stackstac", arr["x"].values, arr["y"].values, grid)
    # stackstac silently drops items (and bands) that it finds entirely outside the grid:
    # put them back as empty scenes, so that every engine returns every item
    ids, got = [i["id"] for i in items], [str(v) for v in np.atleast_1d(arr["id"].values)]
    got_bands = [str(v) for v in np.atleast_1d(arr["band"].values)]
    if got == ids and got_bands == list(bands):
        return {b: arr.data[:, k] for k, b in enumerate(bands)}
    out = {}
    for b in bands:
        empty = dsa.full((1, *grid.shape), fill, dtype=dtype, chunks=(1, chunks["y"], chunks["x"]))
        k = got_bands.index(b) if b in got_bands else None
        scenes = [arr.data[got.index(i), k][None] if (k is not None and i in got) else empty for i in ids]
        out[b] = dsa.concatenate(scenes, axis=0).rechunk({0: chunks["time"]})
    return out


def read_odc(
    items: Sequence[Mapping[str, Any]], bands: Sequence[str], grid: Grid,
    chunks: Mapping[str, int], resampling: str, dtype: str = "float32", fill: float = np.nan,
    http_timeout: float = 60.0,
) -> dict[str, dsa.Array]:
    """Raw DNs per band, ``(time, y, x)`` Dask arrays of ``dtype``, through ``odc.stac.load``."""
    import odc.stac
    import pystac
    from odc.geo.geobox import GeoBox

    geobox = GeoBox(grid.shape, grid.transform, grid.crs.to_wkt())
    ds = odc.stac.load(
        [pystac.Item.from_dict(dict(i)) for i in items], bands=list(bands), geobox=geobox,
        chunks={"time": chunks["time"], "y": chunks["y"], "x": chunks["x"]}, dtype=dtype,
        nodata=np.dtype(dtype).type(fill), groupby="id", resampling=resampling, preserve_original_order=True,
        fail_on_error=True, driver=OdcAssetDriver(http_options(http_timeout)),
    )
    _check_grid("odc", ds["x"].values, ds["y"].values, grid)
    if ds.sizes["time"] != len(items):
        raise AssetError(f"load: engine 'odc' returned {ds.sizes['time']} scenes for {len(items)} items")
    return {b: ds[b].transpose("time", "y", "x").data for b in bands}


ENGINES = {"stackstac": read_stackstac, "odc": read_odc}
