"""Radiometric augmentation for fine-tuning (``fine_tune(radiometric=r)``): random band gains.

A model fine-tuned on one scene learns that scene's reflectances exactly; the next scene
of the same place comes from another sensor (HLS L30 against S30: other spectral
response functions and calibration), another sun angle and another snow surface, so every
band is a few per cent brighter or darker. Each training tile therefore has each
reflectance band multiplied by its own random gain, log-uniform in ``[exp(-r), exp(r)]``,
and the normalised-difference indices among the channels are changed as the bands they
are computed from: with ``d = (a - b) / (a + b)`` and gains ``ga``, ``gb``,

    d' = (ga a - gb b) / (ga a + gb b) = (ga (1 + d) - gb (1 - d)) / (ga (1 + d) + gb (1 - d)),

so the features stay those of a possible scene (the index is the index of the changed
bands, even when the bands themselves are not channels). Elevation and slope are not
changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..landsat import REFLECTANCE_BANDS
from .features import INDEX_BANDS


class RadiometricGain:
    """Multiply each tile's reflectance channels by random gains; change its indices to match.

    ``channels`` are the model's channel names; ``strength`` is ``r`` (gains in
    ``[exp(-r), exp(r)]``, one per tile and band). Draws from torch's global generator
    (seeded by the training loop). Index channels are clipped to ``[-1, 1]`` first, as
    :func:`xglacier.features` computes them.

    Examples
    --------
    >>> aug = RadiometricGain(["green", "swir16", "ndsi", "elevation"], 0.2)
    >>> x = torch.tensor([0.6, 0.2, 0.5, 2000.0]).reshape(1, 4, 1, 1)
    >>> y = aug(x).flatten()
    >>> bool(torch.isclose((y[0] - y[1]) / (y[0] + y[1]), y[2])), float(y[3])
    (True, 2000.0)
    """

    def __init__(self, channels: Sequence[str], strength: float) -> None:
        names = [str(c) for c in channels]
        self.strength = float(strength)
        self.bands = sorted({c for c in names if c in REFLECTANCE_BANDS}
                            | {b for c in names if c in INDEX_BANDS for b in INDEX_BANDS[c]})
        self.scaled = [(names.index(b), self.bands.index(b)) for b in self.bands if b in names]
        self.indices = [(i, self.bands.index(INDEX_BANDS[c][0]), self.bands.index(INDEX_BANDS[c][1]))
                        for i, c in enumerate(names) if c in INDEX_BANDS]

    @property
    def active(self) -> bool:
        """Whether anything changes: a positive strength and a band or index among the channels."""
        return self.strength > 0 and bool(self.scaled or self.indices)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, channel, y, x)`` with new gains per tile (a new tensor)."""
        if not self.active:
            return x
        u = torch.rand(x.shape[0], len(self.bands), 1, 1, dtype=torch.float64) * 2 - 1
        gains = torch.exp(u * self.strength).to(x.device, x.dtype)
        out = x.clone()
        for channel, band in self.scaled:
            out[:, channel] = x[:, channel] * gains[:, band]
        for channel, a, b in self.indices:
            d = x[:, channel].clamp(-1, 1)
            up, down = gains[:, a] * (1 + d), gains[:, b] * (1 - d)
            out[:, channel] = (up - down) / (up + down)  # up + down > 0: ga, gb > 0, |d| <= 1
        return out
