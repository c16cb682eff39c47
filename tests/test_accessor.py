"""The two ``.glacier`` accessors offer exactly the methods that work on their object."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.accessor import DataArrayGlacier, DatasetGlacier, GlacierAccessor
from xglacier.errors import XGlacierError
from xglacier.models import Persistence

DATASET_ONLY = {"ndsi", "ndwi", "ndvi", "mask_clouds", "missing_fraction", "filter_scenes", "features",
                "plot_flow"}
DATAARRAY_ONLY = {"snow_mask", "flow", "patches", "forecast", "polygonize", "ndsi_rule"}
SHARED = {"decode_qa", "fill_gaps", "composite", "align_ecc", "estimate_ecc", "apply_warps", "segment",
          "to_netcdf", "to_zarr"}

# what a call needs beyond the data argument
EXTRA = {
    "forecast": lambda: {"model": Persistence(patch_size=8)},
    "decode_qa": lambda: {"flag": "cloud"},
}


def _methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    ds, _ = xglacier.synthetic_cube(shape=(32, 32), start="2020-01-01", end="2020-07-01", seed=3)
    return ds.compute()


def test_each_accessor_offers_exactly_its_methods():
    assert _methods(DatasetGlacier) == DATASET_ONLY | SHARED
    assert _methods(DataArrayGlacier) == DATAARRAY_ONLY | SHARED
    assert not _methods(DatasetGlacier) & DATAARRAY_ONLY
    assert not _methods(DataArrayGlacier) & DATASET_ONLY
    assert issubclass(DatasetGlacier, GlacierAccessor) and issubclass(DataArrayGlacier, GlacierAccessor)


def test_registered_on_the_right_types(cube):
    assert type(cube.glacier) is DatasetGlacier
    assert type(cube.green.glacier) is DataArrayGlacier
    assert not hasattr(cube.green.glacier, "ndsi")
    assert not hasattr(cube.glacier, "flow")


@pytest.mark.parametrize("name", sorted(DATASET_ONLY))
def test_dataset_only_functions_refuse_a_dataarray(cube, name):
    """The classification is right: these functions really fail, clearly, on a DataArray."""
    extra = EXTRA.get(name, dict)()
    with pytest.raises(XGlacierError, match=name):
        getattr(xglacier, name)(cube.green, **extra)


@pytest.mark.parametrize("name", sorted(DATAARRAY_ONLY))
def test_dataarray_only_functions_refuse_a_dataset(cube, name):
    extra = EXTRA.get(name, dict)()
    with pytest.raises(XGlacierError, match=name):
        getattr(xglacier, name)(cube, **extra)


@pytest.mark.parametrize("name", sorted(DATASET_ONLY | DATAARRAY_ONLY | SHARED))
def test_methods_forward_docstring_and_options(name):
    func = getattr(xglacier, name)
    for cls in (DatasetGlacier, DataArrayGlacier):
        method = getattr(cls, name, None)
        if method is None:
            continue
        assert method.__doc__ == func.__doc__ and method.__doc__
        func_params = list(inspect.signature(func).parameters.values())
        method_params = list(inspect.signature(method).parameters.values())
        # the accessor's object takes the place of the data argument
        assert [p.name for p in method_params] == ["self"] + [p.name for p in func_params[1:]]
        assert [p.default for p in method_params[1:]] == [p.default for p in func_params[1:]]


def test_shared_methods_work_on_both(cube):
    nd = cube.glacier.ndsi()
    for obj in (cube[["green", "swir16"]], nd):
        filled = obj.glacier.fill_gaps(max_iter=2, empty="keep")
        xr.testing.assert_identical(filled, xglacier.fill_gaps(obj, max_iter=2, empty="keep"))
        comp = obj.glacier.composite(freq="3MS")
        xr.testing.assert_identical(comp, xglacier.composite(obj, freq="3MS"))
    qa = cube.glacier.decode_qa("cloud")
    xr.testing.assert_identical(qa, cube.qa_pixel.glacier.decode_qa("cloud"))


def test_dataarray_methods_forward(cube):
    nd = cube.glacier.ndsi()
    xr.testing.assert_identical(nd.glacier.snow_mask(threshold=0.4), xglacier.snow_mask(nd, threshold=0.4))
    frames = nd.glacier.composite(freq="MS").fillna(0.0)  # forecast needs one regular time step
    fc = frames.glacier.forecast(Persistence(patch_size=8, n_in=2, n_out=1), steps=2)
    np.testing.assert_array_equal(fc.isel(lead_time=1).values, frames.isel(time=-1).values)
