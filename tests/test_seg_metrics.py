"""Confusion matrix, IoU / precision / recall, stratification by debris fraction."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xglacier.errors import InputError, ParameterError
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.metrics import (
    confusion_matrix,
    evaluate_segmentation,
    relabel,
    scores,
    tile_confusion_matrices,
)

from .conftest import ComputeForbidden

NAMES = ["background", "clean_ice", "debris_covered_ice"]

# hand-made 4 x 5 example; 255 = no label
TRUTH = np.array([[0, 0, 0, 1, 1],
                  [0, 0, 1, 1, 1],
                  [0, 2, 2, 1, 255],
                  [0, 2, 2, 2, 255]], np.uint8)
PRED = np.array([[0, 0, 1, 1, 1],
                 [0, 0, 1, 1, 2],
                 [0, 2, 1, 1, 0],
                 [1, 2, 2, 0, 2]], np.uint8)


def test_hand_made_example():
    cm = confusion_matrix(TRUTH, PRED, 3)
    # truth 0: 7 px -> 5 predicted 0, 2 predicted 1; truth 1: 6 px -> 5 as 1, 1 as 2;
    # truth 2: 5 px -> 3 as 2, 1 as 1, 1 as 0; the two 255 pixels are left out; last column:
    # pixels left without a prediction (none here)
    np.testing.assert_array_equal(cm, [[5, 2, 0, 0], [0, 5, 1, 0], [1, 1, 3, 0]])
    df = scores(cm, classes=NAMES)
    assert list(df.columns) == ["iou", "precision", "recall", "support", "predicted"]
    assert df.index.name == "class" and list(df.index) == NAMES
    np.testing.assert_allclose(df.iou, [5 / 8, 5 / 9, 3 / 6])
    np.testing.assert_allclose(df.precision, [5 / 6, 5 / 8, 3 / 4])
    np.testing.assert_allclose(df.recall, [5 / 7, 5 / 6, 3 / 5])
    assert df.support.tolist() == [7, 6, 5] and df.predicted.tolist() == [6, 8, 4]
    glacier = scores(cm, classes=NAMES, merge={"glacier": ["clean_ice", 2]}).loc["glacier"]
    # glacier: tp = 5 + 1 + 1 + 3 = 10, support 11, predicted 12
    assert glacier.iou == pytest.approx(10 / 13) and glacier.precision == pytest.approx(10 / 12)
    assert glacier.recall == pytest.approx(10 / 11)


def test_classes_as_dict_and_dataset_prediction():
    cm = confusion_matrix(xr.DataArray(TRUTH, dims=("y", "x")),
                          xr.Dataset({"label": (("y", "x"), PRED)}), 3)
    df = scores(cm, classes={0: "background", 1: "clean_ice", 2: "debris_covered_ice"})
    assert list(df.index) == NAMES
    pd.testing.assert_frame_equal(df, scores(cm))  # default: xglacier.datasets.CLASSES


@pytest.mark.parametrize("chunks", [(1, 1), (3, 2), (4, 5)])
def test_dask_lazy_and_equal(chunks, no_compute):
    t, p = dsa.from_array(TRUTH, chunks=chunks), dsa.from_array(PRED, chunks=chunks[::-1])
    with no_compute():
        cm = confusion_matrix(xr.DataArray(t, dims=("y", "x")), p, 3)
        assert isinstance(cm, dsa.Array) and cm.shape == (3, 4)
        with pytest.raises(ComputeForbidden):
            cm.compute()
    np.testing.assert_array_equal(cm.compute(), confusion_matrix(TRUTH, PRED, 3))
    # N-D (time, y, x) works too
    stack = dsa.stack([t, t]).rechunk((1, 2, 2))
    np.testing.assert_array_equal(confusion_matrix(stack, dsa.stack([p, p]), 3).compute(),
                                  2 * confusion_matrix(TRUTH, PRED, 3))


def test_test_set_of_several_maps_is_one_matrix():
    """A batch/tile without a class gives no NaN: counts are summed before any ratio."""
    only_bg = np.zeros((2, 2), np.uint8)
    parts = [(TRUTH, PRED), (only_bg, only_bg)]
    cm = confusion_matrix([t for t, _ in parts], [p for _, p in parts], 3)
    np.testing.assert_array_equal(cm, confusion_matrix(TRUTH, PRED, 3) + np.diag([4, 0, 0, 0])[:3])
    assert not scores(cm).isna().any().any()


def test_nan_policy_for_absent_classes():
    cm = np.array([[4, 1, 0], [0, 3, 0], [0, 0, 0]])  # class 2 never present, never predicted
    df = scores(cm, classes=NAMES)
    assert df.loc["debris_covered_ice", ["iou", "precision", "recall"]].isna().all()
    assert not df.loc[["background", "clean_ice"]].isna().any().any()
    cm = np.array([[4, 1, 1], [0, 3, 0], [0, 0, 0]])  # class 2 predicted once, never present
    row = scores(cm, classes=NAMES).loc["debris_covered_ice"]
    assert row.iou == 0 and row.precision == 0 and np.isnan(row.recall)
    cm = np.array([[4, 1, 0], [0, 3, 0], [2, 0, 0]])  # class 2 present, never predicted
    row = scores(cm, classes=NAMES).loc["debris_covered_ice"]
    assert row.iou == 0 and np.isnan(row.precision) and row.recall == 0


def test_bad_input():
    with pytest.raises(InputError, match="prediction holds class 3"):
        confusion_matrix(TRUTH, np.where(PRED == 2, 3, PRED), 3)
    with pytest.raises(InputError, match=r"truth holds class 2 .*\(n_classes=2\)"):
        confusion_matrix(TRUTH, PRED, 2)
    lazy = confusion_matrix(dsa.from_array(TRUTH, chunks=2), PRED + 7, 3)  # raised when computed
    with pytest.raises(InputError, match="prediction holds class"):
        lazy.compute()
    with pytest.raises(InputError, match="shape"):
        confusion_matrix(TRUTH, PRED[:3], 3)
    a = xr.DataArray(TRUTH, dims=("y", "x"), coords={"x": np.arange(5)})
    with pytest.raises(InputError, match="same grid"):
        confusion_matrix(a, a.assign_coords(x=np.arange(5) + 1), 3)
    with pytest.raises(ParameterError, match="n_classes=0"):
        confusion_matrix(TRUTH, PRED, 0)
    with pytest.raises(ParameterError, match="3 classes"):
        scores(np.eye(3, dtype=int), classes=["a", "b"])
    with pytest.raises(InputError, match=r"\(K, K \+ 1\).*square"):
        scores(np.ones((2, 4), int))
    with pytest.raises(ParameterError, match="n_classes=256"):
        confusion_matrix(TRUTH, PRED, 256)  # 255 is NODATA, never a class
    with pytest.raises(ParameterError, match="not a class"):
        scores(np.eye(3, dtype=int), classes=NAMES, merge={"glacier": ["ice"]})


def test_relabel():
    merged = relabel(TRUTH, {2: 1})
    assert set(np.unique(merged)) == {0, 1, 255}
    lazy = relabel(xr.DataArray(dsa.from_array(TRUTH, chunks=2), dims=("y", "x")), {1: 1, 2: 1})
    assert isinstance(lazy.data, dsa.Array)
    np.testing.assert_array_equal(lazy.values, merged)
    with pytest.raises(ParameterError, match="ignore=255"):
        relabel(TRUTH, {255: 0})


def _stratified_scene():
    """Four 4x4 tiles with 0 %, 25 %, 50 % and 100 % debris, and one tile without labels."""
    truth = np.full((4, 20), 1, np.uint8)
    truth[:, 16:] = 255
    truth[0, 4:8] = 2           # 25 %
    truth[:2, 8:12] = 2         # 50 %
    truth[:, 12:16] = 2         # 100 %
    pred = truth.copy()
    pred[pred == 255] = 0
    pred[0, 0] = 2              # tile 0: one clean-ice pixel predicted as debris
    pred[0, 12:14] = 1          # tile 3: two debris pixels missed
    return truth, pred


def test_tiles_and_bins():
    truth, pred = _stratified_scene()
    cms = tile_confusion_matrices(truth, pred, 3, tile=4)
    assert cms.shape == (1, 5, 3, 4) and cms[0, 4].sum() == 0
    res = evaluate_segmentation(truth, pred, tile=4, bins=(0, 20, 60, 100))
    assert list(res.index.get_level_values("stratum").unique()) == ["all", "[0, 20)%", "[20, 60)%",
                                                                     "[60, 100]%"]
    tiles = res.xs("background", level="class")
    assert tiles.tiles.tolist() == [4, 1, 2, 1]  # the unlabelled tile is left out
    np.testing.assert_allclose(tiles.share, [1, 0.25, 0.5, 0.25])
    deb = res.xs("debris_covered_ice", level="class")
    # [0, 20): no debris present, one pixel predicted -> IoU 0, precision 0, recall NaN
    assert deb.loc["[0, 20)%", "iou"] == 0 and np.isnan(deb.loc["[0, 20)%", "recall"])
    assert deb.loc["[20, 60)%", "iou"] == 1                   # 12 debris pixels all right
    assert deb.loc["[60, 100]%", "iou"] == pytest.approx(14 / 16)
    # each stratum's matrix is the confusion matrix of its pixels
    mask = np.zeros(truth.shape, bool)
    mask[:, 4:12] = True
    sub = confusion_matrix(np.where(mask, truth, 255), pred, 3)
    pd.testing.assert_frame_equal(res.loc["[20, 60)%"].drop(columns=["tiles", "share"]), scores(sub))
    pd.testing.assert_frame_equal(res.loc["all"].drop(columns=["tiles", "share"]),
                                  scores(confusion_matrix(truth, pred, 3)))


def test_cumulative_strata_like_table3_and_dask():
    truth, pred = _stratified_scene()
    res = evaluate_segmentation(truth, pred, tile=4, above=(0, 1, 30), merge={"glacier": [1, 2]})
    glacier = res.xs("glacier", level="class")
    assert glacier.tiles.tolist() == [4, 3, 3, 2]
    lazy = evaluate_segmentation(xr.DataArray(dsa.from_array(truth, chunks=(3, 7)), dims=("y", "x")),
                                 dsa.from_array(pred, chunks=(2, 9)), tile=4, above=(0, 1, 30),
                                 merge={"glacier": [1, 2]})
    pd.testing.assert_frame_equal(lazy, res)
    # a test set of several scenes: tiles pooled
    both = evaluate_segmentation([truth, truth], [pred, pred], tile=4, above=(0, 1, 30))
    assert both.xs("background", level="class").tiles.tolist() == [8, 6, 6, 4]


def test_evaluate_errors():
    truth, pred = _stratified_scene()
    with pytest.raises(ParameterError, match="not both"):
        evaluate_segmentation(truth, pred, bins=(0, 50, 100), above=(0,))
    with pytest.raises(ParameterError, match="increasing"):
        evaluate_segmentation(truth, pred, bins=(0, 50, 20))
    with pytest.raises(ParameterError, match="stratify_by='rock'"):
        evaluate_segmentation(truth, pred, stratify_by="rock")
    with pytest.raises(ParameterError, match="tile=0"):
        evaluate_segmentation(truth, pred, tile=0)
    with pytest.raises(InputError, match="2-D"):
        evaluate_segmentation(truth[None], pred[None])


# -- predictions without a class (NODATA: the model's inputs were missing) -----------------------


def test_nodata_prediction_is_a_miss_of_the_true_class():
    """Two clean-ice pixels and one debris pixel predicted NODATA: misses, in the last column."""
    pred = PRED.copy()
    pred[0, 3], pred[1, 3], pred[3, 2] = NODATA, NODATA, NODATA   # truth 1, 1, 2
    pred[2, 4] = NODATA                                          # truth 255: still left out
    cm = confusion_matrix(TRUTH, pred, 3)
    np.testing.assert_array_equal(cm, [[5, 2, 0, 0], [0, 3, 1, 2], [1, 1, 2, 1]])
    df = scores(cm, classes=NAMES)
    assert df.support.tolist() == [7, 6, 5]          # every labelled pixel still counts
    assert df.predicted.tolist() == [6, 6, 3]        # NODATA is nobody's prediction
    np.testing.assert_allclose(df.recall, [5 / 7, 3 / 6, 2 / 5])
    np.testing.assert_allclose(df.precision, [5 / 6, 3 / 6, 2 / 3])
    np.testing.assert_allclose(df.iou, [5 / 8, 3 / 9, 2 / 6])
    # NaN in a float prediction (a label map read back through CF masking) is the same
    as_float = np.where(pred == NODATA, np.nan, pred.astype(np.float32))
    np.testing.assert_array_equal(confusion_matrix(TRUTH, as_float, 3), cm)
    lazy = confusion_matrix(dsa.from_array(TRUTH, chunks=2), dsa.from_array(pred, chunks=3), 3)
    np.testing.assert_array_equal(lazy.compute(), cm)


def test_nodata_prediction_in_evaluate_segmentation():
    truth, pred = _stratified_scene()
    pred[:, 12:16] = NODATA                # the 100 % debris tile: nothing predicted
    res = evaluate_segmentation(truth, pred, tile=4, bins=(0, 20, 60, 100))
    assert res.xs("background", level="class").tiles.tolist() == [4, 1, 2, 1]  # the tile still counts
    deb = res.loc["[60, 100]%"].loc["debris_covered_ice"]
    assert deb.support == 16 and deb.predicted == 0 and deb.recall == 0 and deb.iou == 0
    assert res.loc[("all", "debris_covered_ice"), "support"] == 16 + 12
    cms = tile_confusion_matrices(truth, pred, 3, tile=4)
    assert cms[0, 3, 2, 3] == 16 and cms[0, 3, :, :3].sum() == 0
