"""Forecasting NDSI composites: patches, models, training, evaluation, full-scene forecasts.

``patches`` (sample plans, leak-free splits, reassembly), ``forecast`` (tiled lazy
full-scene forecasts), ``train`` (fit, evaluate), ``models`` (SA-LSTM-H, LSTM, ConvLSTM,
baselines) and ``kernels`` (the Numba gather/scatter). Only ``train`` and ``models``
import torch.
"""
