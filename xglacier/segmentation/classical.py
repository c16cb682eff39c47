"""Baselines behind the same evaluation as the U-Net: an NDSI rule and pixel-wise classifiers.

Both return what :func:`xglacier.segment` returns, a Dataset with ``probability (class, y,
x)`` and ``label (y, x)`` on the input grid, lazily over the feature cube's blocks, so one
evaluation (:mod:`xglacier.segmentation.metrics`) serves every model. As there, a pixel
whose inputs are missing (NaN) gets no class: label
:data:`~xglacier.segmentation.classes.NODATA`, probability NaN.

* :func:`ndsi_rule`: glacier where NDSI > 0.4 (binary: ``background`` / ``glacier``);
  score it against the truth with clean and debris-covered ice merged, explicitly:
  ``relabel(truth, {2: 1})``.
* :class:`PixelClassifier`: random forest, gradient boosting or MLP (scikit-learn) trained
  on pixels sampled per class from training feature cubes, as in the paper's Table 1.
  Nothing is saved or loaded through pickle: refit from the training data instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import with_history
from .._validate import check_choice, check_int, check_number
from ..errors import DimensionError, InputError
from ..nn.shift import after, check_inputs
from .classes import NODATA, class_names
from .models.ndsi_rule import NDSI_THRESHOLD
from .segment import argmax_label, check_features, segmentation_dataset


def _ndsi_of(features: xr.DataArray, channel: str) -> xr.DataArray:
    if isinstance(features, xr.DataArray) and features.dims == ("y", "x"):
        return features
    if not isinstance(features, xr.DataArray) or set(features.dims) != {"channel", "y", "x"}:
        raise DimensionError(f"ndsi_rule: got {type(features).__name__} with dims "
                             f"{getattr(features, 'dims', None)}; expected a (channel, y, x) feature cube "
                             "or a (y, x) NDSI DataArray")
    have = [str(c) for c in features["channel"].values] if "channel" in features.coords else []
    if channel in have:
        return features.sel(channel=channel, drop=True)
    if "green" in have and "swir16" in have:
        g, s = features.sel(channel="green", drop=True), features.sel(channel="swir16", drop=True)
        total = g + s
        return ((g - s) / total.where(total != 0)).astype(np.float32)
    raise InputError(f"ndsi_rule: the features have channels {have}; expected channel {channel!r}, or "
                     "'green' and 'swir16' to compute it")


def ndsi_rule(features: xr.DataArray, *, threshold: float = NDSI_THRESHOLD,
              channel: str = "ndsi") -> xr.Dataset:
    """Glacier where NDSI > ``threshold``: the classic band-ratio rule (binary).

    Parameters
    ----------
    features
        ``(channel, y, x)`` feature cube with an ``ndsi`` channel (or ``green`` and
        ``swir16``, from which NDSI is computed), or a ``(y, x)`` NDSI DataArray.
    threshold
        NDSI above which a pixel is glacier (strictly greater); 0.4 is the usual choice.
    channel
        Name of the NDSI channel.

    Returns
    -------
    xarray.Dataset
        As :func:`xglacier.segment`, with classes ``("background", "glacier")``:
        ``probability`` is 0 or 1, ``label`` 1 where glacier. Where NDSI is NaN (no data,
        or green + swir16 = 0) there is no class: ``label`` is
        :data:`~xglacier.segmentation.classes.NODATA` (255) and ``probability`` NaN. Lazy
        for a Dask-backed input.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> f = xr.DataArray(np.array([[[0.1, 0.5], [0.4, np.nan]]], "f4"), dims=("channel", "y", "x"),
    ...                  coords={"channel": ["ndsi"]})
    >>> ndsi_rule(f).label.values.tolist()
    [[0, 1], [0, 255]]
    """
    threshold = float(check_number("ndsi_rule", "threshold", threshold))
    nd = _ndsi_of(features, channel)
    glacier = nd > threshold
    valid = np.isfinite(nd)
    prob = xr.concat([~glacier, glacier], dim="class").astype(np.float32).where(valid)
    label = xr.where(valid, glacier.astype(np.uint8), np.uint8(NODATA)).astype(np.uint8)
    attrs = with_history({}, "ndsi_rule", threshold=threshold, channel=channel)
    attrs["model"] = "NDSI rule"
    return segmentation_dataset(prob.transpose("class", "y", "x").data, label.transpose("y", "x").data, nd,
                                ("background", "glacier"), attrs)


_METHODS = ("random_forest", "gradient_boosting", "mlp")


def _estimator(method: str, seed: int, params: dict[str, Any]) -> Any:
    if method == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        # n_jobs=1: Dask parallelises over blocks, and threaded tree averaging would add the
        # trees in a varying order (probabilities then differ in the last bits between runs)
        return RandomForestClassifier(**{"n_estimators": 100, "n_jobs": 1, "random_state": seed, **params})
    if method == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(**{"random_state": seed, **params})
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = MLPClassifier(**{"hidden_layer_sizes": (64, 64), "max_iter": 500, "early_stopping": True,
                           "random_state": seed, **params})
    return make_pipeline(StandardScaler(), mlp)


def _pairs(features: Any, labels: Any) -> list[tuple[xr.DataArray, Any]]:
    if isinstance(features, (list, tuple)) != isinstance(labels, (list, tuple)):
        raise InputError("PixelClassifier.fit: features and labels must both be single cubes or both "
                         "sequences of the same length")
    if isinstance(features, (list, tuple)):
        if len(features) != len(labels) or not features:
            raise InputError(f"PixelClassifier.fit: {len(features)} feature cubes and {len(labels)} label "
                             "maps; expected the same, non-zero number")
        return list(zip(features, labels, strict=True))
    return [(features, labels)]


class PixelClassifier:
    """Pixel-wise scikit-learn classifier on feature channels (the paper's Table 1 baselines).

    Parameters
    ----------
    method
        ``"random_forest"`` (``RandomForestClassifier``, 100 trees), ``"gradient_boosting"``
        (``GradientBoostingClassifier``: exact gradient boosting with impurity importances;
        ``HistGradientBoostingClassifier`` is faster but has none) or ``"mlp"``
        (``StandardScaler`` + ``MLPClassifier``, two hidden layers of 64, early stopping).
    seed
        Seeds the pixel sampling and the estimator.
    **params
        Passed to the scikit-learn estimator (the ``MLPClassifier`` for ``"mlp"``).

    Attributes
    ----------
    channels, classes
        Channel names (from the training features) and class names, after :meth:`fit`.
    estimator
        The fitted scikit-learn estimator.
    feature_importances
        ``pandas.Series`` indexed by channel name: the impurity importances of the forest
        or boosting (sum to 1), or for the MLP the mean drop in accuracy when a channel is
        permuted (``sklearn.inspection.permutation_importance``, 5 repeats) on held-out
        pixels drawn apart from the training pixels.
    fill, std
        Per-channel mean and standard deviation of the training pixels: what
        :meth:`predict` compares a scene with (``ood_sigmas``).
    training_counts
        ``pandas.Series``: training pixels per class (after NaN rows were dropped).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> labels = xr.DataArray(rng.integers(0, 3, (40, 40)).astype("u1"), dims=("y", "x"))
    >>> f = xr.DataArray(np.stack([labels.values + rng.normal(0, .3, (40, 40)),
    ...                            rng.normal(0, 1, (40, 40))]).astype("f4"),
    ...                  dims=("channel", "y", "x"), coords={"channel": ["ndsi", "noise"]})
    >>> clf = PixelClassifier("random_forest", n_estimators=20).fit(f, labels, n_samples=600)
    >>> clf.feature_importances.idxmax()
    'ndsi'
    >>> out = clf.predict(f)
    >>> float((out.label == labels).mean()) > 0.9
    True
    """

    def __init__(self, method: str = "random_forest", *, seed: int = 0, **params: Any) -> None:
        check_choice("PixelClassifier", "method", method, _METHODS)
        seed = check_int("PixelClassifier", "seed", seed, low=0)
        self.method, self.seed, self.params = method, seed, dict(params)
        self.estimator: Any = None
        self.channels: tuple[str, ...] = ()
        self.classes: tuple[str, ...] = ()
        self.fill = np.zeros(0, np.float32)
        self.std = np.zeros(0, np.float32)
        self.n_train_ = 0
        self.training_counts = pd.Series(dtype=np.int64, name="pixels")
        self.feature_importances = pd.Series(dtype=np.float64, name="importance")

    def __repr__(self) -> str:
        state = f"channels={list(self.channels)}" if self.estimator is not None else "not fitted"
        return f"PixelClassifier({self.method!r}, {state})"

    def _sample(self, pairs: list[tuple[xr.DataArray, np.ndarray]], n_classes: int, n_samples: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stratified pixel sample: (X_train, y_train, X_held_out, y_held_out), NaN rows dropped."""
        rng = np.random.default_rng(self.seed)
        quota = max(1, n_samples // n_classes)
        held = max(1, quota // 4) if self.method == "mlp" else 0
        # per cube: flat pixel indices and classes of the training and held-out draws
        picks: list[dict[str, list[np.ndarray]]] = [{"train": [], "held": []} for _ in pairs]
        for k in range(n_classes):
            found = [np.flatnonzero(lab.ravel() == k) for _, lab in pairs]
            owner = np.concatenate([np.full(len(ix), i) for i, ix in enumerate(found)])
            flat = np.concatenate(found)
            order = rng.permutation(len(flat))
            for part, sel in (("train", order[:quota]), ("held", order[quota:quota + held])):
                for i in range(len(pairs)):
                    picks[i][part].append(flat[sel][owner[sel] == i])
        out = []
        for part in ("train", "held"):
            xs, ys = [], []
            for (feat, lab), pick in zip(pairs, picks, strict=True):
                idx = np.concatenate(pick[part])
                if not len(idx):
                    continue
                iy, ix = np.unravel_index(idx, lab.shape)
                pts = feat.isel(y=xr.DataArray(iy, dims="s"), x=xr.DataArray(ix, dims="s"))
                xs.append(np.asarray(pts.transpose("s", "channel").values, np.float32))
                ys.append(lab.ravel()[idx].astype(np.int64))
            x = np.concatenate(xs) if xs else np.zeros((0, len(self.channels)), np.float32)
            y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
            ok = ~np.isnan(x).any(axis=1)
            out.extend([x[ok], y[ok]])
        return out[0], out[1], out[2], out[3]

    def fit(self, features: Any, labels: Any, *, classes: Any = None, n_samples: int = 20_000,
            ignore: int = 255) -> PixelClassifier:
        """Train on pixels sampled per class from training feature cubes and label maps.

        Sampling is stratified: up to ``n_samples // n_classes`` pixels of each class
        (all of a class's pixels if it has fewer), drawn without replacement with
        ``seed``, over all the given cubes together; pixels labelled ``ignore`` are never
        drawn, and drawn pixels with a NaN channel are dropped (so slightly fewer than
        ``n_samples`` may be used). The MLP also draws a quarter as many held-out pixels
        per class for its permutation importances. Computes the labels and the sampled
        pixels (not the whole cubes).

        Parameters
        ----------
        features
            ``(channel, y, x)`` feature cube, or a sequence of them with the same channels.
        labels
            ``(y, x)`` uint8 class map(s) on the same grid (0 background, ``ignore`` = no label).
        classes
            Class names or ``{value: name}``; default :data:`xglacier.datasets.CLASSES`.
        n_samples
            Pixels to draw in total (before NaN rows are dropped).
        ignore
            Label value of unlabelled pixels.

        Returns
        -------
        PixelClassifier
            ``self``, fitted.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> labels = xr.DataArray(np.repeat([[0], [1], [255]], 6, axis=1).astype("u1"), dims=("y", "x"))
        >>> f = xr.DataArray(labels.values[None].astype("f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["ndsi"]})
        >>> clf = PixelClassifier(n_estimators=5).fit(f, labels, classes=["background", "ice"], n_samples=8)
        >>> clf.training_counts.tolist()
        [4, 4]
        """
        n_samples = check_int("PixelClassifier.fit", "n_samples", n_samples, low=2)
        pairs = _pairs(features, labels)
        channels = list(check_features("PixelClassifier.fit", pairs[0][0], None)["channel"].values)
        self.classes = tuple(class_names("PixelClassifier.fit", classes))
        n_classes = len(self.classes)
        checked = []
        for feat, lab in pairs:
            feat = check_features("PixelClassifier.fit", feat, channels)
            lab = np.asarray(lab.values if isinstance(lab, xr.DataArray) else lab)
            if lab.shape != feat.shape[1:]:
                raise InputError(f"PixelClassifier.fit: labels have shape {lab.shape}, the features' grid is "
                                 f"{feat.shape[1:]}; expected the same (y, x) grid")
            values = np.unique(lab)
            bad = values[(values != ignore) & ((values < 0) | (values >= n_classes))]
            if bad.size:
                raise InputError(f"PixelClassifier.fit: labels hold values {bad.tolist()}; expected classes "
                                 f"0..{n_classes - 1} ({list(self.classes)}) or ignore={ignore}")
            checked.append((feat, lab))
        self.channels = tuple(str(c) for c in channels)
        x, y, xh, yh = self._sample(checked, n_classes, n_samples)
        if len(np.unique(y)) < 2:
            raise InputError(f"PixelClassifier.fit: the sampled pixels hold {len(np.unique(y))} class(es) "
                             f"without NaN; expected at least two of {list(self.classes)}")
        self.fill = x.mean(axis=0).astype(np.float32)
        self.std = x.std(axis=0).astype(np.float32)
        self.estimator = _estimator(self.method, self.seed, self.params).fit(x, y)
        if self.method == "mlp":
            from sklearn.inspection import permutation_importance

            imp = permutation_importance(self.estimator, xh, yh, n_repeats=5, random_state=self.seed)
            values = imp.importances_mean
        else:
            values = self.estimator.feature_importances_
        self.feature_importances = pd.Series(np.asarray(values, np.float64), index=pd.Index(
            list(self.channels), name="channel"), name="importance")
        self.n_train_ = len(y)
        self.training_counts = pd.Series(np.bincount(y, minlength=n_classes), name="pixels",
                                         index=pd.Index(list(self.classes), name="class"))
        return self

    def predict(self, features: xr.DataArray, *, ood_sigmas: float | None = 3.0) -> xr.Dataset:
        """Class probabilities and labels for every pixel, as :func:`xglacier.segment` returns.

        A pixel with any NaN (or infinite) channel gets no class. Lazy over the blocks of a
        Dask-backed cube (the estimator enters the graph once); computed for a NumPy-backed
        one.

        Parameters
        ----------
        features
            ``(channel, y, x)`` cube with the training channels in the same order.
        ood_sigmas
            Warn (:class:`~xglacier.errors.OutOfDistributionWarning`) naming each channel
            whose scene median lies over ``ood_sigmas`` training standard deviations
            (:attr:`std`) from the training mean (:attr:`fill`), as :func:`xglacier.segment`
            does; ``None``: no check.

        Returns
        -------
        xarray.Dataset
            ``probability (class, y, x)`` float32 and ``label (y, x)`` uint8;
            :data:`~xglacier.segmentation.classes.NODATA` and NaN where an input is missing.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> labels = xr.DataArray(np.repeat([[0], [1]], 6, axis=1).astype("u1"), dims=("y", "x"))
        >>> f = xr.DataArray(labels.values[None].astype("f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["ndsi"]})
        >>> clf = PixelClassifier(n_estimators=5).fit(f, labels, classes=["background", "ice"], n_samples=8)
        >>> clf.predict(f.chunk({"x": 2})).label.values.tolist()
        [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
        """
        if self.estimator is None:
            raise InputError("PixelClassifier.predict: the classifier is not fitted; call fit first")
        features = check_features("PixelClassifier.predict", features, self.channels)
        ood_sigmas = check_number("PixelClassifier.predict", "ood_sigmas", ood_sigmas, low=0, low_open=True,
                                  allow_none=True)
        gate = None
        if ood_sigmas is not None:
            gate = check_inputs("PixelClassifier.predict", features.data, channels=self.channels,
                                mean=self.fill, std=self.std, sigmas=ood_sigmas)
        n = len(self.classes)
        eager = not isinstance(features.data, dsa.Array)
        data = dsa.from_array(features.data, chunks=(-1, 1024, 1024), name=False) if eager else features.data
        data = data.rechunk({0: -1})
        prob = dsa.map_blocks(
            _predict_pixels, data, estimator=dask.delayed(self.estimator, pure=False), n_classes=n,
            dtype=np.float32, chunks=((n,), *data.chunks[1:]), meta=np.empty((0, 0, 0), np.float32),
        )
        prob = after(prob, gate)
        label = prob.map_blocks(argmax_label, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
        if eager:
            prob, label = dask.compute(prob, label)
        attrs = with_history({}, "PixelClassifier.predict", method=self.method, seed=self.seed,
                             n_train=self.n_train_, ood_sigmas=ood_sigmas)
        attrs["model"] = f"PixelClassifier({self.method})"
        return segmentation_dataset(prob, label, features, self.classes, attrs)


def _predict_pixels(block: np.ndarray, *, estimator: Any, n_classes: int) -> np.ndarray:
    """Probabilities of the pixels whose channels are all finite; NaN (no class) elsewhere."""
    c, ny, nx = block.shape
    x = np.asarray(block, np.float32).reshape(c, -1).T
    ok = np.isfinite(x).all(axis=1)
    out = np.full((n_classes, ny * nx), np.nan, np.float32)
    if ok.any():
        proba = estimator.predict_proba(x[ok])
        known = np.zeros((n_classes, int(ok.sum())), np.float32)
        known[np.asarray(estimator.classes_, np.int64)] = proba.T
        out[:, ok] = known
    return out.reshape(n_classes, ny, nx)


def train_baselines(features: Any, labels: Any, *, classes: Any = None, n_samples: int = 20_000,
                    seed: int = 0, methods: Sequence[str] = _METHODS) -> dict[str, PixelClassifier]:
    """Fit the paper's three pixel-wise baselines on the same sample.

    Returns
    -------
    dict
        ``{method: fitted PixelClassifier}`` for each of ``methods``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(1)
    >>> labels = xr.DataArray(rng.integers(0, 2, (20, 20)).astype("u1"), dims=("y", "x"))
    >>> f = xr.DataArray(labels.values[None] + rng.normal(0, .2, (1, 20, 20)).astype("f4"),
    ...                  dims=("channel", "y", "x"), coords={"channel": ["ndsi"]})
    >>> sorted(train_baselines(f, labels, classes=["background", "glacier"], n_samples=200,
    ...                        methods=["random_forest", "gradient_boosting"]))
    ['gradient_boosting', 'random_forest']
    """
    return {m: PixelClassifier(m, seed=seed).fit(features, labels, classes=classes, n_samples=n_samples)
            for m in methods}
