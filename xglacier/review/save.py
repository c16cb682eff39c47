"""What a review saves: the corrected polygons, as a pure function of the input and the page's edits.

The page edits outer rings only (Bokeh's edit tools know nothing of holes), so the input
is first cut into *parts*, one per polygon of each feature (MultiPolygons exploded), each
with a part id (``pid``, its position). The page's state is an :class:`Edits`: the rings
and classes it shows now, by part id (new polygons get ids past the input's parts), and
when each was last changed. :func:`corrected` turns input + edits into the two layers a
save writes, and :func:`write_corrected` writes them atomically:

- untouched features are copied as they are (geometry with its holes, class, every
  attribute), status ``predicted`` (or the status they already had: a file saved by an
  earlier review keeps its audit trail);
- an edited part keeps its holes (nunataks): its new outer ring is put around them, and a
  save is refused (:class:`~xglacier.errors.ReviewError`) when they no longer fit inside;
- parts are recombined by feature (and class) into Polygons or MultiPolygons;
- edited and added polygons are rounded to the pixel grid's precision (a tenth of a pixel
  or finer, in decimal digits) and must be valid (no self-intersection);
- deleted parts go to a second layer, ``deleted``, with their original attributes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon

from .._atomic import atomic_path
from ..datasets import CLASSES
from ..errors import InputError, ParameterError, ReviewError
from ..segmentation.vectors import geodesic_area

__all__ = [
    "DELETED_LAYER",
    "DRIVERS",
    "Edits",
    "Prepared",
    "check_output",
    "corrected",
    "count_changes",
    "decimals_for",
    "default_output",
    "prepare",
    "write_corrected",
]

#: Layer (GeoPackage) or file suffix (GeoJSON: ``<stem>.deleted.geojson``) of deleted polygons.
DELETED_LAYER = "deleted"
#: Formats a review saves to, by file suffix.
DRIVERS: dict[str, str] = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
#: Label of every polygon of a file without a class column.
UNCLASSED = "glacier"
_DEFAULT_NAMES = tuple(n for c, n in sorted(CLASSES.items()) if c != 0)


def decimals_for(resolution: float) -> int:
    """Decimal digits that keep coordinates to a tenth of a pixel of size ``resolution`` or finer.

    Examples
    --------
    >>> decimals_for(30.0), decimals_for(10.0), decimals_for(0.00025)
    (0, 0, 5)
    """
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise ParameterError(f"decimals_for: resolution={resolution!r}; expected a positive pixel size")
    return max(0, math.ceil(-math.log10(resolution / 10) - 1e-9))


@dataclass(frozen=True)
class Prepared:
    """The input cut into parts, with what a save needs to put them back together."""

    source: gpd.GeoDataFrame
    parts: tuple[Polygon, ...]
    fids: tuple[int, ...]
    class_column: str | None
    labels: tuple[str, ...]
    values: Mapping[str, Any]
    decimals: int

    def part_label(self, pid: int) -> str:
        """The class label (as the page shows it) of input part ``pid``."""
        if self.class_column is None:
            return UNCLASSED
        return str(self.source[self.class_column].to_numpy()[self.fids[pid]])

    def ring(self, pid: int) -> tuple[np.ndarray, np.ndarray]:
        """Outer ring of input part ``pid`` as x and y arrays, without the closing vertex."""
        xy = np.asarray(self.parts[pid].exterior.coords)[:-1]
        return xy[:, 0], xy[:, 1]


@dataclass
class Edits:
    """The page's polygons now: outer rings, class labels and part ids; and when each was changed.

    ``pids[i]`` is the input part a ring came from (``< len(prepared.parts)``) or a new id
    for a drawn polygon. Input parts missing from ``pids`` were deleted. ``times`` maps
    part ids (kept or deleted) to the UTC time of their last change.
    """

    xs: list[Sequence[float]]
    ys: list[Sequence[float]]
    labels: list[str]
    pids: list[int]
    times: dict[int, datetime] = field(default_factory=dict)

    @classmethod
    def unedited(cls, prepared: Prepared) -> Edits:
        """The state of a page that has not been edited yet."""
        rings = [prepared.ring(p) for p in range(len(prepared.parts))]
        return cls([list(r[0]) for r in rings], [list(r[1]) for r in rings],
                   [prepared.part_label(p) for p in range(len(rings))], list(range(len(rings))))


def _class_values(gdf: gpd.GeoDataFrame, column: str | None) -> dict[str, Any]:
    if column is None:
        return {UNCLASSED: UNCLASSED, **{n: n for n in _DEFAULT_NAMES}}
    values = {str(v): v for v in pd.unique(gdf[column].dropna())}
    is_code = pd.api.types.is_integer_dtype(gdf[column].dtype)
    known = {}  # the project's classes first, in code order (the page's colours stay the same)
    for code, name in sorted(CLASSES.items()):
        if code != 0:
            known[str(code) if is_code else name] = code if is_code else name
    return {**known, **dict(sorted(values.items()))}


def prepare(polygons: gpd.GeoDataFrame, *, resolution: float, class_column: str | None = None) -> Prepared:
    """Cut ``polygons`` into parts (one per polygon; MultiPolygons exploded) for the page.

    ``class_column`` defaults to ``class_name``, else ``class``, else none (every polygon is
    labelled ``glacier`` and a save adds a ``class_name`` column). ``resolution`` is the
    image's pixel size in the polygons' CRS units.

    Examples
    --------
    >>> from shapely import box
    >>> gdf = gpd.GeoDataFrame({"class_name": ["clean_ice"]}, crs="EPSG:32611",
    ...                        geometry=[MultiPolygon([box(0, 0, 30, 30), box(60, 0, 90, 30)])])
    >>> p = prepare(gdf, resolution=30)
    >>> len(p.parts), p.fids, p.labels
    (2, (0, 0), ('clean_ice', 'debris_covered_ice'))
    """
    if not isinstance(polygons, gpd.GeoDataFrame):
        raise InputError(f"review: polygons is a {type(polygons).__name__}; expected a GeoDataFrame or a "
                         "vector file")
    if polygons.crs is None:
        raise InputError("review: the polygons have no CRS; expected one (set it with gdf.set_crs)")
    if class_column is None:
        class_column = next((c for c in ("class_name", "class") if c in polygons.columns), None)
    elif class_column not in polygons.columns:
        raise ParameterError(f"review: class_column={class_column!r} is not a column of the polygons; "
                             f"expected one of {[c for c in polygons.columns if c != 'geometry']}")
    source = polygons.reset_index(drop=True)
    parts, fids = [], []
    for fid, geom in enumerate(source.geometry):
        if geom is None or geom.is_empty:
            continue
        if not isinstance(geom, (Polygon, MultiPolygon)):
            raise InputError(f"review: feature {fid} is a {geom.geom_type}; expected Polygon or MultiPolygon")
        for part in getattr(geom, "geoms", [geom]):
            parts.append(part)
            fids.append(fid)
    values = _class_values(source, class_column)
    return Prepared(source, tuple(parts), tuple(fids), class_column, tuple(values), values,
                    decimals_for(float(resolution)))


def _same_ring(prep: Prepared, pid: int, x: Sequence[float], y: Sequence[float]) -> bool:
    ox, oy = prep.ring(pid)
    if len(ox) != len(x):
        return False
    tol = 10.0 ** (-prep.decimals - 3)
    return bool(np.abs(ox - np.asarray(x, float)).max(initial=0) <= tol
                and np.abs(oy - np.asarray(y, float)).max(initial=0) <= tol)


def _shell(x: Sequence[float], y: Sequence[float], decimals: int) -> np.ndarray:
    xy = np.round(np.column_stack([np.asarray(x, float), np.asarray(y, float)]), decimals)
    keep = np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]  # rounding may merge neighbours
    xy = xy[keep]
    if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]
    return xy


def _build(prep: Prepared, pid: int | None, x: Sequence[float], y: Sequence[float], label: str
           ) -> tuple[Polygon | None, str | None]:
    """The polygon of one edited or added ring, or why it cannot be saved."""
    what = f"{'drawn' if pid is None else 'edited'} polygon ({label})"
    shell = _shell(x, y, prep.decimals)
    if len(shell) < 3 or not np.all(np.isfinite(shell)):
        return None, f"{what} has {len(shell)} distinct vertices; a polygon needs at least 3"
    holes = [] if pid is None else [np.asarray(r.coords) for r in prep.parts[pid].interiors]
    if not Polygon(shell).is_valid:
        reason = shapely.is_valid_reason(Polygon(shell))
        return None, f"{what} near x={shell[0, 0]:.0f}, y={shell[0, 1]:.0f} is invalid ({reason}); " \
                     "move the vertices so that its outline does not cross itself"
    poly = Polygon(shell, holes)
    if not poly.is_valid:
        return None, (f"{what} near x={shell[0, 0]:.0f}, y={shell[0, 1]:.0f}: its {len(holes)} hole(s) "
                      f"(nunataks) no longer fit inside the edited outline "
                      f"({shapely.is_valid_reason(poly)}); move the outline back around them")
    return poly, None


def _group(prep: Prepared, fid: int | None, polys: list[Polygon], label: str, status: str,
           when: Any) -> dict[str, Any]:
    row = {} if fid is None else prep.source.iloc[fid].to_dict()
    if prep.class_column is None:
        row["class_name"] = label
    else:
        row[prep.class_column] = prep.values.get(label, label)
        if prep.class_column == "class_name" and "class" in prep.source.columns:
            codes = dict(zip(prep.source["class_name"], prep.source["class"], strict=True))
            row["class"] = codes.get(label, {n: c for c, n in CLASSES.items()}.get(label))
    row["geometry"] = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    row["status"], row["edited_at"], row["source_fid"] = status, when, fid
    return row


def _copied(prep: Prepared, fids: list[int]) -> pd.DataFrame:
    """Input rows taken as they are (untouched features), with the review's columns added."""
    src = prep.source.iloc[fids]
    part = pd.DataFrame(src.drop(columns=src.geometry.name))
    part["geometry"] = src.geometry.to_numpy()
    if "status" not in part.columns:
        part["status"] = "predicted"
    if "edited_at" not in part.columns:
        part["edited_at"] = pd.NaT
    part["source_fid"] = fids
    if prep.class_column is None:
        part["class_name"] = UNCLASSED
    return part


def _frame(prep: Prepared, rows: list[dict[str, Any]], copied: list[int] = (),
           order: list[int] | None = None) -> gpd.GeoDataFrame:
    columns = [c for c in prep.source.columns if c != prep.source.geometry.name]
    for extra in ("class_name", "status", "edited_at", "source_fid"):
        if extra not in columns:
            columns.append(extra)
    table = pd.DataFrame(rows, columns=[*columns, "geometry"])
    if len(copied):
        # all-empty columns (attributes of drawn polygons) are left to reindex: they must not set dtypes
        parts = [p.dropna(axis=1, how="all") for p in (_copied(prep, list(copied)), table) if len(p)]
        table = pd.concat(parts, ignore_index=True).reindex(columns=[*columns, "geometry"])
    if order is not None:
        table = table.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    gdf = gpd.GeoDataFrame(table, geometry="geometry", crs=prep.source.crs)
    if prep.class_column is not None and "class_name" not in prep.source.columns and \
            gdf["class_name"].isna().all():
        gdf = gdf.drop(columns="class_name")
    gdf["edited_at"] = pd.to_datetime(gdf["edited_at"], utc=True)
    gdf["source_fid"] = gdf["source_fid"].astype("Int64")
    for col in prep.source.columns:
        if col in gdf.columns and col != "geometry" and len(gdf) and len(prep.source):
            # drawn polygons leave int columns with gaps: keep the upcast there
            if not gdf[col].isna().any() or prep.source[col].dtype == object:
                gdf[col] = gdf[col].astype(prep.source[col].dtype)
    return gdf


def corrected(prep: Prepared, edits: Edits, *, now: datetime | None = None
              ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The corrected polygons and the deleted ones, from the input parts and the page's edits.

    Raises :class:`~xglacier.errors.ReviewError` naming every polygon that cannot be
    saved (self-intersection, too few vertices, holes outside an edited outline); nothing
    is written then.

    Examples
    --------
    >>> from shapely import box
    >>> gdf = gpd.GeoDataFrame({"class_name": ["clean_ice", "debris_covered_ice"]}, crs="EPSG:32611",
    ...                        geometry=[box(0, 0, 90, 90), box(300, 0, 390, 90)])
    >>> prep = prepare(gdf, resolution=30)
    >>> e = Edits.unedited(prep)
    >>> e.xs[0][1] = 120.4                      # move a vertex of the first polygon
    >>> del e.xs[1], e.ys[1], e.labels[1], e.pids[1]  # delete the second
    >>> kept, deleted = corrected(prep, e)
    >>> kept.status.tolist(), kept.geometry[0].bounds, deleted.class_name.tolist()
    (['edited'], (0.0, 0.0, 120.0, 90.0), ['debris_covered_ice'])
    """
    now = now or datetime.now(timezone.utc)
    n = len(prep.parts)
    groups: dict[tuple[Any, ...], list[Polygon]] = {}
    when: dict[tuple[Any, ...], datetime] = {}  # groups with a changed part: the latest change
    errors, seen = [], set()
    for i, (x, y, label, pid) in enumerate(zip(edits.xs, edits.ys, edits.labels, edits.pids, strict=True)):
        original = 0 <= pid < n and pid not in seen
        seen.add(pid)
        if original and label == prep.part_label(pid) and _same_ring(prep, pid, x, y):
            groups.setdefault((prep.fids[pid], label), []).append(prep.parts[pid])
            continue
        poly, err = _build(prep, pid if original else None, x, y, label)
        if err:
            errors.append(err)
            continue
        key = (prep.fids[pid], label) if original else (None, i)
        groups.setdefault(key, []).append(poly)
        when[key] = max(when.get(key, now), edits.times.get(pid, now)) if key in when \
            else edits.times.get(pid, now)
    if errors:
        raise ReviewError("review: cannot save; " + "; ".join(errors))
    gone = [p for p in range(n) if p not in seen]
    touched = {prep.fids[p] for p in gone} | {k[0] for k in when}
    rows, copied, first, last = [], [], [], []  # positions: copied rows come first in the table
    for n_group, (key, polys) in enumerate(groups.items()):
        if key[0] is None:
            rows.append(_group(prep, None, polys, edits.labels[key[1]], "added", when[key]))
            last.append(n_group)
        elif key[0] in touched:
            rows.append(_group(prep, key[0], polys, key[1], "edited", when.get(key, now)))
            last.append(n_group)
        else:  # every part of the feature as it came: copied whole, holes and attributes kept
            copied.append(key[0])
            first.append(n_group)
    dead = [_group(prep, prep.fids[p], [prep.parts[p]], prep.part_label(p), "deleted",
                   edits.times.get(p, now)) for p in gone]
    kept = _frame(prep, rows, copied, first + last)
    if "area_m2" in kept.columns and len(kept):
        changed = (kept["status"] != "predicted").to_numpy()
        if changed.any():
            kept.loc[changed, "area_m2"] = geodesic_area(kept[changed])
    return kept, _frame(prep, dead)


def count_changes(before: Edits, after: Edits) -> int:
    """How many polygons differ between two page states (changed, added or deleted ones).

    Examples
    --------
    >>> a = Edits([[0, 1, 1]], [[0, 0, 1]], ["clean_ice"], [0])
    >>> b = Edits([[0, 2, 1], [5, 6, 6]], [[0, 0, 1], [5, 5, 6]], ["clean_ice", "clean_ice"], [0, 7])
    >>> count_changes(a, b), count_changes(a, a)
    (2, 0)
    """
    def rows(e: Edits) -> dict[int, tuple[Any, ...]]:
        return {p: (tuple(map(float, x)), tuple(map(float, y)), c)
                for x, y, c, p in zip(e.xs, e.ys, e.labels, e.pids, strict=True)}
    a, b = rows(before), rows(after)
    return sum(a.get(p) != b.get(p) for p in set(a) | set(b))


def default_output(polygons: str | os.PathLike) -> Path:
    """Where a review of the file ``polygons`` saves by default: ``<stem>.corrected.gpkg`` beside it.

    Examples
    --------
    >>> default_output("out/outlines.geojson").as_posix()
    'out/outlines.corrected.gpkg'
    """
    p = Path(polygons)
    return p.with_name(f"{p.stem}.corrected.gpkg")


def check_output(out: Path, source: str | os.PathLike | None) -> str:
    """The driver for ``out``; :class:`ReviewError` if it is the input ``source`` itself."""
    driver = DRIVERS.get(out.suffix.lower())
    if driver is None:
        raise ParameterError(f"review: cannot tell the format of out={str(out)!r} from its suffix "
                             f"{out.suffix!r}; expected one of {sorted(DRIVERS)}")
    if not out.parent.is_dir():
        raise InputError(f"review: folder {str(out.parent)!r} of out does not exist")
    if source is not None:
        src = Path(source)
        same = out.exists() and src.exists() and os.path.samefile(out, src)
        if same or out.resolve() == src.resolve():
            raise ReviewError(f"review: out={str(out)!r} is the input predictions file; a review never "
                              "overwrites its input, pick another file name")
    return driver


def write_corrected(kept: gpd.GeoDataFrame, deleted: gpd.GeoDataFrame, out: str | os.PathLike, *,
                    source: str | os.PathLike | None = None) -> Path:
    """Write the two layers of :func:`corrected` to ``out`` atomically (never over ``source``).

    GeoPackage: layers ``<stem>`` and ``deleted`` in one file, written under a temporary
    name and renamed, so that ``out`` holds the old save or the new one, never a part.
    GeoJSON (one layer per file): the deleted polygons go to ``<stem>.deleted.geojson``
    beside it, written first.

    Examples
    --------
    ::

        kept, deleted = corrected(prepare(gdf, resolution=30), edits)
        write_corrected(kept, deleted, "outlines.corrected.gpkg", source="outlines.gpkg")
    """
    out = Path(out)
    driver = check_output(out, source)
    if driver == "GPKG":
        with atomic_path(out) as tmp:
            kept.to_file(tmp, layer=out.stem, driver=driver, engine="pyogrio")
            deleted.to_file(tmp, layer=DELETED_LAYER, driver=driver, engine="pyogrio", mode="a")
        return out
    side = out.with_name(f"{out.stem}.{DELETED_LAYER}{out.suffix}")
    check_output(side, source)
    with atomic_path(side) as tmp:
        deleted.to_file(tmp, driver=driver, engine="pyogrio")
    with atomic_path(out) as tmp:
        kept.to_file(tmp, driver=driver, engine="pyogrio")
    return out
