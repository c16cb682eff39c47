"""The one grid of :func:`open_scenes`, and how each file sits on it.

A file is read as it is when it is on the grid (same pixel lattice, shape and CRS), or
on the grid upside down (a south-up file, ``y`` ascending: its rows are read in reverse,
exactly); otherwise it must be resampled, which :func:`open_scenes` does only when asked.

CRSs are compared by what they do, not by their EPSG code: HLS L30 files carry a custom
"UTM Zone 11" WKT (datum "not specified, based on the WGS 84 spheroid") with no EPSG code,
S30 files say EPSG:32611; they put every pixel at the same place, so they are one CRS here.

>>> from affine import Affine
>>> g = Grid(CRS.from_epsg(32611), Affine(30, 0, 477870, 0, -30, 5784480), (205, 215))
>>> describe(g)
'205x215 pixels of 30 m, origin (477870, 5784480), EPSG:32611'
>>> up = Grid(g.crs, Affine(30, 0, 477870, 0, 30, 5784480 - 205 * 30), (205, 215))
>>> placement(g, g), placement(up, g), placement(shifted(g, 1, 1), g)
('same', 'flipped', None)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyproj
from affine import Affine
from rasterio.crs import CRS

from ...errors import ParameterError
from .._grid import Grid, make_grid

_TOL = 1e-6  # pixels: transforms closer than this are the same grid
_CRS_TOL = 1e-3  # pixels: CRSs that move no test point further are the same CRS


@dataclass(frozen=True)
class Footprint:
    """What :func:`xglacier.io._grid.make_grid` reads of a source: its CRS, transform, shape."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    lonlat_bbox: None = None


def describe(grid: Grid) -> str:
    """A grid in words, for error messages."""
    t, (h, w) = grid.transform, grid.shape
    res = f"{abs(t.a):g} m" if t.b == 0 and t.d == 0 and abs(t.a) == abs(t.e) else f"({t.a:g}, {t.e:g})"
    up = ", south-up" if t.e > 0 else ""
    return f"{h}x{w} pixels of {res}, origin ({t.c:.10g}, {t.f:.10g}){up}, {crs_label(grid.crs)}"


def crs_label(crs: CRS) -> str:
    """``EPSG:32611``, or the CRS's name when it has no EPSG code."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else pyproj.CRS.from_wkt(crs.to_wkt()).name


@functools.lru_cache(maxsize=64)
def _transformer(a: str, b: str) -> pyproj.Transformer | None:
    """From WKT ``a`` to WKT ``b`` (cached: thousands of files share a few CRSs)."""
    try:
        return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(a), pyproj.CRS.from_wkt(b), always_xy=True)
    except pyproj.exceptions.ProjError:
        return None


def same_crs(a: CRS, b: CRS, grid: Grid) -> bool:
    """Whether ``a`` and ``b`` put the corners and centre of ``grid`` at the same place."""
    if a == b:
        return True
    fwd = _transformer(a.to_wkt(), b.to_wkt())
    if fwd is None:
        return False
    t, (h, w) = grid.transform, grid.shape
    cols, rows = np.array([0, w, 0, w, w / 2]), np.array([0, 0, h, h, h / 2])
    xs, ys = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    with np.errstate(invalid="ignore"):
        xb, yb = fwd.transform(xs, ys)
    err = np.hypot(np.asarray(xb) - xs, np.asarray(yb) - ys)
    return bool(np.all(np.isfinite(err)) and err.max() <= _CRS_TOL * abs(t.a))


def _close(a: Affine, b: Affine) -> bool:
    res = max(abs(b.a), abs(b.e))
    return all(math.isclose(x, y, rel_tol=0, abs_tol=_TOL * res) for x, y in zip(a[:6], b[:6], strict=True))


def flip(grid: Grid) -> Grid:
    """The same pixels with the rows in the other order (north-up <-> south-up)."""
    t, h = grid.transform, grid.shape[0]
    return Grid(grid.crs, Affine(t.a, t.b, t.c + h * t.b, t.d, -t.e, t.f + h * t.e), grid.shape)


def shifted(grid: Grid, rows: int, cols: int) -> Grid:
    """``grid`` moved by whole pixels (for tests and examples)."""
    t = grid.transform
    return Grid(grid.crs, t @ Affine.translation(cols, rows), grid.shape)


def placement(file: Grid, target: Grid) -> str | None:
    """``"same"``, ``"flipped"`` (rows in reverse order) or None (must be resampled)."""
    if file.shape != target.shape or not same_crs(file.crs, target.crs, target):
        return None
    if _close(file.transform, target.transform):
        return "same"
    if _close(flip(file).transform, target.transform):
        return "flipped"
    return None


def north_up(grid: Grid, where: str) -> Grid:
    """``grid`` with ``y`` descending; refused when it is rotated or sheared."""
    t = grid.transform
    if t.b != 0 or t.d != 0 or t.a <= 0:
        raise ParameterError(
            f"open_scenes: {where} is on a rotated or mirrored grid ({describe(grid)}); pass like= or "
            "crs= and resolution= with resampling= to put the scenes on a north-up grid"
        )
    return flip(grid) if t.e > 0 else grid


def grid_of(like: object) -> Grid:
    """The grid of a DataArray or Dataset with ``x``/``y`` coordinates and a CRS."""
    import xarray as xr

    if not isinstance(like, xr.DataArray | xr.Dataset):
        raise ParameterError(f"open_scenes: like= must be an xarray DataArray or Dataset, got "
                             f"{type(like).__name__}")
    if not {"x", "y"} <= set(like.dims) or like.rio.crs is None:
        raise ParameterError(f"open_scenes: like= needs x and y dimensions and a CRS (spatial_ref); got "
                             f"dims {tuple(like.dims)}, CRS {like.rio.crs}")
    x, y = np.asarray(like["x"], float), np.asarray(like["y"], float)
    for name, v in (("x", x), ("y", y)):
        step = np.diff(v)
        if len(v) < 2 or not np.allclose(step, step[0], rtol=0, atol=_TOL * abs(step[0])):
            raise ParameterError(f"open_scenes: like= coordinate {name!r} is not regularly spaced "
                                 "(or has fewer than 2 values); it cannot define a grid")
    dx, dy = (x[-1] - x[0]) / (len(x) - 1), (y[-1] - y[0]) / (len(y) - 1)
    if dx <= 0:
        raise ParameterError("open_scenes: like= has x decreasing; expected x increasing (y may go "
                             "either way)")
    transform = Affine(dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2)
    return Grid(CRS.from_user_input(like.rio.crs), transform, (len(y), len(x)))


def target_grid(grids: Sequence[Grid], *, like: object, crs: object, resolution: float | None,
                first: str) -> Grid:
    """The output grid: ``like``'s, or one in ``crs`` at ``resolution`` covering every file,
    or the first file's (north-up)."""
    if like is not None:
        if crs is not None or resolution is not None:
            raise ParameterError("open_scenes: pass either like= or crs=/resolution=, not both")
        return grid_of(like)
    base = north_up(grids[0], first)
    if crs is None and resolution is None:
        return base
    try:
        out_crs = base.crs if crs is None else CRS.from_user_input(crs)
    except Exception as err:  # CRSError, re-raised naming the parameter
        raise ParameterError(f"open_scenes: crs={crs!r} is not a valid CRS: {err}") from err
    if resolution is None:
        if not same_crs(out_crs, base.crs, base):
            raise ParameterError(f"open_scenes: crs={crs!r} differs from the files' CRS; pass resolution= "
                                 "(pixel size in the units of crs) too")
        resolution = base.resolution
    feet = [Footprint(g.crs, g.transform, g.shape) for g in grids]
    return make_grid(feet, out_crs, float(resolution))  # type: ignore[arg-type]
