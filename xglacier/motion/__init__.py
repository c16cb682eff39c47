"""Glacier surface motion: dense optical flow between consecutive frames (:func:`flow`), in
m/yr with its noise floor, and its arrows over an image (:func:`plot_flow`)."""

from ..errors import FlowNoiseWarning, PixelUnitsWarning
from .flow import flow
from .plot import plot_flow

__all__ = ["FlowNoiseWarning", "PixelUnitsWarning", "flow", "plot_flow"]
