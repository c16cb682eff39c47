"""Bad input gets a clear xglacier error and no partial output.

Every failing call must raise a subclass of :class:`xglacier.errors.XGlacierError` whose
message names the variable, dimension or parameter at fault, and must leave its input
exactly as it was. Each case runs through the module-level function and through the
``.glacier`` accessor.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.errors import (
    DimensionError,
    EmptySceneError,
    InputError,
    MetadataError,
    MissingBandError,
    ParameterError,
    ReflectanceRangeError,
    TimeAxisError,
    XGlacierError,
)
from xglacier.landsat import SR_OFFSET, SR_SCALE

from .conftest import ComputeForbidden

VIA = ["function", "accessor"]


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> xr.Dataset:
    cube, _ = xglacier.synthetic_cube(shape=(32, 32), start="2020-01-01", end="2020-04-01")
    cube = cube.compute()
    assert cube.sizes["time"] >= 4
    return cube


@pytest.fixture
def cube(base: xr.Dataset) -> xr.Dataset:
    return base.copy(deep=True)


def call(name: str, obj: Any, via: str, **kwargs: Any) -> Any:
    """``xglacier.<name>(obj, **kwargs)`` or ``obj.glacier.<name>(**kwargs)``."""
    if via == "accessor":
        return getattr(obj.glacier, name)(**kwargs)
    return getattr(xglacier, name)(obj, **kwargs)


def check_fails(
    exc: type[XGlacierError], match: str, name: str, obj: Any, via: str, **kwargs: Any
) -> XGlacierError:
    """Assert that the call raises ``exc`` matching ``match`` and leaves ``obj`` untouched."""
    before = obj.copy(deep=True)
    with pytest.raises(exc, match=match) as info:
        call(name, obj, via, **kwargs)
    assert isinstance(info.value, XGlacierError)
    xr.testing.assert_identical(obj, before)
    assert obj.attrs == before.attrs
    return info.value


def to_dn(da: xr.DataArray) -> xr.DataArray:
    """Undo the C2 L2 scaling: the raw digital numbers, as float32."""
    return ((da - SR_OFFSET) / SR_SCALE).round().astype(np.float32)


def ndsi_of(ds: xr.Dataset) -> xr.DataArray:
    return xglacier.ndsi(ds)


def test_no_compute_guard_works(cube: xr.Dataset, no_compute) -> None:
    lazy = cube.chunk({"time": 1})
    with no_compute(), pytest.raises(ComputeForbidden):
        lazy["green"].compute()


def test_accessor_forwards_errors(cube: xr.Dataset) -> None:
    with pytest.raises(MissingBandError, match="'swir16'"):
        cube.drop_vars("swir16").glacier.ndsi()


# -- missing bands and band-name overrides ---------------------------------------------

MISSING: list[tuple[str, Callable[[xr.Dataset], Any], dict[str, Any], str]] = [
    ("ndsi", lambda c: c.drop_vars("swir16"), {}, "'swir16'"),
    ("ndsi", lambda c: c.drop_vars("green"), {}, "'green'"),
    ("ndsi", lambda c: c, {"swir": "swir1"}, "'swir1'"),
    ("ndsi", lambda c: c, {"green": "B3"}, "'B3'"),
    ("ndwi", lambda c: c.drop_vars("nir08"), {}, "'nir08'"),
    ("ndwi", lambda c: c.drop_vars("green"), {"kind": "mcfeeters"}, "'green'"),
    ("ndwi", lambda c: c, {"swir": "swir_1"}, "'swir_1'"),
    ("ndvi", lambda c: c.drop_vars("red"), {}, "'red'"),
    ("ndvi", lambda c: c, {"nir": "nir"}, "'nir'"),
    ("mask_clouds", lambda c: c.drop_vars("qa_pixel"), {}, "'qa_pixel'"),
    ("mask_clouds", lambda c: c, {"qa": "QA_PIXEL"}, "'QA_PIXEL'"),
    ("mask_clouds", lambda c: c, {"bands": ["green", "swir1"]}, "'swir1'"),
    ("filter_scenes", lambda c: c, {"bands": ["nope"]}, "'nope'"),
    # fill_gaps raises a plain InputError here: see test_fill_gaps_unknown_variable.
]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("name", "prepare", "kwargs", "match"), MISSING,
    ids=[f"{m[0]}-{m[3]}" for m in MISSING],
)
def test_missing_band(cube, name, prepare, kwargs, match, via):
    err = check_fails(MissingBandError, match, name, prepare(cube), via, **kwargs)
    assert "not a variable of the Dataset" in str(err)


@pytest.mark.parametrize("via", VIA)
def test_fill_gaps_unknown_variable(cube, via):
    # MissingBandError is the documented error for "a variable the operation needs is
    # not in the Dataset"; fill_gaps raised a plain InputError when this was written.
    check_fails(MissingBandError, "'nope'", "fill_gaps", cube, via, bands=["nope"])


@pytest.mark.parametrize("name", ["ndsi", "ndwi", "ndvi", "mask_clouds"])
def test_band_function_on_dataarray(cube, name):
    check_fails(InputError, "needs a Dataset", name, cube["green"], "function")
    assert not hasattr(cube["green"].glacier, name)  # the DataArray accessor does not offer it


def test_snow_mask_on_dataset(cube):
    check_fails(InputError, "NDSI DataArray", "snow_mask", cube, "function")
    assert not hasattr(cube.glacier, "snow_mask")


# -- dimensions ------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", ["composite", "mask_clouds", "fill_gaps"])
def test_transposed_cube(cube, name, via):
    # (y, x, time): a cube that was transposed (or read band-last) by mistake.
    check_fails(DimensionError, r"\('y', 'x', 'time'\)", name, cube.transpose("y", "x", "time"),
                via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", ["composite", "fill_gaps"])
def test_transposed_dataarray(cube, name, via):
    check_fails(DimensionError, "'green'.*expected", name,
                cube["green"].transpose("time", "x", "y"), via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", ["composite", "filter_scenes"])
def test_time_dimension_required(cube, name, via):
    check_fails(DimensionError, "'time'", name, cube.isel(time=0), via)


@pytest.mark.parametrize("via", VIA)
def test_composite_band_dimension_instead_of_time(cube, via):
    band_cube = cube["green"].rename(time="band")
    check_fails(DimensionError, "'time'.*'band'", "composite", band_cube, via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(("name", "band"), [("ndsi", "swir16"), ("mask_clouds", "green")])
def test_variable_with_band_dimension(cube, name, band, via):
    # One variable is (band, y, x) while the others are (time, y, x): broadcasting them
    # would silently give a 4-D result, so the data-model violation must be reported.
    bad = cube.assign({band: cube[band].rename(time="band")})
    check_fails(DimensionError, f"'{band}'", name, bad, via)


# -- time axis -------------------------------------------------------------------------

TIME_FUNCS = ["filter_scenes", "fill_gaps", "composite"]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", TIME_FUNCS)
def test_unsorted_time(cube, name, via):
    order = [1, 0, *range(2, cube.sizes["time"])]
    check_fails(TimeAxisError, "'time' is not sorted.*sortby", name, cube.isel(time=order), via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", TIME_FUNCS)
def test_duplicate_time(cube, name, via):
    stamp = str(cube.indexes["time"][0])
    check_fails(TimeAxisError, f"'time' has duplicate values.*{re.escape(stamp)}", name,
                cube.isel(time=[0, 0, 1]), via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("name", TIME_FUNCS)
def test_time_not_datetime(cube, name, via):
    numbered = cube.assign_coords(time=np.arange(cube.sizes["time"]))
    check_fails(TimeAxisError, "'time'.*datetime64", name, numbered, via)


@pytest.mark.parametrize("via", VIA)
def test_timezone_aware_time(cube, via):
    aware = cube.assign_coords(time=cube.indexes["time"].tz_localize("UTC"))
    check_fails(TimeAxisError, "'time' is timezone-aware", "composite", aware, via)


# -- values that are not reflectance ---------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_integer_dn_rejected(cube, via):
    dn = to_dn(cube["green"]).fillna(0).astype(np.uint16)
    check_fails(ReflectanceRangeError, "'green' has dtype uint16", "ndsi",
                cube.assign(green=dn), via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("name", "band", "kwargs"),
    [("ndsi", "green", {}), ("ndsi", "swir16", {}), ("ndwi", "nir08", {}),
     ("ndwi", "green", {"kind": "mcfeeters"}), ("ndvi", "red", {})],
)
def test_float_dn_rejected_eagerly(cube, name, band, kwargs, via):
    dn = to_dn(cube[band])
    assert float(dn.min()) > 7000 and dn.dtype == np.float32
    check_fails(ReflectanceRangeError, f"'{band}' holds values", name,
                cube.assign({band: dn}), via, **kwargs)


@pytest.mark.parametrize("via", VIA)
def test_percent_reflectance_rejected(cube, via):
    check_fails(ReflectanceRangeError, "'swir16'.*expected scaled surface reflectance", "ndsi",
                cube.assign(swir16=cube["swir16"] * 100), via)


@pytest.mark.parametrize("via", VIA)
def test_float_dn_rejected_at_compute_on_dask(cube, via, no_compute):
    lazy = cube.assign(green=to_dn(cube["green"])).chunk({"time": 1, "y": 16, "x": 16})
    before = lazy.copy(deep=True)
    with no_compute():
        out = call("ndsi", lazy, via)  # building the graph neither raises nor computes
    assert isinstance(out.data, dsa.Array)
    with pytest.raises(ReflectanceRangeError, match="'green' holds values"):
        out.compute()
    xr.testing.assert_identical(lazy, before)


def test_valid_reflectance_passes_on_dask(cube, no_compute):
    lazy = cube.chunk({"time": 1, "y": 16, "x": 16})
    with no_compute():
        out = xglacier.ndsi(lazy)
    np.testing.assert_array_equal(out.compute().values, xglacier.ndsi(cube).values)


# Every function that reads reflectance bands refuses unscaled input the same way: integer
# DNs at once, float DNs and nodata values left in float data when the values are read.
SHIFT = np.tile(np.eye(3), (5, 1, 1))
SHIFT[:, 0, 2] = 0.4
REFLECTANCE_FUNCS: list[tuple[str, dict[str, Any]]] = [
    ("ndsi", {}), ("ndwi", {}), ("ndvi", {}), ("fill_gaps", {}), ("composite", {}),
    ("mask_clouds", {}), ("missing_fraction", {}), ("filter_scenes", {"max_cloud": None}),
    ("estimate_ecc", {}), ("align_ecc", {}),
    ("apply_warps", {"warps": xr.DataArray(SHIFT, dims=("time", "warp_row", "warp_col"))}),
]
BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22"]


def hls_dn(ds: xr.Dataset, dtype: Any = np.int16) -> xr.Dataset:
    """The cube as HLS stores it: DN = reflectance / 0.0001 (int16), nodata -9999."""
    return ds.assign({b: (ds[b] / 1e-4).round().fillna(-9999).astype(dtype) for b in BANDS})


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(("name", "kwargs"), REFLECTANCE_FUNCS, ids=[f[0] for f in REFLECTANCE_FUNCS])
def test_integer_dn_cube_refused_by_every_reflectance_function(cube, name, kwargs, via, no_compute):
    dn = hls_dn(cube)
    err = check_fails(ReflectanceRangeError, f"^{name}: variable '.*' has dtype int16", name, dn, via,
                      **kwargs)
    # the hint says which factor is for which product
    assert "Landsat C2 L2: DN * 0.0000275 - 0.2" in str(err) and "HLS L30/S30: DN * 0.0001" in str(err)
    with no_compute(), pytest.raises(ReflectanceRangeError, match="has dtype int16"):
        call(name, dn.chunk({"time": 1}), via, **kwargs)  # dtype is metadata: refused at once


@pytest.mark.parametrize(("name", "kwargs"), REFLECTANCE_FUNCS, ids=[f[0] for f in REFLECTANCE_FUNCS])
def test_float_dn_and_sentinel_refused_by_every_reflectance_function(cube, name, kwargs):
    dn = hls_dn(cube, np.float32)  # float DNs, nodata still -9999
    check_fails(ReflectanceRangeError, f"^{name}: variable '.*' holds values in \\[-9999, ", name, dn,
                "function", **kwargs)
    sentinel = cube.assign({b: cube[b].fillna(-9999) for b in BANDS})  # reflectance, -9999 left in
    err = check_fails(ReflectanceRangeError, "-9999 is no reflectance but a nodata value", name,
                      sentinel, "function", **kwargs)
    assert str(err).startswith(f"{name}: ")


@pytest.mark.parametrize(("name", "kwargs"), REFLECTANCE_FUNCS, ids=[f[0] for f in REFLECTANCE_FUNCS])
def test_float_dn_refused_when_computed_on_dask(cube, name, kwargs, no_compute):
    lazy = hls_dn(cube, np.float32).chunk({"time": 1, "y": 16})
    if name == "filter_scenes":  # it computes the missing fractions: refused in the call
        with pytest.raises(ReflectanceRangeError, match=r"^filter_scenes: .*holds values"):
            call(name, lazy, "function", **kwargs)
        return
    with no_compute():
        out = call(name, lazy, "function", **kwargs)
    with pytest.raises(ReflectanceRangeError, match=f"^{name}: variable '.*' holds values"):
        out.compute()


def test_scaled_cube_passes_and_qa_stays_integer(cube):
    ok = cube.assign({b: (hls_dn(cube)[b].where(lambda d: d != -9999) * 1e-4).astype(np.float32)
                      for b in BANDS})
    for name, kwargs in REFLECTANCE_FUNCS:
        out = call(name, ok, "function", **kwargs)
        if isinstance(out, xr.Dataset) and "qa_pixel" in out:
            assert out["qa_pixel"].dtype == np.uint16, name
    # the quality band is never taken for a DN band, and other variables keep their range
    assert xglacier.mask_clouds(ok).qa_pixel.dtype == np.uint16
    elevation = xr.DataArray(np.full((4, 4), 3000.0), dims=("y", "x"), name="elevation")
    elevation[1, 1] = np.nan
    assert float(xglacier.fill_gaps(elevation)[1, 1]) == 3000.0


@pytest.mark.parametrize("via", VIA)
def test_fill_gaps_on_an_integer_band_dataarray(cube, via):
    check_fails(ReflectanceRangeError, "^fill_gaps: variable 'green' has dtype int16", "fill_gaps",
                hls_dn(cube)["green"], via)


def test_snow_mask_refuses_a_band(cube):
    check_fails(InputError, "^snow_mask: got variable 'green'.*expected a float NDSI", "snow_mask",
                cube["green"], "function")
    check_fails(InputError, "^snow_mask: .*dtype int16", "snow_mask",
                xr.DataArray(np.zeros(3, np.int16), dims="x", name="ndsi"), "function")


def test_raw_attrs_are_named_in_the_message(cube):
    raw = hls_dn(cube)
    raw["green"].attrs.update(scale_factor=0.0001, _FillValue=-9999)
    said = re.escape("its attrs say scale_factor=0.0001, _FillValue=-9999")
    with pytest.raises(ReflectanceRangeError, match=said):
        xglacier.ndsi(raw)


# -- empty scenes ----------------------------------------------------------------------


def _with_empty_scene(cube: xr.Dataset, k: int = 2) -> tuple[xr.Dataset, str]:
    green = cube["green"].copy()
    green[k] = np.nan
    return cube.assign(green=green), str(cube["time"].values[k])


@pytest.mark.parametrize("via", VIA)
def test_empty_scene_raises(cube, via):
    empty, stamp = _with_empty_scene(cube)
    check_fails(EmptySceneError, f"'green'.*{re.escape(stamp)}.*empty='keep'", "fill_gaps",
                empty, via)


@pytest.mark.parametrize("via", VIA)
def test_empty_scene_raises_on_dataarray(cube, via):
    empty, stamp = _with_empty_scene(cube, k=3)
    check_fails(EmptySceneError, re.escape(stamp), "fill_gaps", empty["green"], via)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("tchunk", [1, 2])
def test_empty_scene_raises_at_compute_on_dask(cube, tchunk, via, no_compute):
    empty, stamp = _with_empty_scene(cube, k=3)
    lazy = empty.chunk({"time": tchunk, "y": 16, "x": 16})
    with no_compute():
        out = call("fill_gaps", lazy, via)
    assert isinstance(out["green"].data, dsa.Array)
    with pytest.raises(EmptySceneError, match=f"'green'.*{re.escape(stamp)}"):
        out.compute()


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_empty_scene_keep(cube, lazy, via):
    empty, _ = _with_empty_scene(cube, k=2)
    n_pixels = cube.sizes["y"] * cube.sizes["x"]
    src = empty.chunk({"time": 1, "y": 16, "x": 16}) if lazy else empty
    out = call("fill_gaps", src, via, empty="keep").compute()
    assert bool(out["green"][2].isnull().all())
    unfilled = out["unfilled_green"].values
    assert unfilled[2] == n_pixels
    assert (np.delete(unfilled, 2) == 0).all()
    assert not out["red"].isnull().any()  # the other bands are filled as usual


# -- invalid parameters ----------------------------------------------------------------

PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("fill_gaps", {"max_iter": 0}, "max_iter=0"),
    ("fill_gaps", {"max_iter": -3}, "max_iter=-3"),
    ("fill_gaps", {"max_iter": 2.5}, "max_iter=2.5"),
    ("fill_gaps", {"weights": (1, 2, 2, 1)}, r"weights=\(1, 2, 2, 1\).*odd-length"),
    ("fill_gaps", {"weights": (1, -2, 1)}, "weights=.*non-negative"),
    ("fill_gaps", {"weights": [[1, 2, 1]]}, "weights="),
    ("fill_gaps", {"empty": "drop"}, "empty='drop'"),
    ("composite", {"how": "mode"}, "how='mode'"),
    ("composite", {"freq": "bogus"}, "freq='bogus'"),
    ("composite", {"freq": "ME"}, "freq='ME'.*start-anchored"),
    ("filter_scenes", {"max_cloud": 150}, r"max_cloud=150.*<= 100"),
    ("filter_scenes", {"max_cloud": -1}, "max_cloud=-1"),
    ("filter_scenes", {"max_missing": 1.5}, r"max_missing=1.5.*<= 1"),
    ("mask_clouds", {"flags": ["snow"]}, r"\['snow'\]"),
    ("mask_clouds", {"flags": ["cloud", "water"]}, r"\['water'\]"),
    ("mask_clouds", {"flags": ["bogus"]}, "'bogus'"),
    ("ndwi", {"kind": "foo"}, "kind='foo'"),
]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("name", "kwargs", "match"), PARAMS, ids=[f"{p[0]}-{p[2]}" for p in PARAMS],
)
def test_invalid_parameter(cube, name, kwargs, match, via):
    check_fails(ParameterError, match, name, cube, via, **kwargs)


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("threshold", [2, -1.5, [0.3, 2.0], float("nan"), []])
def test_snow_mask_threshold(cube, threshold, via):
    check_fails(ParameterError, "snow_mask: threshold=", "snow_mask", ndsi_of(cube), via,
                threshold=threshold)


# Non-finite or wrongly typed parameter values: these should be ParameterErrors too,
# not NumPy/Python errors from deep inside (or, for NaN weights, a silent no-op).
ODD_PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("fill_gaps", {"weights": (1, float("nan"), 1)}, "weights="),
    ("fill_gaps", {"max_iter": float("nan")}, "max_iter="),
    ("fill_gaps", {"max_iter": float("inf")}, "max_iter="),
    ("filter_scenes", {"max_cloud": "20"}, "max_cloud="),
    ("composite", {"freq": 3}, "freq="),
]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize(
    ("name", "kwargs", "match"), ODD_PARAMS,
    ids=[f"{p[0]}-{next(iter(p[1].items()))}" for p in ODD_PARAMS],
)
def test_nonfinite_or_mistyped_parameter(cube, name, kwargs, match, via):
    check_fails(ParameterError, match, name, cube, via, **kwargs)


@pytest.mark.parametrize("via", VIA)
def test_snow_mask_threshold_not_a_number(cube, via):
    check_fails(ParameterError, "threshold=", "snow_mask", ndsi_of(cube), via, threshold="high")


# -- scene metadata --------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_missing_cloud_cover(cube, via):
    check_fails(MetadataError, "cloud-cover coordinate.*'cloud_cover'", "filter_scenes",
                cube.drop_vars("cloud_cover"), via, max_cloud=20)


@pytest.mark.parametrize("via", VIA)
def test_named_cloud_coordinate_missing(cube, via):
    check_fails(MetadataError, "'eo:cloud_cover'", "filter_scenes", cube, via,
                max_cloud=20, cloud_coord="eo:cloud_cover")


@pytest.mark.parametrize("via", VIA)
def test_cloud_cover_not_numeric(cube, via):
    text = cube.assign_coords(cloud_cover=("time", cube["cloud_cover"].values.astype(str)))
    check_fails(MetadataError, "'cloud_cover'.*numeric", "filter_scenes", text, via)


def test_missing_cloud_cover_is_fine_without_max_cloud(cube):
    out = xglacier.filter_scenes(cube.drop_vars("cloud_cover"), max_cloud=None, max_missing=1)
    assert out.sizes["time"] == cube.sizes["time"]


# -- other malformed inputs ------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_qa_band_not_integer(cube, via):
    floats = cube.assign(qa_pixel=cube["qa_pixel"].astype(np.float32))
    check_fails(InputError, "'qa_pixel' has dtype float32", "mask_clouds", floats, via)


@pytest.mark.parametrize("via", VIA)
def test_fill_gaps_integer_variable(cube, via):
    check_fails(InputError, "'qa_pixel' has dtype uint16", "fill_gaps", cube, via,
                bands=["qa_pixel"])
