"""Windows of tiled inference over a scene: where they start along an axis, and their blend weight.

:func:`xglacier.segment` runs a model on overlapping windows and blends their outputs;
:class:`TileAxis` plans one axis (window size, stride, Dask block size, padding) from the
scene's length only, so the windows never depend on how the input is chunked, and
:func:`blend_weight` is the smooth weight that hides the window edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._windows import window_starts

__all__ = ["TileAxis", "blend_weight"]


def blend_weight(size: int, overlap: int) -> np.ndarray:
    """1-D blending weight of a window: 1 inside, cosine ramps over ``overlap`` pixels at both ends.

    ``w[k] = 0.5 - 0.5 cos(pi (k + 0.5) / overlap)`` for ``k < overlap`` (mirrored at the
    other end): strictly positive, and the ramps of two windows ``overlap`` pixels apart
    add up to 1.

    Examples
    --------
    >>> w = blend_weight(6, 2)
    >>> w.round(3).tolist()
    [0.146, 0.854, 1.0, 1.0, 0.854, 0.146]
    >>> float(w[0] + w[-2])
    1.0
    """
    w = np.ones(size, np.float64)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        w[:overlap] = np.minimum(w[:overlap], ramp)
        w[size - overlap:] = np.minimum(w[size - overlap:], ramp[::-1])
    return w


@dataclass(frozen=True)
class TileAxis:
    """Tiling of one axis: window ``size``, ``overlap``, ``stride``, ``chunk`` and padded length.

    Windows of ``tile`` pixels start every ``tile - overlap`` pixels while the start lies
    inside the ``n`` pixels; an axis no longer than ``tile`` is one window of exactly ``n``
    pixels. Dask blocks hold ``per_chunk`` window starts (``chunk`` pixels).

    Examples
    --------
    >>> ax = TileAxis.plan(100, 48, 12, 2)
    >>> ax.stride, ax.chunk, ax.n_chunks, ax.starts(0), ax.starts(1)
    (36, 72, 2, [0, 36], [0])
    >>> TileAxis.plan(30, 48, 12, 2).size
    30
    """

    n: int
    size: int
    overlap: int
    stride: int
    per_chunk: int

    @classmethod
    def plan(cls, n: int, tile: int, overlap: int, per_chunk: int) -> TileAxis:
        """The tiling of an axis of ``n`` pixels (the caller checks ``tile``, ``overlap``, ``per_chunk``)."""
        if n <= tile:  # one window of exactly the scene: no padding, no overlap
            return cls(n, n, 0, n, 1)
        return cls(n, tile, overlap, tile - overlap, per_chunk)

    @property
    def chunk(self) -> int:
        return self.per_chunk * self.stride

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk)

    @property
    def padded(self) -> int:
        return self.n_chunks * self.chunk

    @property
    def input_chunks(self) -> tuple[int, ...]:
        """Input blocks: ``chunk`` pixels, the last one with the ``overlap`` of padding after it."""
        return (self.chunk,) * (self.n_chunks - 1) + (self.chunk + self.overlap,)

    @property
    def sum_chunks(self) -> tuple[int, ...]:
        """Pass-1 blocks: ``chunk + overlap`` pixels each."""
        return (self.chunk + self.overlap,) * self.n_chunks

    def starts(self, block: int) -> list[int]:
        """Window starts of ``block``, relative to the block's first pixel."""
        # a window is kept while it starts inside the scene: the "pad" rule applied to the
        # stride-long step each window advances (with windows of `size` pixels, "pad" would
        # stop one window earlier wherever the last one would only reach into the overlap)
        every = window_starts(self.n, self.stride, self.stride, end="pad")
        first = block * self.chunk
        return [int(s) - first for s in every[(every >= first) & (every < first + self.chunk)]]
