"""Lazy reading of single-band rasters onto one grid: one Dask task per scene and block.

:class:`BandStack` is an array-like that Dask slices (``dask.array.from_array``): each
chunk opens one file, reads one window (rows in reverse for south-up files, through a
``WarpedVRT`` for files that are resampled) and decodes it: ``DN * scale + offset`` in
float64, stored as float32, NaN where the file has no data; quality bands are kept as
integers. Nothing is opened until a chunk is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as dsa
import numpy as np
import pyproj
import rasterio
from dask.base import tokenize
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ...errors import AssetError
from .._grid import Grid
from .grid import flip

#: Largest error (pixels) of the approximated transformation when warping (rasterio refuses 0).
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Source:
    """One file of one band: how it sits on the grid and how its DNs become values."""

    path: str
    placement: str  # "same", "flipped" or "warp"
    scale: float
    offset: float
    nodata: float | None  # DN without data in the file (NaN for float files without one)
    fill: float  # value of integer bands where there is no data
    stamp: tuple[int, int]  # (mtime_ns, size): a changed file gets a new Dask key


def decode(raw: np.ma.MaskedArray, src: Source, integer: bool, dtype: np.dtype) -> np.ndarray:
    """Values of a window in the data model: scaled float32 with NaN, or integers with ``fill``."""
    data = np.asarray(raw.data)
    invalid = np.ma.getmaskarray(raw)
    if src.nodata is not None and not np.isnan(src.nodata):
        invalid = invalid | (data == src.nodata)
    if data.dtype.kind == "f":
        invalid = invalid | np.isnan(data)
    if integer:
        return np.where(invalid, src.fill, data).astype(dtype)
    out = np.multiply(data, src.scale, dtype=np.float64)
    out += src.offset
    out[invalid] = np.nan
    return out.astype(np.float32)


def _scales(ds: rasterio.DatasetReader, grid: Grid) -> dict[str, str]:
    """GDAL's XSCALE/YSCALE (grid pixels per file pixel), fixed from the grid's centre.

    GDAL otherwise estimates them for each warped window from its extent, so that a
    rotated or chunked warp widens the bilinear or cubic kernel by a window-dependent
    amount: the same pixel would get another value in another Dask chunk.
    """
    t, (h, w) = grid.transform, grid.shape
    cols, rows = np.array([w / 2, w / 2 + 1, w / 2]), np.array([h / 2, h / 2, h / 2 + 1])
    xs, ys = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    if ds.crs != grid.crs:
        to_file = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(grid.crs.to_wkt()),
                                              pyproj.CRS.from_wkt(ds.crs.to_wkt()), always_xy=True)
        xs, ys = to_file.transform(xs, ys)
    c, r = ~ds.transform @ (np.asarray(xs), np.asarray(ys))
    across, down = np.hypot(c[1] - c[0], r[1] - r[0]), np.hypot(c[2] - c[0], r[2] - r[0])
    return {"XSCALE": f"{1 / across:.12g}", "YSCALE": f"{1 / down:.12g}"}


class BandStack:
    """``(time, y, x)`` view of one band over every scene, read on demand."""

    ndim = 3

    def __init__(self, band: str, sources: list[Source], grid: Grid, dtype: np.dtype, integer: bool,
                 resampling: str) -> None:
        self.band, self.sources, self.grid = band, sources, grid
        self.dtype, self.integer = np.dtype(dtype), integer
        # flags cannot be averaged: quality bands are always resampled by nearest neighbour
        self.resampling = Resampling.nearest if integer else Resampling[resampling]
        self.shape = (len(sources), *grid.shape)
        self.ascending = grid.transform.e > 0

    def _read(self, src: Source, rows: tuple[int, int], cols: tuple[int, int]) -> np.ma.MaskedArray:
        """Rows ``rows`` (counted north-up) and columns ``cols`` of ``src`` on the grid."""
        grid = flip(self.grid) if self.ascending else self.grid
        (h, w), nodata = grid.shape, src.nodata
        with rasterio.open(src.path) as ds:
            if src.placement == "warp":
                # without a nodata value, an alpha band tells the pixels the file does not cover;
                # reflectance is interpolated in float64 (not rounded back to integer DNs), and
                # pixel positions are exact to _TOLERANCE (GDAL's default approximates the
                # transformation to 1/8 pixel: too coarse for sub-pixel motion)
                with WarpedVRT(ds, crs=grid.crs, transform=grid.transform, width=w, height=h,
                               resampling=self.resampling, src_nodata=nodata, nodata=nodata,
                               add_alpha=nodata is None, tolerance=_TOLERANCE,
                               dtype=ds.dtypes[0] if self.integer else "float64",
                               **_scales(ds, grid)) as vrt:
                    return vrt.read(1, window=Window.from_slices(rows, cols), masked=True)
            if src.placement == "flipped":
                out = ds.read(1, window=Window.from_slices((h - rows[1], h - rows[0]), cols), masked=True)
                return out[::-1]
            return ds.read(1, window=Window.from_slices(rows, cols), masked=True)

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        (t0, t1, _), (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        h = self.grid.shape[0]
        rows = (h - y1, h - y0) if self.ascending else (y0, y1)
        out = np.empty((max(t1 - t0, 0), max(y1 - y0, 0), max(x1 - x0, 0)), self.dtype)
        for i, t in enumerate(range(t0, t1)):
            src = self.sources[t]
            try:
                raw = self._read(src, rows, (x0, x1))
            except rasterio.errors.RasterioError as err:
                raise AssetError(f"open_scenes: cannot read band {self.band!r} from {src.path}: {err}"
                                 ) from err
            block = decode(raw, src, self.integer, self.dtype)
            out[i] = block[::-1] if self.ascending else block
        return out

    def to_dask(self, chunks: tuple[int, int]) -> dsa.Array:
        """The lazy array: one chunk per scene and ``chunks`` block of pixels."""
        name = f"open_scenes-{self.band}-" + tokenize(
            self.band, self.sources, self.grid.crs.to_wkt(), tuple(self.grid.transform), self.grid.shape,
            self.dtype.str, self.integer, self.resampling.name)
        return dsa.from_array(self, chunks=(1, *chunks), name=name, asarray=False, fancy=False,
                              lock=False, meta=np.empty((0, 0, 0), self.dtype))
