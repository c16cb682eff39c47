"""The demo command end to end, and the atomic NetCDF writer."""

from __future__ import annotations

import re

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr

import xglacier
from xglacier.cli import main
from xglacier.io.store import to_netcdf


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_is_readable_text(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text  # no raw reStructuredText
    flat = " ".join(text.split())
    assert "trains two models" in flat or "train a small SA-LSTM-H" in flat
    if argv[0] == "demo":
        assert "SA-LSTM-H" in text and "U-Net" in text and "--quiet" in text


@pytest.mark.slow
def test_demo_command(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2", "--seg-epochs", "2"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    # progress: a line per stage and a bar during each training, on standard error
    for stage in ("1/3", "2/3", "3/3"):
        assert f"xglacier demo: {stage}" in captured.err
    assert "fit SALSTM" in captured.err and "fit_segmentation UNet" in captured.err
    assert "scenes:" in text and "RMSE green" in text and "interpolated" in text
    assert "ECC alignment" in text and "surface velocity" in text
    assert "forecasting" in text and "seasonal_persistence" in text
    # the paired skill against the best baseline, with its interval, low <= point <= high
    line = next(x for x in text.splitlines() if "skill on the test windows against" in x)
    point, low, high = (float(v) for v in re.findall(r"[-+]\d+\.\d+", line.split("blocks):")[1]))
    assert low <= point <= high
    # the model's verdict against its own reference, the long-term climatology
    assert "history_climatology" in text
    # the held-out year's own table, then the test windows'; on the sample's held-out year the
    # long-term climatology (no model) lies below seasonal persistence: the year can tell a
    # forecaster from seasonal persistence, which is why the sample has its seed
    year = text.split("held-out year 2021 (its four quarters forecast from the four before")[1]
    year = year.split("on the held-out year 2021, SA-LSTM-H")[0]
    rows = {name: (float(lo), float(hi)) for name, lo, hi in
            re.findall(r"^\s+(\w+)\s+\d\.\d+ \((\d\.\d+)-(\d\.\d+)\)", year, re.M)}
    assert set(rows) == {"persistence", "seasonal_persistence", "history_climatology", "climatology",
                         "linear_trend"}  # and the model's row, whose name has a hyphen
    assert rows["history_climatology"][1] < rows["seasonal_persistence"][0]
    assert "all 3 test windows (targets 2020-07 to 2021-10)" in text
    # the held-out year's ceiling: the climatology over the seven earlier years
    line = next(x for x in text.splitlines() if "earlier years scores MSE" in x)
    assert "over the 7 earlier years" in line
    found = re.findall(r"ratio (\d+\.\d+) \(paired 95 %: (\d+\.\d+)-(\d+\.\d+)\)", line)
    ratio, low, high = (float(v) for v in found[0])
    assert low <= ratio <= high
    assert "segmentation" in text and "random_forest" in text and "NDSI > 0.4" in text
    for name in ("composites.nc", "gapfill.png", "ndsi_composites.png", "snow_mask.png", "flow.png",
                 "forecast.png", "forecast_flow.png", "skill_map.png", "salstm_small.json",
                 "salstm_small.safetensors", "unet_small.json", "unet_small.safetensors",
                 "labels.nc", "glaciers.gpkg", "segmentation.png"):
        assert (tmp_path / name).stat().st_size > 1000
    ds = xr.open_dataset(tmp_path / "composites.nc", decode_coords="all")
    assert ds.rio.crs.to_epsg() == 32643
    assert ds.ndsi.dims == ("time", "y", "x") and ds.sizes["time"] == 32  # the sample's eight years
    assert ds.interpolated.values.astype(bool).sum() == 1  # the sample's empty quarter
    assert float(ds.ndsi.min()) >= -1 and float(ds.ndsi.max()) <= 1
    ds.close()
    fc = xr.open_zarr(tmp_path / "forecast.zarr")
    assert fc.ndsi_forecast.dims == ("lead_time", "y", "x") and fc.sizes["lead_time"] == 4
    assert "forecast_reference_time" in fc.coords
    labels = xr.open_dataset(tmp_path / "labels.nc", decode_coords="all").label
    assert labels.shape == (200, 200) and set(np.unique(labels.values)) <= {0, 1, 2}
    assert labels.rio.crs.to_epsg() == 32643
    import geopandas as gpd

    polys = gpd.read_file(tmp_path / "glaciers.gpkg")
    assert polys.crs.to_epsg() == 32643 and (polys.area_m2 > 0).all()
    assert set(polys["class"]) <= {1, 2}


def test_to_netcdf_roundtrip_and_atomic(tmp_path, small_loaded):
    cube, _ = small_loaded
    nd = xglacier.ndsi(cube)
    path = to_netcdf(nd, tmp_path / "ndsi.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["ndsi.nc"]  # no temporary left
    back = xr.open_dataset(path, decode_coords="all")
    np.testing.assert_array_equal(back.ndsi.values, nd.values)
    assert back.rio.crs == cube.rio.crs
    back.close()
    with rasterio.open(f"netcdf:{path}:ndsi") as src:
        assert src.transform == cube.rio.transform()
        assert src.crs == cube.rio.crs


def _explode(block):
    raise RuntimeError("disk full")


def test_to_netcdf_failure_leaves_nothing(tmp_path):
    """A write that fails after the file was created leaves no file at the final path."""
    data = dask.array.zeros((4, 8, 8), chunks=(1, 8, 8)).map_blocks(_explode, dtype=float)
    bad = xr.Dataset({"a": (("time", "y", "x"), data)})
    with pytest.raises(RuntimeError, match="disk full"):
        to_netcdf(bad, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []
