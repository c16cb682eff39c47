"""Blocks and window origins of :func:`xglacier.forecast`'s tiling along one axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._windows import window_starts


@dataclass(frozen=True)
class BlockAxis:
    """Blocks and window origins along y or x: ``edges`` bound the blocks, ``first`` indexes
    ``origins`` at each block's first window (both end with the totals)."""

    size: int
    edges: tuple[int, ...]
    origins: tuple[int, ...]
    first: tuple[int, ...]

    @classmethod
    def plan(cls, n: int, size: int, stride: int, block: int | None, per_block: int) -> BlockAxis:
        origins = window_starts(n, size, stride, end="flush")
        if block is None:
            # as few blocks of at most `per_block` windows as needed, evened out: the flush
            # window lands in the last block, which a sliver narrower than a patch joins
            windows = -(-len(origins) // -(-len(origins) // per_block))
            block = max(size, windows * stride)
        edges = [*range(0, n, block), n]
        if len(edges) > 2 and edges[-1] - edges[-2] < size:
            del edges[-2]  # a block narrower than a patch joins the one before
        first = [*np.searchsorted(origins, edges[:-1]).tolist(), len(origins)]
        return cls(size, tuple(edges), tuple(origins.tolist()), tuple(first))

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(np.diff(self.edges).tolist())

    @property
    def counts(self) -> tuple[int, ...]:
        """Windows starting in each block."""
        return tuple(np.diff(self.first).tolist())

    def windows(self, b: int) -> np.ndarray:
        return np.asarray(self.origins[self.first[b]:self.first[b + 1]], np.int64)
