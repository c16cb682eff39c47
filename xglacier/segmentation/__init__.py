"""Glacier segmentation: feature cubes, labels from outlines, U-Net training and lazy inference.

Modules: ``features`` (feature cube: bands, indices, terrain), ``labels`` (rasterize
outlines), ``vectors`` (polygonize, geodesic areas, vector files), ``classes`` (the
``classes=`` keyword and CF flag attributes), ``grid`` (grid helpers), ``tiles``
(``segmentation_tiles``) and ``tileset`` (``SegmentationTiles``: splits, statistics,
batches), ``losses`` (Dice, L1 penalty), ``train`` (fit a segmentation model with the
shared loop of :mod:`xglacier.nn`), ``segment`` (lazy tiled inference), ``metrics``
(confusion matrix, IoU) and ``classical`` (NDSI rule, pixel-wise scikit-learn classifiers);
the models are in ``models``.
"""
