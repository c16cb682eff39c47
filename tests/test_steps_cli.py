"""The single-glacier commands through ``xglacier.cli.main``: prepare, segment, forecast, flow.

Each command's files are compared with the library's functions (or process_glacier) on the
same input; bad input ends with status 1 and one line naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from shapely import box

import xglacier
from xglacier.batch.config import BatchConfig
from xglacier.batch.glacier import process_glacier, read_outlines
from xglacier.cli import main
from xglacier.errors import NarrowGlacierWarning
from xglacier.models import Persistence
from xglacier.nn.checkpoint import save_model
from xglacier.segmentation.models import NDSIRule

from .test_batch_glacier import outline, write_scenes

pytestmark = pytest.mark.filterwarnings("ignore::xglacier.errors.FlowNoiseWarning")


@dataclass
class Files:
    root: Path
    scenes: Path
    outlines: Path
    config: Path
    composites: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cube, truth = xglacier.synthetic_cube(shape=(48, 48), start="2020-01-01", end="2021-01-01", seed=2)
    scenes = write_scenes(root / "scenes", cube.compute())
    outlines = root / "outlines.gpkg"
    outline(truth.compute()).to_file(outlines)
    save_model(Persistence(patch_size=16, n_in=2, n_out=2), root / "persistence", variable="ndsi")
    save_model(NDSIRule(channels=["ndsi"], classes=["background", "glacier"]), root / "rule")
    config = root / "run.toml"
    config.write_text('buffer_m = 300\nalign = false\nsegment_model = "rule"\n'
                      'forecast_model = "persistence"\nforecast_steps = 2\nsegment_tile = 32\n'
                      "segment_overlap = 8\n")
    composites = root / "composites.zarr"
    assert main(["prepare", str(scenes), "--outline", str(outlines), "--config", str(config),
                 "--out", str(composites)]) == 0
    return Files(root, scenes, outlines, config, composites)


def test_prepare_equals_process_glacier(files):
    glacier = read_outlines(files.outlines)[0]
    config = BatchConfig(local_scenes=str(files.scenes), buffer_m=300, align=False, products=())
    row = process_glacier(glacier, files.root / "batch", config)
    with xr.open_zarr(files.composites) as cli, xr.open_zarr(files.root / "batch" / "ndsi.zarr") as ref:
        for name in ("ndsi", "nir08"):
            np.testing.assert_array_equal(cli[name].values, ref[name].values)
        np.testing.assert_array_equal(cli.x.values, ref.x.values)
    assert row["periods"] == 4


def test_prepare_bbox_and_whole_files(files, tmp_path, capsys):
    out = tmp_path / "box.nc"
    with xr.open_zarr(files.composites) as comps:
        x0, y0 = float(comps.x.min()), float(comps.y.min())
    # a box in degrees inside the scenes' south-west part
    inner = gpd.GeoSeries([box(x0 + 200, y0 + 200, x0 + 800, y0 + 700)], crs=32643)
    w, s, e, n = inner.to_crs(4326).total_bounds
    assert main(["prepare", str(files.scenes), "--bbox", f"{w},{s},{e},{n}",
                 "--config", str(files.config), "--out", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        assert ds.rio.crs.to_epsg() == 32643 and 15 < ds.sizes["x"] < 30 and 15 < ds.sizes["y"] < 30
        corners = gpd.GeoSeries(gpd.points_from_xy(ds.x.values[[0, -1]], ds.y.values[[0, -1]]), crs=32643)
        lon, lat = corners.to_crs(4326).x.values, corners.to_crs(4326).y.values
        assert ((w <= lon) & (lon <= e)).all() and ((s <= lat) & (lat <= n)).all()  # no buffer
    whole = tmp_path / "whole.zarr"
    assert main(["prepare", str(files.scenes), "--config", str(files.config), "--out", str(whole)]) == 0
    with xr.open_zarr(whole) as ds:
        assert (ds.sizes["y"], ds.sizes["x"]) == (48, 48)


def test_segment_forecast_flow(files, tmp_path):
    with xr.open_zarr(files.composites) as comps:
        comps = comps.compute()
    gpkg, nc, vel = tmp_path / "glacier.gpkg", tmp_path / "forecast.nc", tmp_path / "flow.nc"
    assert main(["segment", str(files.composites), "--config", str(files.config), "--out", str(gpkg)]) == 0
    polys = gpd.read_file(gpkg)
    # the rule model on the Jul-Sep composite of NDSI: NDSI > 0.4, pixel for pixel
    summer = comps.ndsi.sel(time="2020-07-01")
    assert set(polys["year"]) == {2020}
    assert polys["area_m2"].sum() / 900 == pytest.approx(float((summer > 0.4).sum()), rel=2e-3)

    assert main(["forecast", str(files.composites), "--config", str(files.config), "--out", str(nc)]) == 0
    with xr.open_dataset(nc) as fc:
        assert fc.sizes["lead_time"] == 2
        np.testing.assert_allclose(fc.ndsi_forecast.values, comps.ndsi.values[[-1, -1]], atol=1e-6)

    with warnings.catch_warnings(record=True) as caught:  # the test glacier is a few px wide
        warnings.simplefilter("always", NarrowGlacierWarning)
        assert main(["flow", str(files.composites), "--config", str(files.config), "--outline",
                     str(files.outlines), "--out", str(vel)]) == 0
    assert [str(w.message)[:25] for w in caught if w.category is NarrowGlacierWarning] == \
        ["flow: the glacier is 5.6 "]
    with xr.open_dataset(vel) as got:
        direct = xglacier.flow(comps.nir08)
        np.testing.assert_allclose(got.u.values, direct.u.values, atol=1e-3)
        np.testing.assert_allclose(got.v.values, direct.v.values, atol=1e-3)


def one_line_error(capsys, *names):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, err
    return err


def test_bad_input_is_one_line_naming_the_file(files, tmp_path, capsys):
    missing = tmp_path / "missing.zarr"
    for command in ("segment", "forecast", "flow"):
        assert main([command, str(missing), "--config", str(files.config), "--out",
                     str(tmp_path / "o.nc")]) == 1
        one_line_error(capsys, f"xglacier {command}: error:", str(missing))
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    assert main(["flow", str(junk), "--out", str(tmp_path / "o.nc")]) == 1
    one_line_error(capsys, str(junk))
    assert main(["prepare", str(files.scenes), "--config", str(tmp_path / "nope.toml"),
                 "--out", str(tmp_path / "o.zarr")]) == 1
    one_line_error(capsys, "nope.toml")
    assert main(["prepare", str(tmp_path / "no-scenes"), "--out", str(tmp_path / "o.zarr")]) == 1
    one_line_error(capsys, "no-scenes")
    assert main(["prepare", str(files.scenes), "--config", str(files.config),
                 "--out", str(tmp_path / "o.tif")]) == 1
    one_line_error(capsys, "o.tif", ".zarr or .nc")
    assert main(["forecast", str(files.composites), "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path / "f.nc")]) == 1
    one_line_error(capsys, "none")
    assert main(["segment", str(files.composites), "--out", str(tmp_path / "s.gpkg")]) == 1
    one_line_error(capsys, "no checkpoint")
    assert main(["flow", str(files.composites), "--variable", "red", "--out", str(tmp_path / "v.nc")]) == 1
    one_line_error(capsys, "no variable 'red'", str(files.composites))
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--bbox", "1,2,3", "--out", "x.zarr"])
    assert info.value.code == 2
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def test_an_outline_without_rgi_ids(files, tmp_path, capsys):
    """A hand-drawn outline (columns ID, NAME like the Athabasca file) needs no id column to
    prepare one glacier or to give flow its stable ground; an explicit column must exist."""
    drawn = gpd.read_file(files.outlines).drop(columns="RGIId").assign(ID=[7], NAME=["mine"])
    path = tmp_path / "drawn.gpkg"
    drawn.to_file(path)
    out = tmp_path / "drawn.zarr"
    assert main(["prepare", str(files.scenes), "--outline", str(path), "--config", str(files.config),
                 "--out", str(out)]) == 0
    with xr.open_zarr(out) as got, xr.open_zarr(files.composites) as ref:
        np.testing.assert_array_equal(got.ndsi.values, ref.ndsi.values)
    assert main(["prepare", str(files.scenes), "--outline", str(path), "--id", "0", "--config",
                 str(files.config), "--out", str(tmp_path / "row0.zarr")]) == 0  # the row number
    capsys.readouterr()
    assert main(["prepare", str(files.scenes), "--outline", str(path), "--id-column", "RGIId",
                 "--out", str(tmp_path / "o.zarr")]) == 1
    one_line_error(capsys, "no id column 'RGIId'", "ID", "NAME")
    assert main(["prepare", str(files.scenes), "--outline", str(path), "--id", "7",
                 "--out", str(tmp_path / "o.zarr")]) == 1
    one_line_error(capsys, "no glacier '7'", "row numbers")
    printed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NarrowGlacierWarning)
        for outline_file in (path, files.outlines):
            assert main(["flow", str(files.composites), "--config", str(files.config), "--outline",
                         str(outline_file), "--out", str(tmp_path / f"{outline_file.stem}.nc")]) == 0
            printed.append(capsys.readouterr().out.split(" -> ")[0])
    # the same glacier and stable ground whichever file names them
    assert "m/yr on stable ground" in printed[0] and printed[0] == printed[1]


def test_scenes_without_qa_band_say_which_setting_to_change(files, tmp_path, capsys):
    """HLS-like files without QA_PIXEL: the default config stops with the setting to change,
    and that setting gives the composites, unmasked, on the same grid."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in files.scenes.iterdir():
        if "QA_PIXEL" not in f.name.upper():
            (bare / f.name).symlink_to(f)
    assert len(list(bare.iterdir())) < len(list(files.scenes.iterdir()))
    assert main(["prepare", str(bare), "--outline", str(files.outlines),
                 "--out", str(tmp_path / "o.nc")]) == 1
    one_line_error(capsys, "no file for band(s) ['qa_pixel']", "cloud_mask = false")
    config = tmp_path / "hls.toml"
    config.write_text(files.config.read_text() + 'cloud_mask = false\nbands = ["green", "swir16", "nir08"]\n')
    out = tmp_path / "bare.zarr"
    assert main(["prepare", str(bare), "--outline", str(files.outlines), "--config", str(config),
                 "--out", str(out)]) == 0
    with xr.open_zarr(out) as got, xr.open_zarr(files.composites) as masked:
        for name in ("time", "y", "x"):  # the same periods on the same grid
            np.testing.assert_array_equal(got[name].values, masked[name].values)
