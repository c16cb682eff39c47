"""The "silent wrong results" of issue 11, each on the exact input that broke it, so that
they stay fixed. One section per item; each section keeps its own imports and helpers."""

# -- items 3, 4, 5: alignment border, unscaled reflectance, the DN hint ---------------------

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

import xglacier
from xglacier.errors import ReflectanceRangeError

ATHABASCA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "athabasca"
needs_athabasca = pytest.mark.skipif(
    not ATHABASCA.is_dir(),
    reason=f"real Athabasca HLS crops not found at {ATHABASCA} (../shared/data is not part of a clone)",
)
S30 = {"green": "B03", "red": "B04", "nir08": "B8A", "swir16": "B11"}
L30 = {"green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06"}


def _raw(path: Path) -> np.ndarray:
    import rioxarray

    return rioxarray.open_rasterio(path).squeeze("band", drop=True).values


def _uncovered(valid: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Pixels whose bilinear footprint (the 2x2 pixels around the source position of a
    translation by dx, dy, those with a weight above 0.001) leaves the frame or touches an
    invalid pixel."""
    ny, nx = valid.shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    sx, sy = cols + dx, rows + dy
    x0, y0 = np.floor(sx), np.floor(sy)
    off = np.zeros((ny, nx))
    for x in (x0, x0 + 1):
        for y in (y0, y0 + 1):
            weight = (1 - np.abs(sx - x)) * (1 - np.abs(sy - y))
            inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
            ok = inside & valid[np.clip(y, 0, ny - 1).astype(int), np.clip(x, 0, nx - 1).astype(int)]
            off += np.where(ok, 0, weight)
    return off > 0.001


def _check_only_the_uncovered_border_is_nan(cube: xr.Dataset) -> xr.Dataset:
    aligned = xglacier.align_ecc(cube, reference=0).compute()  # cubic, the default
    assert bool(aligned.ecc_converged.all())
    dx, dy = float(aligned.ecc_shift_x[1]), float(aligned.ecc_shift_y[1])
    for name in cube.data_vars:
        expected = _uncovered(np.isfinite(cube[name].values[1]), dx, dy)
        np.testing.assert_array_equal(np.isnan(aligned[name].values[1]), expected, err_msg=name)
    return aligned


def test_item3_align_ecc_blanks_only_the_uncovered_border():
    # smooth texture and the same texture moved by 0.07 px: one column (and at most one
    # row) has a footprint leaving the frame; cubic interpolation blanked 10 % of it
    texture = ndimage.gaussian_filter(np.random.default_rng(3).random((100, 120)), 2.0)
    texture = (0.2 + 3 * (texture - texture.min())).astype(np.float32)
    moved = ndimage.shift(texture, (0.0, 0.07), order=3, mode="nearest").astype(np.float32)
    cube = xr.Dataset({"nir08": (("time", "y", "x"), np.stack([texture, moved]))},
                      coords={"time": pd.to_datetime(["2020-09-09", "2020-09-11"])})
    aligned = _check_only_the_uncovered_border_is_nan(cube)
    assert 0 < float(aligned.ecc_shift_x[1]) < 0.3  # a sub-pixel shift (accuracy: tests/test_align.py)
    assert np.isnan(aligned.nir08.values[1]).mean() < 0.02


@needs_athabasca
def test_item3_align_ecc_on_the_real_shifted_athabasca_frame():
    """2020-09-11 against 2020-09-09, read as plain arrays (about 1 px apart)."""
    ref = {b: _raw(ATHABASCA / f"athabasca_2020253_{c}_S30.tif") for b, c in S30.items()}
    ny, nx = ref["green"].shape
    new = {b: _raw(ATHABASCA / "shifted_20200911" / f"athabasca_{c}_20200911.tif")[:ny, :nx]
           for b, c in S30.items()}
    cube = xr.Dataset(
        {b: (("time", "y", "x"), np.where(np.stack([ref[b], new[b]]) == -9999, np.nan,
                                           np.stack([ref[b], new[b]]) * 1e-4).astype(np.float32))
         for b in S30},
        coords={"time": pd.to_datetime(["2020-09-09", "2020-09-11"])})
    aligned = _check_only_the_uncovered_border_is_nan(cube)
    # one column and one row for a shift of about (1, 0.6) px: 1 % of the frame, not 10 %
    assert np.isnan(aligned.green.values[1]).mean() < 0.015


def _int16_dn_cube() -> tuple[xr.Dataset, xr.Dataset]:
    """A synthetic cube as HLS stores it (int16 DN = reflectance * 10000, nodata -9999),
    with a block of nodata, and the same cube scaled."""
    cube, _ = xglacier.synthetic_cube(shape=(40, 40), start="2020-07-01", end="2020-08-15",
                                      cloud_scale=0.0)
    cube = cube[list(S30)].compute()
    for b in S30:
        cube[b][:, 10:14, 20:26] = np.nan  # a gap to fill
    dn = cube.assign({b: (cube[b] * 1e4).round().fillna(-9999).astype(np.int16) for b in S30})
    return dn, cube


def test_item4_fill_gaps_refuses_integer_dns_like_ndsi():
    dn, scaled = _int16_dn_cube()
    with_qa = dn.assign(qa_pixel=xr.zeros_like(dn.green, np.uint16))  # QA stays integer
    for func in (xglacier.fill_gaps, xglacier.ndsi, xglacier.composite, xglacier.mask_clouds):
        with pytest.raises(ReflectanceRangeError, match=f"^{func.__name__}: variable '.*' has dtype int16"):
            func(with_qa)
    # a -9999 left in float data is no value to average into the gap
    with pytest.raises(ReflectanceRangeError, match="-9999 is no reflectance but a nodata value"):
        xglacier.fill_gaps(scaled.fillna(-9999))
    with pytest.raises(ReflectanceRangeError, match="holds values"):
        xglacier.fill_gaps(scaled.chunk({"time": 1}).fillna(-9999)).compute()
    filled = xglacier.fill_gaps(scaled)  # scaled, nodata as NaN: filled
    assert not filled.green.isnull().any() and scaled.green.isnull().any()


@needs_athabasca
def test_item4_fill_gaps_on_the_raw_l30_scene():
    """The L30 scene read as stored (int16, -9999 on its 897 gap pixels)."""
    bands = {b: _raw(ATHABASCA / f"athabasca_2020229_{c}_L30.tif")[None] for b, c in L30.items()}
    assert (bands["green"] == -9999).sum() == 897
    raw = xr.Dataset({b: (("time", "y", "x"), a) for b, a in bands.items()},
                     coords={"time": pd.to_datetime(["2020-08-16"])})
    with pytest.raises(ReflectanceRangeError, match=r"^fill_gaps: variable 'green' has dtype int16"):
        xglacier.fill_gaps(raw)
    with pytest.raises(ReflectanceRangeError, match=r"^fill_gaps: .*-9999 is no reflectance"):
        xglacier.fill_gaps(raw.astype(np.float32))  # float DNs, nodata still -9999


def test_item5_dn_hint_names_the_factor_of_each_product():
    dn, scaled = _int16_dn_cube()
    with pytest.raises(ReflectanceRangeError) as info:
        xglacier.ndsi(dn)
    msg = str(info.value)
    assert "Landsat C2 L2: DN * 0.0000275 - 0.2" in msg
    assert "HLS L30/S30: DN * 0.0001;" in msg
    assert "Sentinel-2 L2A from baseline 04.00: DN * 0.0001 - 0.1" in msg
    assert "Sentinel-2 L2A before baseline 04.00: DN * 0.0001;" in msg
    from xglacier.landsat import DN_SCALING  # the facts behind the hint (new with item 5)

    # the HLS factor of the message turns these HLS DNs back into the reflectance they were
    # (to half a DN), which ndsi then takes
    scale, offset = DN_SCALING["HLS L30/S30"]
    back = dn.assign({b: (dn[b].where(dn[b] != -9999) * scale + offset).astype(np.float32) for b in S30})
    xr.testing.assert_allclose(back, scaled, atol=0.51e-4, rtol=0)
    assert xglacier.ndsi(back).notnull().any()


# -- item 6: outputs readable only by their owner -------------------------------------------

import os  # noqa: E402  (each section keeps its own imports)

from xglacier.models import UNet  # noqa: E402


@pytest.mark.parametrize("writer", ["to_netcdf", "to_zarr", "save_model"])
def test_item6_outputs_respect_the_umask(tmp_path, writer):
    """tempfile.mkstemp made to_netcdf and save_model files 0600 whatever the user's umask."""
    cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-02-15", seed=2)
    old = os.umask(0o022)
    try:
        if writer == "to_netcdf":
            written = [xglacier.to_netcdf(cube.isel(time=[0]), tmp_path / "cube.nc")]
        elif writer == "to_zarr":
            store = xglacier.to_zarr(cube.isel(time=[0]), tmp_path / "cube.zarr")
            written = [p for p in store.rglob("*") if p.is_file()]
        else:
            model = UNet(["green", "swir16"], ["background", "ice"], depth=2, base_channels=4)
            xglacier.save_model(model, tmp_path / "model")
            written = [tmp_path / "model.json", tmp_path / "model.safetensors"]
    finally:
        os.umask(old)
    assert written
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {"0o644"}, modes


# -- items 2 and 8: segmentation of missing and out-of-distribution inputs ----------------------
# (imports inside the functions: this section is concatenated with the other items' sections)

_L30 = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06", "swir22": "B07"}


def _athabasca_or_skip():
    """The real Athabasca crops' folder (``../shared/data/athabasca``), or skip the test."""
    from pathlib import Path

    import pytest

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
    if not folder.is_dir():
        pytest.skip(f"real Athabasca HLS crops not found at {folder} (they live in ../shared/data, beside "
                    "the project, and are not part of a clone)")
    return folder


def _synthetic_features(seed=1):
    """Features of a clear late-summer synthetic scene (the synthetic sample's kind: high terrain)."""
    import xglacier

    cube, truth = xglacier.synthetic_cube(shape=(48, 56), start="2020-08-01", end="2020-08-25", seed=seed,
                                          max_shift=0.0)
    return xglacier.features(cube.drop_vars("qa_pixel"), dem=truth.dem, time=0).compute()


def _unet_with_statistics_of(feats):
    """A small U-Net carrying the per-channel statistics of ``feats``, as fit_segmentation sets them."""
    import numpy as np
    import torch

    from xglacier.models import UNet

    torch.manual_seed(0)
    values = feats.values.reshape(feats.sizes["channel"], -1)
    return UNet(list(feats.channel.values), ["background", "clean_ice", "debris_covered_ice"], depth=2,
                base_channels=4, mean=np.nanmean(values, axis=1).tolist(),
                std=np.nanstd(values, axis=1).tolist()).eval()


def _athabasca_l30_features(folder):
    """The unfilled L30 scene (897 nodata pixels) with the DEM: the issue's features."""
    import numpy as np
    import rioxarray
    import xarray as xr

    import xglacier

    bands, ref = {}, None
    for name, code in _L30.items():
        path = folder / f"athabasca_2020229_{code}_L30.tif"
        raw = rioxarray.open_rasterio(path).squeeze("band", drop=True)
        ref = raw if ref is None else ref
        bands[name] = (("y", "x"), np.where(raw.values == raw.rio.nodata, np.nan,
                                            raw.values * 1e-4).astype(np.float32))
    ds = xr.Dataset(bands, coords={"y": ref.y.values, "x": ref.x.values}).rio.write_crs(ref.rio.crs)
    dem = rioxarray.open_rasterio(folder / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    return xglacier.features(ds, dem=dem).compute()


def test_item2_segment_labels_nodata():
    """A gap in every spectral band (the DEM still valid) and an all-NaN scene: no class there."""
    import numpy as np

    import xglacier
    from xglacier.segmentation.classes import NODATA
    from xglacier.segmentation.classical import ndsi_rule

    feats = _synthetic_features()
    model = _unet_with_statistics_of(feats)
    holey = feats.copy(data=feats.values.copy())
    spectral = [i for i, c in enumerate(feats.channel.values) if c not in ("elevation", "slope")]
    holey.values[np.ix_(spectral, range(10, 25), range(5, 35))] = np.nan
    gap = np.isnan(holey.values).any(axis=0)
    for data in (holey, holey.chunk({"y": 20, "x": 20})):
        out = xglacier.segment(data, model, tile=32, overlap=8)
        assert (out.label.values[gap] == NODATA).all() and (out.label.values[~gap] < 3).all()
        assert np.isnan(out.probability.values[:, gap]).all()
        assert np.isfinite(out.probability.values[:, ~gap]).all()
    assert int(out.label.attrs["_FillValue"]) == NODATA
    empty = xglacier.segment(holey.copy(data=np.full(holey.shape, np.nan, np.float32)), model, tile=32,
                             overlap=8)
    assert (empty.label.values == NODATA).all() and np.isnan(empty.probability.values).all()
    # the NDSI rule too, and a missed pixel counts against its class instead of vanishing
    assert (ndsi_rule(holey).label.values[gap] == NODATA).all()
    truth = np.ones(gap.shape, np.uint8)
    cm = xglacier.confusion_matrix(truth, out, 3)
    assert cm.sum() == truth.size and cm[1, -1] == gap.sum()


def test_item2_segment_labels_nodata_on_the_unfilled_l30_scene():
    import numpy as np

    import xglacier
    from xglacier.segmentation.classes import NODATA

    feats = _athabasca_l30_features(_athabasca_or_skip())
    gap = np.isnan(feats.sel(channel="blue").values)
    assert gap.sum() == 897
    model = _unet_with_statistics_of(feats)   # the scene's own statistics: no warning expected
    out = xglacier.segment(feats, model, tile=64, overlap=16)
    assert (out.label.values[gap] == NODATA).all()
    assert ((out.label.values == NODATA) == np.isnan(feats.values).any(axis=0)).all()
    assert np.isnan(out.probability.values[:, gap]).all()


def test_item8_out_of_distribution_inputs_warn():
    """A model trained on one elevation range applied to another: warned, naming the channel."""
    import pytest

    import xglacier
    from xglacier.errors import OutOfDistributionWarning

    feats = _synthetic_features()
    model = _unet_with_statistics_of(feats)
    xglacier.segment(_synthetic_features(seed=2), model, tile=32, overlap=8)   # another world: quiet
    low = feats.copy(data=feats.values.copy())
    low.loc[{"channel": "elevation"}] = low.sel(channel="elevation") - 3000.0   # Athabasca-like heights
    with pytest.warns(OutOfDistributionWarning, match=r"channel\(s\) \['elevation'\]") as caught:
        xglacier.segment(low, model, tile=32, overlap=8)
    assert "below the training mean" in str(caught[0].message)
    lazy = xglacier.segment(low.chunk({"y": 20}), model, tile=32, overlap=8)
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        lazy.label.compute()


def test_item8_synthetic_model_on_real_athabasca_warns():
    import pytest

    import xglacier
    from xglacier.errors import OutOfDistributionWarning

    real = _athabasca_l30_features(_athabasca_or_skip())
    model = _unet_with_statistics_of(_synthetic_features())
    with pytest.warns(OutOfDistributionWarning, match=r"channel\(s\) \[[^]]*'elevation'.*elevation: \d+ % of "
                                                      r"the valid pixels lie more than 3 std below"):
        xglacier.segment(real, model, tile=64, overlap=16)


# -- items 1 (ascending y: flow, plot_flow, features), 2 (polygonize of nodata), 7 (flow noise) --
# (its imports, warnings, numpy, pandas, pytest, xarray, scipy.ndimage and xglacier, are at the top)


def _item1_pair(shift: tuple[int, int]) -> xr.DataArray:
    """Two frames a year apart on a north-up 30 m UTM grid with a stored GeoTransform (as
    read from a GeoTIFF); the content moves ``shift`` (rows, columns): (-1, 0) is one row north."""
    import rioxarray  # noqa: F401 - registers .rio

    img = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64)), 2).astype(np.float32)
    da = xr.DataArray(np.stack([img, np.roll(img, shift, axis=(0, 1))]), dims=("time", "y", "x"),
                      coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                              "y": 5784465.0 - 30.0 * np.arange(64), "x": 477885.0 + 30.0 * np.arange(64)})
    return da.rio.write_crs("EPSG:32611").rio.write_transform()


def _item1_flow(da: xr.DataArray) -> xr.Dataset:
    with warnings.catch_warnings():
        # the whole frame moves, which flow (rightly) flags as indistinguishable from misregistration
        warnings.simplefilter("ignore", xglacier.errors.XGlacierWarning)
        return xglacier.flow(da).isel(pair=0, y=slice(16, 48), x=slice(16, 48))


def test_item1_flow_direction_on_ascending_y():
    # one row north in a year: v = +30 m/yr (about; 2020 is a leap year) whichever way y runs
    da = _item1_pair((-1, 0))
    for cube in (da, da.sortby("y")):
        vel = _item1_flow(cube)
        assert float(vel.v.median()) == pytest.approx(30 * 365.25 / 366, rel=0.02)
        assert abs(float(vel.u.median())) < 0.5
        assert float(vel.direction.median()) == pytest.approx(0.0, abs=1.0)


def test_item1_flow_direction_on_descending_x():
    da = _item1_pair((0, 1))  # one column east
    for cube in (da, da.sortby("x", ascending=False)):
        vel = _item1_flow(cube)
        assert float(vel.u.median()) == pytest.approx(30 * 365.25 / 366, rel=0.02)
        assert float(vel.direction.median()) == pytest.approx(90.0, abs=1.0)


def test_item1_plot_flow_arrows_point_north_on_ascending_y():
    import matplotlib

    matplotlib.use("Agg")
    for cube in (_item1_pair((-1, 0)), _item1_pair((-1, 0)).sortby("y")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", xglacier.errors.XGlacierWarning)
            ax = xglacier.plot_flow(xglacier.flow(cube), step=8)
        q = ax.collections[0]
        start = ax.transData.transform(q.get_offsets())
        end = ax.transData.transform(q.get_offsets() + np.column_stack([q.U, q.V]))
        assert np.median((end - start)[:, 1]) > 0  # up the screen: north
        matplotlib.pyplot.close(ax.figure)


def test_item1_features_dem_on_ascending_cube():
    from xglacier.segmentation.features import features

    cube = _item1_pair((0, 0)).isel(time=0).to_dataset(name="green")
    cube["swir16"] = cube.green * 0.5 + 0.05
    cube = cube.rio.write_transform()
    # a DEM larger than the cube, sloping 0.1 m/m to the east
    x = 477885.0 + 30.0 * np.arange(-10, 74)
    y = 5784465.0 - 30.0 * np.arange(-10, 74)
    dem = xr.DataArray(np.tile(0.1 * (x - x[0]) + 2000.0, (y.size, 1)), dims=("y", "x"),
                       coords={"y": y, "x": x}).rio.write_crs("EPSG:32611")
    ref = features(cube, dem=dem, indices=("ndsi",))
    got = features(cube.sortby("y"), dem=dem, indices=("ndsi",))  # raised "does not cover the cube"
    np.testing.assert_allclose(got.sortby("y", ascending=False).values, ref.values, rtol=1e-6)
    np.testing.assert_allclose(got.sel(channel="slope").values, np.degrees(np.arctan(0.1)), rtol=1e-5)


def test_item7_flow_noise_floor_on_short_time_gap():
    from xglacier.errors import FlowNoiseWarning

    # 100 m/yr of ice over 2 days is 0.02 px; the two frames are 0.4 px apart (misregistration)
    img = ndimage.gaussian_filter(np.random.default_rng(0).random((96, 96)), 2)
    second = ndimage.shift(img, (0.4, 0.1), order=3, mode="reflect")
    da = xr.DataArray(np.stack([img, second]).astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": pd.to_datetime(["2020-09-09", "2020-09-11"]),
                              "y": 5784465.0 - 30.0 * np.arange(96), "x": 477885.0 + 30.0 * np.arange(96)})
    with pytest.warns(FlowNoiseWarning, match=r"2020-09-09T00:00:00 -> 2020-09-11"):
        vel = xglacier.flow(da.rio.write_crs("EPSG:32611"))
    # the speeds are ~2300 m/yr everywhere, and the result says that this is its noise floor
    floor = np.hypot(0.4, 0.1) * 30 * 365.25 / 2
    assert float(vel.speed.median()) == pytest.approx(floor, rel=0.25)
    assert float(vel.speed_noise[0]) == pytest.approx(floor, rel=0.25)
    assert not bool(vel.above_noise[0])


def test_item2_polygonize_never_traces_nodata():
    from xglacier.segmentation.classes import NODATA
    from xglacier.segmentation.vectors import polygonize

    lab = np.zeros((20, 20), np.uint8)
    lab[2:12, 2:12] = 1
    lab[5:8, 5:8] = NODATA  # inputs missing inside the glacier
    lab[14:18, :] = NODATA  # and a band of missing pixels
    da = xr.DataArray(lab, dims=("y", "x"), coords={"y": 5200195.0 - 10 * np.arange(20),
                                                    "x": 500005.0 + 10 * np.arange(20)})
    da = da.rio.write_crs("EPSG:32632").assign_attrs(flag_values=[0, 1], flag_meanings="background glacier")
    gdf = polygonize(da)
    assert gdf["class"].tolist() == [1] and gdf["class_name"].tolist() == ["glacier"]
    # 100 pixels of which 9 have no class: a hole where they are, 91 pixels of 100 m²
    assert len(gdf.geometry[0].interiors) == 1
    assert gdf.geometry[0].area == pytest.approx(9100.0)
    assert polygonize(da.assign_attrs(flag_values=None, flag_meanings=None))["class"].tolist() == [1]
