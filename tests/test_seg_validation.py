"""One set of keyword checks for segmentation and nn: NumPy integers accepted, bools refused,
options after the data keyword-only."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import ParameterError
from xglacier.nn import load_model, save_model
from xglacier.segmentation import classical, features, labels, losses, metrics, segment, tiles, train, vectors
from xglacier.segmentation.models import CombinedBinary, UNet

THREE = ["background", "clean_ice", "debris_covered_ice"]


def scene(ny=12, nx=16, seed=0):
    rng = np.random.default_rng(seed)
    coords = {"y": 4e6 - 30.0 * np.arange(ny), "x": 5e5 + 30.0 * np.arange(nx)}
    f = xr.DataArray(rng.random((2, ny, nx), dtype=np.float32), dims=("channel", "y", "x"),
                     coords={"channel": ["green", "ndsi"], **coords})
    lab = xr.DataArray(rng.integers(0, 3, (ny, nx)).astype(np.uint8), dims=("y", "x"), coords=coords)
    return f, lab


def tiny(**kw):
    torch.manual_seed(0)
    return UNet(["green", "ndsi"], THREE, depth=1, base_channels=2, **kw).eval()


def test_unet_takes_numpy_integers_and_keeps_json_config(tmp_path):
    model = UNet(["green", "ndsi"], THREE, depth=np.int64(2), base_channels=np.int32(3),
                 patch_size=np.int64(64))  # patch_size was refused as a NumPy integer
    assert (model.depth, model.patch_size) == (2, 64)
    assert all(type(model.config[k]) is int for k in ("depth", "base_channels", "patch_size"))
    model.set_patch_size(np.uint16(32))
    path = save_model(model, tmp_path / "unet")
    assert json.loads(path.read_text())["config"]["patch_size"] == 32
    assert load_model(path).patch_size == 32


@pytest.mark.parametrize(("kw", "match"), [
    (dict(depth=True), "UNet: depth=True; expected an integer >= 1"),
    (dict(base_channels=np.bool_(True)), "UNet: base_channels=np.True_"),
    (dict(patch_size=True), "UNet: patch_size=True"),
    (dict(dropout=True), "UNet: dropout=True"),
])
def test_unet_refuses_bools(kw, match):
    with pytest.raises(ParameterError, match=match):
        UNet(["green"], THREE, **kw)


def test_segment_numpy_integers_same_result_bools_refused():
    f, _ = scene(40, 50)
    model = tiny()
    plain = segment.segment(f, model, tile=32, overlap=8, batch_size=2)
    numpy = segment.segment(f, model, tile=np.int64(32), overlap=np.int32(8), batch_size=np.uint8(2),
                            windows_per_chunk=np.int64(1))
    np.testing.assert_array_equal(numpy.probability.values, plain.probability.values)
    for kw in (dict(tile=True), dict(overlap=False), dict(batch_size=True), dict(windows_per_chunk=True)):
        name = next(iter(kw))
        with pytest.raises(ParameterError, match=f"segment: {name}="):
            segment.segment(f, model, **kw)


def test_segmentation_tiles_numpy_integers_same_tiles_bools_refused():
    f, lab = scene()
    plain = tiles.segmentation_tiles(f, lab, size=8, stride=4, min_glacier_fraction=0.0)
    numpy = tiles.segmentation_tiles(f, lab, size=np.int64(8), stride=np.int16(4), ignore=np.uint8(255),
                                     min_glacier_fraction=np.float32(0.0))
    np.testing.assert_array_equal(numpy.origins, plain.origins)
    assert type(numpy.size) is int and type(numpy.stride) is int
    for kw in (dict(size=True), dict(stride=True), dict(ignore=True), dict(min_glacier_fraction=True)):
        with pytest.raises(ParameterError, match=f"segmentation_tiles: {next(iter(kw))}=True"):
            tiles.segmentation_tiles(f, lab, **kw)
    with pytest.raises(ParameterError, match="split: gap=True"):
        plain.split(block=np.int64(8), gap=True)
    with pytest.raises(ParameterError, match="to_torch: seed=True"):
        plain.to_torch(seed=True)


def test_an_empty_scene_is_refused_naming_it():
    f, lab = scene()
    with pytest.raises(xglacier.errors.InputError, match=r"scene 1: the grid is empty \(y=0, x=16\)"):
        tiles.segmentation_tiles([(f, lab), (f.isel(y=slice(0, 0)), lab.isel(y=slice(0, 0)))], size=8)


def test_metrics_losses_baselines_training_refuse_bools():
    t = np.array([[0, 1], [2, 1]], np.uint8)
    np.testing.assert_array_equal(metrics.confusion_matrix(t, t, np.int64(3)),
                                  metrics.confusion_matrix(t, t, 3))
    with pytest.raises(ParameterError, match="confusion_matrix: n_classes=True"):
        metrics.confusion_matrix(t, t, True)
    with pytest.raises(ParameterError, match="evaluate_segmentation: tile=True"):
        metrics.evaluate_segmentation(t, t, tile=True)
    with pytest.raises(ParameterError, match="stratify_by=True is not a class"):  # was class 1
        metrics.evaluate_segmentation(t, t, stratify_by=True)
    with pytest.raises(ParameterError, match="True is not a class"):
        metrics.scores(metrics.confusion_matrix(t, t, 3), merge={"glacier": [True, 2]})
    assert metrics.evaluate_segmentation(t, t, tile=2, stratify_by=np.int64(2)).loc["all"].shape == (3, 7)
    with pytest.raises(ParameterError, match="dice_loss: smooth=True"):
        losses.dice_loss(torch.full((1, 3, 2, 2), 1 / 3), torch.from_numpy(t[None]).long(), smooth=True)
    f, lab = scene()
    with pytest.raises(ParameterError, match="ndsi_rule: threshold=True"):  # was taken as 1.0
        classical.ndsi_rule(f, threshold=True)
    with pytest.raises(ParameterError, match="PixelClassifier: seed=True"):
        classical.PixelClassifier(seed=True)
    with pytest.raises(ParameterError, match=r"PixelClassifier\.fit: n_samples=True"):
        classical.PixelClassifier().fit(f, lab, n_samples=True)
    small = tiles.segmentation_tiles(f, lab, size=8, min_glacier_fraction=0.0)
    for kw in (dict(epochs=True), dict(batch_size=True), dict(patience=True), dict(seed=True)):
        with pytest.raises(ParameterError, match=f"fit_segmentation: {next(iter(kw))}=True"):
            train.fit_segmentation(tiny(), small, progress=False, **kw)
    with pytest.raises(ParameterError, match="polygonize: connectivity=True"):
        vectors.polygonize(lab.rio.write_crs("EPSG:32632"), connectivity=True)


# (function, number of leading parameters that may be positional)
PUBLIC = [
    (features.features, 1), (labels.rasterize, 2), (vectors.polygonize, 1), (segment.segment, 2),
    (tiles.segmentation_tiles, 2), (tiles.SegmentationTiles.split, 1), (tiles.SegmentationTiles.to_torch, 1),
    (tiles.SegmentationTiles.binary, 2), (train.fit_segmentation, 3), (losses.dice_loss, 2),
    (losses.binary_dice_loss, 2), (losses.l1_penalty, 1), (losses.segmentation_loss, 1),
    (metrics.confusion_matrix, 3), (metrics.scores, 1), (metrics.relabel, 2),
    (metrics.tile_confusion_matrices, 3), (metrics.evaluate_segmentation, 2), (classical.ndsi_rule, 1),
    (classical.PixelClassifier.fit, 3), (classical.train_baselines, 2), (UNet.__init__, 3),
    (CombinedBinary.__init__, 3), (load_model, 1), (save_model, 2),
]


@pytest.mark.parametrize(("func", "n"), PUBLIC, ids=[f.__qualname__ for f, _ in PUBLIC])
def test_options_after_the_data_are_keyword_only(func, n):
    params = [p for p in inspect.signature(func).parameters.values() if p.kind is not p.VAR_KEYWORD]
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    assert len(positional) == n, f"{func.__qualname__}: positional {positional}"
