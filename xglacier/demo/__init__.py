"""The parts of ``xglacier demo``: preprocessing and motion (``run``), forecasting
(``forecast``) and segmentation (``segment``) on the embedded synthetic sample."""

from .run import format_summary, run_demo

__all__ = ["format_summary", "run_demo"]
