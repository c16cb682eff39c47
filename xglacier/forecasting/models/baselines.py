"""Naive forecasts behind the model interface: every model is scored beside them."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..._validate import check_int
from ...nn.registry import register_model
from .base import ForecastModel, season_inputs, season_means


class _Baseline(ForecastModel):
    trainable = False
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {}  # a baseline never had gaps to read

    def __init__(self, *, patch_size: int = 50, n_in: int = 4, n_out: int = 4, **config) -> None:
        super().__init__(patch_size=patch_size, n_in=n_in, n_out=n_out, **config)


class _Seasonal(_Baseline):
    """A baseline that reads the inputs of each lead's season, ``period`` frames per cycle."""

    def __init__(self, *, patch_size: int = 50, n_in: int = 4, n_out: int = 4, period: int = 4) -> None:
        name = type(self).__name__
        n_in = check_int(name, "n_in", n_in, low=1)
        period = check_int(name, "period", period, low=1, high=n_in)
        super().__init__(patch_size=patch_size, n_in=n_in, n_out=n_out, period=period)
        self.period = period


@register_model
class Persistence(_Baseline):
    """Every future frame equals the last input frame.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 4, 1, 1).expand(1, 4, 2, 2)
    >>> Persistence(patch_size=2)(x)[0, :, 0, 0].tolist()
    [3.0, 3.0, 3.0, 3.0]
    """

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self._check(x)
        return x[:, -1:].expand(-1, n_out or self.n_out, -1, -1).clone()


@register_model
class SeasonalPersistence(_Seasonal):
    """Each future frame equals the frame one seasonal ``period`` earlier (4 quarters).

    Frames beyond the inputs' reach repeat the cycle (lead ``k`` uses input
    ``n_in - period + (k - 1) % period``).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 4, 1, 1)
    >>> SeasonalPersistence(patch_size=1)(x)[0, :, 0, 0].tolist()
    [0.0, 1.0, 2.0, 3.0]
    """

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self._check(x)
        steps = n_out or self.n_out
        return x[:, [season_inputs(self.n_in, self.period, k)[0] for k in range(steps)]].clone()


@register_model
class SeasonalClimatology(_Seasonal):
    """Each future frame is the per-pixel mean of the inputs of its season (every year the
    inputs cover); with one year of inputs this is :class:`SeasonalPersistence`.

    With several years of inputs it is the climatology of the place and season: it averages
    away one year's weather and one quarter's choice of clear dates, which makes it a harder
    baseline than seasonal persistence wherever those vary more than the climate changes.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 8, 1, 1)          # two years of quarters
    >>> SeasonalClimatology(patch_size=1, n_in=8)(x)[0, :, 0, 0].tolist()
    [2.0, 3.0, 4.0, 5.0]
    """

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self._check(x)
        return season_means(x, self.period, n_out or self.n_out)


@register_model
class HistoryClimatology(_Seasonal):
    """Each future frame is the per-pixel mean of its season over every year before the
    forecast (``forward``'s ``climate``; see :mod:`xglacier.forecasting.history`), not only
    over the inputs; seasonal persistence where a pixel was never observed in its season.

    It is the long-term climatology a forecaster starts from, and the reference of learned
    models with ``residual="history"``: beside it, their score shows what they learned.
    :func:`xglacier.evaluate` and :func:`xglacier.forecast` pass ``climate``.

    Examples
    --------
    >>> import torch
    >>> x, climate = torch.zeros(1, 4, 1, 1), torch.tensor([0.5, float("nan")]).reshape(1, 2, 1, 1)
    >>> HistoryClimatology(patch_size=1, n_out=2)(x, climate=climate)[0, :, 0, 0].tolist()
    [0.5, 0.0]
    """

    reads_climate = True

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0, climate=None):
        self._check(x)
        return self._climate(x, n_out or self.n_out, None, climate)


@register_model
class Climatology(_Baseline):
    """Every future frame equals the per-pixel mean of the inputs.

    Examples
    --------
    >>> import torch
    >>> Climatology(patch_size=1)(torch.arange(4.0).reshape(1, 4, 1, 1))[0, :, 0, 0].tolist()
    [1.5, 1.5, 1.5, 1.5]
    """

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self._check(x)
        return x.mean(dim=1, keepdim=True).expand(-1, n_out or self.n_out, -1, -1).clone()


@register_model
class LinearTrend(_Baseline):
    """Per-pixel least-squares line through the inputs, extrapolated.

    Examples
    --------
    >>> import torch
    >>> LinearTrend(patch_size=1)(torch.tensor([1.0, 3, 5, 7]).reshape(1, 4, 1, 1))[0, :, 0, 0].tolist()
    [9.0, 11.0, 13.0, 15.0]
    """

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        self._check(x)
        steps = n_out or self.n_out
        t = torch.arange(self.n_in, dtype=x.dtype, device=x.device)
        tc = t - t.mean()
        mean = x.mean(dim=1, keepdim=True)
        cov = (tc[None, :, None, None] * (x - mean)).sum(dim=1, keepdim=True)
        slope = cov / (tc**2).sum().clamp_min(1e-12)
        future = torch.arange(self.n_in, self.n_in + steps, dtype=x.dtype, device=x.device) - t.mean()
        return mean + slope * future[None, :, None, None]
