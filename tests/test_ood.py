"""Scenes far outside a model's training statistics: OutOfDistributionWarning naming the channels."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
import rioxarray
import torch
import xarray as xr
from torch import nn

import xglacier
from xglacier.errors import OutOfDistributionWarning, ParameterError
from xglacier.models import CombinedBinary, UNet
from xglacier.nn.checkpoint import load_model, save_model
from xglacier.nn.shift import after, channel_counts, check_inputs, far_channels
from xglacier.segmentation.classical import PixelClassifier
from xglacier.segmentation.models import SegmentationModel
from xglacier.segmentation.segment import segment

from .conftest import ComputeForbidden

CHANNELS = ["green", "swir16", "elevation"]
CLASSES = ["background", "glacier"]
MEAN, STD = [0.5, 0.3, 5000.0], [0.2, 0.1, 600.0]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"


class Pointwise(SegmentationModel):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = nn.Conv2d(len(self.channels), len(self.classes), 1)

    def forward(self, x):
        return self.conv(x)


def model(**kw):
    torch.manual_seed(0)
    return Pointwise(channels=CHANNELS, classes=CLASSES, **{"mean": MEAN, "std": STD, **kw}).eval()


def scene(shift=(0.0, 0.0, 0.0), ny=40, nx=50, seed=0):
    """Features drawn from the training distribution, each channel moved by ``shift`` training std."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(3, ny, nx))
    mean, std, shift = (np.array(v)[:, None, None] for v in (MEAN, STD, shift))
    data = mean + (z + shift) * std
    return xr.DataArray(data.astype(np.float32), dims=("channel", "y", "x"), coords={"channel": CHANNELS})


def test_in_distribution_scene_is_quiet():
    out = segment(scene(), model(), tile=32, overlap=8)  # XGlacierWarning is an error in the tests
    assert out.label.shape == (40, 50)


@pytest.mark.parametrize("shift, side", [(10.0, "above"), (-10.0, "below"), (-3.5, "below")])
def test_shifted_channel_is_named(shift, side):
    with pytest.warns(OutOfDistributionWarning) as caught:
        segment(scene((0.0, 0.0, shift)), model(), tile=32, overlap=8)
    msg = str(caught[0].message)
    assert msg.startswith("segment: channel(s) ['elevation'] of the scene lie far outside")
    assert f"std {side} the training mean 5000 +- 600" in msg
    assert "green" not in msg and "swir16" not in msg
    assert "ood_sigmas=None" in msg


def test_several_channels_and_sigmas_keyword():
    with pytest.warns(OutOfDistributionWarning, match=r"\['green', 'elevation'\]"):
        segment(scene((5.0, 0.0, -5.0)), model(), tile=32, overlap=8)
    segment(scene((5.0, 0.0, -5.0)), model(), tile=32, overlap=8, ood_sigmas=6)   # not that far
    segment(scene((50.0, 0.0, -50.0)), model(), tile=32, overlap=8, ood_sigmas=None)  # check off
    for bad in (0, -1.0, "3", True, float("nan")):
        with pytest.raises(ParameterError, match="segment: ood_sigmas="):
            segment(scene(), model(), ood_sigmas=bad)


def test_median_rule_not_a_few_outliers():
    """40 % of the pixels far out (a high peak, clouds): the scene's median is still inside."""
    f = scene()
    f.values[2, :16] = 20000.0
    segment(f, model(), tile=32, overlap=8)
    f.values[2, :21] = 20000.0   # now most of the scene
    with pytest.warns(OutOfDistributionWarning,
                      match=r"elevation: 5[23] % of the valid pixels lie more than 3 std above"):
        segment(f, model(), tile=32, overlap=8)


def test_missing_pixels_are_not_counted():
    """NaN pixels are neither in nor out: an almost empty scene is judged on its valid pixels."""
    f = scene((0.0, 0.0, -10.0))
    f.values[:, :39] = np.nan
    with pytest.warns(OutOfDistributionWarning, match="elevation: 100 % of the valid pixels"):
        segment(f, model(), tile=32, overlap=8)
    segment(f.copy(data=np.full(f.shape, np.nan, np.float32)), model(), tile=32, overlap=8)  # empty: quiet


def test_no_statistics_no_check():
    """A model without recorded statistics (mean 0, std 1) cannot say what is far."""
    plain = Pointwise(channels=CHANNELS, classes=CLASSES).eval()
    segment(scene((0.0, 0.0, 40.0)), plain, tile=32, overlap=8)


def test_lazy_warns_when_computed_not_before(no_compute):
    f = scene((0.0, 0.0, -8.0)).chunk({"y": 13, "x": 21})
    with no_compute(), warnings.catch_warnings():
        warnings.simplefilter("error")  # building the graph must neither compute nor warn
        out = segment(f, model(), tile=32, overlap=8)
        with pytest.raises(ComputeForbidden):
            out.label.values  # noqa: B018
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        label = out.label.values
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        prob = out.probability.values
    # the check changes nothing in the result, which stays chunk-invariant
    quiet = segment(f.compute(), model(), tile=32, overlap=8, ood_sigmas=None)
    np.testing.assert_array_equal(label, quiet.label.values)
    np.testing.assert_array_equal(prob, quiet.probability.values)
    # a part of the map that does not hold the last block streams without the scene-wide check
    segment(f, model(), tile=32, overlap=8).label[:10, :10].values  # noqa: B018


def test_lazy_check_reads_the_input_once():
    """The counts come from the blocks the model reads: the input's tasks run once."""
    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    f = scene((0.0, 0.0, -8.0)).chunk({"y": 20, "x": 25})
    f = f.copy(data=f.data.map_blocks(counted, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32)))
    out = segment(f, model(), tile=32, overlap=8)
    with dask.config.set(scheduler="sync"), pytest.warns(OutOfDistributionWarning):
        out.compute()
    assert calls == [(3, 20, 25)] * 4


def test_checkpoint_keeps_the_statistics(tmp_path):
    unet = UNet(CHANNELS, CLASSES, depth=1, base_channels=2, mean=MEAN, std=STD).eval()
    save_model(unet, tmp_path / "m")
    back = load_model(tmp_path / "m")
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        segment(scene((0.0, 0.0, -6.0)), back, tile=32, overlap=8)
    parts = [UNet(CHANNELS, ["background", c], depth=1, base_channels=2, mean=MEAN, std=STD,
                  binary_head=True) for c in ("clean_ice", "debris_covered_ice")]
    with pytest.warns(OutOfDistributionWarning, match="elevation"):
        segment(scene((0.0, 0.0, -6.0)), CombinedBinary(*parts).eval(), tile=32, overlap=8)


def test_pixel_classifier_checks_its_training_pixels():
    f = scene(ny=60, nx=60)
    labels = xr.DataArray((f.values[0] > 0.5).astype(np.uint8), dims=("y", "x"))
    clf = PixelClassifier("random_forest", n_estimators=5).fit(f, labels, classes=CLASSES, n_samples=500)
    clf.predict(scene(seed=1))
    with pytest.warns(OutOfDistributionWarning, match=r"PixelClassifier.predict: channel\(s\) \['swir16'\]"):
        clf.predict(scene((0.0, 9.0, 0.0), seed=1))
    with pytest.warns(OutOfDistributionWarning, match="swir16"):
        clf.predict(scene((0.0, 9.0, 0.0), seed=1).chunk({"y": 20})).label.values  # noqa: B018
    clf.predict(scene((0.0, 9.0, 0.0), seed=1), ood_sigmas=None)


def test_counts_are_exact_and_add_up():
    x = scene((0.0, 0.0, -4.0)).values
    mean, std = np.array(MEAN), np.array(STD)
    whole = channel_counts(x, mean=mean, std=std, sigmas=3.0)
    parts = channel_counts(x[:, :17], mean=mean, std=std, sigmas=3.0) + \
        channel_counts(x[:, 17:], mean=mean, std=std, sigmas=3.0)
    np.testing.assert_array_equal(whole[:, :3], parts[:, :3])
    assert whole[2, 1] == (x[2] < 5000 - 3 * 600).sum() and whole[2, 0] == x[2].size
    # a channel constant in training has no scale: never reported
    counts = channel_counts(x, mean=mean, std=np.array([0.0, 0.1, 600.0]), sigmas=3.0)
    assert counts[0, 1] == counts[0, 2] == 0
    assert far_channels(counts, CHANNELS, mean=mean, std=std, sigmas=3.0)[0].startswith("elevation")


def test_after_and_check_inputs_on_dask():
    lazy = scene((0.0, 0.0, -9.0)).chunk({"y": 10}).data
    gate = check_inputs("demo", lazy, channels=CHANNELS, mean=np.array(MEAN), std=np.array(STD), sigmas=3.0)
    tied = after(lazy, gate)
    assert tied.chunks == lazy.chunks
    with pytest.warns(OutOfDistributionWarning, match="demo: channel"):
        np.testing.assert_array_equal(tied.compute(), lazy.compute())
    assert after(lazy, None) is lazy


# -- the case of the issue: a U-Net trained on synthetic scenes, applied to real Athabasca crops ---


L30 = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06", "swir22": "B07"}


def synthetic_unet():
    """A tiny U-Net trained (a few epochs) on a synthetic world: elevation around 5000 m."""
    from xglacier.segmentation.tiles import segmentation_tiles
    from xglacier.segmentation.train import fit_segmentation

    cube, truth = xglacier.synthetic_cube(shape=(64, 64), start="2020-08-01", end="2020-08-25", seed=3,
                                          max_shift=0.0)
    feats = xglacier.features(cube.drop_vars("qa_pixel"), dem=truth.dem, time=0).compute()
    tiles = segmentation_tiles(feats, truth.glacier_class.isel(time=0).compute(), size=32,
                               min_glacier_fraction=0.0)
    torch.manual_seed(0)
    unet = UNet(list(tiles.channels), list(tiles.classes), depth=1, base_channels=4, patch_size=32)
    fit_segmentation(unet, tiles, epochs=2, batch_size=4, patience=None, progress=False)
    return unet.eval(), feats


def athabasca_features():
    cube = xglacier.open_scenes(sorted(DATA.glob("athabasca_2020229_B0*_L30.tif"))).isel(time=0)
    dem = rioxarray.open_rasterio(DATA / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    return xglacier.features(cube, dem=dem).compute()


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real Athabasca HLS crops not found at {DATA} (they live in "
                    "../shared/data, beside the project, and are not part of a clone)")
def test_synthetic_unet_on_real_athabasca_warns_about_elevation():
    unet, synthetic = synthetic_unet()
    mean, std = unet.training_statistics()
    assert mean[unet.channels.index("elevation")] > 4000   # trained on a high synthetic world
    segment(synthetic, unet, tile=32, overlap=8)           # its own kind of scene: quiet
    real = athabasca_features()
    with pytest.warns(OutOfDistributionWarning) as caught:
        out = segment(real, unet, tile=64, overlap=16)
    msg = str(caught[0].message)
    assert "'elevation'" in msg and "below the training mean" in msg
    # the real elevations (1937-3449 m) are all far below the synthetic ones
    z = (np.nanmedian(real.sel(channel="elevation").values) - mean[-2]) / std[-2]
    assert z < -3
    assert out.label.shape == real.shape[1:]
