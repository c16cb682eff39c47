"""Spectral indices, QA decoding, cloud masking and the snow mask."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.errors import ParameterError


def _ds(**bands):
    return xr.Dataset({k: (("y", "x"), np.asarray(v, np.float32)) for k, v in bands.items()})


def test_ndsi_formula_by_hand():
    ds = _ds(green=[[0.6, 0.2, 0.0, np.nan]], swir16=[[0.2, 0.6, 0.0, 0.1]])
    out = xglacier.ndsi(ds)
    np.testing.assert_allclose(out.values[0, :2], [0.5, -0.5], rtol=1e-6)
    assert np.isnan(out.values[0, 2])  # zero denominator
    assert np.isnan(out.values[0, 3])  # NaN input
    assert out.name == "ndsi" and out.attrs["units"] == "1"
    assert "long_name" in out.attrs and "ndsi" in out.attrs["history"]


def test_index_band_overrides_and_kinds():
    ds = _ds(g=[[0.5]], s=[[0.1]], green=[[0.3]], nir08=[[0.4]], red=[[0.1]], swir16=[[0.2]])
    assert xglacier.ndsi(ds, green="g", swir="s").item() == pytest.approx(0.4 / 0.6)
    assert xglacier.ndwi(ds, kind="gao").item() == pytest.approx(0.2 / 0.6)
    assert xglacier.ndwi(ds, kind="mcfeeters").item() == pytest.approx(-0.1 / 0.7)
    assert xglacier.ndvi(ds).item() == pytest.approx(0.3 / 0.5)


def test_indices_on_synthetic_surfaces(small_loaded):
    cube, truth = small_loaded
    clear = truth.clear_sky & ~truth.nodata
    cls = truth.glacier_class
    ndwi = xglacier.ndwi(cube, kind="mcfeeters")
    ndsi = xglacier.ndsi(cube)
    # debris-covered ice looks like rock: negative NDSI when snow-free (late summer)
    summer = cube.indexes["time"].month.isin([8, 9])
    deb = ndsi.where(clear & (cls == 2)).isel(time=np.flatnonzero(summer))
    assert float(deb.median()) < 0
    assert float(ndwi.where(clear).max()) > 0.2  # the proglacial lake


# Published Landsat 8/9 C2 QA_PIXEL values and their meaning.
QA_EXAMPLES = {
    1: {"fill"},
    21824: {"clear"},
    21952: {"clear", "water"},
    30048: {"clear", "snow"},
    22280: {"cloud"},
    23888: {"clear", "cloud_shadow"},
    55052: {"cloud", "cirrus"},
}


@pytest.mark.parametrize("value, flags", QA_EXAMPLES.items())
def test_decode_qa_published_values(value, flags):
    qa = xr.DataArray(np.array([value], np.uint16), name="qa_pixel")
    for flag in ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow", "clear",
                 "water"):
        assert bool(xglacier.decode_qa(qa, flag)[0]) == (flag in flags), flag


def test_decode_qa_confidence():
    qa = xr.DataArray(np.array([22280, 30048], np.uint16), name="qa_pixel")
    assert xglacier.decode_qa(qa, "cloud_confidence").values.tolist() == [3, 1]
    assert xglacier.decode_qa(qa, "snow_ice_confidence").values.tolist() == [1, 3]
    with pytest.raises(ParameterError, match=r"^decode_qa: flag=.smoke.; expected one of .cirrus."):
        xglacier.decode_qa(qa, "smoke")


def test_mask_clouds_keeps_snow_and_water():
    values = np.array(list(QA_EXAMPLES), np.uint16)[None, None, :]
    ds = xr.Dataset({
        "green": (("time", "y", "x"), np.full(values.shape, 0.5, np.float32)),
        "qa_pixel": (("time", "y", "x"), values),
    })
    out = xglacier.mask_clouds(ds)
    kept = dict(zip(QA_EXAMPLES, np.isfinite(out.green.values.ravel()), strict=True))
    assert kept == {1: False, 21824: True, 21952: True, 30048: True, 22280: False,
                    23888: False, 55052: False}
    np.testing.assert_array_equal(out.qa_pixel.values, values)
    only_cloud = xglacier.mask_clouds(ds, flags=["cloud"])
    assert np.isfinite(only_cloud.green.values.ravel()).tolist() == [
        True, True, True, True, False, True, False]


def test_mask_clouds_on_synthetic_truth(small_loaded):
    cube, truth = small_loaded
    out = xglacier.mask_clouds(cube)
    kept = out.green.notnull().values
    # kept pixels have data; QA misses only thin cloud/shadow edges, as real Fmask does
    assert not (kept & truth.nodata.values).any()
    assert (kept & ~truth.clear_sky.values).sum() < 0.01 * kept.sum()
    clear = truth.clear_sky.values & ~truth.nodata.values
    assert kept[clear].mean() > 0.9


def test_snow_mask():
    nd = xr.DataArray(np.array([-0.2, 0.29, 0.3, 0.8, np.nan], np.float32), dims="x", name="ndsi")
    kept = xglacier.snow_mask(nd)
    np.testing.assert_array_equal(kept.values, np.array([0, 0, 0.3, 0.8, np.nan], np.float32))
    binary = xglacier.snow_mask(nd, keep_values=False)
    np.testing.assert_array_equal(binary.values, [0, 0, 1, 1, np.nan])
    many = xglacier.snow_mask(nd, threshold=[0.2, 0.5], keep_values=False)
    assert many.dims == ("threshold", "x")
    np.testing.assert_array_equal(many.sel(threshold=0.2).values, [0, 1, 1, 1, np.nan])
    np.testing.assert_array_equal(many.sel(threshold=0.5).values, [0, 0, 0, 1, np.nan])
    assert kept.attrs["threshold"] == pytest.approx(0.3)


def test_negative_reflectance_is_clipped_unless_asked():
    ds = _ds(green=[[0.10, 0.02]], swir16=[[-0.01, 0.04]])
    np.testing.assert_allclose(xglacier.ndsi(ds).values, [[1.0, -1 / 3]], rtol=1e-6)
    raw = xglacier.ndsi(ds, clip=False).values
    assert raw[0, 0] == pytest.approx(0.11 / 0.09, rel=1e-5)
