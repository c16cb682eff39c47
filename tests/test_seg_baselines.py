"""NDSI rule and pixel-wise scikit-learn baselines behind the segmentation evaluation."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xglacier
from xglacier.errors import InputError, ParameterError
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.classical import PixelClassifier, ndsi_rule, train_baselines
from xglacier.segmentation.metrics import confusion_matrix, relabel, scores

from .conftest import ComputeForbidden

BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22"]
CHANNELS = [*BANDS, "ndsi", "dem", "noise"]


@pytest.fixture(scope="module")
def synthetic():
    """Cloud-free late-summer synthetic features and class truth.

    Train and test areas are disjoint 32 x 32 blocks of a checkerboard (the other set's
    pixels are labelled 255): (features, train labels, test labels, full labels).
    """
    # the counts below (260 debris pixels) are those of the glacier without year-to-year changes
    _, truth = xglacier.synthetic_cube(shape=(128, 128), start="2020-08-01", end="2020-08-25", seed=0,
                                       albedo_variability=0, debris_variability=0, cloud_variability=0)
    truth = truth.isel(time=0).compute()
    bands = [truth[f"true_{b}"] for b in BANDS]
    g, s = truth.true_green, truth.true_swir16
    noise = xr.zeros_like(g) + np.random.default_rng(0).normal(size=g.shape).astype(np.float32)
    feats = xr.concat([*bands, (g - s) / (g + s), truth.dem, noise], dim="channel").astype(np.float32)
    feats = feats.assign_coords(channel=CHANNELS).transpose("channel", "y", "x").drop_vars("time")
    feats.values[:, 5, 5] = np.nan  # a nodata pixel: dropped from training, no class in prediction
    labels = truth.glacier_class.drop_vars("time")
    yy, xx = np.meshgrid(np.arange(128) // 32, np.arange(128) // 32, indexing="ij")
    train = (yy + xx) % 2 == 0
    return (feats, labels.where(train, 255).astype(np.uint8), labels.where(~train, 255).astype(np.uint8),
            labels)


@pytest.mark.parametrize("method", ["random_forest", "gradient_boosting", "mlp"])
def test_baselines_beat_chance_on_held_out_area(synthetic, method):
    feats, ltrain, ltest, _ = synthetic
    params = {"n_estimators": 40} if method != "mlp" else {}
    clf = PixelClassifier(method, seed=0, **params).fit(feats, ltrain, n_samples=1500)
    out = clf.predict(feats)
    iou = scores(confusion_matrix(ltest, out, 3)).iou
    # chance: the test pixels' classes shuffled (random guesses with the true class frequencies)
    truth = ltest.values
    shuffled = truth.copy()
    keep = truth != 255
    shuffled[keep] = np.random.default_rng(0).permutation(truth[keep])
    chance = scores(confusion_matrix(truth, np.where(keep, shuffled, 0), 3)).iou
    assert (iou > chance + 0.05).all(), (iou.tolist(), chance.tolist())
    # pixel-wise debris mapping is poor (as in the paper's Table 1: IoU 0.18-0.20)
    assert iou["clean_ice"] > 0.6 and iou["debris_covered_ice"] > 0.05
    # importances: a Series indexed by channel name; the noise channel matters least-ish
    imp = clf.feature_importances
    assert list(imp.index) == CHANNELS and imp.index.name == "channel"
    assert imp["noise"] < imp.max() / 3
    if method != "mlp":
        assert imp.sum() == pytest.approx(1)
    # the one nodata pixel has no class; every other pixel has finite probabilities
    missing = np.zeros(feats.shape[1:], bool)
    missing[5, 5] = True
    assert (np.isfinite(out.probability.values).all(axis=0) == ~missing).all()
    assert out.label.values[5, 5] == NODATA and (out.label.values[~missing] < 3).all()


def test_stratified_seeded_sampling(synthetic):
    ftrain, ltrain, _, _ = synthetic
    a = PixelClassifier("random_forest", n_estimators=5, seed=1).fit(ftrain, ltrain, n_samples=300)
    assert a.training_counts.tolist() == [100, 100, 100]  # the NaN pixel at (5, 5) is background
    assert (ltrain.values == 2).sum() == 260
    few = PixelClassifier("random_forest", n_estimators=5).fit(ftrain, ltrain, n_samples=1200)
    assert few.training_counts.tolist() == [400, 400, 260]  # all debris pixels: fewer than 400
    assert list(a.training_counts.index) == ["background", "clean_ice", "debris_covered_ice"]
    b = PixelClassifier("random_forest", n_estimators=5, seed=1).fit(ftrain, ltrain, n_samples=300)
    np.testing.assert_array_equal(a.predict(ftrain).probability.values, b.predict(ftrain).probability.values)
    c = PixelClassifier("random_forest", n_estimators=5, seed=2).fit(ftrain, ltrain, n_samples=300)
    assert not np.array_equal(a.fill, c.fill)
    # several training cubes: pooled sampling
    both = PixelClassifier("random_forest", n_estimators=5).fit([ftrain, ftrain], [ltrain, ltrain],
                                                                n_samples=300)
    assert both.training_counts.sum() == 300


def test_nan_rows_dropped_in_training_and_without_class_in_prediction(synthetic):
    ftrain, ltrain, _, _ = synthetic
    holey = ftrain.copy(data=ftrain.values.copy())
    holey.values[0, ltrain.values == 2] = np.nan  # every debris pixel lacks its blue band
    clf = PixelClassifier("gradient_boosting", n_estimators=10).fit(holey, ltrain, n_samples=300)
    assert clf.training_counts.tolist() == [100, 100, 0] and clf.n_train_ == 200
    assert not np.isnan(clf.fill).any() and (clf.std > 0).all()
    out = clf.predict(holey)
    missing = np.isnan(holey.values).any(axis=0)  # one missing channel is enough ("any")
    assert missing.sum() > 260
    assert (np.isnan(out.probability.values).all(axis=0) == missing).all()
    assert (np.isfinite(out.probability.values).all(axis=0) == ~missing).all()
    assert (out.label.values[missing] == NODATA).all() and (out.label.values[~missing] < 3).all()
    lazy = clf.predict(holey.chunk({"y": 37, "x": 50}))
    np.testing.assert_array_equal(lazy.label.values, out.label.values)


def test_predict_lazy_chunk_invariant(synthetic, no_compute):
    ftrain, ltrain, _, _ = synthetic
    ftest = ftrain.isel(x=slice(30, None))
    for method, kw in (("random_forest", {"n_estimators": 10}), ("mlp", {"hidden_layer_sizes": (16,)})):
        clf = PixelClassifier(method, **kw).fit(ftrain, ltrain, n_samples=600)
        eager = clf.predict(ftest)
        with no_compute():
            lazy = clf.predict(ftest.chunk({"y": 50, "x": 21, "channel": 3}))
            assert isinstance(lazy.label.data, dsa.Array)
            with pytest.raises(ComputeForbidden):
                lazy.label.values  # noqa: B018
        # trees: exact; MLP: matrix products may round differently per block size
        tol = 0 if method == "random_forest" else 1e-6
        np.testing.assert_allclose(lazy.probability.values, eager.probability.values, rtol=0, atol=tol)
        assert lazy.probability.dims == ("class", "y", "x") and lazy.label.dtype == np.uint8
        assert lazy["class"].values.tolist() == ["background", "clean_ice", "debris_covered_ice"]
        xr.testing.assert_identical(lazy.x.drop_vars("spatial_ref"), ftest.x.drop_vars("spatial_ref"))
        # the crop's own transform, not the stale one its spatial_ref carried over from ftrain
        assert lazy.rio.transform() == ftest.rio.transform(recalc=True)
        assert lazy.rio.crs == ftest.rio.crs


def test_classifier_errors(synthetic):
    ftrain, ltrain, _, _ = synthetic
    ftest = ftrain
    with pytest.raises(ParameterError, match="method='svm'"):
        PixelClassifier("svm")
    with pytest.raises(InputError, match="not fitted"):
        PixelClassifier().predict(ftest)
    clf = PixelClassifier(n_estimators=5).fit(ftrain, ltrain, n_samples=300)
    with pytest.raises(InputError, match=r"different order"):
        clf.predict(ftest.sel(channel=CHANNELS[::-1]))
    with pytest.raises(InputError, match=r"lack channel\(s\) \['noise'\]"):
        clf.predict(ftest.sel(channel=CHANNELS[:-1]))
    with pytest.raises(InputError, match="labels hold values"):
        PixelClassifier().fit(ftrain, ltrain + 5, n_samples=300)
    with pytest.raises(InputError, match="same"):
        PixelClassifier().fit(ftrain, ltrain.isel(x=slice(0, 10)), n_samples=300)
    with pytest.raises(InputError, match="at least two"):
        PixelClassifier().fit(ftrain, xr.zeros_like(ltrain), n_samples=300)
    with pytest.raises(ParameterError, match="n_samples=1"):
        PixelClassifier().fit(ftrain, ltrain, n_samples=1)
    with pytest.raises(InputError, match=r"xglacier\.features"):
        PixelClassifier().fit(ftrain.to_dataset("channel"), ltrain)


def test_train_baselines_same_sample(synthetic):
    ftrain, ltrain, _, _ = synthetic
    fitted = train_baselines(ftrain, ltrain, n_samples=300, methods=["random_forest", "gradient_boosting"])
    assert sorted(fitted) == ["gradient_boosting", "random_forest"]
    assert (fitted["random_forest"].training_counts == fitted["gradient_boosting"].training_counts).all()


def test_ndsi_rule_tiny_example():
    f = xr.DataArray(np.array([[[0.1, 0.45, 0.4, 0.3]], [[0.2, 0.1, 0.3, 0.3]],
                               [[-0.5, 0.41, 0.4, np.nan]]], "f4"),
                     dims=("channel", "y", "x"), coords={"channel": ["green", "swir16", "ndsi"]})
    out = ndsi_rule(f)
    assert out.label.values.tolist() == [[0, 1, 0, NODATA]]  # 0.4 is not > 0.4; NaN has no class
    assert out["class"].values.tolist() == ["background", "glacier"]
    np.testing.assert_array_equal(out.probability.values[:, 0], [[1, 0, 1, np.nan], [0, 1, 0, np.nan]])
    assert out.label.attrs["_FillValue"] == NODATA
    assert ndsi_rule(f, threshold=0.35).label.values.tolist() == [[0, 1, 1, NODATA]]
    # without an ndsi channel it is computed from green and swir16: NDSI -0.33, 0.64, 0.14, 0
    assert ndsi_rule(f.sel(channel=["green", "swir16"])).label.values.tolist() == [[0, 1, 0, 0]]
    assert ndsi_rule(f.sel(channel="ndsi", drop=True)).label.values.tolist() == [[0, 1, 0, NODATA]]
    lazy = ndsi_rule(f.chunk({"x": 1}))
    assert isinstance(lazy.label.data, dsa.Array) and lazy.label.values.tolist() == [[0, 1, 0, NODATA]]
    # green + swir16 = 0: NDSI undefined, no class
    zero = f.sel(channel=["green", "swir16"]).copy(data=np.zeros((2, 1, 4), "f4"))
    assert ndsi_rule(zero).label.values.tolist() == [[NODATA] * 4]
    with pytest.raises(InputError, match=r"expected channel 'ndsi', or 'green' and 'swir16'"):
        ndsi_rule(f.sel(channel=["green"]))
    with pytest.raises(ParameterError, match="threshold='high'"):
        ndsi_rule(f, threshold="high")


def test_ndsi_rule_scored_as_binary(synthetic):
    """Explicit mapping for the binary rule: clean + debris -> glacier (1)."""
    feats, _, _, labels = synthetic
    out = ndsi_rule(feats)
    df = scores(confusion_matrix(relabel(labels, {2: 1}), out, 2), classes=["background", "glacier"])
    # clean ice is bright in green, dark in SWIR: found; debris is not; late snow is a false positive
    clean = labels.values == 1
    assert (out.label.values[clean] == 1).mean() > 0.95
    assert (out.label.values[labels.values == 2] == 1).mean() < 0.2
    assert 0.1 < df.loc["glacier", "iou"] < 0.5
