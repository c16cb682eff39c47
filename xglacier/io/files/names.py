"""What a raster file holds, from its name: product, band (STAC ``common_name``), scene, time.

Three naming schemes are recognised; the band code of one product can mean another band
in the next, so each code is looked up in its own product's table, never guessed:

- Landsat Collection 2 Level-2: ``LC08_L2SP_043024_20200816_20200920_02_T1_SR_B3.TIF``.
  OLI (LC08, LC09) ``SR_B5`` is ``nir08``; TM/ETM+ (LT04, LT05, LE07) ``SR_B4`` is.
- HLS v2: ``HLS.L30.T11UNU.2020229T183919.v2.0.B05.tif``, or any name with an ``L30`` /
  ``S30`` token and a band token (``athabasca_2020229_B05_L30.tif``). L30 ``B05`` is
  ``nir08`` and ``B06`` ``swir16``; S30 ``B8A`` is ``nir08``, ``B11`` ``swir16`` and
  ``B05``-``B07`` are red edge.
- Sentinel-2 band codes without a product token (``athabasca_B8A_20200911.tif``): read
  with the S30 table when the scene has a code only Sentinel-2 uses (``B08``, ``B8A``,
  ``B12``), accepted when its codes mean the same in both (``B01``-``B04``), refused
  otherwise (``B05`` alone could be L30 ``nir08`` or a red-edge band).

Thermal bands (HLS L30 ``B10``, ``B11``; Landsat ``ST_B10``) and other quality layers are
not recognised: their scaling is not that of reflectance.

>>> f = recognise("LC08_L2SP_043024_20200816_20200920_02_T1_SR_B5.TIF")
>>> f.band, f.product, f.platform, str(f.time.date()), f.scene
('nir08', 'landsat-c2-l2', 'landsat-8', '2020-08-16', 'LC08_L2SP_043024_20200816_20200920_02_T1')
>>> recognise("LT05_L2SP_043024_19900816_20200920_02_T1_SR_B5.TIF").band
'swir16'
>>> [recognise(f"athabasca_2020229_{c}_L30.tif").band for c in ("B05", "B06")]
['nir08', 'swir16']
>>> [recognise(f"athabasca_2020253_{c}_S30.tif").band for c in ("B8A", "B11")]
['nir08', 'swir16']
>>> str(recognise("HLS.S30.T11UNU.2020253T184921.v2.0.Fmask.tif").time)
'2020-09-09 18:49:21'
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from ...errors import MetadataError

#: Suffixes of the files whose names are read as band files (GDAL sidecars are not).
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")

#: (scale, offset, nodata) of the reflectance bands of each product.
PRODUCT_SCALING: dict[str, tuple[float, float, float]] = {
    "landsat-c2-l2": (0.0000275, -0.2, 0.0),
    "hls": (1e-4, 0.0, -9999.0),
}

_OLI = {"SR_B1": "coastal", "SR_B2": "blue", "SR_B3": "green", "SR_B4": "red",
        "SR_B5": "nir08", "SR_B6": "swir16", "SR_B7": "swir22", "QA_PIXEL": "qa_pixel"}
_TM = {"SR_B1": "blue", "SR_B2": "green", "SR_B3": "red", "SR_B4": "nir08",
       "SR_B5": "swir16", "SR_B7": "swir22", "QA_PIXEL": "qa_pixel"}
_LANDSAT = {"LC08": ("landsat-8", _OLI), "LC09": ("landsat-9", _OLI), "LO08": ("landsat-8", _OLI),
            "LO09": ("landsat-9", _OLI), "LE07": ("landsat-7", _TM), "LT05": ("landsat-5", _TM),
            "LT04": ("landsat-4", _TM)}
L30 = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "nir08",
       "B06": "swir16", "B07": "swir22", "B09": "cirrus", "FMASK": "fmask"}
S30 = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071",
       "B06": "rededge075", "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09",
       "B10": "cirrus", "B11": "swir16", "B12": "swir22", "FMASK": "fmask"}
_COMMON = {"B01", "B02", "B03", "B04"}  # the same band in L30, S30 and Sentinel-2
_S2_ONLY = {"B08", "B8A", "B12"}

_LANDSAT_NAME = re.compile(
    r"^(?P<scene>(?P<sensor>L[CEOT]0[4-9])_L2S[PR]_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2})"
    r"_(?P<band>SR_B\d|QA_PIXEL)$", re.IGNORECASE)
_LANDSAT_PREFIX = re.compile(r"^L[CEOTM]0\d_L\d", re.IGNORECASE)
_SEP = r"[_.\-]"
_BAND_TOKEN = re.compile(rf"(?:^|{_SEP})(B(?:0[1-9]|1[0-2]|8A)|Fmask)(?={_SEP}|$)", re.IGNORECASE)
_HLS_TOKEN = re.compile(rf"(?:^|{_SEP})([LS]30)(?={_SEP}|$)", re.IGNORECASE)


@dataclass(frozen=True)
class BandFile:
    """One single-band raster: which band of which scene it holds, as its name says."""

    path: Path
    band: str
    scene: str  # the name without its band token: files sharing it are one scene
    product: str  # "landsat-c2-l2", "hls", "sentinel-2" or "" (named by band_names)
    platform: str
    time: pd.Timestamp | None
    code: str = ""  # the band token of the name (B05, SR_B3), for the ambiguity check


def _date(year: int, month: int, day: int) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(dt.datetime(year, month, day)) if 1960 <= year <= 2200 else None
    except ValueError:
        return None


def _doy(year: int, doy: int) -> pd.Timestamp | None:
    if not (1960 <= year <= 2200 and 1 <= doy <= (366 if pd.Timestamp(year, 12, 31).dayofyear == 366
                                                     else 365)):
        return None
    return pd.Timestamp(year, 1, 1) + pd.Timedelta(days=doy - 1)


def name_time(stem: str) -> pd.Timestamp | None:
    """The acquisition time written in a file name, or None.

    Tried in order: ``YYYYDDDTHHMMSS`` (HLS), ``YYYYMMDDTHHMMSS`` (Sentinel-2), the first
    valid ``YYYYMMDD`` (Landsat names carry the acquisition date first, then the processing
    date), then ``YYYYDDD``.

    >>> [str(name_time(s)) for s in ("x_2020229_B03", "x_B03_20200911", "HLS.L30.T11UNU.2020229T183919")]
    ['2020-08-16 00:00:00', '2020-09-11 00:00:00', '2020-08-16 18:39:19']
    """
    for m in re.finditer(r"(?<!\d)(\d{4})(\d{3})T(\d{2})(\d{2})(\d{2})(?!\d)", stem):
        day = _doy(int(m[1]), int(m[2]))
        if day is not None:
            return day + pd.Timedelta(hours=int(m[3]), minutes=int(m[4]), seconds=int(m[5]))
    for m in re.finditer(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)", stem):
        day = _date(int(m[1]), int(m[2]), int(m[3]))
        if day is not None:
            hms = [int(v) for v in m.groups()[3:]] if m[4] else [0, 0, 0]
            return day + pd.Timedelta(hours=hms[0], minutes=hms[1], seconds=hms[2])
    for m in re.finditer(r"(?<!\d)(\d{4})(\d{3})(?!\d)", stem):
        day = _doy(int(m[1]), int(m[2]))
        if day is not None:
            return day
    return None


def _without(stem: str, match: re.Match[str]) -> str:
    """``stem`` without a matched token and the separator before it."""
    return (stem[:match.start()] + stem[match.end():]).strip("_.-")


def recognise(path: str | Path) -> BandFile | None:
    """The :class:`BandFile` a Landsat C2 L2 or HLS-style name describes, or None."""
    path = Path(path)
    if path.suffix.lower() not in RASTER_SUFFIXES:  # e.g. GDAL's x.tif.aux.xml sidecars
        return None
    stem = path.stem
    m = _LANDSAT_NAME.match(stem)
    if _LANDSAT_PREFIX.match(stem):  # a Landsat product file: its table, or nothing (ST_B10, ANG)
        band = _LANDSAT[m["sensor"].upper()][1].get(m["band"].upper()) if m else None
        if band is None:
            return None
        platform = _LANDSAT[m["sensor"].upper()][0]
        return BandFile(path, band, m["scene"], "landsat-c2-l2", platform, name_time(m["scene"]),
                        m["band"].upper())
    codes = list(_BAND_TOKEN.finditer(stem))
    if len(codes) != 1:
        return None
    code = codes[0][1].upper()
    scene = _without(stem, codes[0])
    sensor = _HLS_TOKEN.search(scene)
    if sensor is not None:
        table = L30 if sensor[1].upper() == "L30" else S30
        if code not in table:
            return None
        platform = "hls-l30" if table is L30 else "hls-s30"
        return BandFile(path, table[code], scene, "hls", platform, name_time(scene), code)
    if code not in S30:
        return None
    # the product is decided per scene, once all its codes are known (see resolve_sentinel2)
    return BandFile(path, S30[code], scene, "sentinel-2", "sentinel-2", name_time(scene), code)


def resolve_sentinel2(files: list[BandFile], func: str = "open_scenes") -> None:
    """Refuse a scene of bare band codes whose meaning depends on the sensor."""
    if not files or files[0].product != "sentinel-2":
        return
    codes = {f.code for f in files}
    if codes & _S2_ONLY or codes <= _COMMON:
        return
    odd = sorted(codes - _COMMON)
    raise MetadataError(
        f"{func}: scene {files[0].scene!r} ({files[0].path.parent}) has band codes {odd} but no "
        "L30/S30 token and no code only Sentinel-2 uses (B08, B8A, B12): B05-B07 are nir08/swir16/"
        "swir22 in HLS L30 but red edge in Sentinel-2; rename the files (add _L30 or _S30) or pass "
        "band_names={'*_B05_*': 'nir08', ...}"
    )


def mapped(path: Path, band_names: Mapping[str, str]) -> str | None:
    """The band ``band_names`` gives ``path`` (glob patterns on the name or the full path)."""
    hits = {band for pattern, band in band_names.items()
            if fnmatchcase(path.as_posix() if "/" in pattern else path.name, pattern)}
    if len(hits) > 1:
        raise MetadataError(f"open_scenes: {path} matches band_names patterns for several bands "
                            f"{sorted(hits)}; make the patterns exclusive")
    return hits.pop() if hits else None


def common_stem(paths: list[Path]) -> str:
    """The tokens every file name of a scene shares, e.g. ``athabasca_20200911``.

    >>> common_stem([Path("a_B02_20200911.tif"), Path("a_B03_20200911.tif")])
    'a_20200911'
    """
    parts = [re.split(r"([_.\-])", p.stem) for p in paths]
    keep = set(parts[0][::2]).intersection(*(set(p[::2]) for p in parts[1:]))
    out = ""
    for i, token in enumerate(parts[0][::2]):
        if token in keep:
            out += (parts[0][2 * i - 1] if out and i else "") + token
    return out or paths[0].stem


def classify(path: Path, band_names: Mapping[str, str] | None) -> BandFile | None:
    """The band file ``path`` is, by ``band_names`` first, then by its name; None if neither says."""
    sidecar = path.name.lower().endswith((".aux.xml", ".ovr", ".msk"))
    band = mapped(path, band_names) if band_names and not sidecar else None
    if band is None:
        return recognise(path)
    known = recognise(path)
    if known is not None:  # keep the product (and its scaling) the name tells
        return replace(known, band=band)
    return BandFile(path, band, "", "", "", name_time(path.stem))
