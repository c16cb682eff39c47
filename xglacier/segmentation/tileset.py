"""The set of training tiles: :class:`SegmentationTiles` (subsets, relabelling, splits, batches).

Made by :func:`xglacier.segmentation.tiles.segmentation_tiles`, which reads the scenes; a
tile is a position in one of them, so subsets and overlapping tiles share the scenes'
arrays and cost no extra memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import check_int, check_number
from ..errors import InputError, ParameterError
from ..nn.batches import BatchLoader
from .grid import pixel_step

__all__ = ["Scene", "SegmentationTiles"]


@dataclass(frozen=True)
class Scene:
    """One scene, padded to whole tiles, in memory."""

    features: np.ndarray  # (channel, Hp, Wp) float32, NaN in the padding
    labels: np.ndarray  # (Hp, Wp) uint8, ignore in the padding
    y: np.ndarray  # (Hp,) pixel-centre coordinates, extrapolated into the padding
    x: np.ndarray  # (Wp,)
    shape: tuple[int, int]  # unpadded (H, W)
    crs: str | None


class SegmentationTiles:
    """Square tiles of one or more scenes: features, labels, where they come from.

    Made by :func:`~xglacier.segmentation.tiles.segmentation_tiles`; subsets (``subset``,
    ``split``, ``binary``) share the scenes' arrays.

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
    >>> import numpy as np, xarray as xr, xglacier
    >>> f = xr.DataArray(np.random.default_rng(0).random((2, 6, 6), "f4"), dims=("channel", "y", "x"),
    ...                  coords={"channel": ["green", "swir16"], "y": np.arange(6.0), "x": np.arange(6.0)})
    >>> lab = xr.DataArray(np.eye(6, dtype="u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})
    >>> tiles = xglacier.segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.0)
    >>> len(tiles), tiles.features.shape, int(tiles.labels[3, 3, 3])   # bottom-right tile: padded
    (4, (4, 2, 4, 4), 255)
    """

    def __init__(self, scenes: Sequence[Scene], origins: np.ndarray, channels: Sequence[str],
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> x, y = xglacier.segmentation_tiles(f, lab, size=4).gather([0, 3])
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 4, 6), "f4"), dims=("channel", "y", "x"), coords={
        ...     "channel": ["dem"], "y": [45.0, 15.0, -15.0, -45.0], "x": 30.0 * np.arange(6)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> xglacier.segmentation_tiles(f, lab, size=4).coords(1)[1].tolist()   # padded past x = 150
        [120.0, 150.0, 180.0, 210.0]
        """
        s, r, c = self._origins[i]
        scene = self._scenes[s]
        return scene.y[r:r + self.size].copy(), scene.x[c:c + self.size].copy()

    def _with(self, index: np.ndarray, scenes: Sequence[Scene] | None = None,
              classes: Sequence[str] | None = None) -> SegmentationTiles:
        index = np.asarray(index, np.int64)
        return SegmentationTiles(self._scenes if scenes is None else scenes, self._origins[index],
                                 self.channels, self.classes if classes is None else classes,
                                 self.size, self.stride, self.ignore, self._fraction[index])

    def subset(self, index: Sequence[int] | np.ndarray) -> SegmentationTiles:
        """The tiles at ``index`` (integers or a boolean mask), sharing the scenes.

        Examples
        --------
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> tiles = xglacier.segmentation_tiles(f, lab, size=4)
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 4, 4), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(4.0), "x": np.arange(4.0)})
        >>> lab = xr.DataArray(np.repeat([[0], [1], [2], [2]], 4, 1).astype("u1"), dims=("y", "x"),
        ...                    coords={"y": f.y, "x": f.x})
        >>> xglacier.segmentation_tiles(f, lab, size=4).fractions().tolist()
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 2, 3), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0, 1.0], "x": [0.0, 1.0, 2.0]})
        >>> lab = xr.DataArray(np.array([[0, 1, 2], [2, 1, 0]], "u1"), dims=("y", "x"),
        ...                    coords={"y": f.y, "x": f.x})
        >>> tiles = xglacier.segmentation_tiles(f, lab, size=4)
        >>> glacier = tiles.relabel({1: 1, 2: 1}, ["background", "glacier"])
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
        scenes = [Scene(s.features, table[s.labels], s.y, s.x, s.shape, s.crs) for s in self._scenes]
        return self._with(np.arange(len(self)), scenes=scenes, classes=names)

    def binary(self, positive: str | Sequence[str], *, name: str | None = None) -> SegmentationTiles:
        """Two classes: ``positive`` (one class name or several) against the rest.

        The paper's binary set-ups: ``tiles.binary(["clean_ice", "debris_covered_ice"],
        name="glacier")`` (glacier / background), ``tiles.binary("clean_ice")`` and
        ``tiles.binary("debris_covered_ice")`` (the two models of
        :class:`~xglacier.models.CombinedBinary`).

        Examples
        --------
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 1, 3), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0], "x": [0.0, 1.0, 2.0]})
        >>> lab = xr.DataArray(np.array([[0, 1, 2]], "u1"), dims=("y", "x"), coords={"y": f.y, "x": f.x})
        >>> debris = xglacier.segmentation_tiles(f, lab, size=3).binary("debris_covered_ice")
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
    def split(self, *, test: float = 0.2, val: float = 0.1, block: int | None = None, gap: int = 0,
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((1, 32, 32), "f4"), dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": np.arange(32.0), "x": np.arange(32.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> train, val, test = xglacier.segmentation_tiles(f, lab, size=4).split(test=0.25, val=0.25, block=8)
        >>> len(train), len(val), len(test)
        (32, 16, 16)
        """
        func = "split"
        test = check_number(func, "test", test, low=0, high=1, high_open=True)
        val = check_number(func, "val", val, low=0, high=1, high_open=True)
        if not test > 0 or test + val >= 1:
            raise ParameterError(f"{func}: test={test}, val={val}; expected test > 0 and test + val < 1")
        block = check_int(func, "block", 2 * self.size if block is None else block, low=1)
        gap = check_int(func, "gap", gap, low=0)
        keys = self._block_keys(block, gap)
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
                step_y, step_x = pixel_step(s.y), pixel_step(s.x)
                anchors[s.crs] = (s.y[0] - step_y / 2, s.x[0] - step_x / 2, step_y * block, step_x * block)
        keys: list[tuple[Any, ...] | None] = []
        for s, r, c in self._origins:
            scene = self._scenes[s]
            y0, x0, ly, lx = anchors[scene.crs]
            step_y, step_x = pixel_step(scene.y), pixel_step(scene.x)
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
        >>> import numpy as np, xarray as xr, xglacier
        >>> data = np.array([[[1.0, 3.0], [np.nan, 5.0]]], "f4")
        >>> f = xr.DataArray(data, dims=("channel", "y", "x"),
        ...                  coords={"channel": ["dem"], "y": [0.0, 1.0], "x": [0.0, 1.0]})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> mean, std = xglacier.segmentation_tiles(f, lab, size=2).statistics()
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

    def to_torch(self, *, batch_size: int = 8, shuffle: bool = False, seed: int | None = None,
                 augment: bool = False, drop_last: bool = False) -> BatchLoader:
        """Iterable of ``(features float32 (B, C, P, P), labels int64 (B, P, P))`` torch batches.

        ``augment=True`` turns each tile by a random element of the square's symmetry
        group (rotations by 90 degrees, flips): glaciers have no preferred orientation on
        the image grid, and every channel (bands, indices, elevation, slope magnitude)
        is invariant under these. Batches are gathered one at a time by
        :class:`xglacier.nn.batches.BatchLoader`; with a ``seed`` the order and the turns repeat.

        Examples
        --------
        >>> import numpy as np, xarray as xr, xglacier
        >>> f = xr.DataArray(np.ones((2, 8, 8), "f4"), dims=("channel", "y", "x"),
        ...     coords={"channel": ["green", "dem"], "y": np.arange(8.0), "x": np.arange(8.0)})
        >>> lab = xr.ones_like(f.isel(channel=0, drop=True), dtype="u1")
        >>> x, y = next(iter(xglacier.segmentation_tiles(f, lab, size=4).to_torch(batch_size=3)))
        >>> tuple(x.shape), str(y.dtype)
        ((3, 2, 4, 4), 'torch.int64')
        """
        seed = check_int("to_torch", "seed", seed, low=0, allow_none=True)
        source = _Batches(self, augment, None if seed is None else [seed, 1])
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
