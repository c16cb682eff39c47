"""Weight averaging over the last epochs of a fine-tuning run (``fine_tune(average_last=K)``).

Izmailov, Podoprikhin, Garipov, Vetrov and Wilson (2018), *Averaging Weights Leads to
Wider Optima and Better Generalization*: the mean of the weights visited at the end of a
run lies in a flatter region of the loss than any one of them, and generalises better.
Here the mean is taken over the weights at the end of each of the last ``K`` epochs of a
run (the cosine schedule has already brought the rate down there, so the weights are
close and their mean is a model of the same basin); batch normalisation's running
statistics, which do not average, are then measured again on the training tiles with
the averaged weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..nn.loop import model_device
from .tileset import SegmentationTiles

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _EpochEnd:
    """A loader whose iteration calls ``callback()`` once its last batch has been trained on.

    :func:`~xglacier.nn.loop.train_epochs` asks the loader for the next batch only after
    the optimizer step of the previous one, so the callback sees the weights at the end
    of the epoch, before the epoch's validation.
    """

    def __init__(self, loader: Any, callback: Callable[[], None]) -> None:
        self.loader, self.callback = loader, callback

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        yield from self.loader
        self.callback()


class WeightAverage:
    """Running sum of ``net``'s parameters at the end of the last ``count`` of ``epochs`` epochs.

    Sums are float64, so that the mean of identical weights is those weights exactly.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> avg = WeightAverage(net, epochs=3, count=2)
    >>> for _ in avg.wrap([1]):
    ...     pass
    >>> avg.averaged
    0
    """

    def __init__(self, net: nn.Module, epochs: int, count: int) -> None:
        self.net, self.first = net, max(1, epochs - count + 1)
        self.epoch, self.averaged = 0, 0
        self.sums: dict[str, torch.Tensor] = {}

    def wrap(self, loader: Any) -> _EpochEnd:
        """``loader``, adding the weights to the sums at the end of each epoch of the window."""
        return _EpochEnd(loader, self._epoch_end)

    def _epoch_end(self) -> None:
        self.epoch += 1
        if self.epoch < self.first:
            return
        with torch.no_grad():
            for name, p in self.net.named_parameters():
                value = p.detach().to("cpu", torch.float64)
                self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.averaged += 1

    def apply(self, tiles: SegmentationTiles, batch_size: int) -> int:
        """Put the mean weights into the net and measure its batch-norm statistics again; the count."""
        if not self.averaged:
            return 0
        with torch.no_grad():
            for name, p in self.net.named_parameters():
                p.copy_((self.sums[name] / self.averaged).to(p.device, p.dtype))
        recompute_batch_norm(self.net, tiles, batch_size)
        return self.averaged


def recompute_batch_norm(net: nn.Module, tiles: SegmentationTiles, batch_size: int) -> None:
    """Batch-norm running statistics of ``net`` measured afresh: the mean over every tile's batch.

    Only the normalisation layers are in training mode during the pass (dropout stays off),
    so the statistics are those of the activations the model sees when it predicts; the
    pass is deterministic and draws no random number. The model is left in eval mode.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xglacier
    >>> net = xglacier.models.UNet(["ndsi"], ["background", "glacier"], depth=1, base_channels=2,
    ...                            batch_norm=True)
    >>> f = xr.DataArray(np.full((1, 8, 8), 3.0, "f4"), dims=("channel", "y", "x"),
    ...                  coords={"channel": ["ndsi"], "y": np.arange(8.0), "x": np.arange(8.0)})
    >>> tiles = xglacier.segmentation_tiles(f, xr.ones_like(f[0], dtype="u1"), size=8)
    >>> recompute_batch_norm(net, tiles, 4)
    >>> bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    >>> int(bn.num_batches_tracked), net.training
    (1, False)
    """
    norms = [m for m in net.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    net.eval()
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    device = model_device(net)
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean over the batches, not an exponential one
            m.train()
        with torch.no_grad():
            for xb, _ in tiles.to_torch(batch_size=batch_size):
                net(net.normalise(xb.to(device)))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        net.eval()

