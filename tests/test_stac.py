"""search and load against a real STAC API (``rustac serve``) on loopback, over COGs.

The catalogue (``tests/_stac_server.py``) is written from the synthetic cube, with a
few scenes reprojected to the next UTM zone, provider-style asset keys (``SR_B3``...)
mapped through ``eo:bands``, ``proj:code`` on some items and ``proj:epsg`` on others, and
one item without ``raster:bands`` scaling (Landsat defaults). Where
``../shared/data/athabasca`` exists, real HLS crops join it in a second collection.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray
import xarray as xr
from rasterio.warp import Resampling, reproject

from xglacier.errors import (
    AssetError,
    EmptySearchError,
    MetadataError,
    MissingBandError,
    ParameterError,
    SkippedSceneWarning,
    StacError,
)
from xglacier.io import _engines, _grid, _items
from xglacier.io import load as load_module
from xglacier.io.retry import RetryBudget
from xglacier.io.stac import load, search

from ._stac_server import (
    ATHABASCA,
    COLLECTION,
    HLS,
    Proxy,
    RustacServer,
    build_catalog,
    free_port,
    write_catalog_json,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning",  # affine 3 and odc-geo, rasterio
    "ignore:The 'shapely.ops.transform:DeprecationWarning",  # odc-geo
)
BBOX = (77.4, 32.1, 77.6, 32.3)  # around the synthetic glacier
ENGINES = ["stackstac", "odc"]
FAST = {"retries": 1, "backoff": 0.01, "timeout": 5}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("stac"))


@pytest.fixture(scope="module")
def server(catalog):
    srv = RustacServer(write_catalog_json(catalog))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def everything(catalog, server):
    """Every synthetic item, as the API returns them."""
    return search(BBOX, "2020-01-01", "2020-12-31", max_cloud=None, platforms=None, url=server.url)


def expected(catalog, start="2020-01-01", end="2020-12-31", max_cloud=None, platforms=None):
    out = []
    for item in catalog.items:
        p = item["properties"]
        t = pd.Timestamp(p["datetime"]).tz_localize(None)
        if item["collection"] != COLLECTION:
            continue
        if not pd.Timestamp(start) <= t <= pd.Timestamp(end) + pd.Timedelta("1D"):
            continue
        if max_cloud is not None and p["eo:cloud_cover"] > max_cloud:
            continue
        if platforms is not None and p["platform"] not in platforms:
            continue
        out.append(item["id"])
    return out


# ------------------------------------------------------------------------------- search
def test_search_filters(catalog, server):
    items = search(BBOX, "2020-01-01", "2020-03-11", max_cloud=20, url=server.url)
    ids = [i.id for i in items]
    assert ids == expected(catalog, end="2020-03-11", max_cloud=20, platforms=("landsat-8", "landsat-9"))
    assert len(ids) >= 3
    assert "LC08_L2SP_147038_20200216_SYNTH_005" not in ids  # landsat-7: not a default platform
    times = [i.datetime for i in items]
    assert times == sorted(times)
    # the end date covers its whole day, the limit is inclusive
    both = search(BBOX, "2020-03-11", "2020-03-11", max_cloud=20.63, url=server.url)
    assert [i.id for i in both] == ["LC08_L2SP_147038_20200311_SYNTH_007"]
    with pytest.raises(EmptySearchError, match="exceed the cloud"):
        search(BBOX, "2020-03-11", "2020-03-11", max_cloud=20.6, url=server.url)
    assert [i.id for i in search(BBOX, "2020-01-01", "2020-12-31", max_cloud=None, platforms="landsat-7",
                                 url=server.url)] == ["LC08_L2SP_147038_20200216_SYNTH_005"]


def test_search_empty_and_unknown_collection(server):
    with pytest.raises(EmptySearchError) as err:
        search((10.0, 45.0, 10.5, 45.5), "2020-01-01", "2020-12-31", url=server.url)
    msg = str(err.value)
    assert server.url in msg and "[10.0, 45.0, 10.5, 45.5]" in msg and "2020-01-01/2020-12-31" in msg
    with pytest.raises(EmptySearchError, match="no collection 'sentinel-9'"):
        search(BBOX, "2020-01-01", "2020-12-31", collection="sentinel-9", url=server.url)


def test_search_server_side_query_gives_the_same_result(catalog, server):
    """A server that implements the query extension gets the limits and answers the same."""
    proxy = Proxy(server.url, query=True)
    try:
        via_server = search(BBOX, "2020-01-01", "2020-12-31", max_cloud=20, url=proxy.url)
    finally:
        proxy.close()
    client = search(BBOX, "2020-01-01", "2020-12-31", max_cloud=20, url=server.url)
    assert [i.id for i in via_server] == [i.id for i in client] == expected(
        catalog, max_cloud=20, platforms=("landsat-8", "landsat-9"))
    assert proxy.queries == [{"eo:cloud_cover": {"lte": 20}, "platform": {"in": ["landsat-8", "landsat-9"]}}]


def test_search_retries_transient_errors(server):
    proxy = Proxy(server.url, fail=[503, 429, 502])
    try:
        items = search(BBOX, "2020-01-01", "2020-12-31", url=proxy.url, retries=4, backoff=0.01)
    finally:
        proxy.close()
    assert len(items) > 0
    assert len(proxy.requests) >= 4 and proxy.requests[0] == proxy.requests[3]  # the same request, again


def test_search_retries_timeouts(server):
    proxy = Proxy(server.url, delay=[2.0, 2.0])  # the first two answers come too late
    try:
        items = search(BBOX, "2020-01-01", "2020-12-31", url=proxy.url, retries=3, backoff=0.01,
                       timeout=0.5)
    finally:
        proxy.close()
    assert len(items) > 0 and proxy.requests[:3] == ["GET /"] * 3


def test_search_gives_up_after_the_retries(server):
    proxy = Proxy(server.url, fail=[503] * 10)
    try:
        with pytest.raises(StacError, match=r"could not open the STAC API at http://127\.0\.0\.1.*2 retries"):
            search(BBOX, "2020-01-01", "2020-12-31", url=proxy.url, retries=2, backoff=0.01)
    finally:
        proxy.close()
    assert len(proxy.requests) == 3  # one try and two retries


def test_search_server_stops_mid_session(catalog, server):
    """The API answers the first pages, then nothing listens any more."""
    proxy = Proxy(server.url, stop_after=3)  # landing page, conformance/search, one page
    with pytest.raises(StacError) as err:
        search(BBOX, "2020-01-01", "2020-12-31", max_cloud=None, platforms=None, url=proxy.url,
               page_size=2, **FAST)
    msg = str(err.value)
    assert proxy.url in msg and "2020-01-01/2020-12-31" in msg and "after 1 retries" in msg
    assert "Connection refused" in msg and proxy.requests[-1] == "POST /search"


def test_search_unreachable_api():
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(StacError, match=f"could not open the STAC API at {url}") as err:
        search(BBOX, "2020-01-01", "2020-12-31", url=url, **FAST)
    assert "collection 'landsat-c2-l2', bbox [77.4, 32.1, 77.6, 32.3]" in str(err.value)


@pytest.mark.parametrize("bbox, match", [
    ((77.4, 32.1, 77.6), "expected .west, south, east, north."),
    ("77.4,32.1,77.6,32.3", "expected .west, south, east, north."),
    ((77.6, 32.1, 77.4, 32.3), "west >= east"),
    ((77.4, 32.3, 77.6, 32.1), "south >= north"),
    ((734460, 3568110, 736140, 3566910), "outside"),
    ((77.4, float("nan"), 77.6, 32.3), "non-finite"),
])
def test_search_bad_bbox(bbox, match):
    with pytest.raises(ParameterError, match=match):
        search(bbox, "2020-01-01", "2020-12-31", url="http://127.0.0.1:9/unused")


def test_search_bad_arguments():
    with pytest.raises(ParameterError, match="start='2021-01-01' is after end"):
        search(BBOX, "2021-01-01", "2020-01-01", url="http://127.0.0.1:9/unused")
    with pytest.raises(ParameterError, match="end='not a date'"):
        search(BBOX, "2021-01-01", "not a date", url="http://127.0.0.1:9/unused")
    with pytest.raises(ParameterError, match="max_cloud=150"):
        search(BBOX, "2020-01-01", "2021-01-01", max_cloud=150, url="http://127.0.0.1:9/unused")


# --------------------------------------------------------------------------------- load
def _source(catalog, ds):
    """The synthetic source at the loaded scenes (items of zone 43 only)."""
    return catalog.cube.sel(time=ds.time.values)


@pytest.mark.parametrize("engine", ENGINES)
def test_load_gives_the_source_grid_and_values(catalog, everything, engine, no_compute):
    zone43 = [i for i in everything if i.id in catalog.zone43]
    raw = [catalog.item(i.id)["properties"] for i in zone43]
    assert {"proj:code" in p for p in raw} == {True, False}  # both spellings served
    with no_compute():
        ds = load(zone43, chunks={"time": 2, "y": 16, "x": 32}, engine=engine)
    src = _source(catalog, ds)
    with no_compute():  # the order of the items does not matter: time is sorted
        assert list(load(zone43[::-1], engine=engine).id.values) == [i.id for i in zone43]
    assert ds.sizes == {"time": len(zone43), "y": 40, "x": 56}
    assert ds.rio.transform() == catalog.cube.rio.transform()
    assert ds.rio.crs.to_epsg() == 32643 and ds.spatial_ref.attrs["crs_wkt"]
    np.testing.assert_array_equal(ds.x.values, catalog.cube.x.values)
    np.testing.assert_array_equal(ds.y.values, catalog.cube.y.values)
    assert ds.indexes["time"].is_monotonic_increasing and ds.time.dtype == "datetime64[ns]"
    assert list(ds.id.values) == [i.id for i in zone43]
    np.testing.assert_array_equal(ds.cloud_cover.values, [i.properties["eo:cloud_cover"] for i in zone43])
    assert set(ds.source_crs.values) == {"EPSG:32643"}
    assert ds.green.dtype == np.float32 and ds.qa_pixel.dtype == np.uint16
    assert ds.green.encoding["grid_mapping"] == "spatial_ref"
    n = len(zone43)
    assert ds.green.chunks == ((2,) * (n // 2) + (1,) * (n % 2), (16, 16, 8), (32, 24))
    assert ds.green.attrs == {"long_name": "green surface reflectance", "units": "1"}
    for band in ("green", "swir16", "qa_pixel"):
        np.testing.assert_array_equal(ds[band].values, src[band].values, err_msg=band)
    assert np.isnan(ds.green.values).any()  # nodata became NaN


def test_default_chunks(everything):
    """About 4 million pixels per chunk: 4 scenes of 1024x1024, all 13 small synthetic ones."""
    assert load(everything).green.chunks[0] == (len(everything),)
    assert load_module.time_chunk({"y": 1024, "x": 1024}, (3000, 3000), 24) == 4
    assert load_module.time_chunk({"y": 1024, "x": 1024}, (300, 300), 200) == 46
    assert load_module.time_chunk({"y": 512, "x": 512}, (300, 300), 20) == 20
    assert load_module.time_chunk({"y": 4096, "x": 4096}, (5000, 5000), 20) == 1


def test_load_two_utm_zones_on_one_grid(catalog, everything):
    ds = load(everything, chunks={"y": 32, "x": 32})
    assert ds.rio.crs.to_epsg() == 32643  # the zone of the centre of the items
    assert list(ds.source_crs.values).count("EPSG:32644") == len(catalog.zone44) > 0
    # the grid covers the reprojected footprints, on the pixels of the source
    assert set(catalog.cube.x.values) <= set(ds.x.values) and set(catalog.cube.y.values) <= set(ds.y.values)
    dsc = ds.compute()
    inner = dsc.sel(x=catalog.cube.x, y=catalog.cube.y)
    for k, sid in enumerate(map(str, dsc.id.values)):
        if sid in catalog.zone44:  # what GDAL makes of the other zone's COG on this grid
            href = catalog.item(sid)["assets"]["SR_B6"]["href"]
            with rasterio.open(href) as src:
                dn = np.zeros(ds.rio.shape, np.uint16)
                reproject(src.read(1), dn, src_transform=src.transform, src_crs=src.crs,
                          dst_transform=ds.rio.transform(), dst_crs=ds.rio.crs,
                          resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
            want = np.where(dn == 0, np.nan, dn * 0.0000275 - 0.2).astype(np.float32)
            same = (dsc.swir16.values[k] == want) | (np.isnan(want) & np.isnan(dsc.swir16.values[k]))
            assert same.mean() > 0.995, sid
        else:
            src = catalog.cube.swir16.sel(time=dsc.time[k]).values
            np.testing.assert_array_equal(inner.swir16.values[k], src)
            outside = np.isnan(dsc.swir16.values[k]).sum() - np.isnan(inner.swir16.values[k]).sum()
            assert outside == ds.sizes["y"] * ds.sizes["x"] - 40 * 56


def test_load_crs_follows_the_bbox_centre(everything, no_compute):
    with no_compute():
        west = load(everything, bbox=(77.45, 32.18, 77.55, 32.26))
        east = load(everything, bbox=(77.45, 32.18, 78.7, 32.26), crs=None)
        given = load(everything, bbox=(77.45, 32.18, 77.55, 32.26), crs=32644)
    assert west.rio.crs.to_epsg() == 32643
    assert east.rio.crs.to_epsg() == 32644 and given.rio.crs.to_epsg() == 32644


@pytest.mark.parametrize("engine", ENGINES)
def test_load_bbox_is_a_subset_of_the_source_pixels(catalog, everything, engine):
    zone43 = [i for i in everything if i.id in catalog.zone43]
    ds = load(zone43, bbox=(77.492, 32.216, 77.500, 32.222), engine=engine)
    assert 0 < ds.sizes["x"] < 56 and 0 < ds.sizes["y"] < 40
    assert set(ds.x.values) <= set(catalog.cube.x.values) and set(ds.y.values) <= set(catalog.cube.y.values)
    src = _source(catalog, ds).sel(x=ds.x, y=ds.y)
    np.testing.assert_array_equal(ds.green.values, src.green.values)


def test_load_engines_agree(everything):
    a = load(everything, chunks={"y": 24, "x": 24}).compute()
    b = load(everything, engine="odc").compute()
    xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def test_load_reads_nothing_before_compute(catalog, everything, no_compute, tmp_path):
    gone = [copy.deepcopy(i.to_dict()) for i in everything][:3]
    for item in gone:  # the files do not exist: any early read would fail
        for a in item["assets"].values():
            a["href"] = (tmp_path / "nowhere" / a["href"].rsplit("/", 1)[-1]).as_uri()
    for engine in ENGINES:
        with no_compute():
            ds = load(gone, engine=engine)
            ndsi = (ds.green - ds.swir16) / (ds.green + ds.swir16)
            ndsi.mean("time")
        with pytest.raises(AssetError, match=r"cannot read asset 'file://.*nowhere/LC08"):
            ndsi.compute()


@pytest.mark.parametrize("engine", ENGINES)
def test_load_missing_or_corrupt_asset(catalog, everything, engine, tmp_path):
    items = [copy.deepcopy(i.to_dict()) for i in everything][:4]
    bad = tmp_path / "corrupt_SR_B6.tif"
    bad.write_bytes(b"II*\x00" + b"\x00garbage" * 40)
    items[1]["assets"]["SR_B6"]["href"] = bad.as_uri()
    missing = tmp_path / "missing_SR_B3.tif"
    items[2]["assets"]["SR_B3"]["href"] = missing.as_uri()
    ds = load(items, engine=engine)
    # synchronous: no reader thread may still run (and touch the warning filters) below
    with pytest.raises(AssetError, match=r"corrupt_SR_B6\.tif"):
        ds.swir16.compute(scheduler="synchronous")
    with pytest.raises(AssetError, match=r"missing_SR_B3\.tif"):
        ds.green.compute(scheduler="synchronous")
    with pytest.warns(SkippedSceneWarning, match=r"dropped 2 of 4 scenes.*corrupt_SR_B6.*missing_SR_B3"):
        kept = load(items, engine=engine, on_error="skip")
    assert list(kept.id.values) == [items[0]["id"], items[3]["id"]]
    np.testing.assert_array_equal(kept.green.values, _source(catalog, kept).green.values)


def test_a_failing_modifier_is_retried_from_the_retries_or_the_budget(server):
    calls = []

    def flaky(obj):  # a signing service that fails twice, then answers
        calls.append(type(obj).__name__)
        if len(calls) <= 2:
            raise ConnectionError("signing service unavailable")

    budget = RetryBudget(3, 0.0)
    ids = [i.id for i in search(BBOX, "2020-01-01", "2020-03-11", max_cloud=20, url=server.url,
                                modifier=flaky, budget=budget)]
    assert ids == [i.id for i in search(BBOX, "2020-01-01", "2020-03-11", max_cloud=20, url=server.url)]
    assert budget.used == 2 and len(calls) > 2
    calls.clear()
    assert search(BBOX, "2020-01-01", "2020-03-11", max_cloud=20, url=server.url, modifier=flaky, retries=2,
                  backoff=0.0)

    def down(obj):
        calls.append(1)
        raise ConnectionError("signing service unavailable")

    for kw in ({"budget": RetryBudget(2, 0.0)}, {"retries": 2, "backoff": 0.0}):
        calls.clear()
        with pytest.raises(StacError, match="signing service unavailable"):
            search(BBOX, "2020-01-01", "2020-03-11", url=server.url, modifier=down, **kw)
        assert len(calls) == 3  # retries + 1 calls in all, then the failure


class Silent:
    """A loopback server that accepts connections and never answers: a hung asset host."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])  # held open, never answered
            except OSError:  # closed by close()
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
        self._thread.join(5)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_silent_asset_host_fails_the_read_instead_of_hanging(everything, engine):
    silent = Silent()
    try:
        items = [copy.deepcopy(i.to_dict()) for i in everything][:2]
        items[1]["assets"]["SR_B3"]["href"] = f"{silent.url}/{engine}/raise/silent_SR_B3.tif"
        ds = load(items, engine=engine, http_timeout=1)
        start = time.perf_counter()
        with pytest.raises(AssetError, match=r"cannot read asset .*silent_SR_B3\.tif"):
            ds.green.compute(scheduler="synchronous")
        assert time.perf_counter() - start < 30  # about a second per attempt, not forever
        items[1]["assets"]["SR_B3"]["href"] = f"{silent.url}/{engine}/skip/silent_SR_B3.tif"
        with pytest.warns(SkippedSceneWarning, match=r"dropped 1 of 2 scenes.*silent_SR_B3"):
            kept = load(items, engine=engine, on_error="skip", http_timeout=1)
        assert list(kept.id.values) == [items[0]["id"]]
    finally:
        silent.close()
    with pytest.raises(ParameterError, match="http_timeout"):
        load(items, http_timeout=0)


def test_load_skip_reads_the_last_block(catalog, everything, tmp_path):
    """A truncated COG opens fine; its last tiles are gone, and skip catches that."""
    items = [copy.deepcopy(i.to_dict()) for i in everything][:2]
    data = Path(urllib.parse.urlparse(items[1]["assets"]["SR_B3"]["href"]).path).read_bytes()
    cut = tmp_path / "truncated_SR_B3.tif"
    cut.write_bytes(data[: len(data) - 200])
    items[1]["assets"]["SR_B3"]["href"] = cut.as_uri()
    with pytest.raises(AssetError, match=r"truncated_SR_B3\.tif"):
        load(items).green.compute(scheduler="synchronous")
    with pytest.warns(SkippedSceneWarning, match="truncated_SR_B3"):
        assert load(items, on_error="skip").sizes["time"] == 1


def test_load_bad_input(everything):
    with pytest.raises(MissingBandError, match=r"band 'swir99' is not in item .*present: \['QA_PIXEL'"):
        load(everything, bands=["green", "swir99"])
    for kwargs, match in [
        ({"resolution": 0}, "resolution=0"),
        ({"resolution": "30"}, "resolution='30'"),
        ({"engine": "gdal"}, "engine='gdal'"),
        ({"chunks": {"band": 1}}, "chunks="),
        ({"bands": []}, "bands="),
        ({"bands": ["green", "green"]}, "bands="),
        ({"bbox": (1, 2, 3)}, "load: bbox="),
        ({"crs": "EPSG:999999"}, "crs='EPSG:999999'"),
        ({"on_error": "ignore"}, "on_error="),
        ({"resampling": "magic"}, "resampling='magic'"),
        ({"bbox": (10.0, 45.0, 10.5, 45.5)}, "none of the .* items overlaps"),
    ]:
        with pytest.raises(ParameterError, match=match):
            load(everything, **kwargs)
    with pytest.raises(ParameterError, match="items is empty"):
        load([])
    with pytest.raises(MetadataError, match="more than once"):
        load([everything[0], everything[0]])


def test_load_result_is_writable_as_it_is(catalog, everything, tmp_path):
    """No attribute or coordinate of the loaded cube stops plain xarray writers."""
    ds = load(everything[:3], chunks={"y": 20, "x": 28})
    ds.to_netcdf(tmp_path / "plain.nc")
    ds.to_zarr(tmp_path / "plain.zarr", consolidated=False)
    back = xr.open_dataset(tmp_path / "plain.nc", decode_coords="all")
    np.testing.assert_array_equal(back.swir16.values, ds.swir16.values)
    assert back.rio.crs == ds.rio.crs
    back.close()
    json.dumps(ds.attrs)


def test_stackstac_items_outside_the_grid_come_back_empty(everything):
    """stackstac drops items it finds outside the grid; the engine puts them back as NaN."""
    infos = [_items.item_info(i.to_dict(), ["green"]) for i in everything[:2]]
    grid = _grid.make_grid(infos[:1], infos[0].crs, 30.0)
    far = copy.deepcopy(_items.engine_item(infos[1]))
    far["properties"]["proj:transform"][2] += 1e6  # moved 1000 km east
    raw = _engines.read_stackstac([_items.engine_item(infos[0]), far], ["green"], grid,
                                  {"time": 1, "y": 64, "x": 64}, "nearest")
    arr = raw["green"].compute()
    assert arr.shape == (2, 40, 56) and np.isnan(arr[1]).all() and not np.isnan(arr[0]).all()


# --------------------------------------------------------------------- items and grids
def test_asset_mapping_precedence_and_scaling():
    item = {
        "id": "x", "properties": {"datetime": "2020-01-01T12:00:00+02:00", "proj:code": "EPSG:32611"},
        "assets": {
            "green": {"href": "a.tif", "eo:bands": [{"name": "B3", "common_name": "green"}]},
            "B3": {"href": "b.tif", "bands": [{"name": "B3", "eo:common_name": "green", "nodata": "nan",
                                               "raster:scale": 1e-4, "raster:offset": 0.0}]},
            "swir_a": {"href": "c.tif", "roles": ["data"], "eo:bands": [{"common_name": "swir16"}]},
            "swir_b": {"href": "d.tif", "roles": ["overview"], "eo:bands": [{"common_name": "swir16"}]},
            "red1": {"href": "e.tif", "eo:bands": [{"common_name": "red"}]},
            "red2": {"href": "f.tif", "eo:bands": [{"common_name": "red"}]},
            "QA_PIXEL": {"href": "q.tif", "raster:bands": [{"nodata": 1, "data_type": "uint16"}]},
        },
    }
    info = _items.item_info(item, ["green", "b3", "swir16", "qa_pixel"])
    assert info.assets["green"].href == "a.tif" and info.assets["green"].scale == 0.0000275  # default C2
    b3 = info.assets["b3"]
    assert (b3.key, b3.scale, b3.offset, np.isnan(b3.nodata)) == ("B3", 1e-4, 0.0, True)
    assert info.assets["swir16"].key == "swir_a"  # the data role wins a tie
    qa = info.assets["qa_pixel"]
    assert (qa.integer, qa.dtype, qa.nodata, qa.scale) == (True, "uint16", 1.0, 1.0)
    assert info.time == pd.Timestamp("2020-01-01T10:00:00") and info.crs.to_epsg() == 32611
    with pytest.raises(AssetError, match=r"matches several assets \['red1', 'red2'\]"):
        _items.item_info(item, ["red"])
    with pytest.raises(MetadataError, match="unreadable projection"):
        bad = {"datetime": "2020-01-01", "proj:code": "EPSG:nope"}
        _items.item_info({**item, "properties": bad}, ["green"])
    wkt = _items.item_info({**item, "properties": {"datetime": "2020-01-01",
                                                   "proj:wkt2": info.crs.to_wkt()}}, ["green"])
    assert wkt.crs == info.crs


def test_grid_is_aligned_on_landsat_pixels():
    """Landsat grids sit on 30 m + 15 m: the grid keeps that lattice, never half a pixel off."""
    t = rasterio.transform.from_origin(399585.0, 3600015.0, 30, 30)
    item = {"id": "l", "bbox": [76.0, 32.0, 76.1, 32.1],
            "properties": {"datetime": "2020-01-01", "proj:epsg": 32643, "proj:transform": list(t)[:6],
                           "proj:shape": [7000, 7000]}, "assets": {"green": {"href": "x"}}}
    info = _items.item_info(item, ["green"])
    whole = _grid.make_grid([info], info.crs, 30.0)
    assert whole.transform == t and whole.shape == (7000, 7000)
    part = _grid.make_grid([info], info.crs, 30.0, bbox=(76.0, 32.0, 76.01, 32.01))
    assert part.transform.c % 30 == 15 and part.transform.f % 30 == 15
    assert _grid.make_grid([info], info.crs, 60.0).transform.c % 60 == 0  # another resolution: no anchor


# ---------------------------------------------------------------- real data: Athabasca
@pytest.mark.skipif(not ATHABASCA.is_dir(), reason=f"real HLS crops not at {ATHABASCA} (../shared/data)")
@pytest.mark.parametrize("engine", ENGINES)
def test_athabasca_hls_through_the_api(catalog, server, engine):
    items = search((-117.35, 52.1, -117.2, 52.25), "2020-08-01", "2020-09-30", max_cloud=None,
                   platforms=None, collection=HLS, url=server.url)
    assert [i.id for i in items] == list(catalog.athabasca)
    l30 = load(items[:1], bands=["green", "swir16"], engine=engine)
    facts = catalog.athabasca[items[0].id]
    assert (l30.sizes["y"], l30.sizes["x"]) == facts["shape"]
    assert l30.rio.transform() == facts["transform"] and l30.rio.crs.to_epsg() == 32611
    everything = load(items, bands=["green", "swir16"], engine=engine)
    assert everything.sizes == {"time": 3, "y": 207, "x": 216}  # the shifted scene is one pixel larger
    for k, item in enumerate(items):
        for band, path in catalog.athabasca[item.id]["files"].items():
            src = rioxarray.open_rasterio(path).squeeze("band", drop=True)
            want = np.where(src.values == -9999, np.nan, src.values * 1e-4).astype(np.float32)
            got = everything[band].isel(time=k).sel(x=src.x, y=src.y).values
            np.testing.assert_array_equal(got, want, err_msg=f"{item.id} {band} ({path.name})")


def test_search_applies_the_modifier(server):
    """What planetary_computer.sign_inplace does: change asset hrefs of every item returned."""
    def sign(page):  # pystac-client hands over each page as a dict
        for item in page["features"]:
            for a in item["assets"].values():
                a["href"] += "?signed=yes"

    items = search(BBOX, "2020-01-01", "2020-02-01", max_cloud=None, url=server.url, modifier=sign)
    assert all(a.href.endswith("?signed=yes") for i in items for a in i.assets.values())


def test_example_search_load_write(catalog, server, tmp_path, capsys):
    """examples/search_load_write.py, pointed at the loopback API; a second run appends."""
    path = Path(__file__).resolve().parents[1] / "examples" / "search_load_write.py"
    spec = importlib.util.spec_from_file_location("search_load_write", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    common = ["--url", server.url, "--sign", "no", "--bbox", "77.489", "32.215", "77.505", "32.224",
              "--max-cloud", "30", "--out", str(tmp_path)]
    assert example.main([*common, "--start", "2020-01-01", "--end", "2020-03-31"]) == 0
    first = xr.open_zarr(tmp_path / "scenes.zarr").sizes["time"]
    assert example.main([*common, "--start", "2020-04-01", "--end", "2020-12-31"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "not appended" not in out
    scenes = xr.open_zarr(tmp_path / "scenes.zarr")
    assert scenes.sizes["time"] > first and scenes.indexes["time"].is_monotonic_increasing
    with xr.open_dataset(tmp_path / "ndsi_quarterly.nc") as nd:
        assert nd.rio.crs.to_epsg() == 32643 and "ndsi" in nd.data_vars
