"""Helpers of :func:`xglacier.open_scenes`: file names, grids, headers and lazy reading."""
