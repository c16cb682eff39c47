"""Training tiles for segmentation: feature cubes and label maps cut into square tiles.

:func:`segmentation_tiles` cuts one or several scenes — each a ``(channel, y, x)``
feature DataArray (:func:`xglacier.features`) and its ``(y, x)`` label map
(:func:`xglacier.rasterize`, or the synthetic truth's ``glacier_class``) on the same
grid — into ``size x size`` tiles every ``stride`` pixels, padding the scene's bottom and
right edges (features NaN, labels ``ignore``), and keeps the tiles with enough glacier.
The result, :class:`~xglacier.segmentation.tileset.SegmentationTiles` (importable from
here), splits into geographically disjoint train / validation / test sets, gives
per-channel normalisation statistics, and feeds ``torch`` batches to
:func:`xglacier.segmentation.train.fit_segmentation`.

The scenes are loaded into memory once (training needs them); tiles are gathered from
them batch by batch, so overlapping tiles (``stride < size``) cost no extra memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._validate import check_int, check_number
from .._windows import window_starts
from ..errors import DimensionError, InputError, ParameterError
from .grid import pixel_step
from .tileset import Scene, SegmentationTiles

__all__ = ["DEFAULT_CLASSES", "IGNORE", "SegmentationTiles", "segmentation_tiles"]

#: Label value of pixels without a label (padded tile edges); excluded from losses.
IGNORE = 255
#: Class names assumed for a label map without ``flag_values`` / ``flag_meanings`` attrs.
DEFAULT_CLASSES = ("background", "clean_ice", "debris_covered_ice")


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


def _axis(coord: np.ndarray, n: int) -> np.ndarray:
    """``n`` regularly spaced coordinates continuing ``coord`` past its end."""
    return float(coord[0]) + pixel_step(coord.astype(np.float64)) * np.arange(n)


def _starts(n: int, size: int, stride: int) -> np.ndarray:
    """Tile origins along an axis: every ``stride`` pixels until a tile reaches the end (padded)."""
    return window_starts(n, size, stride, end="pad")


def _scene(i: int, features: Any, labels: Any, classes: tuple[str, ...] | None, ignore: int,
           size: int, stride: int) -> tuple[Scene, list[str], tuple[str, ...] | None]:
    """Check one ``(features, labels)`` pair and load it, padded to whole tiles."""
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
    h, w = lab.shape
    if h == 0 or w == 0:
        raise InputError(f"segmentation_tiles: scene {i}: the grid is empty (y={h}, x={w})")
    feat = np.asarray(features.values, dtype=np.float32)
    ys, xs = _starts(h, size, stride), _starts(w, size, stride)
    hp, wp = int(ys[-1]) + size, int(xs[-1]) + size
    padded_f = np.full((feat.shape[0], hp, wp), np.nan, np.float32)
    padded_f[:, :h, :w] = feat
    padded_l = np.full((hp, wp), ignore, np.uint8)
    padded_l[:h, :w] = lab
    scene = Scene(padded_f, padded_l, _axis(features["y"].values, hp), _axis(features["x"].values, wp),
                   (h, w), crs_f or crs_l)
    return scene, [str(c) for c in features["channel"].values], attr_classes


def _pairs(features: Any, labels: Any) -> list[tuple[Any, Any]]:
    """The ``(features, labels)`` pairs of :func:`segmentation_tiles`' first two arguments."""
    if (isinstance(features, tuple) and len(features) == 2 and labels is None
            and all(isinstance(a, xr.DataArray) for a in features)):
        features, labels = features  # one (features, labels) pair
    if isinstance(features, xr.DataArray):
        if labels is None:
            raise InputError("segmentation_tiles: labels is None; pass the (y, x) label map of the "
                             "features, or a list of (features, labels) pairs as features")
        return [(features, labels)]
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
    return pairs


def _scene_tiles(i: int, scene: Scene, size: int, stride: int, ignore: int, min_fraction: float
                 ) -> tuple[list[tuple[int, int, int]], list[float]]:
    """Origins ``(i, row, col)`` and glacier fractions of the tiles of one scene worth keeping."""
    origins, fractions = [], []
    h, w = scene.shape
    for r in _starts(h, size, stride):
        for c in _starts(w, size, stride):
            tile = scene.labels[r:r + size, c:c + size]
            labelled = int((tile != ignore).sum())
            glacier = int(((tile != ignore) & (tile != 0)).sum())
            fraction = glacier / labelled if labelled else 0.0
            if labelled and fraction >= min_fraction:
                origins.append((i, int(r), int(c)))
                fractions.append(fraction)
    return origins, fractions


def segmentation_tiles(
    features: xr.DataArray | Sequence[tuple[xr.DataArray, xr.DataArray]],
    labels: xr.DataArray | None = None,
    *,
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
    func = "segmentation_tiles"
    size = check_int(func, "size", size, low=1)
    stride = size if stride is None else check_int(func, "stride", stride, low=1)
    min_glacier_fraction = check_number(func, "min_glacier_fraction", min_glacier_fraction, low=0, high=1)
    ignore = check_int(func, "ignore", ignore, low=0, high=255)
    if classes is not None:
        if isinstance(classes, str) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise ParameterError(f"{func}: classes={classes!r}; expected two or more distinct names, "
                                 "background first")
        classes = tuple(str(c) for c in classes)
        if ignore < len(classes):
            raise ParameterError(f"{func}: ignore={ignore} is a class index ({classes[ignore]!r}); use a "
                                 f"value >= {len(classes)}")
    scenes, origins, fractions = [], [], []
    channels: list[str] | None = None
    names: tuple[str, ...] | None = classes
    for i, (f, lab) in enumerate(_pairs(features, labels)):
        scene, ch, attr_classes = _scene(i, f, lab, names, ignore, size, stride)
        if channels is None:
            channels = ch
        elif ch != channels:
            raise InputError(f"{func}: scene {i} has channels {ch}; scene 0 has {channels} "
                             "(every scene needs the same channels in the same order)")
        if names is None:
            names = attr_classes or DEFAULT_CLASSES
            if ignore < len(names):
                raise ParameterError(f"{func}: ignore={ignore} is a class index; use a value >= {len(names)}")
        elif classes is None and attr_classes is not None and attr_classes != names:
            raise InputError(f"{func}: scene {i} has classes {list(attr_classes)}; scene 0 has {list(names)}")
        scenes.append(scene)
        kept, kept_fractions = _scene_tiles(i, scene, size, stride, ignore, min_glacier_fraction)
        origins += kept
        fractions += kept_fractions
    if not origins:
        raise InputError(f"{func}: no {size}x{size} tile has at least {min_glacier_fraction:.0%} glacier "
                         "pixels among its labelled pixels; lower min_glacier_fraction or check the labels")
    return SegmentationTiles(scenes, np.array(origins, np.int64), channels, names, size, stride,
                             ignore, np.array(fractions))
