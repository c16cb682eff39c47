"""Segmentation skill: one confusion matrix over the whole test set, IoU / precision / recall.

Scores are ratios of counts summed over every test pixel first (as the paper does: "we
evaluate IoU over the whole validation set rather than the mean IoU per patch"), so an
empty tile or batch never produces NaN. A ratio is NaN only when it is 0/0 over the
whole set: IoU of a class that is neither present nor predicted, precision of a class
never predicted, recall of a class never present. Pixels whose truth is ``ignore`` (255)
are left out. A labelled pixel the model gave no class (predicted
:data:`~xglacier.segmentation.classes.NODATA`, or NaN: its inputs were missing) is a miss
for its true class: it is counted in a last "no prediction" column of the confusion
matrix, so it lowers that class's recall and IoU and no class's precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._validate import check_int
from ..errors import InputError, ParameterError
from .classes import NODATA, class_names, is_code

_COLUMNS = ["iou", "precision", "recall", "support", "predicted"]


def _data(obj: Any, what: str) -> tuple[Any, xr.DataArray | None]:
    """(NumPy or Dask array, DataArray or None) of a label map; a Dataset gives its ``label``."""
    if isinstance(obj, xr.Dataset):
        if "label" not in obj.data_vars:
            raise InputError(f"{what} is a Dataset without a 'label' variable (has {list(obj.data_vars)}); "
                             "expected a label map or the output of xglacier.segment")
        obj = obj["label"]
    if isinstance(obj, xr.DataArray):
        return obj.data, obj
    if isinstance(obj, dsa.Array):
        return obj, None
    return np.asarray(obj), None


def _pair(truth: Any, prediction: Any) -> tuple[Any, Any]:
    t, tda = _data(truth, "truth")
    p, pda = _data(prediction, "prediction")
    if tda is not None and pda is not None:
        if set(tda.dims) != set(pda.dims):
            raise InputError(f"truth has dims {tda.dims}, prediction {pda.dims}; expected the same dims")
        pda = pda.transpose(*tda.dims)
        try:
            xr.align(tda, pda, join="exact")
        except ValueError as err:
            raise InputError(f"truth and prediction are not on the same grid: {err}") from None
        p = pda.data
    if t.shape != p.shape:
        raise InputError(f"truth has shape {t.shape}, prediction {p.shape}; expected the same shape")
    if isinstance(t, dsa.Array) or isinstance(p, dsa.Array):
        t = t if isinstance(t, dsa.Array) else dsa.from_array(t, chunks=p.chunks)
        p = p if isinstance(p, dsa.Array) else dsa.from_array(p, chunks=t.chunks)
        p = p.rechunk(t.chunks)
    return t, p


def _codes(t: np.ndarray, p: np.ndarray, n: int, ignore: int | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth (``0..n-1``), prediction (``0..n``; ``n``: none) of the labelled pixels, and their mask."""
    t, p = np.asarray(t).ravel(), np.asarray(p).ravel()
    keep = np.ones(t.shape, bool)
    if t.dtype.kind == "f":
        keep &= ~np.isnan(t)
    if ignore is not None:
        keep &= t != ignore
    t, p = t[keep], p[keep]
    none = p == NODATA
    if p.dtype.kind == "f":
        none |= np.isnan(p)
    t, p = t.astype(np.int64), np.where(none, n, p).astype(np.int64)
    for what, v in (("truth", t), ("prediction", np.where(none, 0, p))):
        bad = (v < 0) | (v >= n)
        if bad.any():
            raise InputError(f"{what} holds class {int(v[bad][0])} at a labelled pixel; expected a class in "
                             f"0..{n - 1} (n_classes={n}), ignore={ignore} in the truth or NODATA={NODATA} "
                             "(no prediction) in the prediction")
    return t, p, keep


def _cm_block(t: np.ndarray, p: np.ndarray, n: int, ignore: int | None) -> np.ndarray:
    tc, pc, _ = _codes(t, p, n, ignore)
    cm = np.bincount(tc * (n + 1) + pc, minlength=n * (n + 1)).reshape(n, n + 1)
    return cm.reshape((1,) * np.ndim(t) + (n, n + 1))


def confusion_matrix(truth: Any, prediction: Any, n_classes: int, *, ignore: int | None = 255) -> Any:
    """Confusion matrix ``cm[true class, predicted class]`` (pixel counts), ``np.bincount`` per block.

    It has one more column than classes: ``cm[k, n_classes]`` counts the pixels of class
    ``k`` that the prediction left without a class
    (:data:`~xglacier.segmentation.classes.NODATA` or NaN, where :func:`xglacier.segment`
    had no input data): misses, never dropped nor counted as a class.

    Parameters
    ----------
    truth, prediction
        Label maps of the same shape (NumPy, Dask or xarray; a Dataset from
        :func:`xglacier.segment` gives its ``label``), or two sequences of such maps (a test
        set of several scenes), whose matrices are summed. xarray inputs must share their
        grid.
    n_classes
        Number of classes (at most 255: codes 0..254); labelled truth and predictions must
        lie in ``0..n_classes-1``, predictions may also be NODATA (otherwise
        :class:`~xglacier.errors.InputError`, raised when the counts are computed).
    ignore
        Truth value of unlabelled pixels, left out (``None``: none). NaN in a float truth is
        left out too.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(n_classes, n_classes + 1)`` int64, the last column "no prediction"; lazy (one
        small matrix per block, summed) when an input is Dask-backed.

    Examples
    --------
    >>> truth = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    >>> pred = np.array([[0, 1, 255], [1, 2, 0]], np.uint8)  # 255: no prediction
    >>> confusion_matrix(truth, pred, 3)
    array([[1, 1, 0, 0],
           [0, 1, 0, 1],
           [0, 0, 1, 0]])
    """
    n = check_int("confusion_matrix", "n_classes", n_classes, low=1, high=NODATA)
    if isinstance(truth, (list, tuple)) or isinstance(prediction, (list, tuple)):
        if not isinstance(truth, (list, tuple)) or not isinstance(prediction, (list, tuple)) \
                or len(truth) != len(prediction) or not truth:
            raise InputError("confusion_matrix: truth and prediction must be two sequences of the same, "
                             "non-zero length (one label map per test scene) or two label maps")
        total = confusion_matrix(truth[0], prediction[0], n, ignore=ignore)
        for t, p in zip(truth[1:], prediction[1:], strict=True):
            total = total + confusion_matrix(t, p, n, ignore=ignore)
        return total
    t, p = _pair(truth, prediction)
    if isinstance(t, dsa.Array):
        ndim = t.ndim
        per_block = dsa.map_blocks(
            _cm_block, t, p, n=n, ignore=ignore, dtype=np.int64,
            chunks=(*((1,) * len(c) for c in t.chunks), (n,), (n + 1,)),
            new_axis=[ndim, ndim + 1], meta=np.empty((0,) * (ndim + 2), np.int64),
        )
        return per_block.sum(axis=tuple(range(ndim)))
    return _cm_block(t, p, n, ignore).reshape(n, n + 1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _groups(merge: Mapping[str, Sequence[Any]] | None, names: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for group, members in (merge or {}).items():
        idx = []
        for m in [members] if isinstance(members, (str, int)) else members:
            if is_code(m) and 0 <= m < len(names):
                idx.append(int(m))
            elif str(m) in names:
                idx.append(names.index(str(m)))
            else:
                raise ParameterError(f"merge={dict(merge)}: {m!r} is not a class; classes are {names}")
        out[str(group)] = sorted(set(idx))
    return out


def scores(cm: Any, *, classes: Any = None, merge: Mapping[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """IoU, precision and recall per class from one confusion matrix.

    With ``tp = cm[k, k]``, ``support = cm[k, :].sum()`` (true pixels, those left without
    a prediction included) and ``predicted = cm[:, k].sum()``: IoU = tp / (support +
    predicted - tp), precision = tp / predicted,
    recall = tp / support. A ratio is NaN only when it is 0/0 (see the module docstring):
    a class absent from the truth and never predicted has NaN IoU, precision and recall; a
    class absent from the truth but predicted has IoU 0, precision 0 and NaN recall.

    Parameters
    ----------
    cm
        ``(K, K + 1)`` confusion matrix of :func:`confusion_matrix` (rows truth, columns
        prediction, the last column "no prediction"), or a square ``(K, K)`` one; a Dask
        array is computed.
    classes
        Class names in order, or a dict ``{value: name}``; default
        :data:`xglacier.datasets.CLASSES`.
    merge
        Extra rows for unions of classes, e.g. ``{"glacier": ["clean_ice",
        "debris_covered_ice"]}`` (the paper's "IoU of glaciers"): the group against the rest.

    Returns
    -------
    pandas.DataFrame
        Index ``class``; columns ``iou``, ``precision``, ``recall`` (float) and ``support``,
        ``predicted`` (pixel counts).

    Examples
    --------
    >>> cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]])
    >>> scores(cm, classes=["background", "clean_ice", "debris_covered_ice"],
    ...        merge={"glacier": ["clean_ice", "debris_covered_ice"]}).round(3)
    ... # doctest: +NORMALIZE_WHITESPACE
                          iou  precision  recall  support  predicted
    class
    background          0.625      0.714   0.833        6          7
    clean_ice           0.429      0.750   0.500        6          4
    debris_covered_ice  0.000      0.000     NaN        0          1
    glacier             0.571      0.800   0.667        6          5
    """
    cm = np.asarray(cm.compute() if isinstance(cm, dsa.Array) else cm)
    if cm.ndim != 2 or cm.shape[1] not in (cm.shape[0], cm.shape[0] + 1):
        raise InputError(f"scores: cm has shape {cm.shape}; expected a (K, K + 1) confusion matrix (the "
                         "last column: no prediction) or a square (K, K) one")
    if cm.dtype.kind not in "iu" or (cm < 0).any():
        raise InputError(f"scores: cm has dtype {cm.dtype}; expected non-negative integer pixel counts")
    names = class_names("scores", classes, cm.shape[0])
    groups = {name: [k] for k, name in enumerate(names)}
    groups.update(_groups(merge, names))
    rows = []
    for idx in groups.values():
        tp = cm[np.ix_(idx, idx)].sum()
        support, predicted = cm[idx, :].sum(), cm[:, idx].sum()  # idx < K: never "no prediction"
        rows.append((tp, support, predicted))
    tp, support, predicted = (np.array(v, np.int64) for v in zip(*rows, strict=True))
    df = pd.DataFrame({"iou": _ratio(tp, support + predicted - tp), "precision": _ratio(tp, predicted),
                       "recall": _ratio(tp, support), "support": support, "predicted": predicted},
                      index=pd.Index(list(groups), name="class"))
    return df[_COLUMNS]


def relabel(labels: Any, mapping: Mapping[int, int], *, ignore: int = 255) -> Any:
    """Map class values to others, e.g. clean + debris -> glacier, to score a binary rule.

    Values not in ``mapping`` are kept; ``ignore`` stays ``ignore``. Lazy for Dask.

    Parameters
    ----------
    labels
        uint8 label map (NumPy, Dask, DataArray; a Dataset gives its ``label``).
    mapping
        ``{old value: new value}``, values in 0..255.
    ignore
        The no-label value, never remapped.

    Returns
    -------
    xarray.DataArray or numpy.ndarray
        Same type as ``labels`` (a DataArray for a Dataset), uint8.

    Examples
    --------
    >>> relabel(np.array([0, 1, 2, 255], np.uint8), {2: 1})
    array([  0,   1,   1, 255], dtype=uint8)
    """
    lut = np.arange(256, dtype=np.uint8)
    for old, new in mapping.items():
        if not (0 <= int(old) <= 255 and 0 <= int(new) <= 255) or int(old) == ignore:
            raise ParameterError(f"relabel: mapping {dict(mapping)}; expected values in 0..255 and never "
                                 f"remapping ignore={ignore}")
        lut[int(old)] = int(new)
    if isinstance(labels, xr.Dataset):
        labels = _data(labels, "labels")[1]
    data = labels.data if isinstance(labels, xr.DataArray) else labels
    if isinstance(data, dsa.Array):
        out = data.map_blocks(lambda b: lut[b.astype(np.uint8)], dtype=np.uint8)
    else:
        data = np.asarray(data)
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise InputError(f"relabel: labels have dtype {data.dtype}; expected class values in 0..255")
        out = lut[data.astype(np.uint8)]
    if isinstance(labels, xr.DataArray):
        res = labels.copy(data=out)
        res.attrs = {k: v for k, v in labels.attrs.items() if k not in ("flag_values", "flag_meanings")}
        return res
    return out


def _tile_cms_block(t: np.ndarray, p: np.ndarray, n: int, ignore: int | None, tile: int) -> np.ndarray:
    """``(tiles_y, tiles_x, n, n + 1)`` confusion matrices of the ``tile`` x ``tile`` tiles of a block."""
    ny, nx = t.shape
    ty, tx = -(-ny // tile), -(-nx // tile)
    tid = (np.arange(ny) // tile)[:, None] * tx + (np.arange(nx) // tile)[None, :]
    tid = np.broadcast_to(tid, t.shape).ravel()
    tc, pc, keep = _codes(t, p, n, ignore)
    counts = np.bincount((tid[keep] * n + tc) * (n + 1) + pc, minlength=ty * tx * n * (n + 1))
    return counts.reshape(ty, tx, n, n + 1)


def tile_confusion_matrices(truth: Any, prediction: Any, n_classes: int, *, tile: int = 64,
                            ignore: int | None = 255) -> np.ndarray:
    """One confusion matrix per ``tile`` x ``tile`` tile of a 2-D label map (computed).

    Tiles are aligned on the map's first row and column; edge tiles are smaller.

    Returns
    -------
    numpy.ndarray
        ``(tiles_y, tiles_x, n_classes, n_classes + 1)`` int64 pixel counts (the last
        column: no prediction, as in :func:`confusion_matrix`).

    Examples
    --------
    >>> t = np.array([[1, 1, 0], [1, 2, 0]], np.uint8)
    >>> tile_confusion_matrices(t, t, 3, tile=2).sum(axis=(2, 3))
    array([[4, 2]])
    """
    n = check_int("tile_confusion_matrices", "n_classes", n_classes, low=1, high=NODATA)
    tile = check_int("tile_confusion_matrices", "tile", tile, low=1)
    t, p = _pair(truth, prediction)
    if t.ndim != 2:
        raise InputError(f"truth has {t.ndim} dimensions (shape {t.shape}); expected a 2-D (y, x) label map")
    if isinstance(t, dsa.Array):
        size = tile * max(1, 1024 // tile)
        t, p = t.rechunk(size), p.rechunk(size)
        chunks = (*(tuple(-(-c // tile) for c in cs) for cs in t.chunks), (n,), (n + 1,))
        cms = dsa.map_blocks(_tile_cms_block, t, p, n=n, ignore=ignore, tile=tile, dtype=np.int64,
                             chunks=chunks, new_axis=[2, 3], meta=np.empty((0, 0, 0, 0), np.int64))
        return cms.compute()
    return _tile_cms_block(np.asarray(t), np.asarray(p), n, ignore, tile)


def _strata(pct: np.ndarray, bins: Sequence[float] | None, above: Sequence[float] | None
            ) -> list[tuple[str, np.ndarray]]:
    if bins is not None and above is not None:
        raise ParameterError("evaluate_segmentation: give bins or above, not both")
    if above is not None:
        thresholds = [float(a) for a in above]
        return [(f"> {a:g}%", pct > a) for a in thresholds]
    edges = [float(b) for b in (bins if bins is not None else range(0, 101, 10))]
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        raise ParameterError(f"evaluate_segmentation: bins={edges}; expected at least two increasing edges")
    out = []
    for k, (a, b) in enumerate(pairwise(edges)):
        last = k == len(edges) - 2
        sel = (pct >= a) & ((pct <= b) if last else (pct < b))
        out.append((f"[{a:g}, {b:g}{']' if last else ')'}%", sel))
    return out


def evaluate_segmentation(truth: Any, prediction: Any, *, classes: Any = None, tile: int = 64,
                          bins: Sequence[float] | None = None, above: Sequence[float] | None = None,
                          stratify_by: str | int = "debris_covered_ice",
                          merge: Mapping[str, Sequence[Any]] | None = None,
                          ignore: int | None = 255) -> pd.DataFrame:
    """Scores over the whole test area and stratified by debris fraction (the paper's Table 3).

    The area is cut into ``tile`` x ``tile`` tiles; each tile's debris percentage is the
    share of its labelled truth pixels in class ``stratify_by`` (tiles with no labelled
    pixel are left out). Tiles are grouped by ``bins`` of that percentage (default
    ``[0, 10), [10, 20), ... [90, 100]``) or, with ``above``, cumulatively as in the
    paper's Table 3 (``above=(0, 1, 2, 5, 10)``: tiles with more than 0 %, 1 %, ...). One
    confusion matrix is summed per group, and :func:`scores` computed from it.

    Parameters
    ----------
    truth, prediction
        2-D label maps (NumPy, Dask, xarray; a Dataset gives its ``label``), or two
        sequences of them (one per test scene). Computed here. A labelled pixel predicted
        NODATA (or NaN) is a miss for its true class (see :func:`confusion_matrix`).
    classes
        Class names or ``{value: name}``; default the ``class`` coordinate of a
        :func:`xglacier.segment` Dataset, else :data:`xglacier.datasets.CLASSES`.
    tile
        Tile size in pixels (the paper used 512 px patches).
    bins, above
        Percentage bin edges, or thresholds for cumulative ``> t %`` strata (not both).
    stratify_by
        Name or value of the class whose fraction defines the strata.
    merge
        Extra rows for unions of classes, as in :func:`scores`.
    ignore
        Truth value of unlabelled pixels.

    Returns
    -------
    pandas.DataFrame
        Index ``(stratum, class)``, the first stratum ``"all"``; columns ``tiles`` (tiles
        in the stratum), ``share`` (their fraction of all tiles, the paper's "% of data"),
        then those of :func:`scores`. An empty stratum has ``tiles`` 0 and NaN ratios.

    Examples
    --------
    >>> truth = np.zeros((4, 4), np.uint8)
    >>> truth[:2, :2] = 2                      # one tile with 100 % debris
    >>> pred = truth.copy()
    >>> pred[0, 0] = 0
    >>> res = evaluate_segmentation(truth, pred, tile=2, above=(0, 50))
    >>> row = res.loc[("> 50%", "debris_covered_ice")]
    >>> int(row.tiles), float(row.share), float(row.iou)
    (1, 0.25, 0.75)
    """
    tile = check_int("evaluate_segmentation", "tile", tile, low=1)
    if isinstance(truth, (list, tuple)) != isinstance(prediction, (list, tuple)):
        raise InputError("evaluate_segmentation: truth and prediction must both be label maps or both "
                         "sequences of label maps")
    pairs = list(zip(truth, prediction, strict=True)) if isinstance(truth, (list, tuple)) \
        else [(truth, prediction)]
    if not pairs:
        raise InputError("evaluate_segmentation: no label maps given")
    if classes is None:
        first = pairs[0][1]
        from_model = isinstance(first, xr.Dataset) and "class" in first.coords
        classes = first["class"].values.tolist() if from_model else None
    names = class_names("evaluate_segmentation", classes)
    n = len(names)
    if is_code(stratify_by) and 0 <= stratify_by < n:
        d = int(stratify_by)
    elif str(stratify_by) in names:
        d = names.index(str(stratify_by))
    else:
        raise ParameterError(f"evaluate_segmentation: stratify_by={stratify_by!r} is not a class; classes "
                             f"are {names}")
    cms = np.concatenate([tile_confusion_matrices(t, p, n, tile=tile, ignore=ignore).reshape(-1, n, n + 1)
                          for t, p in pairs])
    labelled = cms.sum(axis=(1, 2))
    cms = cms[labelled > 0]
    pct = 100.0 * cms[:, d, :].sum(axis=1) / np.maximum(cms.sum(axis=(1, 2)), 1)
    strata = [("all", np.ones(len(cms), bool)), *_strata(pct, bins, above)]
    frames = []
    for _, sel in strata:
        df = scores(cms[sel].sum(axis=0), classes=names, merge=merge)
        df.insert(0, "share", sel.sum() / len(cms) if len(cms) else math.nan)
        df.insert(0, "tiles", int(sel.sum()))
        frames.append(df)
    return pd.concat(frames, keys=[name for name, _ in strata], names=["stratum", "class"])
