"""fill_gaps: the paper's 5x5 weighted average in passes, against references and truth."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import xglacier

W = np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1]).astype(float)


def reference_fill(img: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Independent plain-Python statement of the algorithm (slow, tiny inputs only)."""
    out = img.astype(float).copy()
    ny, nx = out.shape
    passes = 0
    while np.isnan(out).any() and (max_iter is None or passes < max_iter):
        new = out.copy()
        for i, j in zip(*np.nonzero(np.isnan(out)), strict=True):
            num = den = 0.0
            for di in range(-2, 3):
                for dj in range(-2, 3):
                    ii, jj = i + di, j + dj
                    if 0 <= ii < ny and 0 <= jj < nx and not np.isnan(out[ii, jj]):
                        num += W[di + 2, dj + 2] * out[ii, jj]
                        den += W[di + 2, dj + 2]
            if den:
                new[i, j] = num / den
        if np.array_equal(new, out, equal_nan=True):
            break
        out = new
        passes += 1
    return out


def test_single_gap_by_hand():
    img = np.arange(25, dtype=np.float32).reshape(5, 5)
    img[2, 2] = np.nan
    out = xglacier.fill_gaps(xr.DataArray(img, dims=("y", "x")))
    w = W.copy()
    w[2, 2] = 0
    expected = (w * np.nan_to_num(img)).sum() / w.sum()
    assert out.values[2, 2] == pytest.approx(expected, rel=1e-6)
    mask = np.ones_like(img, bool)
    mask[2, 2] = False
    np.testing.assert_array_equal(out.values[mask], img[mask])  # valid pixels never change


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_reference(seed):
    rng = np.random.default_rng(seed)
    img = rng.random((24, 20)).astype(np.float32)
    img[rng.random(img.shape) < 0.35] = np.nan
    img[5:14, 3:12] = np.nan  # a block that needs several passes
    out = xglacier.fill_gaps(xr.DataArray(img, dims=("y", "x")), max_iter=None)
    np.testing.assert_allclose(out.values, reference_fill(img), rtol=1e-6)
    assert not np.isnan(out.values).any()


def test_max_iter_limits_reach_and_reports_left():
    img = np.ones((40, 40), np.float32)
    img[:, 10:30] = np.nan  # 20 columns wide: 5 passes of radius 2 reach every column
    da = xr.DataArray(img[None], dims=("time", "y", "x"),
                      coords={"time": np.array(["2020-01-01"], "datetime64[ns]")})
    two = xglacier.fill_gaps(da, max_iter=2)
    assert np.isnan(two.values[0, :, 14:26]).all() and not np.isnan(two.values[0, :, :14]).any()
    assert int(two.unfilled[0]) == 40 * 12 and two.attrs["gaps_unfilled"] == 480
    five = xglacier.fill_gaps(da, max_iter=5)
    assert int(five.unfilled[0]) == 0
    np.testing.assert_allclose(five.values, 1.0)


def test_all_nan_scene_kept_when_asked():
    da = xr.DataArray(np.full((2, 8, 8), np.nan, np.float32), dims=("time", "y", "x"),
                      coords={"time": np.array(["2020-01-01", "2020-01-09"], "datetime64[ns]")})
    da[1, 3, 3] = 0.5
    out = xglacier.fill_gaps(da, empty="keep", max_iter=None)
    assert np.isnan(out.values[0]).all() and np.allclose(out.values[1], 0.5)
    assert out.unfilled.values.tolist() == [64, 0]
    lazy = xglacier.fill_gaps(da.chunk({"y": 4, "x": 4}), empty="keep", max_iter=3)
    np.testing.assert_array_equal(lazy.values, xglacier.fill_gaps(da, empty="keep", max_iter=3).values)


@pytest.mark.parametrize("chunks", [{"time": 1, "y": 64, "x": 64}, {"time": 3, "y": 16, "x": 24},
                                    {"time": 5, "y": 37, "x": 11}])
@pytest.mark.parametrize("max_iter", [3, 16, None])
def test_chunk_invariant(small_loaded, chunks, max_iter):
    cube, _ = small_loaded
    masked = xglacier.mask_clouds(cube[["green", "swir16", "qa_pixel"]])
    eager = xglacier.fill_gaps(masked, max_iter=max_iter, empty="keep")
    lazy = xglacier.fill_gaps(masked.chunk(chunks), max_iter=max_iter, empty="keep")
    assert lazy.green.chunks is not None
    for name in ("green", "swir16"):
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)
        np.testing.assert_array_equal(lazy[f"unfilled_{name}"].values,
                                      eager[f"unfilled_{name}"].values)


def test_filled_values_against_truth():
    """Fill nodata stripes/blocks on cloud-free scenes; compare with the hidden true values."""
    cube, truth = xglacier.synthetic_cube(shape=(96, 96), start="2020-01-01", end="2022-01-01",
                                          cloud_scale=0.0, seed=3)
    sel = np.flatnonzero(truth.nodata.any(("y", "x")).values)
    assert sel.size >= 4
    c, t = cube.isel(time=sel).compute(), truth.isel(time=sel).compute()
    filled = xglacier.fill_gaps(c[["green", "swir16"]], max_iter=None)
    hole = t.nodata.values
    # pixels of the first pass (within 2 px of data), where the 5x5 window sees data
    near = hole & ~np.stack([ndimage.binary_erosion(h, iterations=2) for h in hole])
    for band in ("green", "swir16"):
        true_all = t[f"true_{band}"].values
        true = true_all[hole]
        err = filled[band].values[hole] - true
        rmse = float(np.sqrt(np.mean(err**2)))
        rmse_near = float(np.sqrt(np.mean((filled[band].values - true_all)[near] ** 2)))
        # the scale of the surface texture: RMS difference of horizontal neighbours
        texture = float(np.sqrt(np.mean(np.diff(true_all, axis=2) ** 2)))
        # a naive fill with each scene's mean of the valid pixels
        naive = np.broadcast_to(c[band].mean(("y", "x")).values[:, None, None], hole.shape)[hole]
        rmse_naive = float(np.sqrt(np.mean((naive - true) ** 2)))
        print(f"gap-fill RMSE {band}: all {rmse:.4f}, within 2 px {rmse_near:.4f}; "
              f"neighbour difference {texture:.4f}; scene-mean fill {rmse_naive:.4f}")
        assert rmse < 0.6 * rmse_naive
        assert rmse_near < 1.25 * texture
        assert rmse_near < rmse


@pytest.mark.parametrize("max_iter", [15, 30, 100])
def test_halo_larger_than_the_short_side(max_iter):
    rng = np.random.default_rng(4)
    img = rng.random((40, 400)).astype(np.float32)
    img[:, 100:180] = np.nan
    img[rng.random(img.shape) < 0.3] = np.nan
    da = xr.DataArray(img, dims=("y", "x"))
    eager = xglacier.fill_gaps(da, max_iter=max_iter)
    lazy = xglacier.fill_gaps(da.chunk({"y": 20, "x": 100}), max_iter=max_iter)
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_dataarray_of_filled_dataset_computes(small):
    """A band of a filled Dataset carries every band's lazy `unfilled_*` coordinate."""
    cube, _ = small
    filled = xglacier.fill_gaps(xglacier.mask_clouds(cube)[["green", "swir16"]], max_iter=4,
                                empty="raise")
    (green,) = dask.compute(filled.green)
    xr.testing.assert_identical(green, filled.green.compute())
    assert {"unfilled_green", "unfilled_swir16"} <= set(green.coords)
    assert int(green.isnull().sum()) == int(green.unfilled_green.sum())
