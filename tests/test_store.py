"""NetCDF and Zarr writers: round trips of loaded cubes, CF attributes, atomic writes, appends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import dask.array as dsa
import netCDF4
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

import xglacier
from xglacier.errors import InputError, ParameterError, StoreError
from xglacier.io.stac import load
from xglacier.io.store import store_format, to_netcdf, to_zarr

from ._stac_server import COLLECTION, build_catalog

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning",  # affine 3 in rasterio
)


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """Loaded (lazy) cube from COGs and STAC items: both UTM zones, every band."""
    cat = build_catalog(tmp_path_factory.mktemp("cogs"), every_44=4)
    return load([i for i in cat.items if i["collection"] == COLLECTION], chunks={"time": 1, "y": 20, "x": 28})


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same_cube(back: xr.Dataset, ds: xr.Dataset) -> None:
    assert set(back.data_vars) == set(ds.data_vars)
    for name in ds.data_vars:
        assert back[name].dtype == ds[name].dtype, name
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=str(name))
    assert set(back.coords) == set(ds.coords)
    for name in ds.coords:
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=str(name))
    assert back.rio.crs == ds.rio.crs and back.rio.transform() == ds.rio.transform()


def test_zarr_round_trip(cube, tmp_path):
    path = to_zarr(cube, tmp_path / "cube.zarr")
    assert leftovers(tmp_path) == []
    back = xr.open_zarr(path)
    assert_same_cube(back, cube)
    g = back.green
    assert g.attrs["units"] == "1" and g.attrs["long_name"] == "green surface reflectance"
    assert g.attrs["standard_name"] == "surface_bidirectional_reflectance"
    assert g.encoding.get("grid_mapping", g.attrs.get("grid_mapping")) == "spatial_ref"
    assert np.isnan(g.encoding["_FillValue"])
    assert g.encoding["chunks"] == (1, 20, 28) and g.encoding["compressors"]
    assert "_FillValue" not in back.qa_pixel.encoding and back.qa_pixel.dtype == np.uint16
    assert back.time.encoding["units"].startswith("microseconds since 1970-01-01")
    assert back.x.attrs["standard_name"] == "projection_x_coordinate" and back.time.attrs["axis"] == "T"


def test_netcdf_round_trip_and_gdal(cube, tmp_path):
    path = to_netcdf(cube, tmp_path / "cube.nc")
    assert leftovers(tmp_path) == []
    with xr.open_dataset(path) as back:
        assert_same_cube(back, cube)
        assert back.swir16.attrs["standard_name"] == "surface_bidirectional_reflectance"
    with netCDF4.Dataset(path) as nc:
        assert nc["green"].chunking() == [1, 20, 28] and nc["green"].filters()["zlib"]
        assert nc["green"].grid_mapping == "spatial_ref" and np.isnan(nc["green"]._FillValue)
        assert "_FillValue" not in nc["qa_pixel"].ncattrs()
    with rasterio.open(f"netcdf:{path}:green") as src:
        assert src.transform == cube.rio.transform() and src.crs == cube.rio.crs
        assert src.count == cube.sizes["time"]
        np.testing.assert_array_equal(src.read(3), cube.green.isel(time=2).values)


def _gdal_version() -> tuple[int, int]:
    major, minor = rasterio.__gdal_version__.split(".")[:2]
    return int(major), int(minor)


def test_zarr_default_store_is_read_by_gdal(cube, tmp_path):
    """Issue 11, item 10: the default store is Zarr v2, which GDAL reads (CRS and transform)."""
    path = to_zarr(cube, tmp_path / "cube.zarr")
    assert store_format(path) == 2 and (path / ".zmetadata").is_file() and not (path / "zarr.json").exists()
    with rasterio.open(f'ZARR:"{path}":/green') as src:
        assert src.crs == cube.rio.crs and src.transform == cube.rio.transform()
        assert src.count == cube.sizes["time"]
        np.testing.assert_array_equal(src.read(3), cube.green.isel(time=2).values)
    with rasterio.open(f'ZARR:"{path}":/qa_pixel') as src:
        assert src.dtypes[0] == "uint16" and src.transform == cube.rio.transform()


def test_zarr_v3_and_which_gdal_reads_it(cube, tmp_path):
    path = to_zarr(cube, tmp_path / "v3.zarr", zarr_format=3)
    assert store_format(path) == 3
    assert_same_cube(xr.open_zarr(path), cube)
    name = f'ZARR:"{path}":/green'
    if _gdal_version() >= (3, 11):  # GDAL 3.11 renamed its 'endian' codec to 'bytes' (OSGeo/gdal#11787)
        with rasterio.open(name) as src:
            assert src.crs == cube.rio.crs and src.transform == cube.rio.transform()
    else:  # GDAL 3.8-3.10 implement the earlier v3 draft, whose codec was called 'endian'
        with pytest.raises(rasterio.errors.RasterioIOError, match="Unsupported codec: bytes"):
            rasterio.open(name)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_append_keeps_the_store_format(cube, tmp_path, fmt):
    path = tmp_path / "c.zarr"
    to_zarr(cube.isel(time=slice(0, 4)), path, zarr_format=fmt)
    to_zarr(cube.isel(time=slice(4, 8)), path, append_dim="time")
    to_zarr(cube.isel(time=slice(8, None)), path, append_dim="time", zarr_format=fmt)
    assert store_format(path) == fmt
    assert_same_cube(xr.open_zarr(path), cube)
    other = 5 - fmt
    with pytest.raises(StoreError, match=rf"is a Zarr v{fmt} store; .*zarr_format={other} cannot"):
        to_zarr(cube.isel(time=slice(8, None)), path, append_dim="time", zarr_format=other)
    assert store_format(path) == fmt and leftovers(tmp_path) == []
    fresh = tmp_path / "fresh.zarr"  # appending to nothing creates the store in the asked format
    to_zarr(cube.isel(time=[0]), fresh, append_dim="time", zarr_format=fmt)
    assert store_format(fresh) == fmt


@pytest.mark.parametrize("bad", [1, 4, True, "2", 2.0])
def test_zarr_format_is_checked(cube, tmp_path, bad):
    with pytest.raises(ParameterError, match="to_zarr: zarr_format="):
        to_zarr(cube, tmp_path / "c.zarr", zarr_format=bad)
    assert not (tmp_path / "c.zarr").exists()


def test_zarr_modes(cube, tmp_path):
    path = tmp_path / "c.zarr"
    to_zarr(cube.isel(time=[0]), path)
    with pytest.raises(StoreError, match="exists; pass mode='w'"):
        to_zarr(cube, path)
    to_zarr(cube.isel(time=[1, 2]), path, mode="w")
    assert xr.open_zarr(path).sizes["time"] == 2 and leftovers(tmp_path) == []
    with pytest.raises(ParameterError, match="needs append_dim"):
        to_zarr(cube, path, mode="a")
    with pytest.raises(ParameterError, match="mode='x'"):
        to_zarr(cube, path, mode="x")
    with pytest.raises(ParameterError, match="needs mode='a'"):
        to_zarr(cube, path, mode="w", append_dim="time")


def test_zarr_append_into_partial_time_chunks(cube, tmp_path):
    """Zarr chunks of several scenes: appends fill the last, partial chunk, then go on."""
    path = tmp_path / "c.zarr"
    deep = cube.chunk({"time": 5})
    to_zarr(deep.isel(time=slice(0, 7)), path)
    assert xr.open_zarr(path).green.encoding["chunks"][0] == 5
    to_zarr(deep.isel(time=slice(7, 9)), path, append_dim="time")
    to_zarr(deep.isel(time=slice(9, None)), path, append_dim="time")
    assert_same_cube(xr.open_zarr(path), cube)


def test_zarr_append(cube, tmp_path):
    path = tmp_path / "c.zarr"
    to_zarr(cube.isel(time=slice(0, 5)), path)
    to_zarr(cube.isel(time=slice(5, 9)), path, append_dim="time")
    to_zarr(cube.isel(time=slice(9, None)).chunk({"y": 40}), path, append_dim="time")  # other chunks
    assert_same_cube(xr.open_zarr(path), cube)
    assert leftovers(tmp_path) == []
    fresh = tmp_path / "new.zarr"  # appending to nothing creates the store
    to_zarr(cube.isel(time=[0]), fresh, append_dim="time")
    assert xr.open_zarr(fresh).sizes["time"] == 1


@pytest.mark.parametrize("change, match", [
    (lambda d: d.assign_coords(x=d.x + 30), "grid differs along 'x'"),
    (lambda d: d.isel(y=slice(1, None)), "grid differs along 'y'"),
    (lambda d: d.drop_vars("swir16"), r"variables differ: missing \['swir16'\]"),
    (lambda d: d.assign(green=d.green.astype("f8")), "variable 'green' is"),
    (lambda d: d.rio.write_crs("EPSG:32644"), "CRS differs"),
    (lambda d: d.drop_vars("platform"), "coordinates along 'time' differ"),
    (lambda d: d.assign_coords(time=d.time - pd.Timedelta("400D")), "only new steps can be appended"),
])
def test_zarr_append_mismatch(cube, tmp_path, change, match):
    path = tmp_path / "c.zarr"
    first = cube.isel(time=slice(0, 4))
    to_zarr(first, path)
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    with pytest.raises(StoreError, match=match):
        to_zarr(change(cube.isel(time=slice(4, 6))), path, append_dim="time")
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    assert_same_cube(xr.open_zarr(path), first)
    assert leftovers(tmp_path) == []


def _explode(block):
    raise RuntimeError("disk full")


def test_failed_append_leaves_the_store_as_it_was(cube, tmp_path):
    path = tmp_path / "c.zarr"
    first = cube.isel(time=slice(0, 4))
    to_zarr(first, path)
    bad = cube.isel(time=slice(4, 6)).compute()
    green = bad.green.chunk({"time": 1})
    bad["green"] = green.copy(data=green.data.map_blocks(_explode, dtype=green.dtype))
    with pytest.raises(RuntimeError, match="disk full"):
        to_zarr(bad, path, append_dim="time")
    assert_same_cube(xr.open_zarr(path), first)
    assert leftovers(tmp_path) == []


def test_writers_refuse_what_they_cannot_store(cube, tmp_path):
    meta = cube.isel(time=[0, 1]).assign_coords(spec=("time", np.array([{"a": 1}, {"b": 2}], dtype=object)))
    with pytest.raises(StoreError, match="coordinate 'spec' holds dict values"):
        to_zarr(meta, tmp_path / "m.zarr")
    with pytest.raises(InputError, match="has no name"):
        to_netcdf(xr.DataArray(np.zeros((2, 2)), dims=("y", "x")), tmp_path / "a.nc")
    assert leftovers(tmp_path) == []


def test_stale_attributes_are_cleaned(cube, tmp_path):
    ds = cube.isel(time=[0]).copy()
    ds.attrs.update(spec={"not": "storable"}, flag=True)
    ds.green.attrs["transform"] = object()
    back = xr.open_zarr(to_zarr(ds, tmp_path / "a.zarr"))
    assert "spec" not in back.attrs and back.attrs["flag"] == 1 and "transform" not in back.green.attrs


# ------------------------------------------------------------------ killed mid-write
WRITER = textwrap.dedent("""
    import pathlib, sys, time
    import dask, dask.array as dsa, numpy as np, pandas as pd, rioxarray, xarray as xr
    from xglacier.io.store import store_format, to_netcdf, to_zarr

    kind, path, marker = sys.argv[1:4]

    def slow(block):
        if block.size:  # not dask's call on an empty block to infer the meta
            pathlib.Path(marker).touch()
            time.sleep(0.2)
        return block

    data = dsa.ones((60, 32, 32), chunks=(1, 32, 32), dtype="f4").map_blocks(slow, dtype="f4")
    ds = xr.Dataset(
        {"green": (("time", "y", "x"), data)},
        coords={"time": pd.date_range("2022-01-01", periods=60).as_unit("ns"),
                "y": 3568095.0 - 30 * np.arange(32), "x": 734475.0 + 30 * np.arange(32)},
    ).rio.write_crs("EPSG:32643")
    with dask.config.set(scheduler="synchronous"):
        if kind == "netcdf":
            to_netcdf(ds, path)
        elif kind == "append":
            to_zarr(ds, path, append_dim="time")
        else:
            to_zarr(ds, path, mode="w")
""")


def _old(n=3):
    return xr.Dataset(
        {"green": (("time", "y", "x"), np.full((n, 32, 32), 0.5, "f4"))},
        coords={"time": pd.date_range("2021-01-01", periods=n).as_unit("ns"),
                "y": 3568095.0 - 30 * np.arange(32), "x": 734475.0 + 30 * np.arange(32)},
    ).rio.write_crs("EPSG:32643")


@pytest.mark.parametrize("kind, existing", [
    ("zarr", False), ("zarr", True), ("append", True), ("netcdf", False),
])
def test_killed_writer_leaves_no_half_written_store(tmp_path, kind, existing):
    name = "out.nc" if kind == "netcdf" else "out.zarr"
    path, marker = tmp_path / name, tmp_path / "started"
    if existing:
        to_zarr(_old(), path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(path), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.05)
        time.sleep(0.5)  # a few blocks written
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    if existing:  # the old store, complete and unchanged
        back = xr.open_zarr(path)
        np.testing.assert_array_equal(back.green.values, _old().green.values)
        np.testing.assert_array_equal(back.time.values, _old().time.values)
    else:
        assert not path.exists()
    # what is left is recognisably temporary: hidden, named after the target, .part
    left = leftovers(tmp_path)
    stem, suffix = os.path.splitext(name)
    pattern = rf"\.{re.escape(stem)}\..+\.part{re.escape(suffix)}"
    assert left and all(re.fullmatch(pattern, n) for n in left), left
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == sorted([name, "started"] if existing else ["started"])


def test_dask_chunks_follow_the_store(cube, tmp_path):
    """Irregular Dask chunks are rechunked to the Zarr chunks instead of failing."""
    odd = cube.isel(time=slice(0, 3)).chunk({"x": (10, 30, 23)})
    back = xr.open_zarr(to_zarr(odd, tmp_path / "odd.zarr"))
    assert back.green.encoding["chunks"] == (1, odd.sizes["y"], odd.sizes["x"])
    np.testing.assert_array_equal(back.green.values, odd.green.values)
    assert isinstance(back.green.data, dsa.Array)


def test_public_api_and_accessor(cube, tmp_path):
    """xglacier.search/load/to_netcdf/to_zarr and the accessor methods are the module functions."""
    assert xglacier.load is load and xglacier.to_zarr is to_zarr and xglacier.to_netcdf is to_netcdf
    assert callable(xglacier.search)
    small = cube.isel(time=[0, 1])
    path = small.glacier.to_zarr(tmp_path / "a.zarr")
    small.isel(time=[0]).assign_coords(time=small.time[:1] + np.timedelta64(400, "D")).glacier.to_zarr(
        path, append_dim="time")
    assert xr.open_zarr(path).sizes["time"] == 3
    nc = small.green.glacier.to_netcdf(tmp_path / "g.nc")
    with xr.open_dataset(nc) as back:
        assert back.rio.crs == small.rio.crs
    assert xglacier.DatasetGlacier.to_zarr.__doc__ == to_zarr.__doc__


@pytest.mark.parametrize("writer", ["netcdf", "zarr"])
def test_outputs_respect_the_umask(cube, tmp_path, writer):
    """Written files get the permissions of the user's umask (mkstemp would give 0600)."""
    old = os.umask(0o022)
    try:
        if writer == "netcdf":
            files = [to_netcdf(cube.isel(time=[0]), tmp_path / "a.nc")]
        else:
            store = to_zarr(cube.isel(time=[0]), tmp_path / "a.zarr")
            files = [p for p in store.rglob("*") if p.is_file()]
    finally:
        os.umask(old)
    assert files
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o644, (f, oct(f.stat().st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a.{'nc' if writer == 'netcdf' else 'zarr'}"]
