"""Forecast training and evaluation (kept for user code written before the stage folders).

They live in :mod:`xglacier.forecasting.train`; the shared loop in :mod:`xglacier.nn`.

>>> from xglacier.training import fit
>>> fit.__module__
'xglacier.forecasting.train'
"""

from .errors import TrainingDivergedError
from .forecasting.train import evaluate, fit

__all__ = ["TrainingDivergedError", "evaluate", "fit"]
