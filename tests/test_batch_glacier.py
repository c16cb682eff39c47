"""The per-glacier pipeline: outlines, UTM grids, process_glacier on local COGs and through a
loopback STAC API, idempotence, atomic products, and which failures are transient.

The scenes are rendered by ``synthetic_cube`` and written as Landsat-named COGs (or served
by ``rustac serve``); every product is checked against the library's functions called
directly on the same scenes, and the clean case against the generator's truth.
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely import Point, box

import xglacier
from xglacier.batch import steps
from xglacier.batch.config import BatchConfig
from xglacier.batch.glacier import (
    Glacier,
    glacier_bbox,
    is_transient,
    process_glacier,
    read_outlines,
    utm_crs,
)
from xglacier.errors import (
    AssetError,
    CheckpointError,
    EmptySceneError,
    EmptySearchError,
    InputError,
    MetadataError,
    ParameterError,
    StacError,
)
from xglacier.models import Persistence
from xglacier.nn.checkpoint import save_model
from xglacier.segmentation.models import NDSIRule

from ._stac_server import Proxy, RustacServer, build_catalog, to_dn, write_catalog_json, write_cog

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning",
    "ignore:The 'shapely.ops.transform:DeprecationWarning",
)
CODES = {"green": "SR_B3", "swir16": "SR_B6", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}
REFL = ["green", "swir16", "nir08"]


def write_scenes(folder: Path, cube: xr.Dataset, *, variant: str = "north_up") -> Path:
    """The cube's scenes as Landsat C2 L2 COGs named like the USGS files (DNs, nodata 0).

    ``variant``: ``"south_up"`` files (y ascending); ``"offset"``: every other scene one
    pixel smaller (its grid starts a row and a column later); ``"utm44"``: every scene
    warped (nearest) onto a 30 m grid of the next UTM zone.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if variant == "south_up":
        cube = cube.isel(y=slice(None, None, -1))
    transform, crs = cube.rio.transform(recalc=True), cube.rio.crs
    if variant == "utm44":
        t44, w44, h44 = calculate_default_transform(crs, "EPSG:32644", cube.sizes["x"], cube.sizes["y"],
                                                    *cube.rio.bounds(), resolution=30)
    for k in range(cube.sizes["time"]):
        scene = cube.isel(time=k)
        if variant == "offset" and k % 2:
            scene = scene.isel(y=slice(1, None), x=slice(1, None))
        day = pd.Timestamp(scene.time.values).strftime("%Y%m%d")
        for band, code in CODES.items():
            data = scene[band].values
            data = data.astype(np.uint16) if band == "qa_pixel" else to_dn(data)
            fill = 1 if band == "qa_pixel" else 0
            where, grid = scene.rio.transform(recalc=True), crs
            if variant == "utm44":
                out = np.full((h44, w44), fill, np.uint16)
                reproject(data, out, src_transform=transform, src_crs=crs, dst_transform=t44,
                          dst_crs="EPSG:32644", resampling=Resampling.nearest, src_nodata=fill,
                          dst_nodata=fill)
                data, where, grid = out, t44, "EPSG:32644"
            write_cog(folder / f"LC08_L2SP_147038_{day}_20210101_02_T1_{code}.TIF", data, where, grid, fill)
    return folder


def outline(truth: xr.Dataset) -> gpd.GeoDataFrame:
    """The true glacier of the last scene, as one outline in lon/lat."""
    lab = (truth.glacier_class.isel(time=-1) > 0).astype("uint8").rio.write_crs(truth.rio.crs)
    geom = xglacier.polygonize(lab).geometry.union_all()
    return gpd.GeoDataFrame({"RGIId": ["G1"]}, geometry=[geom], crs=truth.rio.crs).to_crs("EPSG:4326")


@dataclass
class Site:
    root: Path
    cube: xr.Dataset
    truth: xr.Dataset
    glacier: Glacier
    config: BatchConfig


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    cube, truth = xglacier.synthetic_cube(shape=(48, 48), start="2020-01-01", end="2021-01-01", seed=2)
    cube, truth = cube.compute(), truth.compute()
    write_scenes(root / "scenes" / "G1", cube)
    glacier = read_outlines(outline(truth))[0]
    persistence = save_model(Persistence(patch_size=16, n_in=2, n_out=2), root / "persistence",
                             variable="ndsi")
    rule = save_model(NDSIRule(channels=["ndsi"], classes=["background", "glacier"]), root / "rule")
    config = BatchConfig(local_scenes=str(root / "scenes" / "{id}"), buffer_m=300,
                         products=("flow", "segment", "forecast"), segment_model=str(rule),
                         forecast_model=str(persistence), forecast_steps=2, segment_tile=32,
                         segment_overlap=8)
    return Site(root, cube, truth, glacier, config)


@pytest.fixture(scope="module")
def run(site):
    folder = site.root / "out" / "G1"
    return folder, process_glacier(site.glacier, folder, site.config)


def library_chain(cube: xr.Dataset, glacier: Glacier, config: BatchConfig):
    """What process_glacier should do, written with the library's functions directly."""
    _, (x0, y0, x1, y1) = glacier_bbox(glacier, buffer_m=config.buffer_m)
    cube = cube.isel(x=np.flatnonzero((cube.x.values >= x0) & (cube.x.values <= x1)),
                     y=np.flatnonzero((cube.y.values >= y0) & (cube.y.values <= y1)))
    masked = xglacier.mask_clouds(cube).drop_vars("qa_pixel")
    kept = xglacier.filter_scenes(masked, max_cloud=None, max_missing=config.max_missing)
    aligned = xglacier.align_ecc(kept) if config.align else kept
    filled = xglacier.fill_gaps(aligned, bands=[b for b in REFL if b in aligned])
    return kept, aligned, filled


@pytest.mark.filterwarnings("ignore::xglacier.errors.FlowNoiseWarning")
def test_local_products_equal_the_library_calls(site, run):
    folder, row = run
    assert sorted(p.name for p in folder.iterdir()) == ["flow.nc", "forecast.nc", "ndsi.zarr",
                                                        "segmentation.gpkg"]
    files = xglacier.open_scenes(site.root / "scenes" / "G1", bands=list(site.config.bands))
    kept, aligned, filled = library_chain(files, site.glacier, site.config)
    comp = xglacier.composite(xglacier.ndsi(filled)).compute()
    with xr.open_zarr(folder / "ndsi.zarr") as store:
        np.testing.assert_allclose(store.ndsi.values, comp.values, atol=1e-6)
        np.testing.assert_array_equal(store.x.values, comp.x.values)
        assert store.rio.crs.to_epsg() == 32643
        nir = xglacier.composite(aligned.nir08).compute()
        np.testing.assert_allclose(store.nir08.values, nir.values, atol=1e-6)
    assert row["scenes_used"] == kept.sizes["time"]
    assert row["scenes_used"] + row["scenes_dropped"] == site.cube.sizes["time"]
    assert row["alignment_failures"] == int((~aligned.ecc_converged).sum())
    assert row["periods"] == comp.sizes["time"] == 4

    with xr.open_dataset(folder / "flow.nc") as vel:
        direct = xglacier.flow(nir)
        np.testing.assert_allclose(vel.u.values, direct.u.values, atol=1e-3)
        np.testing.assert_allclose(vel.v.values, direct.v.values, atol=1e-3)

    # persistence: every forecast step is the last composite, and no skill over persistence
    with xr.open_dataset(folder / "forecast.nc") as fc:
        assert fc.sizes["lead_time"] == 2
        for k in range(2):
            np.testing.assert_allclose(fc.ndsi_forecast.values[k], comp.values[-1], atol=1e-6)
    assert row["forecast_skill"] == pytest.approx(0.0, abs=1e-9)

    # the rule model gives the NDSI > 0.4 map of the Jul-Sep median composite
    summer = xglacier.composite(filled[REFL].sel(time=filled.time.dt.month.isin([7, 8, 9])), freq="YS",
                                how="median", interpolate=False).isel(time=0)
    ndsi = xglacier.ndsi(summer).compute()
    pixel_km2 = 30 * 30 / 1e6
    polys = gpd.read_file(folder / "segmentation.gpkg")
    assert set(polys["year"]) == {2020}
    assert row["area_km2_2020"] == pytest.approx(polys["area_m2"].sum() / 1e6)
    # the glacier as mapped: the polygons touching the outline, a part of the box's area
    touching = polys[polys["touches_outline"].astype(bool)]
    assert 0 < row["connected_area_km2_2020"] <= row["area_km2_2020"]
    assert row["connected_area_km2_2020"] == pytest.approx(touching["area_m2"].sum() / 1e6)
    # geodesic areas of UTM pixels differ from 900 m² by the scale factor only (< 0.1 %)
    assert row["area_km2_2020"] == pytest.approx(float((ndsi > 0.4).sum()) * pixel_km2, rel=2e-3)


def test_speeds_in_the_row_come_from_the_flow_file(site, run):
    folder, row = run
    with xr.open_dataset(folder / "flow.nc") as vel:
        like = vel.u.isel(pair=0, drop=True).rio.write_crs(vel.rio.crs)
        glacier, stable = steps.outline_masks(site.glacier.geometry, like)
        speed = np.hypot(vel.u.median("pair").values, vel.v.median("pair").values)
    assert glacier.sum() > 100 and stable.sum() > 100 and not (glacier & stable).any()
    assert row["speed_glacier_m_a"] == pytest.approx(float(np.nanmedian(speed[glacier])), rel=1e-5)
    assert row["speed_stable_m_a"] == pytest.approx(float(np.nanmedian(speed[stable])), rel=1e-5)
    assert "FlowNoiseWarning" in row["warnings"] or row["warnings"] == "" or "Warning" in row["warnings"]
    assert isinstance(row["seconds"], float) and row["seconds"] > 0


def test_rerun_gives_the_same_files(site, run):
    folder, _ = run
    before = {p.name: p for p in folder.iterdir()}
    with xr.open_zarr(folder / "ndsi.zarr") as s, xr.open_dataset(folder / "flow.nc") as f, \
            xr.open_dataset(folder / "forecast.nc") as fc:
        old = {"ndsi": s.ndsi.values.copy(), "u": f.u.values.copy(), "fc": fc.ndsi_forecast.values.copy()}
    old_polys = gpd.read_file(folder / "segmentation.gpkg")
    row = process_glacier(site.glacier, folder, site.config)
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)  # no temporary left
    with xr.open_zarr(folder / "ndsi.zarr") as s, xr.open_dataset(folder / "flow.nc") as f, \
            xr.open_dataset(folder / "forecast.nc") as fc:
        np.testing.assert_array_equal(s.ndsi.values, old["ndsi"])
        np.testing.assert_array_equal(f.u.values, old["u"])
        np.testing.assert_array_equal(fc.ndsi_forecast.values, old["fc"])
    polys = gpd.read_file(folder / "segmentation.gpkg")
    assert polys.geometry.geom_equals(old_polys.geometry).all()
    assert row["scenes_used"] == run[1]["scenes_used"]


@pytest.fixture(scope="module")
def clean():
    """No misregistration, cloud or noise; the true NDSI composites on the source grid."""
    cube, truth = xglacier.synthetic_cube(shape=(32, 40), start="2020-01-01", end="2020-07-01", seed=4,
                                          max_shift=0, cloud_scale=0, noise=0)
    cube = cube.compute()
    t = truth.where(cube.qa_pixel & 1 == 0)  # nodata (fill) stays nodata
    return cube, xglacier.composite((t.true_green - t.true_swir16) / (t.true_green + t.true_swir16)).compute()


def run_clean(cube: xr.Dataset, folder: Path, variant: str, **kw) -> tuple[dict, xr.Dataset]:
    write_scenes(folder / "scenes", cube, variant=variant)
    x0, y0, x1, y1 = cube.rio.bounds()
    g = Glacier("clean", gpd.GeoSeries([box(x0 + 200, y0 + 200, x1 - 200, y1 - 200)],
                                       crs=cube.rio.crs).to_crs("EPSG:4326")[0], 1.0)
    config = BatchConfig(local_scenes=str(folder / "scenes"), buffer_m=100, products=(), align=False,
                         **{"gap_fill": False, "max_missing": None, **kw})
    row = process_glacier(g, folder / "out", config)
    with xr.open_zarr(folder / "out" / "ndsi.zarr") as store:
        return row, store.compute()


@pytest.mark.parametrize("variant", ["north_up", "south_up", "offset"])
def test_clean_scenes_give_the_true_ndsi(clean, tmp_path, variant):
    """Files north-up, south-up or one pixel off the others' grid: the true composites, exactly."""
    cube, true_ndsi = clean
    row, store = run_clean(cube, tmp_path, variant)
    assert row["scenes_used"] == cube.sizes["time"] and row["alignment_failures"] == 0
    assert store.rio.crs.to_epsg() == 32643
    assert store.y.values[0] > store.y.values[-1]  # north-up on the glacier's grid
    # exact: the generator's reflectance survives the DN round trip of the COGs
    np.testing.assert_allclose(store.ndsi.values, true_ndsi.sel(x=store.x, y=store.y).values, atol=1e-6)
    assert np.isfinite(store.ndsi.values).mean() > 0.9


def test_scenes_in_another_utm_zone(clean, tmp_path):
    """Files in UTM 44N for a glacier in 43N: warped (nearest) onto its 43N grid. Each pixel
    then holds the true composites of one source pixel next to it, at every time."""
    cube, true_ndsi = clean
    row, store = run_clean(cube, tmp_path, "utm44")
    assert store.rio.crs.to_epsg() == 32643 and row["scenes_used"] == cube.sizes["time"]
    assert np.allclose(np.diff(store.x.values), 30) and np.allclose(np.diff(store.y.values), -30)
    got, truth = store.ndsi.values, true_ndsi.values
    iy = np.rint((true_ndsi.y.values[0] - store.y.values) / 30).astype(int)
    ix = np.rint((store.x.values - true_ndsi.x.values[0]) / 30).astype(int)
    matched = np.zeros(got.shape[1:], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = np.clip(iy + dy, 0, truth.shape[1] - 1), np.clip(ix + dx, 0, truth.shape[2] - 1)
            near = truth[:, yy][:, :, xx]
            matched |= np.all(np.isclose(got, near, atol=1e-6, equal_nan=True), axis=0)
    assert matched.all()


def test_an_empty_scene(clean, tmp_path):
    """A scene without a valid pixel over the box: dropped by the missing-pixel limit, else an
    EmptySceneError (permanent) from the gap filling."""
    cube, _ = clean
    empty = cube.copy()
    for band in REFL:
        empty[band][2] = np.nan
    empty["qa_pixel"][2] = 1
    row, _ = run_clean(empty, tmp_path / "kept", "north_up", max_missing=0.5)
    assert row["scenes_dropped"] == 1 and row["scenes_used"] == cube.sizes["time"] - 1
    with pytest.raises(EmptySceneError) as info:
        run_clean(empty, tmp_path / "raise", "north_up", max_missing=None, gap_fill=True)
    assert not is_transient(info.value)


def test_float_reflectance_files_give_the_same_composites(site, tmp_path):
    """Float reflectance files, nodata NaN or undeclared, give what integer DNs give."""
    import rasterio

    dn = write_scenes(tmp_path / "dn", site.cube.isel(time=slice(0, 10)))
    for variant, nodata in (("nan", np.nan), ("none", None)):
        (tmp_path / variant).mkdir()
        for f in dn.iterdir():
            with rasterio.open(f) as src:
                data, profile = src.read(1), src.profile
            if "QA_PIXEL" in f.name:
                write_cog(tmp_path / variant / f.name, data, profile["transform"], profile["crs"], 1)
                continue
            refl = np.where(data == 0, np.nan, data * 0.0000275 - 0.2).astype("float32")
            write_cog(tmp_path / variant / f.name, refl, profile["transform"], profile["crs"], nodata)
    config = BatchConfig(local_scenes=str(tmp_path / "{id}"), buffer_m=300, products=(), align=False)
    rows, ndsi = {}, {}
    for gid in ("dn", "nan", "none"):
        g = Glacier(gid, site.glacier.geometry, site.glacier.area_km2)
        rows[gid] = process_glacier(g, tmp_path / "out" / gid, config)
        with xr.open_zarr(tmp_path / "out" / gid / "ndsi.zarr") as store:
            ndsi[gid] = store.ndsi.values
    assert rows["dn"]["scenes_used"] == rows["nan"]["scenes_used"] == rows["none"]["scenes_used"] > 3
    np.testing.assert_allclose(ndsi["nan"], ndsi["dn"], atol=1e-5)
    np.testing.assert_allclose(ndsi["none"], ndsi["dn"], atol=1e-5)


# ----------------------------------------------------------------------------- atomic products
def test_a_failed_zarr_write_leaves_no_store(site, tmp_path, monkeypatch):
    original = xr.Dataset.to_zarr

    def half(self, store, *args, **kwargs):
        original(self.isel(time=[0]), store, *args, **kwargs)  # some chunks are on disk
        raise OSError("disk full while writing")

    monkeypatch.setattr(xr.Dataset, "to_zarr", half)
    config = site.config.replace(products=(), align=False)
    (tmp_path / "G1" / "ndsi.zarr").mkdir(parents=True)  # products of an earlier attempt
    (tmp_path / "G1" / "segmentation.gpkg").write_text("an older configuration's")
    with pytest.raises(OSError, match="disk full"):
        process_glacier(site.glacier, tmp_path / "G1", config)
    assert list((tmp_path / "G1").iterdir()) == []


def test_a_failed_netcdf_write_leaves_the_finished_products_only(site, tmp_path, monkeypatch):
    original = xr.Dataset.to_netcdf

    def half(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # a truncated file
        raise OSError("killed while writing")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half)
    config = site.config.replace(products=("flow",), align=False)
    with pytest.raises(OSError, match="killed"):
        process_glacier(site.glacier, tmp_path / "G1", config)
    assert [p.name for p in (tmp_path / "G1").iterdir()] == ["ndsi.zarr"]
    with xr.open_zarr(tmp_path / "G1" / "ndsi.zarr") as store:
        assert store.sizes["time"] == 4 and np.isfinite(store.ndsi.values).all()


# ----------------------------------------------------------------------------- STAC API
@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("stac"), every_44=0)


@pytest.fixture(scope="module")
def server(catalog):
    srv = RustacServer(write_catalog_json(catalog))
    yield srv
    srv.stop()


def stac_config(url: str, **kw) -> BatchConfig:
    return BatchConfig(stac_url=url, bands=("green", "swir16", "qa_pixel"), platforms=None, max_cloud=None,
                       datetime="2020-01-01/2020-12-31", buffer_m=0, align=False, flow_band="green",
                       retries=0, backoff_s=0.01, timeout_s=5, **kw)


def inner_glacier(cube: xr.Dataset, gid: str = "S1") -> Glacier:
    x0, y0, x1, y1 = cube.rio.bounds()
    geom = gpd.GeoSeries([box(x0 + 150, y0 + 150, x1 - 150, y1 - 150)], crs=cube.rio.crs).to_crs(4326)[0]
    return Glacier(gid, geom, 1.0)


def test_stac_products_equal_the_library_calls(catalog, server, tmp_path):
    g = inner_glacier(catalog.cube)
    config = stac_config(server.url, products=("flow",))
    row = process_glacier(g, tmp_path / "S1", config)
    # the same scenes, straight from the generator (the COGs hold them as DNs)
    _, _, filled = library_chain(catalog.cube, g, config)
    comp = xglacier.composite(xglacier.ndsi(filled)).compute()
    with xr.open_zarr(tmp_path / "S1" / "ndsi.zarr") as store:
        np.testing.assert_array_equal(store.x.values, comp.x.values)
        np.testing.assert_array_equal(store.y.values, comp.y.values)
        np.testing.assert_allclose(store.ndsi.values, comp.values, atol=1e-6)
    assert row["scenes_used"] == filled.sizes["time"]
    with xr.open_dataset(tmp_path / "S1" / "flow.nc") as vel:
        assert vel.sizes["pair"] == comp.sizes["time"] - 1


def test_empty_search_is_permanent(server, tmp_path):
    far = Glacier("alps", box(7.0, 45.9, 7.05, 45.95), 1.0)
    with pytest.raises(EmptySearchError) as info:
        process_glacier(far, tmp_path / "alps", stac_config(server.url))
    assert not is_transient(info.value)
    assert not (tmp_path / "alps" / "ndsi.zarr").exists()


def test_server_errors_are_transient(catalog, server, tmp_path):
    proxy = Proxy(server.url, fail=[503] * 20)
    try:
        with pytest.raises(StacError) as info:
            process_glacier(inner_glacier(catalog.cube), tmp_path / "S1", stac_config(proxy.url))
    finally:
        proxy.close()
    assert not isinstance(info.value, EmptySearchError) and is_transient(info.value)


# ----------------------------------------------------------------------------- failures
def test_permanent_failures(site, tmp_path):
    with pytest.raises(ParameterError, match="no source of scenes"):
        process_glacier(site.glacier, tmp_path, BatchConfig())
    far = Glacier("G1", box(7.0, 45.9, 7.05, 45.95), 1.0)
    with pytest.raises(EmptySceneError, match="do not cover") as info:
        process_glacier(far, tmp_path, site.config.replace(products=()))
    assert not is_transient(info.value)
    missing = Glacier("nowhere", site.glacier.geometry, 1.0)
    with pytest.raises(ParameterError, match="nowhere") as info:
        process_glacier(missing, tmp_path, site.config)
    assert not is_transient(info.value)
    config = site.config.replace(products=("forecast",), forecast_model=str(tmp_path / "none"), align=False)
    with pytest.raises(CheckpointError, match="none") as info:
        process_glacier(site.glacier, tmp_path / "c", config)
    assert not is_transient(info.value)
    with pytest.raises(ParameterError, match="expected a Glacier"):
        process_glacier("G1", tmp_path, site.config)


def test_is_transient_classifies_by_cause():
    def chained(outer, inner):
        try:
            raise inner
        except BaseException as err:
            try:
                raise outer from err
            except BaseException as out:
                return out

    transient = [
        StacError("search: the STAC API at http://x failed: 502 Bad Gateway"),
        AssetError("cannot read asset 'https://data/LC08_SR_B3.TIF': HTTP response code: 403"),
        chained(AssetError("cannot read asset 'x': boom"), ConnectionResetError(104, "reset")),
        TimeoutError("read timed out"),
        ConnectionRefusedError(111, "Connection refused"),
        urllib.error.URLError("temporary failure in name resolution"),
    ]
    permanent = [
        EmptySearchError("search: no item"),
        EmptySceneError("every scene dropped"),
        InputError("bad input"),
        MetadataError("open_scenes: no time"),
        ParameterError("threads=0"),
        CheckpointError("checkpoint x.json: unknown class"),
        AssetError("open_scenes: cannot read band 'green' from /data/x.tif: not a TIFF file"),
        FileNotFoundError(2, "No such file or directory"),
        ValueError("a bug"),
        MemoryError(),
    ]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)


# ----------------------------------------------------------------------------- outlines
def test_read_outlines_from_a_file_in_another_crs(tmp_path):
    utm = gpd.GeoDataFrame({"RGIId": ["A", "B"], "name": ["a", "b"]},
                           geometry=[box(735000, 3560000, 737000, 3561000), box(500000, 0, 501000, 1000)],
                           crs="EPSG:32643")
    path = tmp_path / "outlines.gpkg"
    utm.to_file(path)
    glaciers = read_outlines(path)
    assert [g.id for g in glaciers] == ["A", "B"]
    # geodesic areas of 2 km² and 1 km² drawn in UTM (scale factor < 0.1 %)
    assert [round(g.area_km2, 2) for g in glaciers] == [2.0, 1.0]
    assert glaciers[0].geometry.bounds[0] == pytest.approx(77.5, abs=0.5)
    assert utm_crs(glaciers[0].geometry).to_epsg() == 32643


@pytest.mark.parametrize("change, match", [
    (lambda g: g.set_crs(None, allow_override=True), "no CRS"),
    (lambda g: g.rename(columns={"RGIId": "id"}), "no id column 'RGIId'"),
    (lambda g: g.assign(RGIId=["A", None]), "row 1 has no id"),
    (lambda g: g.assign(RGIId=["A", np.nan]), "row 1 has no id"),
    (lambda g: g.assign(RGIId=["A", "A"]), r"id 'A' .* rows \[0, 1\]"),
    (lambda g: g.assign(RGIId=["A", "x/y"]), "row 1 has id 'x/y'"),
    (lambda g: g.set_geometry([box(0, 0, 1, 1), Point(0, 0).buffer(0)]), r"row 1 \(id 'B'\) has an empty"),
    (lambda g: g.set_geometry([box(0, 0, 1, 1), None]), r"row 1 \(id 'B'\) has an empty"),
    (lambda g: g.set_geometry([box(0, 0, 1, 1), Point(0, 0)]), "is a Point"),
])
def test_read_outlines_errors(change, match):
    gdf = gpd.GeoDataFrame({"RGIId": ["A", "B"]}, geometry=[box(0, 0, 1, 1), box(1, 1, 2, 2)], crs=4326)
    with pytest.raises(InputError, match=match):
        read_outlines(change(gdf))


def test_read_outlines_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_outlines(tmp_path / "missing.gpkg")
    bad = tmp_path / "bad.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(InputError, match=r"bad\.gpkg"):
        read_outlines(bad)
    with pytest.raises(InputError, match="expected a GeoDataFrame"):
        read_outlines(42)


@pytest.mark.parametrize("lon, lat, epsg", [
    (77.5, 32.2, 32643),     # Parvati, Himalaya
    (78.1, 32.2, 32644),     # the next zone east
    (-70.1, -33.4, 32719),   # central Andes, southern hemisphere
    (170.2, -43.5, 32759),   # Southern Alps
    (-179.9, 65.0, 32601),   # first zone
    (180.0, 65.0, 32660),    # the antimeridian belongs to the last zone
])
def test_utm_zones(lon, lat, epsg):
    g = Point(lon, lat).buffer(0.01)
    assert utm_crs(g).to_epsg() == epsg


def test_bbox_holds_the_outline_and_its_buffer():
    geom = box(-70.12, -33.42, -70.08, -33.38)
    crs, (x0, y0, x1, y1) = glacier_bbox(Glacier("a", geom, 1.0), buffer_m=250)
    assert crs.to_epsg() == 32719
    ox0, oy0, ox1, oy1 = gpd.GeoSeries([geom], crs=4326).to_crs(crs).total_bounds
    assert (ox0 - x0, oy0 - y0, x1 - ox1, y1 - oy1) == pytest.approx((250,) * 4)
    with pytest.raises(ParameterError, match="buffer_m"):
        glacier_bbox(Glacier("a", geom, 1.0), buffer_m=-1)
    with pytest.raises(InputError, match="empty"):
        utm_crs(Point())


def test_summary_row_is_flat_scalars(run):
    _, row = run
    for key, value in row.items():
        assert isinstance(value, str | int | float), key
    json.dumps(row)  # NaN aside, JSON-able as it is


def test_models_are_loaded_once_per_process(tmp_path, monkeypatch):
    from xglacier.batch import models
    from xglacier.nn import checkpoint

    models.clear_cache()
    calls = []
    real = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda path: calls.append(path) or real(path))
    path = save_model(Persistence(patch_size=8, n_in=2, n_out=2), tmp_path / "p")
    first = models.cached_model(path)
    assert models.cached_model(str(path)) is first and models.cached_model(tmp_path / "p") is first
    assert len(calls) == 1
    save_model(Persistence(patch_size=8, n_in=3, n_out=2), tmp_path / "p")  # rewritten: loaded again
    assert models.cached_model(path).n_in == 3 and len(calls) == 2
    with pytest.raises(CheckpointError):
        models.cached_model(tmp_path / "missing")
    models.clear_cache()


@pytest.mark.parametrize("ascending", [False, True])
def test_narrow_glacier_warns_that_flow_underestimates(ascending):
    from shapely.geometry import box as rect

    from xglacier.batch.steps import warn_if_narrow
    from xglacier.errors import NarrowGlacierWarning

    y = 3568110.0 - 30.0 * np.arange(200) - 15.0
    y = y[::-1] if ascending else y
    like = xr.DataArray(np.zeros((200, 200), "f4"), dims=("y", "x"),
                        coords={"y": y, "x": 734460.0 + 30.0 * np.arange(200) + 15.0}).rio.write_crs(32643)
    def outline_lonlat(width_px):  # a 150 px long glacier of the given width, in lon/lat as RGI
        x0, y1 = 734460.0 + 3000, 3568110.0 - 300
        poly = rect(x0, y1 - 150 * 30, x0 + width_px * 30, y1)
        return gpd.GeoSeries([poly], crs=32643).to_crs(4326).iloc[0]

    msg = r"flow: the glacier is 9\.\d px wide .* flow window of 13 px"
    with pytest.warns(NarrowGlacierWarning, match=msg):
        width = warn_if_narrow(outline_lonlat(10), like)
    assert 2 * 10 * 150 / (2 * 160) - 0.1 < width < 2 * 10 * 150 / (2 * 160) + 0.1  # 2A/P of a 10x150 box
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NarrowGlacierWarning)
        assert warn_if_narrow(outline_lonlat(30), like) > 13


def test_read_outlines_without_an_id_column():
    """``id_column=None``: RGIId when there, else row numbers; the default still needs RGIId."""
    gdf = gpd.GeoDataFrame({"NAME": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(1, 1, 2, 2)], crs=4326)
    assert [g.id for g in read_outlines(gdf, id_column=None)] == ["0", "1"]
    assert [g.id for g in read_outlines(gdf.assign(RGIId=["A", "B"]), id_column=None)] == ["A", "B"]
    assert [g.id for g in read_outlines(gdf, id_column="NAME")] == ["a", "b"]
    with pytest.raises(InputError, match="no id column 'RGIId'"):
        read_outlines(gdf)
    with pytest.raises(InputError, match=r"row 1 \(id '1'\) is a Point"):
        read_outlines(gdf.set_geometry([box(0, 0, 1, 1), Point(0, 0)]), id_column=None)
