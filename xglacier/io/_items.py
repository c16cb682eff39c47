"""STAC items as plain records: band -> asset mapping, scaling, nodata, projection, time.

Providers name the same band differently (``green``, ``SR_B3``, ``B03``); what they share
is the ``eo:bands`` (or STAC 1.1 ``bands``) metadata. :func:`item_info` resolves every
requested band of an item to one asset, with its scale, offset and nodata, and reads the
projection whether it is given as ``proj:code``, ``proj:epsg`` or ``proj:wkt2``.

>>> item = {"id": "a", "properties": {"datetime": "2020-01-01T05:00:00Z", "proj:epsg": 32643},
...         "assets": {"SR_B3": {"href": "b3.tif", "eo:bands": [{"common_name": "green"}]}}}
>>> info = item_info(item, ["green"])
>>> info.assets["green"].key, info.assets["green"].scale, info.crs.to_epsg()
('SR_B3', 2.75e-05, 32643)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyproj
from affine import Affine
from rasterio.crs import CRS

from ..errors import AssetError, MetadataError, MissingBandError
from ..landsat import QA_BAND, REFLECTANCE_BANDS, SR_OFFSET, SR_SCALE

#: Nodata of Landsat Collection 2 Level-2 products where an asset does not say it.
_DEFAULT_NODATA = {**dict.fromkeys(REFLECTANCE_BANDS, 0.0), QA_BAND: 1.0}


@dataclass(frozen=True)
class AssetInfo:
    """One band of one item: where it is and how its integers become physical values."""

    band: str
    key: str
    href: str
    scale: float
    offset: float
    nodata: float | None
    integer: bool  # kept as unscaled integers (quality bands)
    dtype: str  # output dtype: float32, or the integer type of the asset
    data_type: str | None = None  # what raster:bands declares, if it does


@dataclass(frozen=True)
class ItemInfo:
    """What :func:`xglacier.load` needs to know about one STAC item."""

    id: str
    time: pd.Timestamp  # tz-naive UTC, ns
    properties: dict[str, Any]
    crs: CRS | None
    transform: Affine | None
    shape: tuple[int, int] | None
    lonlat_bbox: tuple[float, float, float, float] | None
    geometry: dict[str, Any] | None
    assets: dict[str, AssetInfo]

    @property
    def crs_label(self) -> str:
        """``"EPSG:32643"``, or the CRS name when it has no EPSG code, or ``""``."""
        if self.crs is None:
            return ""
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else pyproj.CRS.from_wkt(self.crs.to_wkt()).name


def item_dict(item: Any) -> dict[str, Any]:
    """A STAC item (``pystac.Item`` or dict) as a plain dict with absolute asset hrefs."""
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if to_dict is None:
        raise AssetError(f"expected a STAC item (pystac.Item or dict), got {type(item).__name__}")
    out = to_dict(include_self_link=False, transform_hrefs=False)
    for key, asset in getattr(item, "assets", {}).items():
        out["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    return out


def as_item_list(items: Any) -> list[dict[str, Any]]:
    """Items of an ``ItemCollection``, a list of items or dicts, or a single item."""
    if isinstance(items, Mapping):
        items = items.get("features", [items]) if items.get("type") == "FeatureCollection" else [items]
    elif hasattr(items, "to_dict") and not hasattr(items, "assets"):  # pystac.ItemCollection
        items = list(items)
    elif hasattr(items, "assets"):
        items = [items]
    return [item_dict(i) for i in items]


def _first_band(asset: Mapping[str, Any], field: str) -> dict[str, Any]:
    bands = asset.get(field)
    return dict(bands[0]) if isinstance(bands, Sequence) and bands and isinstance(bands[0], Mapping) else {}


def _names(asset: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(common names, band names) an asset declares, lower-cased."""
    common, names = set(), set()
    for field in ("eo:bands", "bands"):
        b = _first_band(asset, field)
        for k in ("common_name", "eo:common_name"):
            if b.get(k):
                common.add(str(b[k]).lower())
        if b.get("name"):
            names.add(str(b["name"]).lower())
    return common, names


def find_asset(item: Mapping[str, Any], band: str) -> str:
    """Key of the asset of ``item`` that holds ``band``.

    An asset matches, in this order of precedence: by its key, by the ``common_name`` of
    its ``eo:bands``/``bands``, or by their ``name`` (all case-insensitive). Among equal
    matches, an asset with the ``data`` role wins; a remaining tie is an error.
    """
    assets: Mapping[str, Any] = item.get("assets") or {}
    want = band.lower()
    ranked: list[tuple[int, str]] = []
    for key, asset in assets.items():
        common, names = _names(asset)
        rank = 0 if key.lower() == want else 1 if want in common else 2 if want in names else None
        if rank is not None:
            ranked.append((rank, key))
    if not ranked:
        raise MissingBandError(
            f"band {band!r} is not in item {item.get('id')!r}: no asset has that key, eo:bands "
            f"common_name or name; assets present: {sorted(assets)}"
        )
    best = min(r for r, _ in ranked)
    keys = [k for r, k in ranked if r == best]
    if len(keys) > 1:
        data = [k for k in keys if "data" in (assets[k].get("roles") or [])]
        keys = data if data else keys
    if len(keys) > 1:
        raise AssetError(
            f"band {band!r} of item {item.get('id')!r} matches several assets {sorted(keys)}; "
            "pass the asset key itself as the band name"
        )
    return keys[0]


def _raster_field(asset: Mapping[str, Any], name: str) -> Any:
    """``scale``, ``offset``, ``nodata`` or ``data_type`` from raster:bands, bands or the asset."""
    for field in ("raster:bands", "bands"):
        b = _first_band(asset, field)
        for k in (name, f"raster:{name}"):
            if b.get(k) is not None:
                return b[k]
    for k in (f"raster:{name}", name):
        if asset.get(k) is not None:
            return asset[k]
    return None


def asset_info(item: Mapping[str, Any], band: str) -> AssetInfo:
    """Resolve ``band`` in ``item`` (see :func:`find_asset`) with its scaling and nodata."""
    key = find_asset(item, band)
    asset = item["assets"][key]
    if not asset.get("href"):
        raise AssetError(f"asset {key!r} (band {band!r}) of item {item.get('id')!r} has no href")
    integer = band.lower().startswith("qa")
    scale, offset = _raster_field(asset, "scale"), _raster_field(asset, "offset")
    if integer:
        scale, offset = 1.0, 0.0
    elif scale is None and offset is None and band in REFLECTANCE_BANDS:
        scale, offset = SR_SCALE, SR_OFFSET  # Landsat C2 L2 default
    nodata = _raster_field(asset, "nodata")
    if isinstance(nodata, str):  # "nan", "inf" are allowed by the raster extension
        nodata = float(nodata)
    if nodata is None:
        nodata = _DEFAULT_NODATA.get(band)
    declared = _raster_field(asset, "data_type")
    dtype = "float32"
    if integer:
        dtype = str(declared or "uint16")
        if not dtype.startswith(("uint", "int")):
            raise AssetError(
                f"quality band {band!r} (asset {key!r} of item {item.get('id')!r}) has data_type "
                f"{dtype!r}; expected an integer type"
            )
    return AssetInfo(
        band=band, key=key, href=str(asset["href"]),
        scale=1.0 if scale is None else float(scale), offset=0.0 if offset is None else float(offset),
        nodata=None if nodata is None else float(nodata), integer=integer, dtype=dtype,
        data_type=None if declared is None else str(declared),
    )


def _crs(props: Mapping[str, Any], where: str) -> CRS | None:
    try:
        if props.get("proj:code"):
            return CRS.from_user_input(props["proj:code"])
        if props.get("proj:epsg"):
            return CRS.from_epsg(int(props["proj:epsg"]))
        if props.get("proj:wkt2"):
            return CRS.from_wkt(props["proj:wkt2"])
        if props.get("proj:projjson"):
            return CRS.from_user_input(props["proj:projjson"])
    except Exception as err:  # rasterio's CRSError and ValueError, re-raised with the item named
        raise MetadataError(f"{where}: unreadable projection metadata: {err}") from err
    return None


def item_time(item: Mapping[str, Any]) -> pd.Timestamp:
    """The item's ``datetime`` (or ``start_datetime``) as a tz-naive UTC timestamp in ns."""
    props = item.get("properties") or {}
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        raise MetadataError(f"item {item.get('id')!r} has neither datetime nor start_datetime")
    t = pd.Timestamp(value)
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t.as_unit("ns")


def item_info(item: Mapping[str, Any], bands: Iterable[str]) -> ItemInfo:
    """Collect what loading ``bands`` of ``item`` needs (assets, projection, time)."""
    props = dict(item.get("properties") or {})
    iid = str(item.get("id"))
    assets = {b: asset_info(item, b) for b in bands}
    # projection: asset-level metadata (of the first band) overrides the item's
    first = (item.get("assets") or {}).get(next(iter(assets.values())).key, {}) if assets else {}
    proj = {**props, **{k: v for k, v in first.items() if k.startswith("proj:")}}
    crs = _crs(proj, f"item {iid!r}")
    transform = shape = None
    if proj.get("proj:transform") is not None and len(proj["proj:transform"]) >= 6:
        transform = Affine(*map(float, proj["proj:transform"][:6]))
    if proj.get("proj:shape") is not None:
        shape = (int(proj["proj:shape"][0]), int(proj["proj:shape"][1]))
    bbox = item.get("bbox")
    lonlat = None
    if bbox is not None and len(bbox) in (4, 6):
        lonlat = (bbox[0], bbox[1], bbox[-3], bbox[-2]) if len(bbox) == 6 else tuple(map(float, bbox))
    return ItemInfo(
        id=iid, time=item_time(item), properties=props, crs=crs, transform=transform,
        shape=shape, lonlat_bbox=lonlat, geometry=item.get("geometry"), assets=assets,
    )


def engine_item(info: ItemInfo) -> dict[str, Any]:
    """A minimal STAC item with one asset per band, keyed by band name, for the readers.

    Scale and offset are left out on purpose: xglacier applies them itself, identically
    for every engine; the projection is written both as ``proj:epsg`` (what stackstac
    reads) and ``proj:code``.
    """
    props: dict[str, Any] = {"datetime": info.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if info.crs is not None:
        epsg = info.crs.to_epsg()
        if epsg:
            props["proj:epsg"] = epsg
            props["proj:code"] = f"EPSG:{epsg}"
        else:
            props["proj:wkt2"] = info.crs.to_wkt()
    if info.transform is not None and info.shape is not None:
        props["proj:transform"] = list(info.transform)[:6]
        props["proj:shape"] = list(info.shape)
    assets = {}
    for band, a in info.assets.items():
        raster: dict[str, Any] = {"data_type": a.data_type or a.dtype}
        if a.nodata is not None:
            raster["nodata"] = a.nodata
        assets[band] = {
            "href": a.href, "type": "image/tiff; application=geotiff", "roles": ["data"],
            "eo:bands": [{"name": band}], "raster:bands": [raster],
        }
    out: dict[str, Any] = {
        "type": "Feature", "stac_version": "1.0.0", "id": info.id,
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "geometry": info.geometry, "properties": props, "assets": assets, "links": [],
    }
    if info.lonlat_bbox is not None:
        out["bbox"] = list(info.lonlat_bbox)
    return out
