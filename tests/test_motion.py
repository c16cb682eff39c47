"""flow: optical flow as surface velocity; alignment and flow on the real Athabasca crops."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import rioxarray
import xarray as xr
from scipy import ndimage

import xglacier
from xglacier.errors import DimensionError, InputError, ParameterError
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
    vel = xglacier.flow(da.rio.write_crs("EPSG:32611")).isel(pair=0, y=slice(15, -15), x=slice(15, -15))
    epe = np.hypot(vel.dy.values - shift[0], vel.dx.values - shift[1])
    assert np.median(epe) < 0.1
    years = 16 / 365.25
    assert float(vel.u.median()) == pytest.approx(shift[1] * 30 / years, abs=0.1 * 30 / years)
    assert float(vel.v.median()) == pytest.approx(-shift[0] * 30 / years, abs=0.1 * 30 / years)


def test_lazy_chunk_invariant_and_lead_time(small_loaded, no_compute):
    cube, _ = small_loaded
    nd = xglacier.ndsi(cube).isel(time=slice(0, 5))
    eager = xglacier.flow(nd)
    with no_compute():
        lazy = xglacier.flow(nd.chunk({"time": 2, "y": 20, "x": 33}))
        assert isinstance(lazy.u.data, dsa.Array)
    got = lazy.compute()
    for name in ("u", "v", "dx", "dy", "speed", "direction"):
        np.testing.assert_array_equal(got[name].values, eager[name].values)
    fc = nd.isel(time=slice(0, 3)).rename(time="lead_time").assign_coords(
        lead_time=pd.to_timedelta([91, 182, 273], unit="D"))
    out = xglacier.flow(fc)
    assert out.dt_days.values.tolist() == [91.0, 91.0]


def test_geographic_crs_gives_pixel_units(small_loaded):
    cube, _ = small_loaded
    nd = xglacier.ndsi(cube).isel(time=slice(0, 2))
    geo = nd.assign_coords(x=np.linspace(77.5, 77.6, nd.sizes["x"]),
                           y=np.linspace(32.2, 32.1, nd.sizes["y"])).rio.write_crs("EPSG:4326")
    with pytest.warns(PixelUnitsWarning, match="pixel/yr"):
        vel = xglacier.flow(geo)
    assert vel.u.attrs["units"] == "pixel yr-1"


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


def test_plot_flow(small_loaded, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cube, _ = small_loaded
    vel = xglacier.flow(xglacier.ndsi(cube).isel(time=slice(0, 2)))
    ax = xglacier.plot_flow(vel, image=cube.red.isel(time=1), step=8)
    assert len(ax.collections) == 1 and ax.collections[0].N == (64 // 8) ** 2
    ax.figure.savefig(tmp_path / "flow.png")
    assert (tmp_path / "flow.png").stat().st_size > 1000


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
