"""Pixels whose inputs are missing get no class: NODATA labels, NaN probabilities, misses in scores."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from torch import nn

import xglacier
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.classical import PixelClassifier, ndsi_rule
from xglacier.segmentation.metrics import confusion_matrix, evaluate_segmentation
from xglacier.segmentation.models import SegmentationModel
from xglacier.segmentation.segment import segment

CHANNELS = ["green", "swir16", "ndsi", "elevation"]
CLASSES = ["background", "clean_ice", "debris_covered_ice"]


class Net(SegmentationModel):
    """3x3 convolutions: a pixel's output also depends on its (imputed) neighbours."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv1 = nn.Conv2d(len(self.channels), 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, len(self.classes), 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.tanh(self.conv1(x)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Net(channels=CHANNELS, classes=CLASSES, mean=[0.5, 0.3, 0.2, 3000.0],
               std=[0.3, 0.2, 0.5, 500.0]).eval()


def scene(ny=70, nx=90, seed=0):
    """In-distribution features: reflectances in 0-1, NDSI from them, elevation about 3000 m."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.1, 0.9, (ny, nx)).astype(np.float32)
    s = rng.uniform(0.05, 0.5, (ny, nx)).astype(np.float32)
    z = rng.normal(3000, 300, (ny, nx)).astype(np.float32)
    data = np.stack([g, s, (g - s) / (g + s), z])
    f = xr.DataArray(data, dims=("channel", "y", "x"), name="features",
                     coords={"channel": CHANNELS, "y": 5.78e6 - 30.0 * np.arange(ny),
                             "x": 4.78e5 + 30.0 * np.arange(nx)})
    return f.rio.write_crs("EPSG:32611")


def with_gap(f):
    """The L30 case: a block where every spectral channel is NaN but the DEM has values."""
    out = f.copy(data=f.values.copy())
    out.values[:3, 20:41, 30:73] = np.nan       # 21 x 43 = 903 pixels, across block edges
    return out


@pytest.mark.parametrize("chunks", [None, {"y": 25, "x": 31}])
def test_gap_is_nodata_the_rest_is_classified(model, chunks):
    f = with_gap(scene())
    gap = np.isnan(f.values).any(axis=0)
    out = segment(f if chunks is None else f.chunk(chunks), model, tile=32, overlap=8)
    label, prob = out.label.values, out.probability.values
    assert (label[gap] == NODATA).all() and gap.sum() == 903
    assert (label[~gap] < len(CLASSES)).all()
    assert np.isnan(prob[:, gap]).all()
    assert np.isfinite(prob[:, ~gap]).all()
    np.testing.assert_allclose(prob[:, ~gap].sum(axis=0), 1, atol=1e-5)


def test_gap_chunk_invariant(model):
    f = with_gap(scene())
    eager = segment(f, model, tile=32, overlap=8, batch_size=3)
    for chunks in ({"y": 7, "x": 90}, {"y": 70, "x": 13}, {"channel": 1, "y": 40, "x": 40}):
        lazy = segment(f.chunk(chunks), model, tile=32, overlap=8, batch_size=3)
        np.testing.assert_array_equal(lazy.probability.values, eager.probability.values)
        np.testing.assert_array_equal(lazy.label.values, eager.label.values)


@pytest.mark.parametrize("lazy", [False, True])
def test_all_nan_scene_is_all_nodata(model, lazy):
    f = scene(40, 50)
    f = f.copy(data=np.full(f.shape, np.nan, np.float32))
    out = segment(f.chunk({"y": 16}) if lazy else f, model, tile=32, overlap=8)
    assert (out.label.values == NODATA).all()
    assert np.isnan(out.probability.values).all()


def test_any_missing_channel_is_enough(model):
    """One NaN (or infinite) channel makes a pixel nodata: the model would use an invented value."""
    f = scene(40, 50)
    f.values[3, 5, 6] = np.nan      # only the DEM is missing here
    f.values[0, 7, 8] = np.inf      # a broken reflectance
    f.values[2, 9, 10] = -np.inf
    out = segment(f, model, tile=32, overlap=8)
    missing = np.zeros((40, 50), bool)
    missing[5, 6] = missing[7, 8] = missing[9, 10] = True
    assert ((out.label.values == NODATA) == missing).all()
    assert (np.isnan(out.probability.values).all(axis=0) == missing).all()


def test_label_fill_value_is_read_by_cf_and_gdal_readers(model, tmp_path):
    f = with_gap(scene())
    out = segment(f, model, tile=32, overlap=8)
    gap = np.isnan(f.values).any(axis=0)
    assert out.label.rio.nodata == NODATA       # rioxarray reads _FillValue
    path = xglacier.to_netcdf(out, tmp_path / "seg.nc")
    with xr.open_dataset(path) as back:          # CF masking: nodata is missing, not a class
        assert np.isnan(back.label.values[gap]).all() and not np.isnan(back.label.values[~gap]).any()
        assert np.isnan(back.probability.values[:, gap]).all()
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        assert raw.label.dtype == np.uint8
        np.testing.assert_array_equal(raw.label.values, out.label.values)
    tif = tmp_path / "label.tif"
    out.label.rio.to_raster(tif)
    with rasterio.open(tif) as src:
        assert src.nodata == NODATA and src.dtypes[0] == "uint8"
        assert (src.read_masks(1)[gap] == 0).all() and (src.read_masks(1)[~gap] == 255).all()


def test_scores_count_nodata_as_missed(model):
    """A segmentation with a gap scores against the truth: the gap's pixels are misses."""
    f = with_gap(scene())
    gap = np.isnan(f.values).any(axis=0)
    out = segment(f, model, tile=32, overlap=8)
    truth = np.ones(gap.shape, np.uint8)          # everything clean ice
    truth[:5] = 255                               # an unlabelled strip
    cm = confusion_matrix(truth, out, 3)
    labelled = truth != 255
    assert cm.sum() == labelled.sum()                      # nothing dropped
    assert cm[1, 3] == (gap & labelled).sum() > 0          # the gap: misses of clean ice
    assert cm[:, :3].sum() == (~gap & labelled).sum()      # the rest: predicted classes
    res = evaluate_segmentation(truth, out, tile=16).loc[("all", "clean_ice")]
    assert res.support == labelled.sum() and res.recall <= 1 - (gap & labelled).sum() / labelled.sum()


def test_ndsi_rule_nodata_lazy_and_eager():
    f = with_gap(scene())
    gap = np.isnan(f.values[2])
    for data in (f, f.chunk({"y": 33, "x": 20})):
        out = ndsi_rule(data)
        assert isinstance(out.label.data, dsa.Array) == (data is not f)
        assert ((out.label.values == NODATA) == gap).all()
        assert (np.isnan(out.probability.values).all(axis=0) == gap).all()


def test_pixel_classifier_nodata_lazy_and_eager():
    f = scene()
    labels = xr.DataArray((f.values[2] > 0.4).astype(np.uint8), dims=("y", "x"))
    clf = PixelClassifier("random_forest", n_estimators=5).fit(f, labels, classes=["background", "ice"],
                                                               n_samples=400)
    holey = with_gap(f)
    holey.values[3, 0, 0] = np.nan           # DEM only
    missing = np.isnan(holey.values).any(axis=0)
    eager = clf.predict(holey)
    lazy = clf.predict(holey.chunk({"y": 30, "x": 40}))
    for out in (eager, lazy):
        assert ((out.label.values == NODATA) == missing).all()
        assert (np.isnan(out.probability.values).all(axis=0) == missing).all()
    np.testing.assert_array_equal(lazy.label.values, eager.label.values)
    nan_scene = clf.predict(holey.copy(data=np.full(holey.shape, np.nan, np.float32)))
    assert (nan_scene.label.values == NODATA).all()
