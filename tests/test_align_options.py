"""ECCOptions shared by estimate_ecc / align_ecc, the bands= keyword, provenance, and bad
input to apply_warps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.errors import (
    DimensionError,
    InputError,
    MissingBandError,
    ParameterError,
    TimeAxisError,
    XGlacierDeprecationWarning,
)
from xglacier.preprocess.align import ECCOptions


@pytest.fixture(scope="module")
def cube():
    """Six cloud-free 64x64 summer scenes shifted by up to 2 px, in memory."""
    cube, _ = xglacier.synthetic_cube(shape=(64, 64), start="2020-06-01", end="2020-09-01",
                                      max_shift=2.0, cloud_scale=0.0, seed=5)
    assert cube.sizes["time"] == 6
    return cube[["green", "nir08", "swir16", "qa_pixel"]].compute()


def history_ops(obj) -> list[tuple[str, dict]]:
    out = []
    for line in obj.attrs["history"].splitlines():
        _, _, op, params = line.split(" ", 3)
        out.append((op, json.loads(params)))
    return out


# -- one options object ---------------------------------------------------------------


def test_options_and_keywords_give_the_same_estimate(cube):
    by_keywords = xglacier.estimate_ecc(cube, bands="nir08", motion="euclidean", refine=1).compute()
    opts = ECCOptions(motion="euclidean", refine=1)
    by_options = xglacier.estimate_ecc(cube, bands="nir08", options=opts).compute()
    xr.testing.assert_identical(by_options.drop_attrs(), by_keywords.drop_attrs())
    # a keyword overrides the field of options= (here back to the defaults)
    default = xglacier.estimate_ecc(cube, bands="nir08").compute()
    overridden = xglacier.estimate_ecc(cube, bands="nir08", options=opts, motion="translation",
                                       refine=2).compute()
    xr.testing.assert_identical(overridden.drop_attrs(), default.drop_attrs())
    assert not np.array_equal(default.ecc_warp.values, by_options.ecc_warp.values)


def test_options_defaults_are_documented_values():
    opts = ECCOptions()
    assert dataclasses.asdict(opts) == dict(
        motion="translation", refine=2, downsample=2, iterations=200, eps=1e-5, highpass=1.5,
        gauss_size=1, coarse="phase", pyramid_levels=3, max_shift=10.0, min_correlation=0.2,
        min_valid=0.1, few_scenes=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.motion = "affine"
    # normalised: NumPy integers become ints, refine=True is one round
    assert ECCOptions(iterations=np.int64(50), refine=True) == ECCOptions(iterations=50, refine=1)


BAD_OPTIONS = [
    ("iterations", True), ("iterations", 0), ("iterations", 2.0), ("downsample", True),
    ("downsample", 0), ("pyramid_levels", 0), ("gauss_size", 4), ("gauss_size", -1),
    ("few_scenes", -1), ("refine", -1), ("refine", 1.5), ("eps", 0), ("max_shift", float("nan")),
    ("min_valid", 0), ("min_valid", 1.5), ("min_correlation", 2), ("highpass", 0),
    ("motion", "rotation"), ("coarse", "fft"),
]


@pytest.mark.parametrize(("field", "value"), BAD_OPTIONS, ids=[f"{f}={v!r}" for f, v in BAD_OPTIONS])
def test_bad_option_values_name_the_function(cube, field, value):
    with pytest.raises(ParameterError, match=rf"^ECCOptions: {field}="):
        ECCOptions(**{field: value})
    for func in ("estimate_ecc", "align_ecc"):
        with pytest.raises(ParameterError, match=rf"^{func}: {field}="):
            getattr(xglacier, func)(cube, **{field: value})


def test_unknown_keyword_and_bad_options(cube):
    with pytest.raises(ParameterError, match=r"^estimate_ecc: unknown keyword\(s\) 'interpolation'"):
        xglacier.estimate_ecc(cube, interpolation="linear")
    with pytest.raises(ParameterError, match=r"^align_ecc: unknown keyword\(s\) 'iteration', 'motoin'"):
        xglacier.align_ecc(cube, motoin="affine", iteration=5)
    with pytest.raises(ParameterError, match=r"^align_ecc: options is a dict; expected an ECCOptions"):
        xglacier.align_ecc(cube, options={"motion": "affine"})
    with pytest.raises(ParameterError, match=r"^align_ecc: interpolation='bicubic'"):
        xglacier.align_ecc(cube, interpolation="bicubic")


def test_estimate_ecc_errors_say_estimate_ecc(cube):
    with pytest.raises(InputError, match=r"^estimate_ecc: .*at least two"):
        xglacier.estimate_ecc(cube.isel(time=[0]))
    with pytest.raises(MissingBandError, match=r"^estimate_ecc: band 'nope'"):
        xglacier.estimate_ecc(cube, bands="nope")
    with pytest.raises(MissingBandError, match=r"^estimate_ecc: none of the bands.*bands="):
        xglacier.estimate_ecc(cube[["qa_pixel"]])
    with pytest.raises(ParameterError, match=r"^estimate_ecc: bands=.*one to three"):
        xglacier.estimate_ecc(cube, bands=["green", "nir08", "swir16", "green"])
    with pytest.raises(ParameterError, match=r"^estimate_ecc: bands= is for Datasets"):
        xglacier.estimate_ecc(cube.nir08, bands="nir08")
    with pytest.raises(ParameterError, match=r"^estimate_ecc: reference=99"):
        xglacier.estimate_ecc(cube, reference=99)
    with pytest.raises(DimensionError, match=r"^estimate_ecc: reference DataArray"):
        xglacier.estimate_ecc(cube, reference=cube.nir08.isel(time=0, y=slice(0, 10), drop=True))
    with pytest.raises(DimensionError, match=r"^estimate_ecc: variable 'nir08'"):
        xglacier.estimate_ecc(cube.transpose("time", "x", "y"))


def test_failed_scenes_warning_names_the_function(cube):
    bad = cube[["nir08"]].copy(deep=True)
    bad.nir08[2] = np.nan
    for func in ("estimate_ecc", "align_ecc"):
        out = getattr(xglacier, func)(bad, refine=0)
        with pytest.warns(xglacier.errors.AlignmentWarning, match=rf"^{func}: 1 of 6 scenes"):
            out.ecc_converged.compute()


# -- bands= and the deprecated band= --------------------------------------------------


@pytest.mark.parametrize("func", ["estimate_ecc", "align_ecc"])
def test_band_keyword_is_a_deprecated_alias(cube, func):
    f = getattr(xglacier, func)
    new = f(cube, bands=["nir08", "swir16"], refine=0).compute()
    with pytest.warns(XGlacierDeprecationWarning, match=rf"^{func}: band= is deprecated, use bands="):
        old = f(cube, band=["nir08", "swir16"], refine=0).compute()
    xr.testing.assert_identical(old, new)
    with pytest.warns(XGlacierDeprecationWarning):  # through the accessor too
        via_accessor = getattr(cube.glacier, func)(band=["nir08", "swir16"], refine=0).compute()
    xr.testing.assert_identical(via_accessor, new)
    with pytest.raises(ParameterError, match="band= and bands= given together"):
        f(cube, band="nir08", bands="nir08")


def test_accessor_keywords_still_work(cube):
    out = cube.glacier.align_ecc(motion="affine", reference="best", refine=0)
    assert out.ecc_warp.attrs["motion"] == "affine"
    assert history_ops(out)[-1][1]["reference"] == "best"


# -- provenance -----------------------------------------------------------------------


def test_history_is_carried_and_names_the_operation(cube):
    src = cube.assign_attrs(history="earlier step")
    est = xglacier.estimate_ecc(src, bands="nir08", refine=1)
    aligned = xglacier.align_ecc(src, bands="nir08", refine=1, interpolation="linear")
    for out, op in ((est, "estimate_ecc"), (aligned, "align_ecc")):
        lines = out.attrs["history"].splitlines()
        assert lines[0] == "earlier step" and len(lines) == 2
        (name, params), = history_ops(out.assign_attrs(history=lines[1]))
        assert name == op
        assert params["bands"] == ["nir08"] and params["refine"] == 1
        assert params["motion"] == "translation" and params["min_valid"] == 0.1
    assert history_ops(aligned.assign_attrs(history=aligned.attrs["history"].splitlines()[1])
                       )[0][1]["interpolation"] == "linear"
    assert src.attrs["history"] == "earlier step"  # input untouched
    da = xglacier.align_ecc(src.nir08.assign_attrs(history="band step"), refine=0)
    assert da.attrs["history"].splitlines()[0] == "band step"


# -- apply_warps: bad input -----------------------------------------------------------


@pytest.fixture(scope="module")
def warps(cube):
    return xglacier.estimate_ecc(cube, bands="nir08", refine=0).compute()


def identity(n, dims=("time", "warp_row", "warp_col"), **coords):
    return xr.DataArray(np.tile(np.eye(3), (n, 1, 1)), dims=dims, coords=coords)


def test_apply_warps_accepts_estimate_aligned_cube_and_dataarray(cube, warps):
    by_est = xglacier.apply_warps(cube, warps)
    aligned = xglacier.align_ecc(cube, bands="nir08", refine=0)
    xr.testing.assert_identical(by_est.green, aligned.green.drop_vars(
        ["ecc_correlation", "ecc_converged", "ecc_shift_x", "ecc_shift_y"]))
    # the aligned cube carries ecc_warp as a coordinate: it can warp another cube
    again = xglacier.apply_warps(cube[["swir16"]], aligned)
    np.testing.assert_array_equal(again.swir16.values, by_est.swir16.values)
    same = xglacier.apply_warps(cube.nir08, identity(cube.sizes["time"]))
    np.testing.assert_array_equal(same.values, cube.nir08.values)
    # variables without (time, y, x) are kept as they are
    with_static = cube.assign(dem=(("y", "x"), np.ones((64, 64), np.float32)))
    assert (xglacier.apply_warps(with_static, warps).dem == 1).all()


def test_apply_warps_missing_warp_variable(cube, warps):
    with pytest.raises(MissingBandError, match=r"^apply_warps: warps has no 'ecc_warp'.*estimate_ecc"):
        xglacier.apply_warps(cube, warps.drop_vars("ecc_warp"))
    with pytest.raises(MissingBandError, match="'ecc_warp'"):
        cube.glacier.apply_warps(cube)  # the cube itself instead of its warps
    with pytest.raises(InputError, match=r"^apply_warps: warps is a ndarray"):
        xglacier.apply_warps(cube, warps.ecc_warp.values)


@pytest.mark.parametrize("make", [
    lambda n: identity(n, dims=("time", "row", "col")),
    lambda n: identity(n).transpose("warp_row", "time", "warp_col"),
    lambda n: identity(n)[:, :2],
    lambda n: identity(n - 1),
    lambda n: identity(n).isel(warp_col=0),
], ids=["dim-names", "dim-order", "2x3", "one-scene-short", "2-d"])
def test_apply_warps_wrong_warp_dims(cube, make):
    with pytest.raises(DimensionError,
                       match=r"^apply_warps: warps have dims .*expected .* shape \(6, 3, 3\)"):
        xglacier.apply_warps(cube, make(cube.sizes["time"]))


def test_apply_warps_mismatched_time(cube, warps):
    later = warps.assign_coords(time=warps.time + np.timedelta64(1, "D"))
    with pytest.raises(TimeAxisError, match=r"^apply_warps: the warps' time coordinate differs.*scene 0"):
        xglacier.apply_warps(cube, later)
    swapped = warps.isel(time=[0, 1, 3, 2, 4, 5])
    with pytest.raises(TimeAxisError, match="scene 2"):
        xglacier.apply_warps(cube, swapped)
    with pytest.raises(DimensionError, match=r"expected .* shape \(5, 3, 3\)"):
        xglacier.apply_warps(cube.isel(time=slice(1, None)), warps)


def test_apply_warps_wrong_cube(cube, warps):
    with pytest.raises(DimensionError, match=r"^apply_warps: variable 'green' has dimensions"):
        xglacier.apply_warps(cube.transpose("time", "x", "y"), warps)
    with pytest.raises(DimensionError, match=r"^apply_warps: variable 'nir08' has dimensions"):
        xglacier.apply_warps(cube.nir08.transpose("y", "x", "time"), warps)
    with pytest.raises(DimensionError, match=r"^apply_warps: the cube has dimensions.*'time'"):
        xglacier.apply_warps(cube.isel(time=0), warps)
    with pytest.raises(DimensionError, match=r"^apply_warps: no variable with dimensions"):
        xglacier.apply_warps(cube.nir08.mean(("y", "x")).to_dataset(), warps)
    with pytest.raises(InputError, match=r"^apply_warps: warps have dtype"):
        xglacier.apply_warps(cube, identity(cube.sizes["time"]).astype(str))
    with pytest.raises(ParameterError, match=r"^apply_warps: interpolation='area'"):
        xglacier.apply_warps(cube, warps, interpolation="area")
    with pytest.raises(TypeError):
        xglacier.apply_warps(cube, warps, "linear")  # options are keyword-only
