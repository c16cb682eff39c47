"""Laziness, chunk invariance of element-wise steps, and the thin accessor."""

from __future__ import annotations

import inspect

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.accessor import DataArrayGlacier, DatasetGlacier

from .conftest import ComputeForbidden, assert_same


def test_pipeline_builds_without_computing(small, no_compute):
    cube, _ = small
    kept = xglacier.filter_scenes(cube)  # the one documented computation, outside the guard
    with no_compute():
        nd = (kept.glacier.mask_clouds()
                  .glacier.fill_gaps()
                  .glacier.ndsi())
        comp = nd.glacier.composite(freq="3MS")
        snow = comp.glacier.snow_mask(threshold=[0.3, 0.4])
        others = [kept.glacier.ndwi(), kept.glacier.ndvi(), kept.glacier.missing_fraction(),
                  xglacier.decode_qa(kept, "cloud")]
        for arr in (nd, comp, snow, *others):
            assert isinstance(arr.data, dsa.Array)
        with pytest.raises(ComputeForbidden):
            snow.values  # noqa: B018 - the guard really is active


def test_filter_scenes_only_computes_small_vector(small):
    cube, _ = small
    kept = xglacier.filter_scenes(cube, max_cloud=20, max_missing=0.5)
    assert isinstance(kept.green.data, dsa.Array)
    frac = xglacier.missing_fraction(cube).compute()
    expect = (cube.cloud_cover.values <= 20) & (frac.values <= 0.5)
    assert kept.sizes["time"] == expect.sum() and kept.attrs["scenes_dropped"] == (~expect).sum()
    np.testing.assert_array_equal(kept.time.values, cube.time.values[expect])


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 4, "y": 10, "x": 64},
                                    {"time": 9, "y": 33, "x": 7}])
def test_elementwise_steps_chunk_invariant(small_loaded, chunks):
    cube, _ = small_loaded
    lazy_cube = cube.chunk(chunks)
    for op in (xglacier.mask_clouds, xglacier.ndsi, xglacier.ndvi,
               lambda d: xglacier.ndwi(d, kind="mcfeeters"),
               lambda d: xglacier.snow_mask(xglacier.ndsi(d), threshold=[0.2, 0.3]),
               lambda d: xglacier.decode_qa(d, "snow_ice_confidence"),
               xglacier.missing_fraction):
        assert_same(op(lazy_cube), op(cube))


def test_accessor_forwards_with_same_docstring(small_loaded):
    cube, _ = small_loaded
    names = ["ndsi", "ndwi", "ndvi", "decode_qa", "mask_clouds", "snow_mask",
             "missing_fraction", "filter_scenes", "fill_gaps", "composite"]
    for name in names:
        func = getattr(xglacier, name)
        method = getattr(DatasetGlacier, name, None) or getattr(DataArrayGlacier, name)
        assert method.__doc__ == func.__doc__ and method.__doc__
        # the accessor's object takes the place of the data argument
        assert list(inspect.signature(method).parameters)[1:] == list(inspect.signature(func).parameters)[1:]
    xr.testing.assert_identical(cube.glacier.fill_gaps(max_iter=2, empty="keep"),
                                xglacier.fill_gaps(cube, max_iter=2, empty="keep"))
    nd = cube.glacier.ndsi()
    xr.testing.assert_identical(nd.glacier.snow_mask(threshold=0.4), xglacier.snow_mask(nd, threshold=0.4))
    assert isinstance(xr.DataArray([1]).glacier, DataArrayGlacier)


def test_provenance_recorded(small_loaded):
    cube, _ = small_loaded
    out = cube.glacier.mask_clouds().glacier.fill_gaps(max_iter=4, empty="keep").glacier.ndsi()
    history = out.attrs["history"].splitlines()
    assert [h.split()[2] for h in history] == ["mask_clouds", "fill_gaps", "ndsi"]
    assert '"max_iter": 4' in history[1]
    assert "units" in out.attrs and "scale_factor" not in out.attrs


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 5, "y": 16, "x": 40}])
def test_filter_scenes_chunk_invariant(small, small_loaded, chunks):
    cube, _ = small
    eager = xglacier.filter_scenes(small_loaded[0], max_cloud=30, max_missing=0.3)
    lazy = xglacier.filter_scenes(cube.chunk(chunks), max_cloud=30, max_missing=0.3)
    np.testing.assert_array_equal(lazy.time.values, eager.time.values)
    assert 0 < lazy.sizes["time"] < cube.sizes["time"]
