"""Patch engine: plans, gathering, leak-free splits, reassembly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xglacier
from xglacier.errors import DimensionError, InputError, NaNInPatchError, ParameterError
from xglacier.forecasting.patches import make_plan, positions


def cube(nt=12, ny=40, nx=36, seed=0, chunks=None):
    rng = np.random.default_rng(seed)
    da = xr.DataArray(rng.random((nt, ny, nx)).astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS"),
                              "y": 1000.0 - 30 * np.arange(ny), "x": 30.0 * np.arange(nx)},
                      name="ndsi")
    return da.chunk(chunks) if chunks else da


def test_plan_count_paper_setting():
    plan = make_plan((36, 800, 800), size=50, stride=10, n_in=4, n_out=4)
    assert positions(800, 50, 10).size == 76
    assert len(plan) == 29 * 76 * 76
    assert plan.samples[:, 1].max() == plan.samples[:, 2].max() == 750


def test_edge_patches_cover_every_pixel():
    assert positions(37, 10, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 27]
    assert positions(37, 10, 4, edge=False)[-1] == 24
    plan = make_plan((8, 37, 29), 10, 4, 2, 2)
    assert plan.footprint("all")[0].all()


def test_gathered_samples_equal_direct_slicing(no_compute):
    da = cube(chunks={"time": 3, "y": 13, "x": 20})
    with no_compute():
        ps = xglacier.patches(da, size=8, stride=5, n_in=3, n_out=2)
        assert len(ps) == (12 - 5 + 1) * positions(40, 8, 5).size * positions(36, 8, 5).size
    values = da.values
    rng = np.random.default_rng(1)
    idx = rng.choice(len(ps), 50, replace=False)
    x, y = ps.gather(idx)
    for k, i in enumerate(idx):
        t0, y0, x0 = ps.plan.samples[i]
        np.testing.assert_array_equal(x[k], values[t0:t0 + 3, y0:y0 + 8, x0:x0 + 8])
        np.testing.assert_array_equal(y[k], values[t0 + 3:t0 + 5, y0:y0 + 8, x0:x0 + 8])
    xi, yi = ps[int(idx[0])]
    np.testing.assert_array_equal(xi, x[0])
    np.testing.assert_array_equal(yi, y[0])


def test_subset_by_mask_or_positions():
    """``subset`` keeps the chosen samples, in order, with the values they had; y ascending too."""
    da = cube().isel(y=slice(None, None, -1))
    ps = xglacier.patches(da, size=8, stride=8, n_in=3, n_out=2)
    last = ps.plan.samples[:, 0] == ps.plan.samples[:, 0].max()
    one_year = ps.subset(last)
    assert len(one_year) == int(last.sum()) and (one_year.plan.samples[:, 0] == 12 - 5).all()
    north_up = da.values[:, ::-1]
    x, y = one_year.gather(np.arange(len(one_year)))
    for k, (t0, y0, x0) in enumerate(one_year.plan.samples):
        np.testing.assert_array_equal(x[k], north_up[t0:t0 + 3, y0:y0 + 8, x0:x0 + 8])
        np.testing.assert_array_equal(y[k], north_up[t0 + 3:t0 + 5, y0:y0 + 8, x0:x0 + 8])
    picked = ps.subset([5, 2])
    np.testing.assert_array_equal(picked.plan.samples, ps.plan.samples[[5, 2]])
    np.testing.assert_array_equal(picked.gather([0, 1])[0], ps.gather([5, 2])[0])


def test_to_torch_batches_cover_all_samples_once():
    import torch

    ps = xglacier.patches(cube(nt=8, ny=20, nx=20), size=10, stride=5, n_in=2, n_out=2)
    seen = []
    for xb, yb in ps.to_torch(batch_size=7, shuffle=True, seed=3):
        assert xb.dtype == torch.float32 and xb.shape[1:] == (2, 10, 10) and yb.shape[1:] == (2, 10, 10)
        seen.append(xb[:, 0, 0, 0].numpy())
    firsts = np.concatenate(seen)
    assert firsts.size == len(ps) == 5 * 9
    expected = ps.gather(np.arange(len(ps)))[0][:, 0, 0, 0]
    np.testing.assert_array_equal(np.sort(firsts), np.sort(expected))
    assert len(ps.to_torch(batch_size=7)) == 7 and len(ps.to_torch(batch_size=7, drop_last=True)) == 6


@pytest.mark.parametrize("val", [0.0, 0.15])
def test_time_split_leaks_nothing(val):
    ps = xglacier.patches(cube(nt=20), size=8, stride=4, n_in=3, n_out=3)
    train, valid, test = ps.split(by="time", test=0.25, val=val)
    assert len(train) and len(test) and (len(valid) > 0) == (val > 0)
    test_targets = test.plan.footprint("targets")
    assert not (train.plan.footprint("all") & test_targets).any()
    if val:
        assert not (valid.plan.footprint("all") & test_targets).any()
        assert not (train.plan.footprint("all") & valid.plan.footprint("targets")).any()


def test_space_split_leaks_nothing_and_keeps_a_gap():
    ps = xglacier.patches(cube(nt=5, ny=128, nx=128), size=8, stride=4, n_in=2, n_out=2)
    train, valid, test = ps.split(by="space", test=0.25, val=0.15, seed=2)
    assert len(train) and len(valid) and len(test)
    tr = train.plan.footprint("all").any(axis=0)
    va = valid.plan.footprint("all").any(axis=0)
    te = test.plan.footprint("all").any(axis=0)
    assert not (tr & te).any() and not (tr & va).any() and not (va & te).any()
    # separated by at least `size` pixels: widen the test footprint and check again
    from scipy import ndimage

    near = ndimage.binary_dilation(te, iterations=8 - 1, structure=np.ones((3, 3)))
    assert not (near & tr).any() and not (near & va).any()


@pytest.mark.parametrize("size, stride", [(10, 10), (10, 3), (8, 8), (12, 5), (7, 1)])
@pytest.mark.parametrize("weight", ["uniform", "hann"])
def test_reassembly_round_trip_is_exact(size, stride, weight):
    da = cube(nt=3, ny=37, nx=29).isel(time=slice(0, 2))
    scene = da.values
    plan = make_plan((2, 37, 29), size, stride, 1, 1, times=[0])
    preds = np.stack([scene[:, y:y + size, x:x + size] for _, y, x in plan.samples])
    out = xglacier.assemble(preds, plan, like=da.isel(time=0), weight=weight)
    assert out.dims == ("lead_time", "y", "x")
    np.testing.assert_array_equal(out.values, scene)
    np.testing.assert_array_equal(out.x.values, da.x.values)


def test_assemble_averages_overlaps_and_keeps_crs():
    like = cube(nt=1, ny=6, nx=6).isel(time=0).rio.write_crs("EPSG:32643")
    preds = np.stack([np.full((1, 4, 4), 1.0), np.full((1, 4, 4), 3.0)])
    out = xglacier.assemble(preds, np.array([[0, 0], [2, 2]]), like=like)
    assert out.values[0, 1, 1] == 1 and out.values[0, 3, 3] == 2 and out.values[0, 5, 5] == 3
    assert np.isnan(out.values[0, 0, 5])  # no patch reaches
    assert out.rio.crs.to_epsg() == 32643


def test_nan_policy():
    da = cube(nt=6, ny=12, nx=12)
    da[2, 5, 5] = np.nan
    ps = xglacier.patches(da, size=6, stride=6, n_in=2, n_out=1)
    with pytest.raises(NaNInPatchError, match="fill the gaps first"):
        ps.gather(np.arange(len(ps)))
    filled = xglacier.patches(da, size=6, stride=6, n_in=2, n_out=1, nan="fill", fill_value=-1)
    x, y = filled.gather(np.arange(len(filled)))
    assert not np.isnan(x).any() and (x == -1).sum() + (y == -1).sum() == 3


def test_bad_input():
    da = cube(nt=6, ny=12, nx=12)
    with pytest.raises(InputError, match="needs n_in \\+ n_out = 8"):
        xglacier.patches(da, size=4, n_in=4, n_out=4)
    with pytest.raises(InputError, match="larger than the scene"):
        xglacier.patches(da, size=20, n_in=2, n_out=2)
    with pytest.raises(DimensionError, match="expected"):
        xglacier.patches(da.transpose("y", "x", "time"), size=4, n_in=2, n_out=2)
    with pytest.raises(ParameterError, match="stride"):
        xglacier.patches(da, size=4, stride=0, n_in=2, n_out=2)
    with pytest.raises(ParameterError, match="by="):
        xglacier.patches(da, size=4, stride=2, n_in=2, n_out=2).split(by="random")
    with pytest.raises(IndexError):
        xglacier.patches(da, size=4, stride=2, n_in=2, n_out=2)[10_000]


def test_options_are_keyword_only_and_checked_alike():
    da = cube(nt=6, ny=12, nx=12)
    ps = xglacier.patches(da, size=np.int64(4), stride=np.int32(2), n_in=2, n_out=np.int64(1))
    assert (ps.size, ps.plan.stride, ps.n_out) == (4, 2, 1) and type(ps.size) is int
    with pytest.raises(TypeError):
        xglacier.patches(da, 4)
    with pytest.raises(TypeError):
        ps.split("time")
    with pytest.raises(TypeError):
        xglacier.assemble(np.zeros((1, 1, 4, 4)), np.zeros((1, 2), int), da.isel(time=0))
    for kw, match in (({"size": True}, "patches: size=True"), ({"edge": 1}, "patches: edge=1"),
                      ({"nan": "drop"}, "patches: nan='drop'"),
                      ({"fill_value": np.inf}, "patches: fill_value")):
        with pytest.raises(ParameterError, match=match):
            xglacier.patches(da, **{"size": 4, "n_in": 2, "n_out": 1, **kw})
    for kw, match in (({"test": 1.0}, r"PatchSet.split: test=1\.0"), ({"val": -0.1}, "PatchSet.split: val="),
                      ({"test": 0.5, "val": 0.5}, r"test \+ val < 1"),
                      ({"block": 0}, "PatchSet.split: block="),
                      ({"seed": True}, "PatchSet.split: seed=True")):
        with pytest.raises(ParameterError, match=match):
            ps.split(**kw)
    with pytest.raises(ParameterError, match="assemble: weight='gauss'"):
        xglacier.assemble(np.zeros((1, 1, 4, 4)), np.zeros((1, 2), int), like=da.isel(time=0), weight="gauss")


@pytest.mark.parametrize(("nt", "needed"), [(8, 12), (13, 17)])
def test_time_split_says_how_many_frames_it_needs(nt, needed):
    """Issue 11: an empty time split names the series length that would work (checked by splitting it)."""
    with pytest.raises(InputError, match=rf"has {nt} frames; .* at {needed} frames"):
        xglacier.patches(cube(nt=nt, ny=20, nx=20), size=10, stride=10, n_in=4, n_out=4).split(by="time")
    train, _, test = xglacier.patches(cube(nt=needed, ny=20, nx=20), size=10, stride=10, n_in=4,
                                      n_out=4).split(by="time")
    assert len(train) and len(test)
    for shorter in range(nt + 1, needed):
        ps = xglacier.patches(cube(nt=shorter, ny=20, nx=20), size=10, stride=10, n_in=4, n_out=4)
        with pytest.raises(InputError):
            ps.split(by="time")
