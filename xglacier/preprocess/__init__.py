"""Lazy, chunk-invariant preprocessing of scene cubes."""
