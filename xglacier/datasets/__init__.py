"""Synthetic Landsat-like glacier cubes with ground truth: xglacier's embedded default data.

``synthetic`` builds the cube and its truth (:func:`synthetic_cube`, :func:`open_sample`),
``world`` the landscape (spectra, random fields, glacier geometry) and ``scenes`` the
acquisitions (dates, clouds, nodata, misregistration, rendering).
"""

from .synthetic import open_sample, synthetic_cube
from .world import CLASSES

__all__ = ["CLASSES", "open_sample", "synthetic_cube"]
