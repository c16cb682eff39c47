"""Options of the preprocessing functions: keyword-only, checked with the shared validators
(bools are not integers or numbers), one ``bands=`` spelling, and missing_fraction's values."""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xglacier
from xglacier.errors import (
    InputError,
    MissingBandError,
    ParameterError,
    XGlacierDeprecationWarning,
)
from xglacier.preprocess.composite import period_starts
from xglacier.preprocess.terrain import pixel_lengths

# -- missing_fraction against a hand-built cube ---------------------------------------

# 4 scenes of 4 x 5 = 20 pixels; the NaN pixels of each band, by (row, col)
GREEN_NAN = [[], [(1, c) for c in range(5)], [(r, c) for r in range(4) for c in range(5)],
             [(3, 0), (3, 1), (3, 2)]]
RED_NAN = [[(0, 0), (0, 1)], [(1, c) for c in range(5)], [], [(3, 2), (3, 3), (2, 0), (2, 1)]]
# counted by hand: union of both bands / 20, green alone, red alone
EXPECTED = {None: [2 / 20, 5 / 20, 20 / 20, 6 / 20], "green": [0, 5 / 20, 1, 3 / 20],
            ("red",): [2 / 20, 5 / 20, 0, 4 / 20]}


def hand_cube() -> xr.Dataset:
    def band(nan):
        a = np.full((4, 4, 5), 0.2, np.float32)
        for t, pixels in enumerate(nan):
            for r, c in pixels:
                a[t, r, c] = np.nan
        return (("time", "y", "x"), a)

    return xr.Dataset(
        {"green": band(GREEN_NAN), "red": band(RED_NAN),
         "qa_pixel": (("time", "y", "x"), np.zeros((4, 4, 5), np.uint16)),
         "ndsi": (("time", "y", "x"), np.full((4, 4, 5), np.nan, np.float32))},  # not a band
        coords={"time": pd.date_range("2021-01-01", periods=4, freq="16D")},
    )


@pytest.mark.parametrize("bands", list(EXPECTED), ids=str)
@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_missing_fraction_values(bands, lazy):
    ds = hand_cube().chunk({"time": 1, "y": 2}) if lazy else hand_cube()
    frac = xglacier.missing_fraction(ds, bands=list(bands) if isinstance(bands, tuple) else bands)
    assert isinstance(frac.data, dsa.Array) == lazy
    assert frac.dims == ("time",) and frac.name == "missing_fraction" and frac.attrs["units"] == "1"
    np.testing.assert_allclose(frac.values, EXPECTED[bands], rtol=1e-12)


def test_missing_fraction_drives_filter_scenes():
    ds = hand_cube()
    kept = xglacier.filter_scenes(ds, max_cloud=None, max_missing=0.25)
    assert kept.time.values.tolist() == ds.time.values[[0, 1]].tolist()
    assert kept.attrs["scenes_dropped"] == 2
    by_red = xglacier.filter_scenes(ds, max_cloud=None, max_missing=0.15, bands="red")
    assert by_red.time.values.tolist() == ds.time.values[[0, 2]].tolist()


def test_missing_fraction_bad_input():
    ds = hand_cube()
    with pytest.raises(MissingBandError, match=r"^missing_fraction: band 'nope'"):
        xglacier.missing_fraction(ds, bands=["green", "nope"])
    with pytest.raises(InputError, match=r"^missing_fraction: none of the reflectance bands"):
        xglacier.missing_fraction(ds[["ndsi"]])
    with pytest.raises(InputError, match=r"^missing_fraction: expected a Dataset"):
        xglacier.missing_fraction(ds.green)
    with pytest.raises(xglacier.errors.DimensionError, match=r"^missing_fraction: variable 'green'"):
        xglacier.missing_fraction(ds.isel(x=0))
    with pytest.raises(TypeError):
        xglacier.missing_fraction(ds, "green")


# -- bands= for fill_gaps, with variables= deprecated ---------------------------------


def test_fill_gaps_bands_and_deprecated_variables():
    ds = hand_cube().drop_vars("ndsi")
    one = xglacier.fill_gaps(ds, bands="green", empty="keep")
    assert "unfilled_green" in one.coords and "unfilled_red" not in one.coords
    np.testing.assert_array_equal(one.red.values, ds.red.values)  # not selected: untouched
    with pytest.warns(XGlacierDeprecationWarning, match=r"^fill_gaps: variables= is deprecated, use bands="):
        old = xglacier.fill_gaps(ds, variables=["green"], empty="keep")
    xr.testing.assert_identical(old, one)
    with pytest.raises(ParameterError, match="variables= and bands= given together"):
        xglacier.fill_gaps(ds, variables=["green"], bands=["green"])
    with pytest.raises(ParameterError, match=r"^fill_gaps: bands= is for Datasets"):
        xglacier.fill_gaps(ds.green, bands="green")
    with pytest.raises(MissingBandError, match=r"^fill_gaps: band 'nope'"):
        xglacier.fill_gaps(ds, bands="nope")
    # nothing to fill is not an error
    assert "qa_pixel" in xglacier.fill_gaps(ds[["qa_pixel"]])


# -- composite's frequency ------------------------------------------------------------


def test_composite_bad_freq_raises_without_pandas_warning():
    da = hand_cube().green
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ParameterError, match=r"^composite: freq='bogus' is not a pandas frequency"):
            xglacier.composite(da, freq="bogus")
    assert caught == []


def test_period_starts_keeps_pandas_notice_for_valid_deprecated_alias():
    t = pd.DatetimeIndex(["2020-01-01 05:00", "2020-01-01 09:00"])
    with pytest.warns(FutureWarning, match="'H' is deprecated"):
        hourly = period_starts(t, "H")
    assert hourly.equals(period_starts(t, "h"))


# -- keyword-only options and the shared checks ---------------------------------------


@pytest.fixture(scope="module")
def cube():
    cube, _ = xglacier.synthetic_cube(shape=(32, 32), start="2020-01-01", end="2020-04-01")
    return cube.compute()


POSITIONAL = [
    ("ndsi", lambda c: (c, "green")), ("ndwi", lambda c: (c, "gao")), ("ndvi", lambda c: (c, "nir08")),
    ("mask_clouds", lambda c: (c, ("cloud",))), ("snow_mask", lambda c: (xglacier.ndsi(c), 0.3)),
    ("missing_fraction", lambda c: (c, ["green"])), ("filter_scenes", lambda c: (c, 20)),
    ("fill_gaps", lambda c: (c, 4)), ("composite", lambda c: (c, "3MS")),
    ("decode_qa", lambda c: (c, "cloud", "qa_pixel")),
    ("normalized_difference", lambda c: (c.green, c.red, False)),
    ("estimate_ecc", lambda c: (c, "nir08")), ("align_ecc", lambda c: (c, "nir08")),
    ("apply_warps", lambda c: (c, xglacier.estimate_ecc(c), "linear")),
    ("flow", lambda c: (xglacier.ndsi(c), "farneback")),
]


@pytest.mark.parametrize(("name", "args"), POSITIONAL, ids=[p[0] for p in POSITIONAL])
def test_options_are_keyword_only(cube, name, args):
    with pytest.raises(TypeError, match="positional argument"):
        getattr(xglacier, name)(*args(cube))


def test_pixel_lengths_what_is_keyword_only():
    x, y = np.array([0.0, 30.0]), np.array([30.0, 0.0])
    with pytest.raises(TypeError, match="positional argument"):
        pixel_lengths("EPSG:32643", x, y, "grid")
    assert pixel_lengths("EPSG:32643", x, y, what="grid")[0].tolist() == [30.0, 30.0]


BAD = [
    ("fill_gaps", {"max_iter": True}, "max_iter=True"),
    ("fill_gaps", {"empty": "drop"}, "empty='drop'"),
    ("composite", {"interpolate": 1}, "interpolate=1"),
    ("composite", {"how": "mode"}, "how='mode'"),
    ("filter_scenes", {"max_missing": True}, "max_missing=True"),
    ("filter_scenes", {"max_cloud": float("nan")}, "max_cloud=nan"),
    ("filter_scenes", {"max_cloud": 150}, "max_cloud=150"),
    ("ndsi", {"clip": 1}, "clip=1"),
    ("ndwi", {"kind": "foo"}, "kind='foo'"),
    ("ndwi", {"clip": "yes"}, "clip='yes'"),
    ("ndvi", {"clip": None}, "clip=None"),
]


@pytest.mark.parametrize(("name", "kwargs", "match"), BAD, ids=[b[2] for b in BAD])
def test_bad_options_name_function_and_parameter(cube, name, kwargs, match):
    with pytest.raises(ParameterError, match=rf"^{name}: {match}"):
        getattr(xglacier, name)(cube, **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"keep_values": 1}, "keep_values=1"), ({"threshold": True}, "threshold=True"),
    ({"threshold": [0.3, True]}, "threshold=True"), ({"threshold": [[0.3]]}, "threshold="),
    ({"threshold": []}, "threshold=.*at least one"), ({"threshold": "high"}, "threshold='high'"),
])
def test_snow_mask_options(cube, kwargs, match):
    with pytest.raises(ParameterError, match=rf"^snow_mask: {match}"):
        xglacier.snow_mask(xglacier.ndsi(cube), **kwargs)


def test_decode_qa_and_masks_name_the_function(cube):
    with pytest.raises(ParameterError, match=r"^decode_qa: flag='smoke'"):
        xglacier.decode_qa(cube, "smoke")
    floats = cube.assign(qa_pixel=cube.qa_pixel.astype(np.float32))
    for name, call in (("decode_qa", lambda: xglacier.decode_qa(floats, "cloud")),
                       ("mask_clouds", lambda: xglacier.mask_clouds(floats))):
        with pytest.raises(InputError, match=rf"^{name}: quality band 'qa_pixel' has dtype float32"):
            call()
    with pytest.raises(MissingBandError, match=r"^mask_clouds: band 'nope'"):
        xglacier.mask_clouds(cube, bands="nope")
    # one band name selects one band
    only = xglacier.mask_clouds(cube, bands="green")
    np.testing.assert_array_equal(only.red.values, cube.red.values)
    assert only.green.isnull().sum() >= cube.green.isnull().sum()
