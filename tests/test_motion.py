"""flow: optical flow as surface velocity; alignment and flow on the real Athabasca crops."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pyproj
import pytest
import rioxarray
import xarray as xr
from scipy import ndimage

import xglacier
from xglacier.errors import DimensionError, FlowNoiseWarning, InputError, ParameterError
from xglacier.motion import PixelUnitsWarning

ATHABASCA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
needs_athabasca = pytest.mark.skipif(
    not ATHABASCA.is_dir(),
    reason=f"real Athabasca crops not found at {ATHABASCA} (../shared/data beside the project)",
)


def _tif(path: Path) -> np.ndarray:
    da = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    return np.where(da.values == -9999, np.nan, da.values * 1e-4).astype(np.float32)


def test_synthetic_ice_flow_end_point_error():
    cube, truth = xglacier.synthetic_cube(shape=(128, 128), start="2020-07-01", end="2020-10-15",
                                          max_shift=0.0, cloud_scale=0.0, ice_speed=600.0, seed=7)
    vel = xglacier.flow(cube.nir08).compute()
    assert vel.u.attrs["units"] == "m yr-1" and vel.sizes["pair"] == cube.sizes["time"] - 1
    years = vel.dt_days.values[:, None, None] / 365.25
    tx = np.broadcast_to(truth.velocity_x.values / 30, vel.dx.shape) * years
    ty = np.broadcast_to(-truth.velocity_y.values / 30, vel.dx.shape) * years
    glacier = truth.glacier_class.sel(time=vel.end).values > 0
    glacier[:, :16], glacier[:, -16:], glacier[:, :, :16], glacier[:, :, -16:] = (False,) * 4
    epe = np.hypot(vel.dx.values - tx, vel.dy.values - ty)[glacier]
    zero = np.hypot(tx, ty)[glacier]
    print(f"flow EPE median {np.nanmedian(epe):.3f} px (no-motion guess {np.median(zero):.3f} px)")
    assert np.nanmedian(epe) <= 0.2
    assert np.nanmedian(epe) <= 0.5 * np.median(zero)
    # velocities in m/yr agree with the truth where the ice is fast
    fast = glacier & (np.broadcast_to(truth.speed.values, glacier.shape) > 300)
    assert abs(np.nanmedian(vel.speed.values[fast]) / np.median(truth.speed.values[fast[0]]) - 1) < 0.3


@needs_athabasca
@pytest.mark.parametrize("shift", [(0.4, -0.7), (-1.3, 0.25)])
def test_real_image_translated_by_known_amount(shift):
    img = _tif(ATHABASCA / "athabasca_2020229_B05_L30.tif")
    img = np.where(np.isnan(img), np.nanmean(img), img)
    moved = ndimage.shift(img, shift, order=3, mode="nearest")
    t = pd.to_datetime(["2020-08-16", "2020-09-01"])
    da = xr.DataArray(np.stack([img, moved]), dims=("time", "y", "x"),
                      coords={"time": t, "y": 5784480 - 15 - 30.0 * np.arange(img.shape[0]),
                              "x": 477870 + 15 + 30.0 * np.arange(img.shape[1])})
    # the whole frame moves: nothing tells it from misregistration, so the pair is flagged
    with pytest.warns(FlowNoiseWarning, match=r"^flow: 1 of 1 pairs have no motion clearly above"):
        vel = xglacier.flow(da.rio.write_crs("EPSG:32611"))
    assert not vel.above_noise.item()
    vel = vel.isel(pair=0, y=slice(15, -15), x=slice(15, -15))
    epe = np.hypot(vel.dy.values - shift[0], vel.dx.values - shift[1])
    assert np.median(epe) < 0.1
    years = 16 / 365.25
    assert float(vel.u.median()) == pytest.approx(shift[1] * 30 / years, abs=0.1 * 30 / years)
    assert float(vel.v.median()) == pytest.approx(-shift[0] * 30 / years, abs=0.1 * 30 / years)


def test_lazy_chunk_invariant_and_lead_time(small_loaded, no_compute):
    cube, _ = small_loaded
    nd = xglacier.ndsi(cube).isel(time=slice(0, 5))
    with pytest.warns(FlowNoiseWarning):  # NDSI carries little texture: noise everywhere
        eager = xglacier.flow(nd)
    with no_compute():
        lazy = xglacier.flow(nd.chunk({"time": 2, "y": 20, "x": 33}))
        assert isinstance(lazy.u.data, dsa.Array) and isinstance(lazy.above_noise.data, dsa.Array)
    with pytest.warns(FlowNoiseWarning):  # issued when the flags are computed
        got = lazy.compute()
    for name in ("u", "v", "dx", "dy", "speed", "direction", "speed_noise", "speed_signal", "above_noise"):
        np.testing.assert_array_equal(got[name].values, eager[name].values)
    fc = nd.isel(time=slice(0, 3)).rename(time="lead_time").assign_coords(
        lead_time=pd.to_timedelta([91, 182, 273], unit="D"))
    out = xglacier.flow(fc)
    assert out.dt_days.values.tolist() == [91.0, 91.0]


def _textured_pair(shift=(1, 1), n=64):
    """Two frames a year apart, the second the first moved ``shift`` (rows down, columns
    right), as a DataArray without coordinates on y and x."""
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((n, n)), 2)
    img = (img - img.min()) / (img.max() - img.min())
    return xr.DataArray(np.stack([img, np.roll(img, shift, axis=(0, 1))]).astype(np.float32),
                        dims=("time", "y", "x"),
                        coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"])})


def test_geographic_crs_gives_metres_per_year_row_by_row():
    # 0.0005-degree grid near 60 N: one column is ~27.9 m, one row ~55.7 m, and a column
    # shortens by ~0.1 % from the southern to the northern edge of the frame
    da = _textured_pair()
    lon = 77.5 + 0.0005 * np.arange(64)
    lat = 60.0 - 0.0005 * np.arange(64)
    with pytest.warns(FlowNoiseWarning):  # the whole frame moves
        vel = xglacier.flow(da.assign_coords(x=lon, y=lat).rio.write_crs("EPSG:4326")).isel(pair=0)
    assert vel.u.attrs["units"] == "m yr-1" and vel.rio.crs == "EPSG:4326"
    years = 366 / 365.25  # 2020 is a leap year
    geod = pyproj.Geod(ellps="WGS84")  # independent truth: geodesic lengths of one grid step
    ew = np.array([geod.inv(lon[0], p, lon[1], p)[2] for p in lat])
    ns = np.array([geod.inv(lon[0], p - 0.00025, lon[0], p + 0.00025)[2] for p in lat])
    dx, dy = vel.dx.values.astype(np.float64), vel.dy.values.astype(np.float64)
    moved = (np.abs(dx) > 0.5) & (np.abs(dy) > 0.5)
    rows = np.nonzero(moved)[0]
    np.testing.assert_allclose((vel.u.values / dx)[moved], ew[rows] / years, rtol=1e-5)
    np.testing.assert_allclose((vel.v.values / -dy)[moved], ns[rows] / years, rtol=1e-5)
    assert ew[0] / ew[-1] < 1 - 5e-4  # the rows really differ, and each got its own length
    inner = (slice(16, 48), slice(16, 48))
    assert float(np.median(vel.u.values[inner])) == pytest.approx(ew.mean() / years, rel=0.05)
    assert float(np.median(vel.v.values[inner])) == pytest.approx(-ns.mean() / years, rel=0.05)
    assert float(np.median(vel.direction.values[inner])) == pytest.approx(
        np.degrees(np.arctan2(ew.mean(), -ns.mean())), abs=3)


def test_no_crs_gives_pixel_units():
    da = _textured_pair().assign_coords(y=30.0 * np.arange(64)[::-1], x=30.0 * np.arange(64))
    with pytest.warns(PixelUnitsWarning, match=r"^flow: .*pixel/yr"), pytest.warns(FlowNoiseWarning):
        vel = xglacier.flow(da)
    assert vel.u.attrs["units"] == "pixel yr-1" and vel.rio.crs is None
    assert "grid_mapping" not in vel.u.encoding
    np.testing.assert_allclose(vel.u.values, vel.dx.values * 365.25 / 366, rtol=1e-6)


def test_irregular_grid_with_crs_is_refused():
    x = 30.0 * np.arange(64)
    x[40:] += 5.0
    da = _textured_pair().assign_coords(y=30.0 * np.arange(64)[::-1], x=x).rio.write_crs("EPSG:32643")
    with pytest.raises(InputError, match=r"^flow: variable None: coordinate 'x' is not regularly spaced"):
        xglacier.flow(da)


@pytest.mark.parametrize("kwargs", [
    {"levels": True}, {"winsize": True}, {"iterations": False}, {"poly_n": True}, {"flags": True},
    {"levels": 2.0}, {"levels": 0}, {"pyr_scale": True}, {"pyr_scale": 1.0}, {"poly_sigma": 0},
    {"normalize": 1}, {"method": "lucas-kanade"},
], ids=lambda kw: ",".join(f"{k}={v!r}" for k, v in kw.items()))
def test_flow_refuses_bools_and_bad_options(small_loaded, kwargs):
    # regression: flow(levels=True) ran as levels=1
    nd = xglacier.ndsi(small_loaded[0]).isel(time=slice(0, 2))
    (name, value), = kwargs.items()
    with pytest.raises(ParameterError, match=rf"^flow: {name}={value!r}"):
        xglacier.flow(nd, **kwargs)


def test_flow_value_range(small_loaded):
    nd = xglacier.ndsi(small_loaded[0]).isel(time=slice(0, 2))
    for bad in ((1.0,), (1.0, -1.0), "ab", (0.0, float("nan"))):
        with pytest.raises(ParameterError, match=r"^flow: value_range="):
            xglacier.flow(nd, normalize=False, value_range=bad)
    default = xglacier.flow(nd, normalize=False)  # unitless NDSI: (-1, 1)
    given = xglacier.flow(nd, normalize=False, value_range=(-1, 1))
    xr.testing.assert_identical(default, given)


def test_flow_bad_input(small_loaded):
    cube, _ = small_loaded
    nd = xglacier.ndsi(cube)
    with pytest.raises(InputError, match="two"):
        xglacier.flow(nd.isel(time=[0]))
    with pytest.raises(DimensionError, match="expected"):
        xglacier.flow(nd.isel(time=0))
    with pytest.raises(InputError, match="DataArray"):
        xglacier.flow(cube)
    with pytest.raises(ParameterError, match="value_range"):
        xglacier.flow(cube.green.rename("g").assign_attrs(units="reflectance"), normalize=False)
    with pytest.raises(ParameterError, match="method"):
        xglacier.flow(nd, method="lucas-kanade")
    with pytest.raises(TypeError):
        xglacier.flow(nd, "farneback")  # options are keyword-only


def test_plot_flow(small_loaded, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cube, _ = small_loaded
    vel = xglacier.flow(xglacier.ndsi(cube).isel(time=slice(0, 2)))
    ax = xglacier.plot_flow(vel, image=cube.red.isel(time=1), step=8)
    assert len(ax.collections) == 1 and ax.collections[0].N == (64 // 8) ** 2
    ax.figure.savefig(tmp_path / "flow.png")
    assert (tmp_path / "flow.png").stat().st_size > 1000
    with pytest.raises(ParameterError, match=r"^plot_flow: pair=1"):
        xglacier.plot_flow(vel, pair=1)
    with pytest.raises(ParameterError, match=r"^plot_flow: step=True"):
        xglacier.plot_flow(vel, step=True)
    with pytest.raises(InputError, match=r"^plot_flow: .*returned by flow"):
        xglacier.plot_flow(vel.u)


@pytest.mark.parametrize("ascending", [False, True])
def test_plot_flow_colours_arrows_by_speed(ascending):
    import matplotlib

    matplotlib.use("Agg")
    img = ndimage.gaussian_filter(np.random.default_rng(3).random((48, 48)), 2)
    moved = img.copy()
    moved[:, 24:] = np.roll(img, 2, axis=1)[:, 24:]  # the eastern half moves 60 m east in a year
    a = xr.DataArray(np.stack([img, moved]), dims=("time", "y", "x"),
                     coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                             "y": 30.0 * np.arange(48)[::-1], "x": 30.0 * np.arange(48)})
    if ascending:
        a = a.sortby("y")
    stable = (a.x < 600).broadcast_like(a.isel(time=0, drop=True))
    vel = xglacier.flow(a.rio.write_crs("EPSG:32643"), stable=stable)
    ax = xglacier.plot_flow(vel, hue="speed", step=4)
    q = ax.collections[0]
    cols, rows = np.asarray(q.get_offsets()).T.astype(int)
    colours = np.asarray(q.get_array())
    # each arrow's colour is the speed at its own pixel, whatever the row order
    np.testing.assert_allclose(colours, vel.speed.isel(pair=0).values[rows, cols])
    # and the moving (eastern) half is drawn fast, the still half slow
    east = a.x.values[cols] >= 30.0 * 28
    west = a.x.values[cols] < 30.0 * 20
    assert np.median(colours[east]) > 40 and np.median(colours[west]) < 20
    assert ax.figure.axes[-1].get_ylabel() == "surface speed (m yr-1)"
    with pytest.raises(ParameterError, match=r"^plot_flow: hue='colour'; expected one of None, 'u'"):
        xglacier.plot_flow(vel, hue="colour")
    matplotlib.pyplot.close("all")


def _phase_shift(a: np.ndarray, b: np.ndarray, up: int = 20) -> tuple[float, float]:
    """Independent sub-pixel phase correlation: (dy, dx) of b's content relative to a,
    from the peak of the zero-padded (upsampled) normalised cross-power spectrum."""
    a = np.where(np.isfinite(a), a, np.nanmean(a)) - np.nanmean(a)
    b = np.where(np.isfinite(b), b, np.nanmean(b)) - np.nanmean(b)
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa, fb = np.fft.fft2(a * win), np.fft.fft2(b * win)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-12
    ny, nx = a.shape
    big = np.zeros((ny * up, nx * up), complex)
    sh = np.fft.fftshift(cross)
    y0, x0 = (ny * up - ny) // 2, (nx * up - nx) // 2
    big[y0:y0 + ny, x0:x0 + nx] = sh
    corr = np.abs(np.fft.ifft2(np.fft.ifftshift(big)))
    iy, ix = np.unravel_index(np.argmax(corr), corr.shape)
    dy = (iy if iy < ny * up / 2 else iy - ny * up) / up
    dx = (ix if ix < nx * up / 2 else ix - nx * up) / up
    return dy, dx


@needs_athabasca
def test_athabasca_alignment_agrees_with_phase_correlation():
    names = {"green": "B03", "red": "B04", "swir16": "B11"}
    ref = {b: _tif(ATHABASCA / f"athabasca_2020253_{c}_S30.tif") for b, c in names.items()}
    off = {b: _tif(ATHABASCA / "shifted_20200911" / f"athabasca_{c}_20200911.tif")[:205, :215]
           for b, c in names.items()}
    cube = xr.Dataset(
        {b: (("time", "y", "x"), np.stack([ref[b], off[b]])) for b in names},
        coords={"time": pd.to_datetime(["2020-09-09", "2020-09-11"])},
    )
    est = xglacier.estimate_ecc(cube, bands=list(names), reference=0, refine=0).compute()
    assert est.ecc_converged.all()
    got = (float(est.ecc_shift_y[1]), float(est.ecc_shift_x[1]))
    phase = np.mean([_phase_shift(ref[b], off[b]) for b in names], axis=0)
    print(f"Athabasca 09-11 vs 09-09: ECC (dy, dx) = ({got[0]:.3f}, {got[1]:.3f}), "
          f"phase correlation ({phase[0]:.3f}, {phase[1]:.3f})")
    assert abs(got[0] - phase[0]) <= 0.15 and abs(got[1] - phase[1]) <= 0.15
    assert 0.9 <= abs(got[1]) <= 1.1  # the README's figure: about one pixel in x
    aligned = xglacier.apply_warps(cube, est)
    for b in names:
        a0, a1, b1 = ref[b], off[b], aligned[b].values[1]
        ok = np.isfinite(a0) & np.isfinite(a1) & np.isfinite(b1)
        before = np.corrcoef(a0[ok], a1[ok])[0, 1]
        after = np.corrcoef(a0[ok], b1[ok])[0, 1]
        assert after > before + 0.01, (b, before, after)
