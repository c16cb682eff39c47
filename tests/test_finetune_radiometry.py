"""fine_tune(radiometric=r): random band gains per tile, indices changed as their bands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xglacier.errors import ParameterError
from xglacier.segmentation.finetune_radiometry import RadiometricGain

from .test_finetune import glacier_polygon, make_scene, tune

CHANNELS = ["blue", "green", "red", "nir08", "swir16", "swir22", "ndsi", "ndwi", "ndvi", "ndwi_mcfeeters",
            "elevation", "slope"]


def nd(a, b):
    return (a - b) / (a + b)


def batch(n=16, size=5, seed=0):
    """Reflectances in (0.02, 0.9), their indices, and terrain."""
    rng = np.random.default_rng(seed)
    bands = {b: rng.uniform(0.02, 0.9, (n, size, size)) for b in CHANNELS[:6]}
    idx = {"ndsi": nd(bands["green"], bands["swir16"]), "ndwi": nd(bands["nir08"], bands["swir16"]),
           "ndvi": nd(bands["nir08"], bands["red"]), "ndwi_mcfeeters": nd(bands["green"], bands["nir08"])}
    terrain = {"elevation": rng.uniform(2000, 3500, (n, size, size)),
               "slope": rng.uniform(0, 60, (n, size, size))}
    values = {**bands, **idx, **terrain}
    return torch.from_numpy(np.stack([values[c] for c in CHANNELS], axis=1).astype("f4"))


def test_gains_per_tile_and_band_and_indices_follow_their_bands():
    x = batch()
    x[0, 1, 0, 0] = np.nan  # a missing green pixel stays missing, and so does its NDSI
    x[0, [6, 9], 0, 0] = np.nan  # (and McFeeters' NDWI)
    torch.manual_seed(0)
    y = RadiometricGain(CHANNELS, 0.2)(x).numpy().astype(np.float64)
    x = x.numpy().astype(np.float64)
    gains = y[:, :6] / x[:, :6]
    tile_gain = gains[:, :, 2, 2]
    assert np.nanmax(np.abs(gains / tile_gain[:, :, None, None] - 1)) < 1e-6  # one gain per tile and band
    assert (tile_gain >= np.exp(-0.2) - 1e-6).all() and (tile_gain <= np.exp(0.2) + 1e-6).all()
    assert tile_gain.std(axis=0).min() > 0.03 and tile_gain.std(axis=1).min() > 0.01  # varies both ways
    b = dict(zip(CHANNELS, np.moveaxis(y, 1, 0), strict=True))
    for name, (first, second) in {"ndsi": ("green", "swir16"), "ndwi": ("nir08", "swir16"),
                                  "ndvi": ("nir08", "red"), "ndwi_mcfeeters": ("green", "nir08")}.items():
        np.testing.assert_allclose(b[name], nd(b[first], b[second]), atol=2e-6, equal_nan=True)
    assert np.isnan(y[0, 1, 0, 0]) and np.isnan(y[0, 6, 0, 0]) and np.isfinite(y[0, 6, 1, 1])
    assert np.array_equal(y[:, 10:], x[:, 10:])  # elevation and slope untouched


def test_an_index_whose_bands_are_not_channels():
    x = batch()
    channels = ["green", "ndsi"]
    torch.manual_seed(1)
    y = RadiometricGain(channels, 0.3)(x[:, [1, 6]]).numpy().astype(np.float64)
    green, swir = x[:, 1].numpy().astype(np.float64), x[:, 4].numpy().astype(np.float64)
    # the new NDSI is that of the new green and SOME swir16 gain, the same for the whole tile
    swir_new = y[:, 0] * (1 - y[:, 1]) / (1 + y[:, 1])
    swir_gain = swir_new / swir
    assert np.allclose(swir_gain, swir_gain[:, :1, :1], rtol=1e-4)
    assert (swir_gain > np.exp(-0.3) - 1e-4).all() and (swir_gain < np.exp(0.3) + 1e-4).all()
    assert not np.allclose(swir_gain, y[:, 0] / green)  # its own gain, not green's


def test_no_strength_or_no_band_changes_nothing():
    x = batch()
    assert RadiometricGain(CHANNELS, 0.0)(x) is x
    terrain = x[:, 10:]
    aug = RadiometricGain(["elevation", "slope"], 0.5)
    assert not aug.active and aug(terrain) is terrain


def test_seeded_draws_repeat():
    x = batch()
    aug = RadiometricGain(CHANNELS, 0.1)
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    assert torch.equal(a, aug(x))


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")  # two epochs
def test_fine_tune_records_and_checks_radiometric():
    f, _ = make_scene()
    from xglacier.models import UNet

    net = UNet(["ndsi", "elevation"], ["background", "glacier"], depth=1, base_channels=4, patch_size=16)
    _, plain = tune(net, f, glacier_polygon(), epochs=2, refit=False)
    _, history = tune(net, f, glacier_polygon(), epochs=2, refit=False, radiometric=0.2)
    assert history.attrs["fine_tuning"]["training"]["radiometric"] == 0.2
    assert history["train_loss"].tolist() != plain["train_loss"].tolist()  # the NDSI channel changed
    for bad in (-0.1, 1.5, "0.1", float("nan")):
        with pytest.raises(ParameterError, match="radiometric="):
            tune(net, f, glacier_polygon(), radiometric=bad)


def test_index_bands_are_the_bands_features_computes_each_index_from():
    # the radiometric gains change an index as its two bands: the table must match features()
    import xarray as xr

    from xglacier.segmentation.features import INDEX_BANDS, INDICES, features

    assert set(INDEX_BANDS) == set(INDICES)
    rng = np.random.default_rng(3)
    names = ["blue", "green", "red", "nir08", "swir16", "swir22"]
    ds = xr.Dataset({b: (("y", "x"), rng.uniform(0.05, 0.9, (6, 7)).astype("f4")) for b in names},
                    coords={"y": np.arange(6.0)[::-1] * 30, "x": np.arange(7.0) * 30})
    feats = features(ds, bands=[], indices=list(INDEX_BANDS), slope=False)
    for index, (a, b) in INDEX_BANDS.items():
        want = (ds[a] - ds[b]) / (ds[a] + ds[b])
        np.testing.assert_allclose(feats.sel(channel=index).values, want.values, rtol=1e-5, err_msg=index)
