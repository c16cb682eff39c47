"""Lazy, chunk-invariant segmentation of a whole scene with a tiled model.

:func:`segment` runs a :class:`~xglacier.segmentation.models.SegmentationModel` over a
``(channel, y, x)`` feature cube in overlapping windows and blends the class
probabilities of overlapping windows with a smooth weight, lazily over Dask blocks.

Tiling (it depends only on the scene's shape, never on the input's chunks):

* along an axis of ``n`` pixels, windows of ``t = tile`` pixels start at ``0, s, 2s, ...``
  with stride ``s = tile - overlap`` (neighbouring windows share ``overlap`` pixels), as
  long as the start lies inside the scene; the scene is extended with NaN past its end so
  that the last windows are full (models impute NaN with the training mean). An
  axis no longer than ``tile`` is one window of exactly ``n`` pixels (no padding, no
  overlap), so a scene that fits in one tile is one model call on the scene itself.
* each window's probabilities are weighted by ``w(i) * w(j)``: 1 inside, a cosine ramp
  over the ``overlap`` pixels at each end, ``w = 0.5 - 0.5 cos(pi (k + 0.5) / overlap)``
  for ``k = 0 .. overlap - 1`` (strictly positive, and the ramps of two neighbours sum to
  1). The output is ``sum(w p) / sum(w)`` per pixel, accumulated in float64.
* Dask: y and x are rechunked to blocks of ``m * s`` pixels aligned on the scene's origin
  (``m = windows_per_chunk``, default ``round(sqrt(batch_size))``, so one block holds about
  one batch of windows). Pass 1 (``map_overlap``, a halo of ``overlap`` after each block)
  runs the model on the windows starting in each block, ``batch_size`` windows per call,
  and accumulates ``w p`` and ``w`` over the block plus the ``overlap`` pixels the windows
  reach into the next block. Pass 2 (``map_overlap``, a halo of ``overlap`` before each
  block) adds what the previous blocks' windows spilled into each block and divides. Every
  window is predicted once; the batches and the order of the additions are fixed by the
  tiling, so the result is bit-for-bit the same for any chunking of the input.

No data: a pixel where any channel is NaN (or infinite) has no prediction: ``label`` is
:data:`~xglacier.segmentation.classes.NODATA` (255, the variable's ``_FillValue``) and
``probability`` NaN. Pass 1 carries that mask as one more row of its sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from .._attrs import georeference, with_history
from .._orient import view_flips
from .._validate import check_flag, check_int, check_number
from ..errors import DimensionError, InputError, MissingBandError, ParameterError
from ..nn.frozen import frozen_copy
from ..nn.shift import after, check_inputs, training_statistics
from ..nn.tiling import TileAxis, blend_weight
from .classes import NODATA


def check_features(where: str, features: Any, channels: Sequence[str] | None) -> xr.DataArray:
    """Return ``features`` as ``(channel, y, x)`` after checking its channel names.

    The channel names must equal ``channels`` in the same order (``None``: any names);
    otherwise an :class:`~xglacier.errors.InputError` names both lists. Used by
    :func:`segment` and the baselines of :mod:`xglacier.segmentation.classical`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> f = xr.DataArray(np.zeros((2, 3, 3), "f4"), dims=("channel", "y", "x"),
    ...                  coords={"channel": ["green", "swir16"]})
    >>> check_features("demo", f, ["green", "swir16"]).dims
    ('channel', 'y', 'x')
    >>> check_features("demo", f, ["swir16", "green"])
    Traceback (most recent call last):
    ...
    xglacier.errors.InputError: demo: the features' channels ['green', 'swir16'] are in a different \
order than the model's ['swir16', 'green']; reorder them with features.sel(channel=['swir16', 'green'])
    """
    if isinstance(features, xr.Dataset):
        raise InputError(
            f"{where}: got a Dataset with variables {list(features.data_vars)}; expected a feature "
            "DataArray with dims ('channel', 'y', 'x'): build it first with xglacier.features(ds, ...)"
        )
    if not isinstance(features, xr.DataArray):
        raise InputError(f"{where}: features is a {type(features).__name__}; expected an xarray "
                         "DataArray with dims ('channel', 'y', 'x')")
    if set(features.dims) != {"channel", "y", "x"}:
        raise DimensionError(f"{where}: features has dims {features.dims}; expected ('channel', 'y', 'x')")
    features = features.transpose("channel", "y", "x")
    if "channel" not in features.coords:
        raise InputError(f"{where}: features has no 'channel' coordinate; expected the channel names "
                         f"{list(channels or [])}")
    if channels is None:
        return features
    have = [str(c) for c in features["channel"].values]
    want = [str(c) for c in channels]
    if have != want:
        missing = [c for c in want if c not in have]
        if missing:
            raise InputError(f"{where}: the features lack channel(s) {missing}; features have {have}, "
                             f"the model expects {want} (in this order)")
        if len(have) == len(want):
            raise InputError(f"{where}: the features' channels {have} are in a different order than the "
                             f"model's {want}; reorder them with features.sel(channel={want})")
        raise InputError(f"{where}: the features have channels {have}; the model expects exactly {want} "
                         f"(in this order); select them with features.sel(channel={want})")
    return features


def _spatial_coords(features: xr.DataArray) -> dict[str, Any]:
    """The coordinates of ``features`` that do not depend on ``channel`` (x, y, CRS, ...)."""
    return {name: c for name, c in features.coords.items() if "channel" not in c.dims}


def segmentation_dataset(probability: Any, label: Any, like: xr.DataArray, classes: Sequence[str],
                         attrs: dict[str, Any]) -> xr.Dataset:
    """Wrap ``probability (class, y, x)`` and ``label (y, x)`` data as the output Dataset.

    The grid (x, y and every other non-``channel`` coordinate of ``like``, the CRS
    included) is the input's; ``label`` carries CF ``flag_values``/``flag_meanings`` and
    ``_FillValue`` = :data:`~xglacier.segmentation.classes.NODATA` (pixels without a class).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> like = xr.DataArray(np.zeros((1, 2, 2), "f4"), dims=("channel", "y", "x"),
    ...                     coords={"channel": ["ndsi"], "y": [1.0, 0.0], "x": [0.0, 1.0]})
    >>> p = np.full((2, 2, 2), 0.5, "f4")
    >>> ds = segmentation_dataset(p, np.zeros((2, 2), "u1"), like, ["background", "clean ice"], {})
    >>> ds.label.attrs["flag_meanings"], ds["class"].values.tolist(), int(ds.label.attrs["_FillValue"])
    ('background clean_ice', ['background', 'clean ice'], 255)
    """
    classes = [str(c) for c in classes]
    coords = {**_spatial_coords(like), "class": ("class", np.array(classes), {"long_name": "class"})}
    prob = xr.DataArray(probability, dims=("class", "y", "x"), name="probability",
                        attrs={"long_name": "class probability", "units": "1"})
    lab = xr.DataArray(label, dims=("y", "x"), name="label", attrs={
        "long_name": f"class label (argmax of probability; {NODATA} = no data)",
        # CF readers (xarray, GDAL via rioxarray, QGIS) then treat NODATA as missing, not a class
        "_FillValue": np.uint8(NODATA),
        "flag_values": np.arange(len(classes), dtype=np.uint8),
        "flag_meanings": " ".join(c.replace(" ", "_") for c in classes),
    })
    ds = xr.Dataset({"probability": prob, "label": lab}, coords=coords, attrs=attrs)
    return georeference(ds, like)


def _symmetric_proba(model: Any, x: Any) -> Any:
    """Mean of the probabilities over the 8 turns and flips of ``x``, each turned back (float64)."""
    import torch

    total = None
    for turns in range(4):
        for flip in (False, True):
            seen = torch.rot90(x, turns, dims=(2, 3))
            p = model.predict_proba(seen.flip(3) if flip else seen)
            p = torch.rot90(p.flip(3) if flip else p, -turns, dims=(2, 3)).to(torch.float64)
            total = p if total is None else total + p
    return total / 8


def _run_model(model: Any, batch: np.ndarray, device: str, n_classes: int, tta: bool = False) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(batch).to(device)
        out = _symmetric_proba(model, x) if tta else model.predict_proba(x)
    out = out.detach().to("cpu").numpy()
    if out.shape != (batch.shape[0], n_classes, *batch.shape[2:]):
        raise InputError(f"segment: {type(model).__name__}.predict_proba returned shape {out.shape} for "
                         f"input {batch.shape}; expected {(batch.shape[0], n_classes, *batch.shape[2:])}")
    return out


def _predict_block(block: np.ndarray, *, model: Any, ay: TileAxis, ax: TileAxis, n_classes: int,
                   batch_size: int, device: str, tta: bool = False,
                   block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Pass 1: ``(C, By + oy, Bx + ox)`` block and what follows it -> ``(K + 2, By + oy, Bx + ox)`` sums.

    Rows ``0..K-1`` hold ``sum(w p)`` and row ``K`` holds ``sum(w)`` over the windows that
    start in this block, on the block's pixels plus the ``overlap`` pixels after it. Row
    ``K + 1`` is 1 on the block's own pixels that have a missing channel (0 elsewhere, so
    that adding the spill in pass 2 leaves it alone).
    """
    _, by, bx = block_id
    acc = np.zeros((n_classes + 2, ay.chunk + ay.overlap, ax.chunk + ax.overlap), np.float64)
    own = block[:, :ay.chunk, :ax.chunk]
    acc[n_classes + 1, :own.shape[1], :own.shape[2]] = ~np.isfinite(own).all(axis=0)
    weight = np.outer(blend_weight(ay.size, ay.overlap), blend_weight(ax.size, ax.overlap))
    windows = [(y0, x0) for y0 in ay.starts(by) for x0 in ax.starts(bx)]
    for k in range(0, len(windows), batch_size):
        chunk = windows[k:k + batch_size]
        batch = np.stack([block[:, y0:y0 + ay.size, x0:x0 + ax.size] for y0, x0 in chunk])
        prob = _run_model(model, np.ascontiguousarray(batch, dtype=np.float32), device, n_classes, tta)
        for (y0, x0), p in zip(chunk, prob, strict=True):
            acc[:n_classes, y0:y0 + ay.size, x0:x0 + ax.size] += p * weight
            acc[n_classes, y0:y0 + ay.size, x0:x0 + ax.size] += weight
    return acc


def _blend_block(acc: np.ndarray, *, ay: TileAxis, ax: TileAxis, n_classes: int,
                 block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Pass 2: add the previous blocks' spill to a block's own sums, divide, drop the rest.

    ``acc`` is a pass-1 block ``(K + 1, B + o, B + o)`` preceded (except in the first block
    row/column) by the last ``o`` rows/columns of the previous block: its spill into this one.
    """
    _, by, bx = block_id
    hy, hx = (ay.overlap if by else 0), (ax.overlap if bx else 0)
    cy, cx = ay.chunk, ax.chunk
    out = acc[:, hy:hy + cy, hx:hx + cx].copy()
    if hy:
        out[:, :hy, :] += acc[:, :hy, hx:hx + cx]
    if hx:
        out[:, :, :hx] += acc[:, hy:hy + cy, :hx]
    if hy and hx:
        out[:, :hy, :hx] += acc[:, :hy, :hx]
    num, den, missing = out[:n_classes], out[n_classes], out[n_classes + 1] > 0
    # den > 0 on every pixel of the scene; 0 only on padding that no window starts before
    prob = np.divide(num, den, out=np.zeros_like(num), where=den > 0).astype(np.float32)
    prob[:, missing] = np.nan
    return prob


def argmax_label(prob: np.ndarray) -> np.ndarray:
    """uint8 index of the most probable class along the first axis of a ``(class, y, x)`` block.

    A pixel with a NaN probability has no class: :data:`~xglacier.segmentation.classes.NODATA`.

    Examples
    --------
    >>> argmax_label(np.array([[[0.2, 0.6, np.nan]], [[0.8, 0.4, np.nan]]]))
    array([[  1,   0, 255]], dtype=uint8)
    """
    missing = np.isnan(prob).any(axis=0)
    label = np.nan_to_num(prob, nan=0.0).argmax(axis=0).astype(np.uint8)
    label[missing] = NODATA
    return label


def _check_model(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    for attr in ("channels", "classes", "predict_proba"):
        if not hasattr(model, attr):
            raise ParameterError(f"segment: model {type(model).__name__} has no {attr!r}; expected a "
                                 "SegmentationModel (xglacier.segmentation.models)")
    return tuple(str(c) for c in model.channels), tuple(str(c) for c in model.classes)


def _features_for(ds: xr.Dataset, channels: Sequence[str], dem: Any, time: Any) -> xr.DataArray:
    """The model's feature cube built from a scene Dataset (its bands, indices and terrain)."""
    from .features import INDICES, features

    names = [str(c) for c in channels]
    terrain = [c for c in ("elevation", "slope") if c in names]
    if terrain and dem is None:
        raise InputError(f"segment: the model expects terrain channel(s) {terrain}; pass dem= (a DEM "
                         "DataArray or raster path) to build them from the Dataset")
    bands = [c for c in names if c not in INDICES and c not in terrain]
    missing = [b for b in bands if b not in ds.data_vars]
    if missing:
        # e.g. NDSI composites given to a model of reflectance bands: say so before any index fails
        raise MissingBandError(f"segment: the model's channels {names} need the band(s) {missing}, which the "
                               f"Dataset lacks; variables present: {sorted(map(str, ds.data_vars))}")
    indices = [c for c in names if c in INDICES]
    return features(ds, bands=bands, indices=indices, dem=dem if terrain else None,
                    elevation="elevation" in names, slope="slope" in names, time=time)


def segment(features: xr.DataArray | xr.Dataset, model: Any, *, tile: int = 512, overlap: int = 64,
            batch_size: int = 4, device: str = "cpu", windows_per_chunk: int | None = None,
            dem: Any = None, time: Any = None, ood_sigmas: float | None = 3.0, tta: bool = False
            ) -> xr.Dataset:
    """Segment a whole scene: class probabilities and labels from a tiled model, lazily.

    The model runs on ``tile`` x ``tile`` windows every ``tile - overlap`` pixels
    (``batch_size`` windows per call, eval mode, ``torch.inference_mode()``); the class
    probabilities of overlapping windows are blended with a smooth weight (1 inside, a
    cosine ramp over the ``overlap`` pixels at each edge; see :func:`blend_weight`), and the
    scene is extended with NaN past its right/bottom edges so that edge windows are full. A
    scene no larger than ``tile`` along an axis is one window of exactly its size there.
    The tiling depends only on the scene's shape: the result is identical whatever the
    chunking of ``features``. Pixels with a missing channel get no class (see Returns).
    Scenes far outside the model's training data are reported (``ood_sigmas``). See
    ``docs/segmentation-inference.md``.

    Parameters
    ----------
    features
        ``(channel, y, x)`` DataArray (e.g. from :func:`xglacier.features`) whose channel
        names equal ``model.channels`` in the same order; ``y`` and ``x`` may run either way
        (the model sees the scene north-up and east-right, as it was trained, and the result
        comes back on the input's grid). NaN marks missing data: a pixel
        with any NaN channel is labelled no data (the model imputes NaN with the training
        mean only to predict the pixels around it).
        Or a scene Dataset of reflectance bands: the model's channels are then built from
        it with :func:`xglacier.features` (bands, indices, and elevation / slope from
        ``dem``), one scene picked by ``time`` when it has a time dimension.
    model
        A :class:`~xglacier.segmentation.models.SegmentationModel` (``channels``, ``classes``,
        ``predict_proba``). A copy of it as it is now, in eval mode on ``device``, enters
        the graph once, unhashed: the model itself keeps its mode and device, and training it
        further does not change a lazy result.
    tile
        Window size in pixels (the paper's 512).
    overlap
        Pixels shared by neighbouring windows, blended; ``0 <= overlap <= tile // 2``.
    batch_size
        Windows per model call.
    device
        Torch device the model runs on (``"cpu"``, ``"cuda"``, ...).
    windows_per_chunk
        Windows per Dask block along y and x (default ``round(sqrt(batch_size))``): blocks
        are ``windows_per_chunk * (tile - overlap)`` pixels, aligned on the scene origin.
        Changes the float rounding order of the blend (not the windows nor the batches).
    dem, time
        Only for a Dataset input: passed to :func:`xglacier.features`.
    ood_sigmas
        Warn (:class:`~xglacier.errors.OutOfDistributionWarning`, naming the channels) when
        more than half of a channel's valid pixels lie over ``ood_sigmas`` training standard
        deviations from the training mean on one side (the scene's median outside
        ``mean +- ood_sigmas * std``; the model's stored statistics, see
        :mod:`xglacier.nn.shift`). 3: a typical pixel as far out as 0.3 % of normal training
        values. ``None``: no check. A NumPy input is checked before the model runs; a Dask
        input when the result is computed (the counts come from the blocks the model reads;
        the last output block waits for them), nothing is computed here.
    tta
        Test-time augmentation: each window's probabilities are the mean over its 8 turns
        by 90 degrees and flips (each prediction turned back), 8 times the model's work.
        Every feature channel is invariant under these (as in training's augmentation), so
        this only averages out the model's dependence on orientation; a model that is
        exactly turn- and flip-equivariant gives the same result as without.

    Returns
    -------
    xarray.Dataset
        ``probability (class, y, x)`` float32 and ``label (y, x)`` uint8 (argmax, CF
        ``flag_values``/``flag_meanings`` from ``model.classes``) on the input grid with its
        coordinates and CRS; ``class`` coordinate = ``model.classes``. Where any channel is
        NaN, ``label`` is :data:`~xglacier.segmentation.classes.NODATA` (255, its
        ``_FillValue``) and ``probability`` NaN. Lazy (Dask) for a Dask-backed input,
        computed for a NumPy-backed one.

    Examples
    --------
    >>> import numpy as np, torch, xarray as xr
    >>> from xglacier.segmentation.models import SegmentationModel
    >>> class Pointwise(SegmentationModel):
    ...     def __init__(self, **kw):
    ...         super().__init__(**kw)
    ...         self.conv = torch.nn.Conv2d(len(self.channels), len(self.classes), 1)
    ...     def forward(self, x):
    ...         return self.conv(x)
    >>> _ = torch.manual_seed(0)
    >>> model = Pointwise(channels=["ndsi", "dem"], classes=["background", "clean_ice"])
    >>> f = xr.DataArray(np.random.default_rng(0).random((2, 50, 70), dtype="f4"),
    ...                  dims=("channel", "y", "x"), coords={"channel": ["ndsi", "dem"]})
    >>> out = segment(f.chunk({"x": 20}), model, tile=32, overlap=8)
    >>> out.probability.dims, out.label.dtype.name
    (('class', 'y', 'x'), 'uint8')
    >>> direct = model.predict_proba(torch.from_numpy(f.values[None])).detach().numpy()[0]
    >>> bool(np.allclose(out.probability.values, direct, atol=1e-6))
    True
    """
    channels, classes = _check_model(model)
    if isinstance(features, xr.Dataset):
        features = _features_for(features, channels, dem, time)
    elif dem is not None or time is not None:
        raise ParameterError("segment: dem= and time= apply to a scene Dataset only; features is "
                             "already a feature DataArray")
    features = check_features("segment", features, channels)
    tile = check_int("segment", "tile", tile, low=1)
    overlap = check_int("segment", "overlap", overlap, low=0)
    batch_size = check_int("segment", "batch_size", batch_size, low=1)
    if overlap > tile // 2:
        raise ParameterError(f"segment: overlap={overlap} with tile={tile}; expected overlap <= tile // 2 "
                             f"= {tile // 2}")
    if windows_per_chunk is None:
        windows_per_chunk = max(1, round(math.sqrt(batch_size)))
    windows_per_chunk = check_int("segment", "windows_per_chunk", windows_per_chunk, low=1)
    ood_sigmas = check_number("segment", "ood_sigmas", ood_sigmas, low=0, low_open=True, allow_none=True)
    tta = check_flag("segment", "tta", tta)
    # the models learnt scenes north-up and east-right (fine_tune orients them so): show them
    # every scene that way, and give the result back in the input's order
    flips = view_flips(features)
    given, features = features, features.isel(flips)
    _, ny, nx = features.shape
    if ny == 0 or nx == 0:
        raise InputError(f"segment: features has an empty grid (y={ny}, x={nx})")
    ay = TileAxis.plan(ny, tile, overlap, windows_per_chunk)
    ax = TileAxis.plan(nx, tile, overlap, windows_per_chunk)
    n_classes = len(classes)
    stats = training_statistics(model) if ood_sigmas is not None else None
    # NumPy: warns now; Dask: a Delayed that warns when the result is computed
    gate = None if stats is None else check_inputs("segment", features.data, channels=channels,
                                                   mean=stats[0], std=stats[1], sigmas=ood_sigmas)

    eager = not isinstance(features.data, dsa.Array)
    # blocks as below from the start (padding one big chunk would copy the whole array);
    # name=False: a random key instead of hashing the whole array
    data = dsa.from_array(features.data, chunks=(-1, ay.chunk, ax.chunk), name=False) if eager \
        else features.data
    data = data.astype(np.float32)
    # NaN past the edges: to whole blocks, plus the overlap the last windows reach beyond them;
    # that overlap joins the last block, so every block holds its pixels and the next `overlap`
    data = dsa.pad(data, ((0, 0), (0, ay.padded + ay.overlap - ny), (0, ax.padded + ax.overlap - nx)),
                   constant_values=np.nan)
    data = data.rechunk(((len(channels),), ay.input_chunks, ax.input_chunks))
    # not pure: tokenizing would hash (or pickle) every weight of the model
    lazy_model = dask.delayed(frozen_copy(model, device=device), pure=False)
    # pass 1: halo only after each block (what its windows reach into the next one)
    sums = dsa.map_overlap(
        _predict_block, data, depth={0: 0, 1: (0, ay.overlap), 2: (0, ax.overlap)}, boundary="none",
        trim=False, model=lazy_model, ay=ay, ax=ax, n_classes=n_classes, batch_size=batch_size,
        device=device, tta=tta, chunks=((n_classes + 2,), ay.sum_chunks, ax.sum_chunks),
        dtype=np.float64, meta=np.empty((0, 0, 0), np.float64),
    )
    # pass 2: halo only before each block (the previous blocks' spill), so a block row waits
    # for the row above it only and pass-1 results are released early
    prob = dsa.map_overlap(
        _blend_block, sums, depth={0: 0, 1: (ay.overlap, 0), 2: (ax.overlap, 0)}, boundary="none",
        trim=False, ay=ay, ax=ax, n_classes=n_classes,
        chunks=((n_classes,), (ay.chunk,) * ay.n_chunks, (ax.chunk,) * ax.n_chunks),
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
    )[:, :ny, :nx]
    prob = after(prob, gate)
    label = prob.map_blocks(argmax_label, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
    if flips:
        ys, xs = flips.get("y", slice(None)), flips.get("x", slice(None))
        prob, label = prob[:, ys, xs], label[ys, xs]
    if eager:
        prob, label = dask.compute(prob, label)
    features = given
    attrs = with_history({}, "segment", source=features, model=type(model).__name__, tile=tile,
                         overlap=overlap, batch_size=batch_size, windows_per_chunk=windows_per_chunk,
                         ood_sigmas=ood_sigmas, tta=tta)
    attrs["model"] = type(model).__name__
    return segmentation_dataset(prob, label, features, classes, attrs)
