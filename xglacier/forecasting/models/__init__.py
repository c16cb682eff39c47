"""Forecasting models: SA-LSTM-H, LSTM encoder-decoder, ConvLSTM and the naive baselines.

All share :class:`ForecastModel`: ``model(x)`` maps ``(batch, n_in, P, P)`` frames to
``(batch, n_out, P, P)``.
"""

from .base import ForecastModel
from .baselines import (
                        Climatology,
                        HistoryClimatology,
                        LinearTrend,
                        Persistence,
                        SeasonalClimatology,
                        SeasonalPersistence,
)
from .convlstm import ConvLSTM
from .lstm import LSTMEncoderDecoder
from .salstm import SALSTM

#: The naive baselines every evaluation reports (``SeasonalClimatology`` when the inputs cover
#: two seasonal cycles or more; ``HistoryClimatology`` when the samples' frames per year are known).
BASELINES = (Persistence, SeasonalPersistence, SeasonalClimatology, HistoryClimatology, Climatology,
             LinearTrend)

__all__ = [
    "BASELINES",
    "SALSTM",
    "Climatology",
    "ConvLSTM",
    "ForecastModel",
    "HistoryClimatology",
    "LSTMEncoderDecoder",
    "LinearTrend",
    "Persistence",
    "SeasonalClimatology",
    "SeasonalPersistence",
]
