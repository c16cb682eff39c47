"""Test helpers: several small synthetic glaciers as COGs behind one loopback STAC API.

Each glacier is its own ``synthetic_cube`` (32x32 px at 30 m, a few months), written as
Landsat C2 L2 COGs (DNs, nodata 0) with STAC items, in UTM 43N or 44N. Two glaciers are
made to fail for a permanent reason: ``NOSCENE`` has an outline where no item lies (an
empty search) and ``EMPTY`` has scenes whose pixels are all nodata. The outlines are
boxes in lon/lat inside each glacier's scenes; the glaciers differ in size so that the
"largest first" order is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

import xglacier
from xglacier.landsat import SR_OFFSET, SR_SCALE

from ._stac_server import COLLECTION, RustacServer, asset, make_item, to_dn, write_catalog_json, write_cog

CODES = {"green": "SR_B3", "swir16": "SR_B6", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}
#: (id, EPSG, grid origin (x, y of the upper-left corner), seed, outline half-size in px)
SITES = (
    ("G43a", 32643, (734460.0, 3568110.0), 11, 9),
    ("G43b", 32643, (744960.0, 3588210.0), 12, 8),
    ("G44a", 32644, (220020.0, 3568110.0), 13, 10),
    ("G44b", 32644, (240060.0, 3578010.0), 14, 7),
    ("EMPTY", 32643, (754980.0, 3598110.0), 15, 6),
)
NOSCENE = "NOSCENE"  # an outline far from every scene


@dataclass
class Glaciers:
    root: Path
    outlines: gpd.GeoDataFrame
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return list(self.outlines["RGIId"])

    def config(self, url: str, **changes: Any) -> Any:
        """The batch configuration for these glaciers, searching ``url``."""
        from xglacier.batch import BatchConfig

        return BatchConfig(**{**self.settings(url), **changes})

    def settings(self, url: str) -> dict[str, Any]:
        """The fields of :meth:`config` that differ from the defaults (all TOML-expressible)."""
        return {"stac_url": url, "collections": [COLLECTION], "datetime": "2020-01-01/2020-07-01",
                "max_cloud": 100.0, "buffer_m": 90.0, "products": ["flow"], "retries": 1,
                "backoff_s": 0.05, "timeout_s": 20.0}

    def write_toml(self, path: Path, url: str, **changes: Any) -> Path:
        """The configuration as a TOML file, for the command line."""
        lines = [f"{k} = {json.dumps(v)}" for k, v in {**self.settings(url), **changes}.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def _outline(transform_xy: Transformer, x0: float, y0: float, half: int, n: int) -> shapely.Polygon:
    cx, cy = x0 + 30 * n / 2, y0 - 30 * n / 2
    xs = [cx - 30 * half, cx + 30 * half]
    ys = [cy - 30 * half, cy + 30 * half]
    lon, lat = transform_xy.transform([xs[0], xs[1], xs[1], xs[0]], [ys[0], ys[0], ys[1], ys[1]])
    return shapely.Polygon(zip(lon, lat, strict=True))


def build_glaciers(root: Path, *, shape: int = 32, end: str = "2020-07-01") -> Glaciers:
    """Write every glacier's scenes as COGs and return the outlines and STAC items."""
    root.mkdir(parents=True, exist_ok=True)
    ids, geoms, items = [], [], []
    for gid, epsg, origin, seed, half in SITES:
        cube, _ = xglacier.synthetic_cube(shape=(shape, shape), start="2020-01-01", end=end, seed=seed,
                                          crs=f"EPSG:{epsg}", origin=origin)
        cube = cube[list(CODES)].compute()
        transform = cube.rio.transform(recalc=True)
        for k in range(cube.sizes["time"]):
            scene = cube.isel(time=k)
            sid = f"{gid}_{k:03d}"
            assets = {}
            for band, code in CODES.items():
                data = scene[band].values
                data = data.astype(np.uint16) if band == "qa_pixel" else to_dn(data)
                if gid == "EMPTY":  # every pixel nodata: a permanent failure of the data
                    data = np.full_like(data, 1 if band == "qa_pixel" else 0)
                path = root / f"{sid}_{code}.tif"
                write_cog(path, data, transform, f"EPSG:{epsg}", 1 if band == "qa_pixel" else 0)
                refl = band != "qa_pixel"
                assets[code] = asset(path, code, band if refl else None, SR_SCALE if refl else None,
                                     SR_OFFSET if refl else None, 1 if band == "qa_pixel" else 0)
            when = str(np.datetime_as_string(scene.time.values, unit="s")) + "Z"
            props = {"platform": str(scene.platform.values),
                     "eo:cloud_cover": float(scene.cloud_cover.values)}
            items.append(make_item(sid, when, COLLECTION, transform, (shape, shape), f"EPSG:{epsg}",
                                   assets, props))
        to_lonlat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        ids.append(gid)
        geoms.append(_outline(to_lonlat, *origin, half, shape))
    ids.append(NOSCENE)
    geoms.append(shapely.box(70.0, 35.0, 70.005, 35.005))
    outlines = gpd.GeoDataFrame({"RGIId": ids}, geometry=geoms, crs="EPSG:4326")
    return Glaciers(root, outlines, items)


def serve(glaciers: Glaciers) -> RustacServer:
    """A ``rustac serve`` over the glaciers' items (stop it with ``.stop()``)."""
    from ._stac_server import Catalog

    cat = Catalog(glaciers.root, None, glaciers.items, [])
    files = write_catalog_json(cat)
    (glaciers.root / "ids.json").write_text(json.dumps(glaciers.ids))
    return RustacServer(files)


def local_cluster(n_workers: int = 2, **config: Any):
    """A LocalCluster as run_glaciers starts one (processes, one thread each, loopback), warm for tests."""
    import dask
    from distributed import LocalCluster

    from xglacier.batch.run import CLUSTER_CONFIG

    with dask.config.set({**CLUSTER_CONFIG, **config}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    """A 2-worker client shared by a test module's runs, closed with the module."""
    from distributed import Client

    with local_cluster() as cluster, Client(cluster) as c:
        yield c
