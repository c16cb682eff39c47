"""Forecasting NDSI composites: patches, models, training, evaluation, full-scene forecasts.

``patches`` (sample plans, leak-free splits, reassembly), ``forecast`` (tiled lazy
full-scene forecasts), ``train`` (fit; re-exports evaluate), ``evaluate`` (scores beside the
baselines, bootstrap intervals), ``checks`` (what both check), ``models`` (SA-LSTM-H, LSTM,
ConvLSTM, baselines) and ``kernels`` (the Numba gather/scatter). Only ``train``,
``evaluate``, ``checks`` and ``models`` import torch at import time (``forecast`` when it runs).
"""
