"""The "silent wrong results" of issue 11, one test per item, so that they stay fixed.

Each test runs the exact input that gave a wrong answer without an error or a warning.
"""

# -- items 2 and 8: segmentation of missing and out-of-distribution inputs ----------------------
# (imports inside the functions: this section is concatenated with the other items' sections)

_L30 = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06", "swir22": "B07"}


def _athabasca_or_skip():
    """The real Athabasca crops' folder (``../shared/data/athabasca``), or skip the test."""
    from pathlib import Path

    import pytest

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
    if not folder.is_dir():
        pytest.skip(f"real Athabasca HLS crops not found at {folder} (they live in ../shared/data, beside "
                    "the project, and are not part of a clone)")
    return folder


def _synthetic_features(seed=1):
    """Features of a clear late-summer synthetic scene (the synthetic sample's kind: high terrain)."""
    import xglacier

    cube, truth = xglacier.synthetic_cube(shape=(48, 56), start="2020-08-01", end="2020-08-25", seed=seed,
                                          max_shift=0.0)
    return xglacier.features(cube.drop_vars("qa_pixel"), dem=truth.dem, time=0).compute()


def _unet_with_statistics_of(feats):
    """A small U-Net carrying the per-channel statistics of ``feats``, as fit_segmentation sets them."""
    import numpy as np
    import torch

    from xglacier.models import UNet

    torch.manual_seed(0)
    values = feats.values.reshape(feats.sizes["channel"], -1)
    return UNet(list(feats.channel.values), ["background", "clean_ice", "debris_covered_ice"], depth=2,
                base_channels=4, mean=np.nanmean(values, axis=1).tolist(),
                std=np.nanstd(values, axis=1).tolist()).eval()


def _athabasca_l30_features(folder):
    """The unfilled L30 scene (897 nodata pixels) with the DEM: the issue's features."""
    import numpy as np
    import rioxarray
    import xarray as xr

    import xglacier

    bands, ref = {}, None
    for name, code in _L30.items():
        path = folder / f"athabasca_2020229_{code}_L30.tif"
        raw = rioxarray.open_rasterio(path).squeeze("band", drop=True)
        ref = raw if ref is None else ref
        bands[name] = (("y", "x"), np.where(raw.values == raw.rio.nodata, np.nan,
                                            raw.values * 1e-4).astype(np.float32))
    ds = xr.Dataset(bands, coords={"y": ref.y.values, "x": ref.x.values}).rio.write_crs(ref.rio.crs)
    dem = rioxarray.open_rasterio(folder / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    return xglacier.features(ds, dem=dem).compute()


def test_item2_segment_labels_nodata():
    """A gap in every spectral band (the DEM still valid) and an all-NaN scene: no class there."""
    import numpy as np

    import xglacier
    from xglacier.segmentation.classes import NODATA
    from xglacier.segmentation.classical import ndsi_rule

    feats = _synthetic_features()
    model = _unet_with_statistics_of(feats)
    holey = feats.copy(data=feats.values.copy())
    spectral = [i for i, c in enumerate(feats.channel.values) if c not in ("elevation", "slope")]
    holey.values[np.ix_(spectral, range(10, 25), range(5, 35))] = np.nan
    gap = np.isnan(holey.values).any(axis=0)
    for data in (holey, holey.chunk({"y": 20, "x": 20})):
        out = xglacier.segment(data, model, tile=32, overlap=8)
        assert (out.label.values[gap] == NODATA).all() and (out.label.values[~gap] < 3).all()
        assert np.isnan(out.probability.values[:, gap]).all()
        assert np.isfinite(out.probability.values[:, ~gap]).all()
    assert int(out.label.attrs["_FillValue"]) == NODATA
    empty = xglacier.segment(holey.copy(data=np.full(holey.shape, np.nan, np.float32)), model, tile=32,
                             overlap=8)
    assert (empty.label.values == NODATA).all() and np.isnan(empty.probability.values).all()
    # the NDSI rule too, and a missed pixel counts against its class instead of vanishing
    assert (ndsi_rule(holey).label.values[gap] == NODATA).all()
    truth = np.ones(gap.shape, np.uint8)
    cm = xglacier.confusion_matrix(truth, out, 3)
    assert cm.sum() == truth.size and cm[1, -1] == gap.sum()


def test_item2_segment_labels_nodata_on_the_unfilled_l30_scene():
    import numpy as np

    import xglacier
    from xglacier.segmentation.classes import NODATA

    feats = _athabasca_l30_features(_athabasca_or_skip())
    gap = np.isnan(feats.sel(channel="blue").values)
    assert gap.sum() == 897
    model = _unet_with_statistics_of(feats)   # the scene's own statistics: no warning expected
    out = xglacier.segment(feats, model, tile=64, overlap=16)
    assert (out.label.values[gap] == NODATA).all()
    assert ((out.label.values == NODATA) == np.isnan(feats.values).any(axis=0)).all()
    assert np.isnan(out.probability.values[:, gap]).all()


def test_item8_out_of_distribution_inputs_warn():
    """A model trained on one elevation range applied to another: warned, naming the channel."""
    import pytest

    import xglacier
    from xglacier.errors import OutOfDistributionWarning

    feats = _synthetic_features()
    model = _unet_with_statistics_of(feats)
    xglacier.segment(_synthetic_features(seed=2), model, tile=32, overlap=8)   # another world: quiet
    low = feats.copy(data=feats.values.copy())
    low.loc[{"channel": "elevation"}] = low.sel(channel="elevation") - 3000.0   # Athabasca-like heights
    with pytest.warns(OutOfDistributionWarning, match=r"channel\(s\) \['elevation'\]") as caught:
        xglacier.segment(low, model, tile=32, overlap=8)
    assert "below the training mean" in str(caught[0].message)
    lazy = xglacier.segment(low.chunk({"y": 20}), model, tile=32, overlap=8)
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        lazy.label.compute()


def test_item8_synthetic_model_on_real_athabasca_warns():
    import pytest

    import xglacier
    from xglacier.errors import OutOfDistributionWarning

    real = _athabasca_l30_features(_athabasca_or_skip())
    model = _unet_with_statistics_of(_synthetic_features())
    with pytest.warns(OutOfDistributionWarning, match=r"channel\(s\) \[[^]]*'elevation'.*elevation: \d+ % of "
                                                      r"the valid pixels lie more than 3 std below"):
        xglacier.segment(real, model, tile=64, overlap=16)
