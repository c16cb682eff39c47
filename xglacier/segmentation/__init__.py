"""Glacier segmentation: feature cubes, labels from outlines, U-Net training and lazy inference.

Modules: ``features`` (feature cube, terrain), ``labels`` (rasterize / polygonize),
``losses`` (Dice, L1 penalty), ``data`` (training tiles, statistics, splits), ``train``
(fit a segmentation model), ``segment`` (lazy tiled inference), ``metrics`` (confusion
matrix, IoU) and ``baselines`` (NDSI rule, pixel-wise scikit-learn classifiers).
"""
