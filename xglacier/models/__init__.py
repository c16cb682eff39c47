"""Forecasting models: SA-LSTM-H, LSTM encoder-decoder, ConvLSTM and naive baselines.

All share one interface (:class:`~xglacier.models.base.ForecastModel`): ``model(x)`` maps
``(batch, n_in, P, P)`` to ``(batch, n_out, P, P)``.
"""

from .base import ForecastModel
from .baselines import Climatology, LinearTrend, Persistence, SeasonalPersistence
from .checkpoint import CheckpointError, CheckpointNotFoundError, load_model, save_model
from .convlstm import ConvLSTM
from .lstm import LSTMEncoderDecoder
from .salstm import SALSTM

#: Every model class by name (what checkpoints refer to).
MODEL_CLASSES: dict[str, type[ForecastModel]] = {
    cls.__name__: cls
    for cls in (SALSTM, LSTMEncoderDecoder, ConvLSTM, Persistence, SeasonalPersistence,
                Climatology, LinearTrend)
}

#: The naive baselines every evaluation reports.
BASELINES = (Persistence, SeasonalPersistence, Climatology, LinearTrend)

__all__ = [
    "BASELINES",
    "MODEL_CLASSES",
    "SALSTM",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Climatology",
    "ConvLSTM",
    "ForecastModel",
    "LSTMEncoderDecoder",
    "LinearTrend",
    "Persistence",
    "SeasonalPersistence",
    "load_model",
    "save_model",
]
