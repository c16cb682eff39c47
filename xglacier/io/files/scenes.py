"""From paths to scenes: find the files, read their headers, group them, pick the bands.

Only headers are read here (CRS, transform, shape, dtype, nodata, scale/offset tags,
time tags), never pixels, so that :func:`open_scenes` stays lazy.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio

from ...errors import MetadataError, MissingBandError, ParameterError, TimeAxisError
from ...landsat import REFLECTANCE_BANDS
from .._grid import Grid
from .names import PRODUCT_SCALING, BandFile, classify, common_stem, resolve_sentinel2

_TIME_TAGS = ("SENSING_TIME", "DATE_ACQUIRED", "ACQUISITION_DATE", "DATETIME_ACQUIRED", "datetime")
_CLOUD_TAGS = ("cloud_coverage", "CLOUD_COVER", "eo:cloud_cover")
_ORDER = ("coastal", *REFLECTANCE_BANDS[:3], "rededge071", "rededge075", "rededge078", "nir",
          *REFLECTANCE_BANDS[3:4], "nir09", "cirrus", *REFLECTANCE_BANDS[4:])


@dataclass(frozen=True)
class Header:
    """What a file's header says."""

    grid: Grid
    dtype: str
    nodata: float | None
    scale: float
    offset: float
    block: tuple[int, int]
    tags: dict[str, str]
    stamp: tuple[int, int]


@dataclass
class Scene:
    """One acquisition: an id, a time, and one file per band."""

    id: str
    time: pd.Timestamp
    platform: str
    files: dict[str, BandFile] = field(default_factory=dict)


def is_integer_band(band: str) -> bool:
    """Quality bands (``qa_pixel``, ``qa*``, HLS ``fmask``) are bit flags, kept as integers."""
    return band.lower().startswith("qa") or band.lower() == "fmask"


def expand(paths: Any) -> list[tuple[Path, bool]]:
    """Files named by ``paths`` (files, folders, globs), each with whether it was named explicitly."""
    items = [paths] if isinstance(paths, str | os.PathLike) else paths
    if isinstance(items, Iterable) and not isinstance(items, Mapping | bytes):
        items = list(items)  # generators too, such as Path.glob()
    if not isinstance(items, list) or not items:
        raise ParameterError(f"open_scenes: paths={paths!r}; expected a file, a folder, a glob pattern "
                             "or a non-empty list of them")
    out: dict[Path, bool] = {}
    for item in items:
        if not isinstance(item, str | os.PathLike):
            raise ParameterError(f"open_scenes: paths holds {item!r}; expected file names, folders or globs")
        text = os.fspath(item)
        if any(c in text for c in "*?["):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not found:
                raise ParameterError(f"open_scenes: the pattern {text!r} matches no file")
            out.update((p, out.get(p, False)) for p in found)
        elif Path(text).is_dir():
            out.update((p, out.get(p, False)) for p in sorted(Path(text).iterdir()) if p.is_file())
        elif Path(text).is_file():
            out[Path(text)] = True
        else:
            raise ParameterError(f"open_scenes: {text} is neither a file nor a folder (does it exist?)")
    return list(out.items())


def _header(path: Path) -> Header:
    try:
        with rasterio.open(path) as src:
            if src.count != 1:
                raise MetadataError(f"open_scenes: {path} has {src.count} bands; expected one band per "
                                    "file (Landsat and HLS products are single-band files)")
            if src.crs is None:
                raise MetadataError(f"open_scenes: {path} has no CRS; every file must be georeferenced")
            stat = path.stat()
            return Header(Grid(src.crs, src.transform, src.shape), src.dtypes[0], src.nodata,
                          float(src.scales[0]), float(src.offsets[0]), tuple(src.block_shapes[0]),
                          {**src.tags(), **src.tags(1)}, (stat.st_mtime_ns, stat.st_size))
    except rasterio.errors.RasterioError as err:
        raise MetadataError(f"open_scenes: cannot open {path}: {err}") from err


def headers(paths: Sequence[Path]) -> dict[Path, Header]:
    """Headers of ``paths``, read in parallel (opening files is I/O bound)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(paths, pool.map(_header, paths), strict=True))


def _tag(tags: Mapping[str, str], keys: Sequence[str]) -> str | None:
    lower = {k.lower(): v for k, v in tags.items()}
    return next((lower[k.lower()] for k in keys if k.lower() in lower), None)


def tag_time(path: Path, tags: Mapping[str, str]) -> pd.Timestamp | None:
    """Acquisition time from the tags (HLS ``SENSING_TIME`` may list two granules: the first)."""
    text = _tag(tags, _TIME_TAGS)
    if text is None:
        return None
    try:
        t = pd.Timestamp(text.split(";")[0].strip())
    except ValueError as err:
        raise MetadataError(f"open_scenes: {path} has a time tag {text!r} that is not a date") from err
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t


def cloud_cover(scene: Scene, heads: Mapping[Path, Header]) -> float:
    """Percent cloud cover from the tags of the scene's files; NaN when none says."""
    for f in scene.files.values():
        text = _tag(heads[f.path].tags, _CLOUD_TAGS)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                continue
    return float("nan")


def classify_all(found: list[tuple[Path, bool]], band_names: Mapping[str, str] | None) -> list[BandFile]:
    """The files whose band is known; an explicitly named file that is not is an error."""
    out, skipped = [], []
    for path, explicit in found:
        bf = classify(path, band_names)
        if bf is None and explicit:
            raise MetadataError(
                f"open_scenes: cannot tell which band {path} holds: its name follows neither Landsat "
                "Collection 2 L2 (..._SR_B3.TIF, ..._QA_PIXEL.TIF) nor HLS (...B03...L30/S30) naming; "
                f"pass band_names={{{path.name!r}: 'green'}} (glob patterns work too)")
        (out if bf is not None else skipped).append(bf or path)
    if not out:
        names = ", ".join(p.name for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise MetadataError(f"open_scenes: none of the {len(skipped)} files has a recognised band name "
                            f"({names or 'no files'}); pass band_names= (file name or glob -> band)")
    return out


def group(files: list[BandFile], heads: Mapping[Path, Header]) -> list[Scene]:
    """Scenes sorted by time: files with the same scene name, or (for files named through
    ``band_names`` only) the same folder and time."""
    groups: dict[tuple, list[BandFile]] = {}
    for f in files:
        t = f.time if f.time is not None else tag_time(f.path, heads[f.path].tags)
        if t is None:
            raise MetadataError(f"open_scenes: no acquisition time for {f.path}: neither its name "
                                "(YYYYMMDD, YYYYDDD) nor its tags (SENSING_TIME, DATE_ACQUIRED) give one")
        key = ("scene", f.scene) if f.scene else ("time", str(f.path.parent), t)
        groups.setdefault(key, []).append(f if f.time is not None else replace(f, time=t))
    scenes = []
    for members in groups.values():
        resolve_sentinel2(members)
        times = {f.time for f in members}
        if len(times) > 1:
            raise MetadataError(f"open_scenes: the files of scene {members[0].scene!r} have different "
                                f"times {sorted(map(str, times))}")
        scene = Scene(members[0].scene or common_stem([f.path for f in members]), members[0].time,
                      members[0].platform)
        for f in members:
            if f.band in scene.files:
                raise MetadataError(f"open_scenes: two files give band {f.band!r} of scene {scene.id!r}: "
                                    f"{scene.files[f.band].path} and {f.path}")
            scene.files[f.band] = f
        scenes.append(scene)
    scenes.sort(key=lambda s: (s.time, s.id))
    for a, b in itertools.pairwise(scenes):
        if a.time == b.time:
            raise TimeAxisError(f"open_scenes: scenes {a.id!r} and {b.id!r} have the same time {a.time}; "
                                "a scene cube needs one scene per time (open them separately)")
    return scenes


def pick_bands(scenes: list[Scene], bands: Any) -> list[str]:
    """``bands`` checked against every scene; by default the bands every scene has."""
    if bands is None:
        common = set.intersection(*(set(s.files) for s in scenes))
        if not common:
            each = "; ".join(f"{s.id}: {sorted(s.files)}" for s in scenes[:4])
            raise MissingBandError(f"open_scenes: no band is present in every scene ({each}); pass bands=")
        rank = {b: i for i, b in enumerate(_ORDER)}
        return sorted(common, key=lambda b: (is_integer_band(b), rank.get(b, len(rank)), b))
    bands = [bands] if isinstance(bands, str) else list(bands)
    if not bands or len(set(bands)) != len(bands) or not all(isinstance(b, str) and b for b in bands):
        raise ParameterError(f"open_scenes: bands={bands!r}; expected distinct, non-empty band names")
    for s in scenes:
        missing = [b for b in bands if b not in s.files]
        if missing:
            folder = next(iter(s.files.values())).path.parent
            raise MissingBandError(f"open_scenes: scene {s.id!r} ({folder}) has no file for band(s) "
                                   f"{missing}; its bands: {sorted(s.files)}")
    return bands


def scaling(f: BandFile, head: Header, user: tuple[float | None, float | None, float | None]
            ) -> tuple[float, float, float | None]:
    """(scale, offset, nodata) of a reflectance file: the user's, else the file's tags, else
    the product's; a file whose tags contradict its product is refused."""
    scale, offset, nodata = user
    product = PRODUCT_SCALING.get(f.product)
    if nodata is None:
        nodata = head.nodata if head.nodata is not None else (product[2] if product else None)
    if scale is not None:
        return float(scale), float(offset or 0.0), nodata
    tagged = head.scale != 1.0 or head.offset != 0.0
    if tagged:
        if product and not np.allclose((head.scale, head.offset), product[:2], rtol=1e-6, atol=1e-9):
            raise MetadataError(
                f"open_scenes: {f.path} says scale {head.scale:g} and offset {head.offset:g}, but "
                f"{f.product} reflectance is DN * {product[0]:g} + {product[1]:g}; pass scale= and offset= "
                "to say which is right")
        return head.scale, head.offset, nodata
    if np.dtype(head.dtype).kind == "f":
        return 1.0, 0.0, nodata  # float files hold physical values already
    if product:
        return product[0], product[1], nodata
    raise MetadataError(
        f"open_scenes: {f.path} holds integer DNs ({head.dtype}) and neither its name nor its tags say how "
        "to scale them; pass scale= and offset= (Landsat C2 L2: 0.0000275, -0.2; HLS: 1e-4, 0)")
