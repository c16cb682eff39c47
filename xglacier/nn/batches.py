"""Mini-batches as torch tensors, gathered one batch at a time from any sample source.

A source is anything with ``len(source)`` and ``source.gather(index) -> (x, y)`` (NumPy
arrays for the samples ``index``): :class:`xglacier.PatchSet` for forecasting, the
segmentation tiles for the U-Net. Nothing but the current batch is held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from .._validate import check_flag, check_int


class SampleSource(Protocol):
    """What :class:`BatchLoader` gathers from."""

    def __len__(self) -> int: ...

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, ...]: ...


class BatchLoader:
    """Re-iterable batches ``(x, y)`` of a sample source as torch tensors (one tensor per
    array the source's ``gather`` returns).

    Each iteration visits every sample once, in order or (``shuffle=True``) in a new
    order drawn from a generator seeded once with ``seed``, so that epochs differ and a
    seeded run repeats.

    Examples
    --------
    >>> import numpy as np
    >>> class Squares:
    ...     def __len__(self):
    ...         return 5
    ...     def gather(self, index):
    ...         return index.astype("f4"), (index ** 2).astype("f4")
    >>> [tuple(y.tolist()) for _, y in BatchLoader(Squares(), batch_size=2)]
    [(0.0, 1.0), (4.0, 9.0), (16.0,)]
    """

    def __init__(self, source: SampleSource, *, batch_size: int = 100, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False) -> None:
        self.source = source
        self.batch_size = check_int("to_torch", "batch_size", batch_size, low=1)
        self.shuffle = check_flag("to_torch", "shuffle", shuffle)
        self.drop_last = check_flag("to_torch", "drop_last", drop_last)
        self._rng = np.random.default_rng(check_int("to_torch", "seed", seed, low=0, allow_none=True))

    def __len__(self) -> int:
        n = len(self.source)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        import torch

        n = len(self.source)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for k in range(len(self)):
            arrays = self.source.gather(order[k * self.batch_size : (k + 1) * self.batch_size])
            yield tuple(torch.from_numpy(a) for a in arrays)
