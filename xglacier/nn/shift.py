"""Inputs far outside a model's training data: a per-channel check against stored statistics.

Every segmentation model (and :class:`~xglacier.segmentation.classical.PixelClassifier`)
keeps the per-channel mean and standard deviation of its training pixels. A model applied
to a scene whose channels lie far outside that range extrapolates, and a network does so
confidently (a U-Net trained on synthetic scenes at 5186 +- 636 m labels 94 % of a real
scene at 1937-3449 m as ice). :func:`check_inputs` warns with
:class:`~xglacier.errors.OutOfDistributionWarning`, naming each such channel.

"Far", per channel: more than half of the scene's valid (finite) values lie more than
``sigmas`` training standard deviations from the training mean, on the same side, i.e. the
scene's median is outside ``mean +- sigmas * std``. The median, not the mean: clouds, a
few bad pixels or a high peak in one corner do not move it. Only counts are kept per
block (valid pixels, pixels below and above the band, and a sum for the message), so the
check is exact for any chunking and cheap next to the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as dsa
import numpy as np

from ..errors import OutOfDistributionWarning

__all__ = ["after", "channel_counts", "check_inputs", "far_channels", "training_statistics"]


def training_statistics(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel training ``(mean, std)`` of a model, or ``None`` when it records none.

    Asks ``model.training_statistics()`` when the model has it (every
    :class:`~xglacier.segmentation.models.SegmentationModel`: the statistics checkpoints
    store, ``None`` for the defaults 0 and 1), else reads ``model.config["mean"]`` /
    ``["std"]``; a model with neither is not checked.

    Examples
    --------
    >>> from xglacier.models import UNet
    >>> training_statistics(UNet(["dem"], ["background", "ice"], depth=1, base_channels=2)) is None
    True
    >>> m = UNet(["dem"], ["background", "ice"], depth=1, base_channels=2, mean=[4000.0], std=[500.0])
    >>> training_statistics(m)
    (array([4000.]), array([500.]))
    """
    if callable(getattr(model, "training_statistics", None)):
        stats = model.training_statistics()
    else:
        config = getattr(model, "config", None)
        stats = (config.get("mean"), config.get("std")) if isinstance(config, dict) else None
    if stats is None or stats[0] is None or stats[1] is None:
        return None
    return np.asarray(stats[0], np.float64), np.asarray(stats[1], np.float64)


def channel_counts(block: np.ndarray, *, mean: np.ndarray, std: np.ndarray, sigmas: float) -> np.ndarray:
    """``(channel, 4)`` float64 of a ``(channel, y, x)`` block: valid, below, above, sum of valid.

    ``below`` / ``above`` count the finite values under ``mean - sigmas * std`` and over
    ``mean + sigmas * std`` (none for a channel with ``std`` 0); counts add up over blocks
    exactly.

    Examples
    --------
    >>> x = np.array([[[1.0, 2.0, np.nan, 9.0]]])
    >>> channel_counts(x, mean=np.array([2.0]), std=np.array([1.0]), sigmas=3.0).tolist()
    [[3.0, 0.0, 1.0, 12.0]]
    """
    out = np.zeros((block.shape[0], 4), np.float64)
    for i, v in enumerate(np.asarray(block)):  # one channel at a time: no float64 copy of the block
        ok = np.isfinite(v)
        out[i, 0] = ok.sum()
        out[i, 3] = v.sum(where=ok, dtype=np.float64)
        if std[i] > 0:  # a channel constant in training gives no scale to be far on: never counted
            out[i, 1] = (ok & (v < np.float64(mean[i] - sigmas * std[i]))).sum()
            out[i, 2] = (ok & (v > np.float64(mean[i] + sigmas * std[i]))).sum()
    return out


def far_channels(counts: np.ndarray, channels: Sequence[str], *, mean: np.ndarray, std: np.ndarray,
                 sigmas: float) -> list[str]:
    """One sentence per channel whose median lies outside ``mean +- sigmas * std``; ``[]`` if none.

    Examples
    --------
    >>> counts = np.array([[10.0, 0.0, 0.0, 5.0], [10.0, 9.0, 0.0, 25000.0]])
    >>> far_channels(counts, ["ndsi", "elevation"], mean=np.array([0.5, 5186.0]),
    ...              std=np.array([0.3, 636.0]), sigmas=3.0)
    ['elevation: 90 % of the valid pixels lie more than 3 std below the training mean 5186 +- 636 \
(scene mean 2500)']
    """
    out = []
    for name, (n, below, above, total), m, s in zip(channels, counts, mean, std, strict=True):
        for side, k in (("below", below), ("above", above)):
            if n > 0 and k > n / 2:
                out.append(f"{name}: {100 * k / n:.0f} % of the valid pixels lie more than {sigmas:g} std "
                           f"{side} the training mean {m:.4g} +- {s:.4g} (scene mean {total / n:.4g})")
    return out


def _warn(counts: np.ndarray, *, where: str, channels: Sequence[str], mean: np.ndarray, std: np.ndarray,
          sigmas: float, stacklevel: int) -> None:
    far = far_channels(counts, channels, mean=mean, std=std, sigmas=sigmas)
    if far:
        names = [f.split(":", 1)[0] for f in far]
        warnings.warn(
            f"{where}: channel(s) {names} of the scene lie far outside the model's training data; "
            f"its predictions there are extrapolation. {'; '.join(far)}. Check that the features are "
            "built like the training ones (units, scaling, DEM), or train on such scenes; "
            "ood_sigmas=None turns this check off",
            OutOfDistributionWarning, stacklevel=stacklevel)


def check_inputs(where: str, data: Any, *, channels: Sequence[str], mean: np.ndarray, std: np.ndarray,
                 sigmas: float, stacklevel: int = 3) -> Any:
    """Warn now (NumPy ``data``) or return a Delayed that warns when computed (Dask ``data``).

    ``data`` is ``(channel, y, x)``. For Dask, the per-block counts are taken from the
    blocks the caller's graph reads anyway; tie the returned Delayed to the result with
    :func:`after` so that computing the result runs the check. Nothing is computed here.
    ``stacklevel`` as for :func:`warnings.warn`, counted from the caller of
    ``check_inputs`` (3: the code that called that caller, e.g. the user of ``segment``).

    Examples
    --------
    >>> import warnings
    >>> x = np.full((1, 4, 4), 2600.0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_inputs("demo", x, channels=["elevation"], mean=np.array([5186.0]),
    ...                  std=np.array([636.0]), sigmas=3.0)
    >>> caught[0].category.__name__, "elevation" in str(caught[0].message)
    ('OutOfDistributionWarning', True)
    """
    kw = {"mean": np.asarray(mean, np.float64), "std": np.asarray(std, np.float64), "sigmas": float(sigmas)}
    if not isinstance(data, dsa.Array):
        counts = channel_counts(np.asarray(data), **kw)
        _warn(counts, where=where, channels=list(channels), stacklevel=stacklevel + 1, **kw)
        return None
    # plain tasks on the blocks' own keys, not a blockwise layer: graph optimisation could fuse
    # a blockwise one with the input's tasks and compute each input block twice
    blocks = data.rechunk({0: -1}).to_delayed(optimize_graph=False).ravel().tolist()
    counts = [dask.delayed(channel_counts, pure=True)(b, **kw) for b in blocks]
    return dask.delayed(_warn_total, pure=False)(counts, where=where, channels=list(channels), **kw)


def _warn_total(counts: list[np.ndarray], **kw: Any) -> None:
    _warn(np.sum(counts, axis=0), stacklevel=2, **kw)


def _after_block(block: np.ndarray, gate: Any = None) -> np.ndarray:
    return block


def after(arr: dsa.Array, gate: Any) -> dsa.Array:
    """``arr`` with its last block made to wait for ``gate`` (e.g. :func:`check_inputs`'s Delayed).

    The values are unchanged; computing the whole of ``arr`` (or its last block) computes
    ``gate`` too. Only one block waits, so the other blocks stream as before.

    Examples
    --------
    >>> import dask
    >>> seen = []
    >>> x = after(dsa.ones((4, 4), chunks=2), dask.delayed(seen.append)("checked"))
    >>> float(x.sum().compute()), seen
    (16.0, ['checked'])
    """
    if gate is None:
        return arr
    last = tuple(n - 1 for n in arr.numblocks)
    tail = arr.blocks[last].map_blocks(_after_block, gate=gate, dtype=arr.dtype, meta=arr._meta)
    blocks = np.empty(arr.numblocks, dtype=object)
    for idx in np.ndindex(*arr.numblocks):
        blocks[idx] = tail if idx == last else arr.blocks[idx]
    return dsa.block(blocks.tolist())
