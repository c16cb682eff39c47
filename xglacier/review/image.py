"""The scene as the review page shows it: an RGB composite or one band, coarsened to stay light.

The whole picture crosses the websocket at 4 bytes per pixel, so a large scene is
averaged over square blocks of ``factor`` pixels (NaN left out) until its long side is at
most ``max_size``; its footprint stays exact (coordinates in the scene's CRS units).
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import xarray as xr

from .._validate import check_int
from ..errors import DimensionError, EmptySceneError, InputError, MissingBandError, ParameterError

__all__ = ["RGB_CHOICES", "Display", "display_image", "same_crs"]

#: Band triples tried in turn for the RGB composite (STAC common names): true colour first,
#: then the SWIR/NIR/red false colour that shows snow and ice apart from cloud.
RGB_CHOICES: tuple[tuple[str, str, str], ...] = (("red", "green", "blue"), ("swir16", "nir08", "red"))


@dataclass(frozen=True)
class Display:
    """A picture ready for Bokeh: rows from south to north, footprint in CRS units."""

    kind: str  # "rgb" or "band"
    data: np.ndarray  # uint32 RGBA (rgb) or float32 values with NaN (band)
    bands: tuple[str, ...]
    x0: float
    y0: float
    width: float
    height: float
    resolution: float  # pixel size of the scene itself, before coarsening
    factor: int
    crs: pyproj.CRS
    low: float = 0.0
    high: float = 1.0


def _scene(image: Any, time: Any) -> xr.Dataset | xr.DataArray:
    if isinstance(image, (str, os.PathLike)):
        from ..io.local import open_scenes

        image = open_scenes(image)
    if not isinstance(image, (xr.Dataset, xr.DataArray)):
        raise InputError(f"review: image is a {type(image).__name__}; expected a path to rasters, an xarray "
                         "Dataset of bands or a DataArray")
    if "time" in image.dims:
        if time is not None:
            image = image.sel(time=time)  # a date string may pick a period: checked below
        if "time" in image.dims and image.sizes["time"] == 1:
            image = image.isel(time=0)
        elif "time" in image.dims:
            raise ParameterError(f"review: the image has {image.sizes['time']} scenes along time"
                                 f"{'' if time is None else f' at time={time!r}'}; pass time= to pick one")
    return image


def _channels(image: xr.Dataset | xr.DataArray, bands: Sequence[Hashable] | None
              ) -> list[xr.DataArray]:
    if isinstance(image, xr.DataArray):
        if "band" in image.dims:
            picked = list(image["band"].values) if bands is None else list(bands)
            if bands is None and len(picked) not in (1, 3):
                picked = picked[:1]
            return [image.sel(band=b) for b in picked]
        return [image]
    if bands is None:
        names = next((list(t) for t in RGB_CHOICES if all(b in image for b in t)), None)
        if names is None and not image.data_vars:
            raise InputError("review: the image Dataset holds no band")
        bands = names or [next(iter(image.data_vars))]
    if len(bands) not in (1, 3):
        raise ParameterError(f"review: bands={list(bands)!r}; expected one band or three (red, green, blue)")
    missing = [b for b in bands if b not in image]
    if missing:
        raise MissingBandError(f"review: bands {missing} are not in the image; it has "
                               f"{list(image.data_vars)}")
    return [image[b] for b in bands]


def _coarsen(arr: np.ndarray, f: int) -> np.ndarray:
    """Block means over ``f`` x ``f`` pixels, NaN left out (a block of NaN stays NaN)."""
    if f == 1:
        return arr.astype(np.float32)
    ny, nx = arr.shape
    pad = np.full((math.ceil(ny / f) * f, math.ceil(nx / f) * f), np.nan, np.float32)
    pad[:ny, :nx] = arr
    blocks = pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f)
    ok = np.isfinite(blocks)
    total = np.where(ok, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    count = ok.sum(axis=(1, 3))
    out = np.full(total.shape, np.nan, np.float32)
    np.divide(total, count, out=out, where=count > 0, casting="unsafe")
    return out


def _stretch(arr: np.ndarray) -> tuple[float, float]:
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
    return lo, (hi if hi > lo else lo + 1.0)


def _rgba(channels: list[np.ndarray]) -> np.ndarray:
    ny, nx = channels[0].shape
    out = np.zeros((ny, nx, 4), np.uint8)
    valid = np.ones((ny, nx), bool)
    for i, c in enumerate(channels):
        lo, hi = _stretch(c)
        valid &= np.isfinite(c)
        out[..., i] = np.clip(np.nan_to_num((c - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    out[..., 3] = np.where(valid, 255, 0)
    return out.view(np.uint32).reshape(ny, nx)


def same_crs(a: Any, b: Any, bounds: Sequence[float], tolerance: float) -> bool:
    """Whether CRS ``a`` and ``b`` put the corners of ``bounds`` within ``tolerance`` of each other.

    Two spellings of one projection (an EPSG code and a WKT without authority) compare equal.

    Examples
    --------
    >>> same_crs("EPSG:32611", "+proj=utm +zone=11 +datum=WGS84", (480000, 5778000, 484000, 5784000), 0.3)
    True
    >>> same_crs("EPSG:32611", "EPSG:32612", (480000, 5778000, 484000, 5784000), 0.3)
    False
    """
    a, b = pyproj.CRS.from_user_input(a), pyproj.CRS.from_user_input(b)
    if a == b:
        return True
    x0, y0, x1, y1 = bounds
    xs, ys = np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1])
    tx, ty = pyproj.Transformer.from_crs(a, b, always_xy=True).transform(xs, ys)
    return bool(np.all(np.hypot(tx - xs, ty - ys) <= tolerance))


def display_image(image: Any, *, bands: Sequence[Hashable] | None = None, time: Any = None,
                  max_size: int = 1024) -> Display:
    """Read ``image`` (rasters, Dataset or DataArray) into a :class:`Display` for the page.

    An RGB composite of the first of :data:`RGB_CHOICES` whose bands are all present,
    else the first band with a colour bar; ``bands=`` picks one band or three. Each
    channel is stretched between its 2nd and 98th percentiles; pixels without data are
    transparent. Either ``y`` direction works.

    Examples
    --------
    >>> da = xr.DataArray(np.arange(12.0).reshape(3, 4), dims=("y", "x"),
    ...                   coords={"y": [45.0, 15.0, -15.0], "x": [15.0, 45.0, 75.0, 105.0]}
    ...                   ).rio.write_crs("EPSG:32611")
    >>> d = display_image(da)
    >>> d.kind, d.data.shape, (d.x0, d.y0, d.width, d.height), float(d.data[0, 0])  # row 0: south
    ('band', (3, 4), (0.0, -30.0, 120.0, 90.0), 8.0)
    """
    max_size = check_int("review", "max_size", max_size, low=16)
    scene = _scene(image, time)
    channels = _channels(scene, bands)
    first = channels[0]
    if "x" not in first.dims or "y" not in first.dims or first.ndim != 2:
        raise DimensionError(f"review: image band {first.name!r} has dimensions {first.dims}; "
                             "expected (y, x)")
    crs = scene.rio.crs or first.rio.crs
    if crs is None:
        raise InputError("review: the image has no CRS; expected one readable with image.rio.crs")
    x, y = first["x"].values.astype(float), first["y"].values.astype(float)
    dx = float(np.diff(x).mean()) if len(x) > 1 else float(abs(first.rio.resolution()[0]))
    dy = float(np.diff(y).mean()) if len(y) > 1 else float(abs(first.rio.resolution()[1]))
    f = max(1, math.ceil(max(len(x), len(y)) / max_size))
    arrays = []
    for c in channels:
        a = np.asarray(c.transpose("y", "x").values, dtype=np.float32)
        a = a[::-1] if dy < 0 else a  # rows from south to north, as Bokeh draws them
        arrays.append(_coarsen(a[:, ::-1] if dx < 0 else a, f))
    if not any(np.isfinite(a).any() for a in arrays):
        raise EmptySceneError("review: the image has no valid pixel (all NaN); pick another scene or date")
    names = tuple(str(c.name) for c in channels)
    ny, nx = arrays[0].shape
    x0 = float(x.min()) - abs(dx) / 2
    y0 = float(y.min()) - abs(dy) / 2
    common = dict(bands=names, x0=x0, y0=y0, width=nx * f * abs(dx), height=ny * f * abs(dy),
                  resolution=min(abs(dx), abs(dy)), factor=f, crs=pyproj.CRS.from_user_input(crs))
    if len(arrays) == 3:
        return Display("rgb", _rgba(arrays), **common)
    lo, hi = _stretch(arrays[0])
    return Display("band", arrays[0], low=lo, high=hi, **common)
