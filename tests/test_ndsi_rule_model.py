"""NDSIRule: the NDSI rule as a checkpointable segmentation model, against the classical rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import InputError, ParameterError
from xglacier.models import NDSIRule, load_model, save_model
from xglacier.segmentation.classical import ndsi_rule


def _features(ndsi: np.ndarray, *, ascending: bool = False, extra: bool = True) -> xr.DataArray:
    h, w = ndsi.shape
    y = np.arange(h) * 30.0 + 15.0
    y = y if ascending else y[::-1]
    chans = [ndsi, np.full_like(ndsi, 4500.0)] if extra else [ndsi]
    names = ["ndsi", "dem"] if extra else ["ndsi"]
    return xr.DataArray(np.stack(chans).astype("f4"), dims=("channel", "y", "x"),
                        coords={"channel": names, "y": y, "x": np.arange(w) * 30.0 + 15.0})


@pytest.mark.parametrize("ascending", [False, True])
def test_labels_equal_the_classical_rule(ascending):
    rng = np.random.default_rng(0)
    ndsi = rng.uniform(-0.5, 1.0, (37, 41)).astype("f4")
    ndsi[np.abs(ndsi - 0.4) < 0.03] = 0.9  # away from the soft edge of the logistic
    ndsi[3, 4] = np.nan
    feats = _features(ndsi, ascending=ascending)
    model = NDSIRule(channels=["ndsi", "dem"])
    got = xglacier.segment(feats, model, tile=16, overlap=4)
    want = ndsi_rule(feats)
    np.testing.assert_array_equal(got.label.values, want.label.values)
    assert got.label.values[3, 4] == want.label.values[3, 4]  # a missing NDSI gets no class
    assert (got.y.values == feats.y.values).all()


def test_statistics_are_undone_and_checkpoint_round_trips(tmp_path):
    x = torch.tensor([0.1, 0.39, 0.41, 0.8]).reshape(1, 1, 2, 2)
    plain = NDSIRule(threshold=0.4).predict_proba(x)
    scaled = NDSIRule(threshold=0.4, mean=[0.3], std=[0.2]).predict_proba(x)
    torch.testing.assert_close(plain, scaled)
    # P(glacier) = sigmoid(steepness * (ndsi - threshold)), computed here independently
    want = 1 / (1 + np.exp(-50.0 * (np.array([0.1, 0.39, 0.41, 0.8]) - 0.4)))
    np.testing.assert_allclose(plain[0, 1].flatten().numpy(), want, rtol=1e-5)
    path = save_model(NDSIRule(threshold=0.3, steepness=20.0), tmp_path / "rule")
    back = load_model(path)
    assert isinstance(back, NDSIRule) and back.threshold == 0.3 and back.steepness == 20.0
    fresh = NDSIRule(threshold=0.3, steepness=20.0)
    torch.testing.assert_close(back.predict_proba(x), fresh.predict_proba(x))


def test_binary_head_gives_the_same_probabilities():
    x = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    torch.testing.assert_close(NDSIRule(binary_head=True).predict_proba(x), NDSIRule().predict_proba(x))


def test_bad_settings_and_inputs():
    with pytest.raises(ParameterError, match=r"NDSIRule: channels.*'ndsi'"):
        NDSIRule(channels=["green", "swir16"])
    with pytest.raises(ParameterError, match="NDSIRule: classes"):
        NDSIRule(classes=["background", "clean_ice", "debris_covered_ice"])
    with pytest.raises(ParameterError, match="NDSIRule: threshold"):
        NDSIRule(threshold=1.5)
    with pytest.raises(ParameterError, match="NDSIRule: steepness"):
        NDSIRule(steepness=0)
    feats = _features(np.zeros((8, 8), "f4"), extra=False)
    with pytest.raises(InputError, match=r"segment: the features lack channel\(s\) \[.dem.\]"):
        xglacier.segment(feats, NDSIRule(channels=["ndsi", "dem"]))


def test_an_all_empty_scene_gets_no_class():
    feats = _features(np.full((9, 9), np.nan, "f4"))
    got = xglacier.segment(feats, NDSIRule(channels=["ndsi", "dem"]), tile=8, overlap=2)
    assert (got.label.values == ndsi_rule(feats).label.values).all()
    assert np.isnan(got.probability.values).all()
