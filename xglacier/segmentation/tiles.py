"""Training tiles for segmentation: feature cubes and label maps cut into square tiles.

:func:`segmentation_tiles` cuts one or several scenes — each a ``(channel, y, x)``
feature DataArray (:func:`xglacier.features`) and its ``(y, x)`` label map
(:func:`xglacier.rasterize`, or the synthetic truth's ``glacier_class``) on the same
grid — into ``size x size`` tiles every ``stride`` pixels, padding the scene's bottom and
right edges (features NaN, labels ``ignore``), and keeps the tiles with enough glacier.
The result, :class:`SegmentationTiles`, splits into geographically disjoint
train / validation / test sets, gives per-channel normalisation statistics, and feeds
``torch`` batches to :func:`xglacier.segmentation.train.fit_segmentation`.

The scenes are loaded into memory once (training needs them); tiles are gathered from
them batch by batch, so overlapping tiles (``stride < size``) cost no extra memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DimensionError, InputError, ParameterError
from ..nn.batches import BatchLoader

__all__ = ["DEFAULT_CLASSES", "IGNORE", "SegmentationTiles", "segmentation_tiles"]

#: Label value of pixels without a label (padded tile edges); excluded from losses.
IGNORE = 255
#: Class names assumed for a label map without ``flag_values`` / ``flag_meanings`` attrs.
DEFAULT_CLASSES = ("background", "clean_ice", "debris_covered_ice")


@dataclass(frozen=True)
class _Scene:
    """One scene, padded to whole tiles, in memory."""

    features: np.ndarray  # (channel, Hp, Wp) float32, NaN in the padding
    labels: np.ndarray  # (Hp, Wp) uint8, ignore in the padding
    y: np.ndarray  # (Hp,) pixel-centre coordinates, extrapolated into the padding
    x: np.ndarray  # (Wp,)
    shape: tuple[int, int]  # unpadded (H, W)
    crs: str | None


def _check_int(label: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"segmentation_tiles: {label}={value!r}; expected an integer >= {low}")
    return int(value)


def _crs(obj: xr.DataArray) -> str | None:
    try:
        crs = obj.rio.crs
    except Exception:  # no or unreadable CRS: treated as unknown
        return None
    return None if crs is None else crs.to_string()


def _classes_from_attrs(labels: xr.DataArray) -> tuple[str, ...] | None:
    values, meanings = labels.attrs.get("flag_values"), labels.attrs.get("flag_meanings")
    if values is None or meanings is None:
        return None
    names = str(meanings).split()
    values = [int(v) for v in np.atleast_1d(values)]
    if len(names) != len(values) or sorted(values) != list(range(len(values))):
        raise InputError(f"segmentation_tiles: labels attrs flag_values={values} / flag_meanings="
                         f"{meanings!r}; expected one name per class index 0..K-1 (or pass classes=)")
    return tuple(name for _, name in sorted(zip(values, names, strict=True)))


def _same_axis(i: int, dim: str, f: np.ndarray, lab: np.ndarray) -> None:
    if f.shape != lab.shape:
        raise InputError(f"segmentation_tiles: scene {i}: features have {f.size} {dim} values, labels "
                         f"{lab.size}; the label map must be on the feature cube's grid")
    step = abs(float(f[1] - f[0])) if f.size > 1 else 1.0
    off = np.abs(f.astype(np.float64) - lab.astype(np.float64)) > 1e-6 * step
    if off.any():
        k = int(np.argmax(off))
        raise InputError(f"segmentation_tiles: scene {i}: the {dim} coordinates of features and labels "
                         f"differ (first at index {k}: {f[k]!r} vs {lab[k]!r}); the label map must be on "
                         "the feature cube's grid (rasterize(..., like=features))")


def _step(coord: np.ndarray) -> float:
    """Mean pixel spacing of a coordinate (1 for a single pixel)."""
    return float(coord[-1] - coord[0]) / (coord.size - 1) if coord.size > 1 else 1.0


def _axis(coord: np.ndarray, n: int) -> np.ndarray:
    """``n`` regularly spaced coordinates continuing ``coord`` past its end."""
    return float(coord[0]) + _step(coord.astype(np.float64)) * np.arange(n)


def _positions(n: int, size: int, stride: int) -> np.ndarray:
    """Tile origins covering ``n`` pixels: 0, stride, ... until a tile reaches the end."""
    count = 1 + max(0, math.ceil((n - size) / stride))
    return np.arange(count) * stride


def _scene(i: int, features: Any, labels: Any, classes: tuple[str, ...] | None, ignore: int,
           size: int, stride: int) -> tuple[_Scene, list[str], tuple[str, ...] | None]:
    if not isinstance(features, xr.DataArray):
        raise InputError(f"segmentation_tiles: scene {i}: features is a {type(features).__name__}; "
                         "expected a (channel, y, x) DataArray (xglacier.features)")
    if not isinstance(labels, xr.DataArray):
        raise InputError(f"segmentation_tiles: scene {i}: labels is a {type(labels).__name__}; "
                         "expected a (y, x) DataArray of class indices")
    if set(features.dims) != {"channel", "y", "x"}:
        raise DimensionError(f"segmentation_tiles: scene {i}: features have dims {features.dims}; "
                             "expected ('channel', 'y', 'x') (select one date with .isel(time=...))")
    if set(labels.dims) != {"y", "x"}:
        raise DimensionError(f"segmentation_tiles: scene {i}: labels have dims {labels.dims}; expected "
                             "('y', 'x') (select one date with .isel(time=...))")
    if "channel" not in features.coords:
        raise InputError(f"segmentation_tiles: scene {i}: features have no 'channel' coordinate; "
                         "expected the channel names (e.g. ['green', 'swir16', 'ndsi', 'elevation'])")
    features = features.transpose("channel", "y", "x")
    labels = labels.transpose("y", "x")
    for dim in ("y", "x"):
        if dim not in features.coords or dim not in labels.coords:
            raise InputError(f"segmentation_tiles: scene {i}: features and labels need a {dim!r} "
                             "coordinate to check that they share one grid")
        _same_axis(i, dim, features[dim].values, labels[dim].values)
    crs_f, crs_l = _crs(features), _crs(labels)
    if crs_f is not None and crs_l is not None and crs_f != crs_l:
        raise InputError(f"segmentation_tiles: scene {i}: features are in {crs_f}, labels in {crs_l}; "
                         "rasterize the labels on the feature cube's grid")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"segmentation_tiles: scene {i}: labels have dtype {labels.dtype}; expected "
                         f"integer class indices (uint8), {ignore} where there is no label")
    attr_classes = _classes_from_attrs(labels)
    names = classes or attr_classes or DEFAULT_CLASSES
    lab = np.asarray(labels.values)  # training data: loaded once
    bad = (lab != ignore) & ((lab < 0) | (lab >= len(names)))
    if bad.any():
        raise InputError(f"segmentation_tiles: scene {i}: labels hold values "
                         f"{sorted(np.unique(lab[bad]).tolist())[:5]} that are neither class indices "
                         f"0..{len(names) - 1} ({list(names)}) nor the ignore value {ignore}")
    feat = np.asarray(features.values, dtype=np.float32)
    h, w = lab.shape
    ys, xs = _positions(h, size, stride), _positions(w, size, stride)
    hp, wp = int(ys[-1]) + size, int(xs[-1]) + size
    padded_f = np.full((feat.shape[0], hp, wp), np.nan, np.float32)
    padded_f[:, :h, :w] = feat
    padded_l = np.full((hp, wp), ignore, np.uint8)
    padded_l[:h, :w] = lab
    scene = _Scene(padded_f, padded_l, _axis(features["y"].values, hp), _axis(features["x"].values, wp),
                   (h, w), crs_f or crs_l)
    return scene, [str(c) for c in features["channel"].values], attr_classes


class SegmentationTiles:
    """Square tiles of one or more scenes: features, labels, where they come from.

    Made by :func:`segmentation_tiles`; subsets (``subset``, ``split``, ``binary``) share
    the scenes' arrays.

    Attributes
    ----------
    channels, classes
        Channel names (in order) and class names (background first).
    size, stride, ignore
        Tile size and stride in pixels; the label value of unlabelled pixels.
    origins
        ``(N, 3)`` int array: scene index, row and column of each tile's top-left pixel
        in its scene.
    glacier_fraction
        ``(N,)`` fraction of each tile's labelled pixels that are not background.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> f = xr.DataArray(np.random.default_rng(0).random((2, 6, 6), "f4"), dims=("channel", "y", "x"),
    ...                  coords={"channel": ["green", "swir16"], "y": np.arange(6.0), "x": np.arange(6.0)})
    >>> lab = xr.DataArray(np.eye(6, dtype="u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})
    >>> tiles = segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.0)
    >>> len(tiles), tiles.features.shape, int(tiles.labels[3, 3, 3])   # bottom-right tile: padded
    (4, (4, 2, 4, 4), 255)
    """

    def __init__(self, scenes: Sequence[_Scene], origins: np.ndarray, channels: Sequence[str],
                 classes: Sequence[str], size: int, stride: int, ignore: int,
                 glacier_fraction: np.ndarray) -> None:
        self._scenes = tuple(scenes)
        self._origins = np.asarray(origins, np.int64).reshape(-1, 3)
        self.channels = tuple(channels)
        self.classes = tuple(classes)
        self.size, self.stride, self.ignore = int(size), int(stride), int(ignore)
        self._fraction = np.asarray(glacier_fraction, np.float64)

    # -- basics ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._origins)

    def __repr__(self) -> str:
        scenes = len(np.unique(self._origins[:, 0])) if len(self) else 0
        return (f"<SegmentationTiles: {len(self)} tiles of {self.size}x{self.size} from {scenes} "
                f"scene(s), channels {list(self.channels)}, classes {list(self.classes)}>")

    @property
    def origins(self) -> np.ndarray:
        """``(N, 3)``: scene index, row, column of each tile's top-left pixel."""
        return self._origins.copy()

    @property
    def glacier_fraction(self) -> np.ndarray:
        """Fraction of each tile's labelled pixels that are glacier (any class but 0)."""
        return self._fraction.copy()

    @property
    def n_scenes(self) -> int:
        """Number of scenes the tiles were cut from (including scenes no tile is left from)."""
        return len(self._scenes)

    @property
    def features(self) -> np.ndarray:
        """All tiles' features ``(N, channel, size, size)`` float32 (NaN = missing or padding)."""
        return self.gather(np.arange(len(self)))[0]

    @property
    def labels(self) -> np.ndarray:
        """All tiles' labels ``(N, size, size)`` uint8 (``ignore`` = no label or padding)."""
        return self.gather(np.arange(len(self)))[1]

    def gather(self, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(n, channel, size, size)`` and labels ``(n, size, size)`` of some tiles.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> x, y = segmentation_tiles(f, lab, size=4).gather([0, 3])
        >>> x.shape, y.shape
        ((2, 1, 4, 4), (2, 4, 4))
        """
        idx = np.asarray(index, np.int64).reshape(-1)
        p = self.size
        x = np.empty((idx.size, len(self.channels), p, p), np.float32)
        y = np.empty((idx.size, p, p), np.uint8)
        for k, i in enumerate(idx):
            s, r, c = self._origins[i]
            scene = self._scenes[s]
            x[k] = scene.features[:, r:r + p, c:c + p]
            y[k] = scene.labels[r:r + p, c:c + p]
        return x, y

    def coords(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre ``(y, x)`` coordinates of tile ``i`` (continued into the padding).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 4, 6), "f4"), dims=("channel", "y", "x"), coords={
        ...     "channel": ["dem"], "y": [45.0, 15.0, -15.0, -45.0], "x": 30.0 * np.arange(6)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> segmentation_tiles(f, lab, size=4).coords(1)[1].tolist()   # padded past x = 150
        [120.0, 150.0, 180.0, 210.0]
        """
        s, r, c = self._origins[i]
        scene = self._scenes[s]
        return scene.y[r:r + self.size].copy(), scene.x[c:c + self.size].copy()

    def _with(self, index: np.ndarray, scenes: Sequence[_Scene] | None = None,
              classes: Sequence[str] | None = None) -> SegmentationTiles:
        index = np.asarray(index, np.int64)
        return SegmentationTiles(self._scenes if scenes is None else scenes, self._origins[index],
                                 self.channels, self.classes if classes is None else classes,
                                 self.size, self.stride, self.ignore, self._fraction[index])

    def subset(self, index: Sequence[int] | np.ndarray) -> SegmentationTiles:
        """The tiles at ``index`` (integers or a boolean mask), sharing the scenes.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> tiles = segmentation_tiles(f, lab, size=4)
        >>> len(tiles.subset(tiles.origins[:, 1] == 0))
        2
        """
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ParameterError(f"subset: boolean mask of shape {index.shape}; expected ({len(self)},)")
            index = np.flatnonzero(index)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise ParameterError(f"subset: index out of range for {len(self)} tiles")
        return self._with(index.astype(np.int64).reshape(-1))

    def fractions(self) -> np.ndarray:
        """``(N, class)`` fraction of each tile's labelled pixels in each class (NaN: none labelled).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 4, 4), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(4.0), "x": np.arange(4.0)})
        >>> lab = xr.DataArray(np.repeat([[0], [1], [2], [2]], 4, 1).astype("u1"), dims=("y", "x"),
        ...                    coords={"y": f.y, "x": f.x})
        >>> segmentation_tiles(f, lab, size=4).fractions().tolist()
        [[0.25, 0.25, 0.5]]
        """
        _, labels = self.gather(np.arange(len(self)))
        flat = labels.reshape(len(self), -1)
        counts = np.stack([(flat == k).sum(axis=1) for k in range(len(self.classes))], axis=1)
        total = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, counts / np.maximum(total, 1), np.nan)

    # -- relabelling -----------------------------------------------------------------------
    def relabel(self, mapping: Mapping[int, int], classes: Sequence[str]) -> SegmentationTiles:
        """The same tiles with labels mapped to new classes (unmapped classes become 0).

        ``mapping`` sends old class indices to new ones; ``ignore`` stays ``ignore``.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 2, 3), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0, 1.0], "x": [0.0, 1.0, 2.0]})
        >>> lab = xr.DataArray(np.array([[0, 1, 2], [2, 1, 0]], "u1"), dims=("y", "x"),
        ...                    coords={"y": f.y, "x": f.x})
        >>> glacier = segmentation_tiles(f, lab, size=4).relabel({1: 1, 2: 1}, ["background", "glacier"])
        >>> glacier.labels[0, :2, :3].tolist(), glacier.classes
        ([[0, 1, 1], [1, 1, 0]], ('background', 'glacier'))
        """
        names = tuple(str(c) for c in classes)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ParameterError(f"relabel: classes={list(names)}; expected two or more distinct names")
        table = np.zeros(256, np.uint8)
        for old, new in mapping.items():
            if not (0 <= int(old) < len(self.classes)) or not (0 <= int(new) < len(names)):
                raise ParameterError(f"relabel: mapping {old!r} -> {new!r}; expected old indices in "
                                     f"0..{len(self.classes) - 1} and new ones in 0..{len(names) - 1}")
            table[int(old)] = int(new)
        table[self.ignore] = self.ignore
        scenes = [_Scene(s.features, table[s.labels], s.y, s.x, s.shape, s.crs) for s in self._scenes]
        return self._with(np.arange(len(self)), scenes=scenes, classes=names)

    def binary(self, positive: str | Sequence[str], name: str | None = None) -> SegmentationTiles:
        """Two classes: ``positive`` (one class name or several) against the rest.

        The paper's binary set-ups: ``tiles.binary(["clean_ice", "debris_covered_ice"],
        "glacier")`` (glacier / background), ``tiles.binary("clean_ice")`` and
        ``tiles.binary("debris_covered_ice")`` (the two models of
        :class:`~xglacier.models.CombinedBinary`).

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 1, 3), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0], "x": [0.0, 1.0, 2.0]})
        >>> lab = xr.DataArray(np.array([[0, 1, 2]], "u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})
        >>> debris = segmentation_tiles(f, lab, size=3).binary("debris_covered_ice")
        >>> debris.classes, debris.labels[0, 0].tolist()
        (('background', 'debris_covered_ice'), [0, 0, 1])
        """
        wanted = [positive] if isinstance(positive, str) else list(positive)
        unknown = [c for c in wanted if c not in self.classes]
        if not wanted or unknown:
            raise ParameterError(f"binary: positive={positive!r}; expected class names among "
                                 f"{list(self.classes)}")
        if self.classes[0] in wanted:
            raise ParameterError(f"binary: positive={positive!r} includes the background class "
                                 f"{self.classes[0]!r}")
        mapping = {self.classes.index(c): 1 for c in wanted}
        label = name if name is not None else "+".join(wanted)
        return self.relabel(mapping, (self.classes[0], label))

    # -- splits ----------------------------------------------------------------------------
    def split(self, test: float = 0.2, val: float = 0.1, block: int | None = None, gap: int = 0,
              seed: int = 0) -> tuple[SegmentationTiles, SegmentationTiles, SegmentationTiles]:
        """Geographically disjoint ``(train, val, test)`` tiles.

        The map is cut into square blocks of ``block`` pixels (default ``2 * size``) laid
        from the top-left corner of the first scene of each CRS, in map coordinates, so
        scenes of the same place (other dates) share the blocks. Blocks holding tiles are
        given at random (``seed``) to test (a fraction ``test`` of them, at least one),
        validation (``val``) and training. A tile belongs to the split of its block if its
        footprint, widened by ``gap`` pixels, lies in that one block; tiles that straddle
        a block boundary are dropped (with ``stride == size`` and ``block`` a multiple of
        ``size`` on a shared grid, none is). So no pixel, on any date, is in two splits.
        Scenes in different CRSs are assumed not to overlap.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((1, 32, 32), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(32.0), "x": np.arange(32.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> train, val, test = segmentation_tiles(f, lab, size=4).split(test=0.25, val=0.25, block=8)
        >>> len(train), len(val), len(test)
        (32, 16, 16)
        """
        func = "split"
        for label, value in (("test", test), ("val", val)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ParameterError(f"{func}: {label}={value!r}; expected a fraction in [0, 1)")
        if not test > 0 or test + val >= 1:
            raise ParameterError(f"{func}: test={test}, val={val}; expected test > 0 and test + val < 1")
        block = 2 * self.size if block is None else block
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
            raise ParameterError(f"{func}: block={block!r}; expected a positive number of pixels")
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
            raise ParameterError(f"{func}: gap={gap!r}; expected a number of pixels >= 0")
        keys = self._block_keys(int(block), int(gap))
        inside = np.array([k is not None for k in keys], bool)
        blocks = sorted({k for k in keys if k is not None}, key=repr)
        n = len(blocks)
        n_test = max(1, round(test * n))
        n_val = round(val * n)
        if n - n_test - n_val < 1:
            raise InputError(f"{func}: the tiles lie in {n} block(s) of {block} pixels; too few for a "
                             f"train / val / test split with test={test}, val={val}: use a smaller "
                             "block, more scenes or other fractions")
        order = np.random.default_rng(seed).permutation(n)
        which = {blocks[b]: 2 for b in order[:n_test]}
        which.update({blocks[b]: 1 for b in order[n_test:n_test + n_val]})
        split = np.array([which.get(k, 0) if k is not None else -1 for k in keys], np.int8)
        split[~inside] = -1
        return tuple(self._with(np.flatnonzero(split == k)) for k in range(3))

    def _block_keys(self, block: int, gap: int) -> list[tuple[Any, ...] | None]:
        """The block of each tile (``(crs, row, col)``), or None if it straddles blocks."""
        anchors: dict[str | None, tuple[float, float, float, float]] = {}
        for s in self._scenes:
            if s.crs not in anchors:  # the first scene of a CRS lays its blocks
                step_y, step_x = _step(s.y), _step(s.x)
                anchors[s.crs] = (s.y[0] - step_y / 2, s.x[0] - step_x / 2, step_y * block, step_x * block)
        keys: list[tuple[Any, ...] | None] = []
        for s, r, c in self._origins:
            scene = self._scenes[s]
            y0, x0, ly, lx = anchors[scene.crs]
            step_y, step_x = _step(scene.y), _step(scene.x)
            # first and last pixel centres of the widened footprint
            ya, yb = scene.y[0] + step_y * (r - gap), scene.y[0] + step_y * (r + self.size - 1 + gap)
            xa, xb = scene.x[0] + step_x * (c - gap), scene.x[0] + step_x * (c + self.size - 1 + gap)
            ky = {math.floor((v - y0) / ly) for v in (ya, yb)}
            kx = {math.floor((v - x0) / lx) for v in (xa, xb)}
            keys.append((scene.crs, ky.pop(), kx.pop()) if len(ky) == 1 and len(kx) == 1 else None)
        return keys

    # -- statistics and batches ------------------------------------------------------------
    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(mean, std)`` over these tiles' pixels, ignoring NaN (and padding).

        Call it on the training split only: these are the statistics a model is
        normalised with (``model.set_statistics(*train.statistics())``; ``fit_segmentation``
        does it). Pixels of overlapping tiles count once per tile. A constant channel gets
        ``std = 1``.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> data = np.array([[[1.0, 3.0], [np.nan, 5.0]]], "f4")
        >>> f = xr.DataArray(data, dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0, 1.0], "x": [0.0, 1.0]})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> mean, std = segmentation_tiles(f, lab, size=2).statistics()
        >>> mean.tolist(), np.round(std, 4).tolist()
        ([3.0], [1.633])
        """
        if not len(self):
            raise InputError("statistics: no tiles; statistics need training tiles")
        n_ch = len(self.channels)
        count = np.zeros(n_ch)
        total = np.zeros(n_ch)
        for start in range(0, len(self), 64):
            x, _ = self.gather(np.arange(start, min(start + 64, len(self))))
            x = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(n_ch, -1)
            ok = np.isfinite(x)
            count += ok.sum(axis=1)
            total += np.where(ok, x, 0.0).sum(axis=1)
        empty = [c for c, n in zip(self.channels, count, strict=True) if n == 0]
        if empty:
            raise InputError(f"statistics: channel(s) {empty} have no valid (non-NaN) pixel in these tiles")
        mean = total / count
        squares = np.zeros(n_ch)
        for start in range(0, len(self), 64):  # second pass: no cancellation in sum(x**2) - n mean**2
            x, _ = self.gather(np.arange(start, min(start + 64, len(self))))
            x = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(n_ch, -1) - mean[:, None]
            squares += np.where(np.isfinite(x), x * x, 0.0).sum(axis=1)
        std = np.sqrt(squares / count)
        return mean, np.where(std > 0, std, 1.0)

    def to_torch(self, batch_size: int = 8, shuffle: bool = False, seed: int | None = None,
                 augment: bool = False, drop_last: bool = False) -> BatchLoader:
        """Iterable of ``(features float32 (B, C, P, P), labels int64 (B, P, P))`` torch batches.

        ``augment=True`` turns each tile by a random element of the square's symmetry
        group (rotations by 90 degrees, flips): glaciers have no preferred orientation on
        the image grid, and every channel (bands, indices, elevation, slope magnitude)
        is invariant under these. Batches are gathered one at a time by
        :class:`xglacier.nn.batches.BatchLoader`; with a ``seed`` the order and the turns repeat.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> f = xr.DataArray(np.ones((2, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...     coords={"channel": ["green", "dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> x, y = next(iter(segmentation_tiles(f, lab, size=4).to_torch(batch_size=3)))
        >>> tuple(x.shape), str(y.dtype)
        ((3, 2, 4, 4), 'torch.int64')
        """
        source = _Batches(self, augment, None if seed is None else [int(seed), 1])
        return BatchLoader(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


class _Batches:
    """What :class:`~xglacier.nn.batches.BatchLoader` gathers from: tiles as (float32, int64), turned."""

    def __init__(self, tiles: SegmentationTiles, augment: bool, seed: Any) -> None:
        self.tiles, self.augment = tiles, bool(augment)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.tiles)

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.tiles.gather(index)
        if self.augment:
            turns = self._rng.integers(0, 4, len(x))
            flips = self._rng.integers(0, 2, len(x)).astype(bool)
            for i in range(len(x)):
                xi, yi = np.rot90(x[i], turns[i], axes=(1, 2)), np.rot90(y[i], turns[i])
                if flips[i]:
                    xi, yi = xi[:, :, ::-1], yi[:, ::-1]
                x[i], y[i] = xi.copy(), yi.copy()  # views of x[i]: copy before writing
        return x, y.astype(np.int64)


def segmentation_tiles(
    features: xr.DataArray | Sequence[tuple[xr.DataArray, xr.DataArray]],
    labels: xr.DataArray | None = None,
    size: int = 512,
    stride: int | None = None,
    min_glacier_fraction: float = 0.1,
    classes: Sequence[str] | None = None,
    ignore: int = IGNORE,
) -> SegmentationTiles:
    """Cut feature cubes and their label maps into training tiles.

    Tiles start every ``stride`` pixels from the top-left corner; the last row and column
    of tiles run past the scene's bottom and right edges, which are padded (features
    NaN, labels ``ignore``), so every pixel is in a tile. A tile is kept if at least
    ``min_glacier_fraction`` of its labelled pixels are glacier (any class but 0); tiles
    without a labelled pixel are always dropped.

    Parameters
    ----------
    features
        A ``(channel, y, x)`` DataArray with a ``channel`` coordinate of names
        (:func:`xglacier.features`); or one ``(features, labels)`` pair, or a list of
        them (several dates or regions), all with the same channels in the same order.
    labels
        The ``(y, x)`` integer label map on the same grid (same ``y`` / ``x``
        coordinates, same CRS): class indices (0 background, e.g. 1 clean ice, 2
        debris-covered ice) or ``ignore``; ``None`` when ``features`` is a list of pairs.
    size
        Tile size in pixels (the paper: 512).
    stride
        Distance between tile origins; default ``size`` (no overlap).
    min_glacier_fraction
        Smallest glacier fraction of a kept tile; the paper's experiments keep tiles with
        at least 10 % glacier pixels (default 0.1); 0 keeps every tile with a label.
    classes
        Class names (background first); default from the label map's ``flag_values`` /
        ``flag_meanings`` attributes, else :data:`DEFAULT_CLASSES`.
    ignore
        Label value meaning "no label" (default 255); excluded from losses.

    Returns
    -------
    SegmentationTiles

    Raises
    ------
    InputError, DimensionError
        Features or labels of the wrong kind or dims, grids that differ (naming the
        coordinate and the first difference), label values that are not classes,
        channels or classes that differ between scenes, or no tile left.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xglacier
    >>> cube, truth = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01")
    >>> scene = cube.isel(time=0, drop=True)
    >>> features = xr.concat([scene[b] for b in ("green", "swir16")] + [truth.dem], "channel")
    >>> features = features.assign_coords(channel=["green", "swir16", "elevation"])
    >>> tiles = segmentation_tiles(features, truth.glacier_class.isel(time=0, drop=True), size=32)
    >>> tiles.classes, tiles.features.shape[1:]
    (('background', 'clean_ice', 'debris_covered_ice'), (3, 32, 32))
    """
    size = _check_int("size", size, 1)
    stride = size if stride is None else _check_int("stride", stride, 1)
    if isinstance(min_glacier_fraction, bool) or not isinstance(min_glacier_fraction, (int, float)) or not (
            0 <= min_glacier_fraction <= 1):
        raise ParameterError(f"segmentation_tiles: min_glacier_fraction={min_glacier_fraction!r}; "
                             "expected a fraction in [0, 1]")
    ignore = _check_int("ignore", ignore, 0)
    if ignore > 255:
        raise ParameterError(f"segmentation_tiles: ignore={ignore}; expected a uint8 value (0..255)")
    if classes is not None:
        if isinstance(classes, str) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise ParameterError(f"segmentation_tiles: classes={classes!r}; expected two or more "
                                 "distinct names, background first")
        classes = tuple(str(c) for c in classes)
        if ignore < len(classes):
            raise ParameterError(f"segmentation_tiles: ignore={ignore} is a class index "
                                 f"({classes[ignore]!r}); use a value >= {len(classes)}")
    if (isinstance(features, tuple) and len(features) == 2 and labels is None
            and all(isinstance(a, xr.DataArray) for a in features)):
        features, labels = features  # one (features, labels) pair
    if isinstance(features, xr.DataArray):
        if labels is None:
            raise InputError("segmentation_tiles: labels is None; pass the (y, x) label map of the "
                             "features, or a list of (features, labels) pairs as features")
        pairs = [(features, labels)]
    else:
        if labels is not None:
            raise InputError("segmentation_tiles: labels given with a list of scenes; pass "
                             "[(features, labels), ...] and labels=None")
        try:
            pairs = [tuple(p) for p in features]
        except TypeError:
            pairs = []
        if not pairs or any(len(p) != 2 for p in pairs):
            raise InputError(f"segmentation_tiles: features is a {type(features).__name__}; expected a "
                             "(channel, y, x) DataArray or a non-empty list of (features, labels) pairs")
    scenes, origins, fractions = [], [], []
    channels: list[str] | None = None
    names: tuple[str, ...] | None = classes
    for i, (f, lab) in enumerate(pairs):
        scene, ch, attr_classes = _scene(i, f, lab, names, ignore, size, stride)
        if channels is None:
            channels = ch
        elif ch != channels:
            raise InputError(f"segmentation_tiles: scene {i} has channels {ch}; scene 0 has {channels} "
                             "(every scene needs the same channels in the same order)")
        if names is None:
            names = attr_classes or DEFAULT_CLASSES
            if names is not None and ignore < len(names):
                raise ParameterError(f"segmentation_tiles: ignore={ignore} is a class index; use a "
                                     f"value >= {len(names)}")
        elif classes is None and attr_classes is not None and attr_classes != names:
            raise InputError(f"segmentation_tiles: scene {i} has classes {list(attr_classes)}; scene 0 "
                             f"has {list(names)}")
        scenes.append(scene)
        h, w = scene.shape
        for r in _positions(h, size, stride):
            for c in _positions(w, size, stride):
                tile = scene.labels[r:r + size, c:c + size]
                labelled = int((tile != ignore).sum())
                glacier = int(((tile != ignore) & (tile != 0)).sum())
                fraction = glacier / labelled if labelled else 0.0
                if labelled and fraction >= min_glacier_fraction:
                    origins.append((i, r, c))
                    fractions.append(fraction)
    if not origins:
        raise InputError(f"segmentation_tiles: no {size}x{size} tile has at least "
                         f"{min_glacier_fraction:.0%} glacier pixels among its labelled pixels; lower "
                         "min_glacier_fraction or check the labels")
    return SegmentationTiles(scenes, np.array(origins, np.int64), channels, names, size, stride,
                             ignore, np.array(fractions))
