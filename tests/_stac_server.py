"""Test helpers: Cloud-Optimized GeoTIFFs with STAC items, a real STAC API on loopback.

The catalogue is written from the synthetic cube (UTM 43N, and some scenes reprojected
to UTM 44N) and, where ``../shared/data/athabasca`` exists, from the real HLS crops
(referenced where they are, never copied). ``rustac serve`` (PyPI ``rustac``) serves it;
:class:`Proxy` sits in front of it to inject HTTP failures, to stop mid-session, or to
play a server that implements the STAC ``query`` extension.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

import xglacier
from xglacier.landsat import SR_OFFSET, SR_SCALE

ATHABASCA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
COLLECTION = "landsat-c2-l2"
HLS = "hls-athabasca"
EXT = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
# provider-style asset keys: what xglacier must map to common names
KEYS = {"green": "SR_B3", "swir16": "SR_B6", "qa_pixel": "QA_PIXEL"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_cog(path: Path, data: np.ndarray, transform: Affine, crs: Any, nodata: float | None) -> None:
    """One-band COG (deflate, 256-px tiles: several tiles per test scene)."""
    with rasterio.open(
        path, "w", driver="COG", height=data.shape[0], width=data.shape[1], count=1,
        dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, compress="deflate",
        blocksize=256, overviews="NONE",
    ) as dst:
        dst.write(data, 1)


def footprint(transform: Affine, shape: tuple[int, int], crs: Any) -> tuple[dict, list[float]]:
    """Lon/lat polygon and bbox of a projected grid (edges densified)."""
    h, w = shape
    t = np.linspace(0, 1, 9)
    cols = np.concatenate([t * w, np.full(9, w), (1 - t) * w, np.zeros(9)])
    rows = np.concatenate([np.zeros(9), t * h, np.full(9, h), (1 - t) * h])
    xs, ys = transform @ (cols, rows)
    lon, lat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}, [min(lon), min(lat), max(lon), max(lat)]


def make_item(
    item_id: str, when: str, collection: str, transform: Affine, shape: tuple[int, int], crs: Any,
    assets: dict[str, dict[str, Any]], properties: dict[str, Any], proj_field: str = "proj:code",
) -> dict[str, Any]:
    geom, bbox = footprint(transform, shape, crs)
    epsg = CRS.from_user_input(crs).to_epsg()
    props = {
        "datetime": when, **properties,
        proj_field: epsg if proj_field == "proj:epsg" else f"EPSG:{epsg}",
        "proj:shape": list(shape), "proj:transform": list(transform)[:6],
    }
    return {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": EXT, "id": item_id,
        "collection": collection, "geometry": geom, "bbox": bbox, "properties": props,
        "assets": assets, "links": [],
    }


def asset(href: Path, key: str, common: str | None, scale=None, offset=None, nodata=None, dtype="uint16"):
    eo = {"name": key, **({"common_name": common} if common else {})}
    raster: dict[str, Any] = {"data_type": dtype}
    for k, v in (("scale", scale), ("offset", offset), ("nodata", nodata)):
        if v is not None:
            raster[k] = v
    return {
        "href": Path(href).as_uri(), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"], "eo:bands": [eo], "raster:bands": [raster],
    }


def to_dn(refl: np.ndarray) -> np.ndarray:
    """Invert the C2 L2 scaling exactly (NaN -> nodata 0)."""
    dn = np.where(np.isnan(refl), 0, np.round((refl.astype(np.float64) - SR_OFFSET) / SR_SCALE))
    return dn.astype(np.uint16)


@dataclass
class Catalog:
    root: Path
    cube: xr.Dataset  # the synthetic source, computed, UTM 43N
    items: list[dict[str, Any]]
    zone44: list[str]  # ids of the items written in UTM 44N
    zone44_grid: tuple[Affine, tuple[int, int]] | None = None
    athabasca: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> source facts

    def item(self, item_id: str) -> dict[str, Any]:
        return next(i for i in self.items if i["id"] == item_id)

    @property
    def zone43(self) -> list[str]:
        return [str(i) for i in self.cube.id.values if str(i) not in self.zone44]


def build_catalog(root: Path, shape=(40, 56), end="2020-07-01", seed=3, every_44=4) -> Catalog:
    """Write the synthetic scenes as COGs and their STAC items; return what to check against."""
    root.mkdir(parents=True, exist_ok=True)
    # the tests name scenes by their cloud cover (20.63 %): the scenes without year-to-year changes
    cube, _ = xglacier.synthetic_cube(shape=shape, start="2020-01-01", end=end, seed=seed,
                                      albedo_variability=0, debris_variability=0, cloud_variability=0)
    cube = cube[["green", "swir16", "qa_pixel"]].compute()
    src_t, src_crs = cube.rio.transform(), cube.rio.crs
    dst_crs = CRS.from_epsg(32644)
    t44, w44, h44 = calculate_default_transform(
        src_crs, dst_crs, shape[1], shape[0], *cube.rio.bounds(), resolution=30)
    # Landsat-like lattice in the other zone: edges at multiples of 30 m plus 15 m
    t44 = Affine(30, 0, np.floor(t44.c / 30) * 30 + 15, 0, -30, np.ceil(t44.f / 30) * 30 + 15)
    shape44 = (h44 + 1, w44 + 1)
    items, zone44 = [], []
    for k in range(cube.sizes["time"]):
        scene = cube.isel(time=k)
        sid = str(scene.id.values)
        data = {"green": to_dn(scene.green.values), "swir16": to_dn(scene.swir16.values),
                "qa_pixel": scene.qa_pixel.values.astype(np.uint16)}
        transform, grid_shape, crs = src_t, shape, src_crs
        if every_44 and k % every_44 == 2:
            zone44.append(sid)
            transform, grid_shape, crs = t44, shape44, dst_crs
            for b, arr in data.items():
                out = np.full(shape44, 1 if b == "qa_pixel" else 0, np.uint16)
                reproject(arr, out, src_transform=src_t, src_crs=src_crs, dst_transform=t44,
                          dst_crs=dst_crs, resampling=Resampling.nearest,
                          src_nodata=1 if b == "qa_pixel" else 0, dst_nodata=1 if b == "qa_pixel" else 0)
                data[b] = out
        assets = {}
        for b, arr in data.items():
            path = root / f"{sid}_{KEYS[b]}.tif"
            nodata = 1 if b == "qa_pixel" else 0
            write_cog(path, arr, transform, crs, nodata)
            scale = None if (b == "qa_pixel" or k == 1) else SR_SCALE  # item 1: Landsat defaults
            offset = None if (b == "qa_pixel" or k == 1) else SR_OFFSET
            assets[KEYS[b]] = asset(path, KEYS[b], None if b == "qa_pixel" else b, scale, offset,
                                    None if k == 1 else nodata)
        assets["thumbnail"] = {"href": (root / f"{sid}.png").as_uri(), "type": "image/png",
                               "roles": ["thumbnail"]}
        when = str(np.datetime_as_string(scene.time.values, unit="s")) + "Z"
        props = {"platform": "landsat-7" if k == 5 else str(scene.platform.values),
                 "eo:cloud_cover": float(scene.cloud_cover.values), "instruments": ["oli", "tirs"]}
        items.append(make_item(sid, when, COLLECTION, transform, grid_shape, crs, assets, props,
                               "proj:epsg" if k % 2 else "proj:code"))
    cat = Catalog(root, cube, items, zone44, (t44, shape44))
    if ATHABASCA.is_dir():
        _athabasca_items(cat)
    return cat


def _athabasca_items(cat: Catalog) -> None:
    scenes = [
        ("HLS.L30.T11UNU.2020229", "2020-08-16T18:50:00Z", "landsat-8", 12.0,
         {"green": ATHABASCA / "athabasca_2020229_B03_L30.tif",
          "swir16": ATHABASCA / "athabasca_2020229_B06_L30.tif"}),
        ("HLS.S30.T11UNU.2020253", "2020-09-09T19:00:00Z", "sentinel-2a", 4.0,
         {"green": ATHABASCA / "athabasca_2020253_B03_S30.tif",
          "swir16": ATHABASCA / "athabasca_2020253_B11_S30.tif"}),
        ("S2.shifted.20200911", "2020-09-11T19:00:00Z", "sentinel-2b", 30.0,
         {"green": ATHABASCA / "shifted_20200911" / "athabasca_B03_20200911.tif",
          "swir16": ATHABASCA / "shifted_20200911" / "athabasca_B11_20200911.tif"}),
    ]
    for sid, when, platform, cloud, files in scenes:
        assets = {}
        for band, path in files.items():
            key = path.stem.split("_")[2 if "shifted" not in str(path) else 1]  # B03, B06, B11
            assets[key] = asset(path, key, band, 1e-4, 0.0, -9999, "int16")
        with rasterio.open(files["green"]) as src:
            transform, shape = src.transform, (src.height, src.width)
        item = make_item(sid, when, HLS, transform, shape, "EPSG:32611", assets,
                         {"platform": platform, "eo:cloud_cover": cloud})
        cat.items.append(item)
        cat.athabasca[sid] = {"files": files, "transform": transform, "shape": shape}


def write_catalog_json(cat: Catalog) -> list[Path]:
    """Collections and a FeatureCollection of the items, as rustac serve reads them."""
    paths = []
    for cid in sorted({i["collection"] for i in cat.items}):
        coll = {
            "type": "Collection", "stac_version": "1.1.0", "id": cid, "description": f"test {cid}",
            "license": "other", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [["2000-01-01T00:00:00Z", None]]}},
        }
        path = cat.root / f"collection-{cid}.json"
        path.write_text(json.dumps(coll))
        paths.append(path)
    path = cat.root / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": cat.items}))
    return [*paths, path]


def rustac_command() -> str:
    """The ``rustac`` console script installed with the package (beside this Python first)."""
    here = Path(sys.executable).parent / "rustac"
    found = str(here) if here.exists() else shutil.which("rustac")
    if found is None:
        raise RuntimeError("the rustac command is not installed: pip install rustac (a test dependency)")
    return found


class RustacServer:
    """``rustac serve`` on a free loopback port, as a subprocess (stopped by :meth:`stop`)."""

    def __init__(self, files: list[Path], addr: str | None = None) -> None:
        port = free_port()
        self.bind = f"127.0.0.1:{port}"
        self.url = f"http://{self.bind}"
        args = ["serve", "--addr", addr or self.url, "--bind", self.bind, *map(str, files)]
        self.proc = subprocess.Popen(
            [rustac_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                    self.stop()
                    raise RuntimeError(f"rustac serve did not start on {self.bind}: {out}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
QUERY_CONFORMANCE = "https://api.stacspec.org/v1.0.0/item-search#query"


class Proxy:
    """A loopback HTTP proxy in front of a STAC API that can misbehave on purpose.

    ``fail``: statuses returned (instead of forwarding) for the first requests;
    ``stop_after``: after that many answered requests the proxy closes its socket, so
    later connections are refused (a server that stops mid-session);
    ``query``: advertise the STAC query extension and implement it (``lte`` and ``in``)
    on the upstream answer, recording what was asked in :attr:`queries`;
    ``delay``: seconds to wait before answering each of the first requests (timeouts).
    """

    def __init__(self, upstream: str, fail: list[int] | None = None, stop_after: int | None = None,
                 query: bool = False, delay: list[float] | None = None) -> None:
        self.upstream, self.fail = upstream.rstrip("/"), list(fail or [])
        self.delay = list(delay or [])
        self.stop_after, self.query = stop_after, query
        self.requests: list[str] = []
        self.queries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append(f"{method} {path}")
            n = len(self.requests)
        if n <= len(self.delay):
            time.sleep(self.delay[n - 1])
        if n <= len(self.fail):
            return self.fail[n - 1], b'{"code": "Unavailable", "description": "injected failure"}'
        query = None
        if body and self.query:
            payload = json.loads(body)
            query = payload.pop("query", None)
            if query is not None:
                self.queries.append(query)
            body = json.dumps(payload).encode()
        req = urllib.request.Request(self.upstream + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(req, timeout=10) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        text = text.replace(self.upstream, self.url)
        if self.query and status == 200:
            doc = json.loads(text)
            if "conformsTo" in doc:
                doc["conformsTo"].append(QUERY_CONFORMANCE)
            if query and "features" in doc:
                doc["features"] = [f for f in doc["features"] if _matches(f["properties"], query)]
            text = json.dumps(doc)
        return status, text.encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, data = proxy._answer(method, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with proxy._lock:
                    done = proxy.stop_after is not None and len(proxy.requests) >= proxy.stop_after
                if done:  # the server "dies": nothing listens any more
                    threading.Thread(target=proxy.close, daemon=True).start()

            def do_GET(self) -> None:
                self._do("GET")

            def do_POST(self) -> None:
                self._do("POST")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _matches(props: dict[str, Any], query: dict[str, Any]) -> bool:
    for name, ops in query.items():
        value = props.get(name)
        for op, ref in ops.items():
            if value is None:
                return False
            if op == "lte" and not value <= ref:
                return False
            if op == "in" and value not in ref:
                return False
    return True
