"""The output grid of :func:`xglacier.load`: CRS, pixel-aligned bounds, shape, coordinates.

The grid is computed here, once, and handed to the reading engine explicitly, so that
stackstac and odc-stac give the same grid, and a request that matches the source grid
returns exactly that grid: same shape, same transform, pixel-centre coordinates computed
as ``x0 + (i + 0.5) * res`` like rioxarray does. Pixel edges are aligned on the source
pixels (Landsat grids sit on multiples of 30 m plus 15 m), never on multiples of the
resolution alone, which would shift everything by half a pixel.

>>> from affine import Affine
>>> g = Grid(CRS.from_epsg(32643), Affine(30, 0, 500015, 0, -30, 3540015), (2, 3))
>>> g.x.tolist(), g.y.tolist()
([500030.0, 500060.0, 500090.0], [3540000.0, 3539970.0])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from ..errors import MetadataError, ParameterError
from ._items import ItemInfo

_EPS = 1e-6  # tolerance in pixels when snapping to the pixel lattice


@dataclass(frozen=True)
class Grid:
    """A north-up grid: CRS, affine transform of the top-left corner, (rows, cols)."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the pixel edges."""
        t, (h, w) = self.transform, self.shape
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)

    @property
    def x(self) -> np.ndarray:
        return self.transform.c + (np.arange(self.shape[1]) + 0.5) * self.transform.a

    @property
    def y(self) -> np.ndarray:
        return self.transform.f + (np.arange(self.shape[0]) + 0.5) * self.transform.e


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS that contains (lon, lat).

    >>> utm_crs(77.6, 32.1).to_epsg(), utm_crs(-117.25, 52.19).to_epsg(), utm_crs(-70.0, -33.0).to_epsg()
    (32643, 32611, 32719)
    """
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def target_crs(crs: object, bbox: Sequence[float] | None, infos: Sequence[ItemInfo]) -> CRS:
    """The output CRS: ``crs`` if given; else the UTM zone of the bbox centre; else, with no
    bbox, the items' CRS when they share one, or the UTM zone of the centre of their footprints."""
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except Exception as err:  # CRSError, re-raised with the parameter named
            raise ParameterError(f"load: crs={crs!r} is not a valid CRS: {err}") from err
    if bbox is not None:
        return utm_crs((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    crss = {i.crs.to_wkt() for i in infos if i.crs is not None}
    if len(crss) == 1 and all(i.crs is not None for i in infos):
        return infos[0].crs  # type: ignore[return-value]
    boxes = [i.lonlat_bbox for i in infos if i.lonlat_bbox is not None]
    if not boxes:
        raise MetadataError(
            "load: cannot choose an output CRS: the items are in several CRSs (or none) and have no "
            "bbox; pass crs= (e.g. crs='EPSG:32643') or bbox="
        )
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return utm_crs((w + e) / 2, (s + n) / 2)


def _is_aligned(info: ItemInfo, crs: CRS, res: float) -> bool:
    t = info.transform
    return (
        info.crs is not None and t is not None and info.crs == crs and t.b == 0 and t.d == 0
        and math.isclose(abs(t.a), res, rel_tol=1e-9) and math.isclose(abs(t.e), res, rel_tol=1e-9)
    )


def _anchor(infos: Sequence[ItemInfo], crs: CRS, res: float) -> tuple[float, float]:
    """Offset of the pixel lattice from multiples of ``res``, taken from the source items."""
    offsets = Counter(
        (round(i.transform.c % res, 6) % res, round(i.transform.f % res, 6) % res)  # type: ignore[union-attr]
        for i in infos if _is_aligned(i, crs, res)
    )
    return offsets.most_common(1)[0][0] if offsets else (0.0, 0.0)


def _item_bounds(info: ItemInfo, crs: CRS) -> tuple[float, float, float, float] | None:
    if info.crs is not None and info.transform is not None and info.shape is not None:
        t, (h, w) = info.transform, info.shape
        xs = [t.c, t.c + w * t.a + h * t.b]
        ys = [t.f, t.f + h * t.e + w * t.d]
        b = (min(xs), min(ys), max(xs), max(ys))
        return b if info.crs == crs else transform_bounds(info.crs, crs, *b, densify_pts=21)
    if info.lonlat_bbox is not None:
        return transform_bounds("EPSG:4326", crs, *info.lonlat_bbox, densify_pts=21)
    return None


def overlaps(info: ItemInfo, grid: Grid) -> bool:
    """Whether the item's footprint overlaps the grid (True when its extent is unknown)."""
    b = _item_bounds(info, grid.crs)
    if b is None:
        return True
    g = grid.bounds
    return b[0] < g[2] and b[2] > g[0] and b[1] < g[3] and b[3] > g[1]


def make_grid(
    infos: Sequence[ItemInfo], crs: CRS, resolution: float,
    bbox: Sequence[float] | None = None,
) -> Grid:
    """The grid covering ``bbox`` (lon/lat), or the union of the items, aligned on their pixels."""
    res = float(resolution)
    if bbox is not None:
        bounds = transform_bounds("EPSG:4326", crs, *bbox, densify_pts=21)
    else:
        each = [b for b in (_item_bounds(i, crs) for i in infos) if b is not None]
        if not each:
            raise MetadataError(
                "load: the items carry neither projection metadata (proj:transform, proj:shape) nor a "
                "bbox, so the extent is unknown; pass bbox=(west, south, east, north)"
            )
        bounds = (min(b[0] for b in each), min(b[1] for b in each),
                  max(b[2] for b in each), max(b[3] for b in each))
    ax, ay = _anchor(infos, crs, res)
    x0 = ax + math.floor((bounds[0] - ax) / res + _EPS) * res
    x1 = ax + math.ceil((bounds[2] - ax) / res - _EPS) * res
    y0 = ay + math.floor((bounds[1] - ay) / res + _EPS) * res
    y1 = ay + math.ceil((bounds[3] - ay) / res - _EPS) * res
    shape = (round((y1 - y0) / res), round((x1 - x0) / res))
    if min(shape) < 1:
        raise ParameterError(f"load: the requested area is empty on a {res:g} m grid (bounds {bounds})")
    return Grid(crs, Affine(res, 0.0, x0, 0.0, -res, y1), shape)
