"""The end-to-end demo on the embedded synthetic sample (``xglacier demo``).

Three parts, one module each: ``preprocess`` (cleaning, alignment, composites, motion),
``forecast`` (NDSI forecasting beside the baselines) and ``segment`` (glacier mapping).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from .._validate import check_int
from ..datasets import open_sample
from ..datasets.synthetic import SAMPLE_SEED
from ..nn.threads import torch_threads
from .forecast import format_forecast, run_forecast_demo
from .preprocess import format_motion, format_preprocess, run_preprocess_demo
from .segment import format_segment, run_segment_demo


def _step(message: str, progress: bool) -> None:
    # progress goes to stderr so that the summary on stdout stays clean
    if progress:
        print(f"xglacier demo: {message}", file=sys.stderr, flush=True)


def run_demo(out: str | Path = "demo-output", *, seed: int = SAMPLE_SEED, epochs: int | None = None,
             seg_epochs: int = 40, threads: int | None = 1, progress: bool = True) -> dict[str, Any]:
    """Run filter -> cloud mask -> ECC alignment -> gap fill -> NDSI -> 3-month composites
    -> flow on the sample, then forecasting and segmentation.

    Writes ``composites.nc``, the forecast, the U-Net's labels and polygons, checkpoints and
    PNG quicklooks into ``out`` and returns a summary. ``epochs`` and ``seg_epochs`` are the
    training epochs of the forecast model (``None``: the default recipe's, early stopping
    decides) and of the segmentation U-Net. ``threads`` is torch's thread count while the
    two models train and predict (restored after; ``None``: torch's own, one per core): one
    thread by default, so that the same seed gives the same models on every machine and a busy
    machine does not stall the training (on an idle 2-core machine one thread is as fast as
    two: 123 s against 124 s for the whole demo). ``progress`` prints a line per stage and a
    bar during each training to standard error.

    Examples
    --------
    From Python (the command line does the same: ``xglacier demo --out demo-output``)::

        summary = run_demo("demo-output")
        print(format_summary(summary))
    """
    threads = check_int("run_demo", "threads", threads, low=1, allow_none=True)
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cube, truth = open_sample(seed=seed)
    _step(f"1/3 cleaning, aligning and compositing {cube.sizes['time']} scenes; surface motion", progress)
    pre = run_preprocess_demo(cube, truth, out)
    arrays = pre.pop("arrays")
    from ..forecasting.train import RECIPES

    limit = epochs or RECIPES["default"]["epochs"]
    _step(f"2/3 training a forecast model on NDSI composites (at most {limit} epochs) and forecasting",
          progress)
    pinned = contextlib.nullcontext() if threads is None else torch_threads(threads)
    with pinned:
        forecast_summary = run_forecast_demo(arrays["composites"], out, epochs=epochs, seed=seed,
                                             progress=progress)
        _step(f"3/3 training a U-Net on other synthetic glaciers ({seg_epochs} epochs), mapping the "
              "sample", progress)
        # the class truth moved by the alignment warps lies on the aligned scenes' grid
        segment_summary = run_segment_demo(arrays["filled"], arrays["classes"], truth.dem, out,
                                           epochs=seg_epochs, seed=seed, progress=progress)
    return {
        **pre,
        "forecast": forecast_summary,
        "segment": segment_summary,
        "files": [*pre["files"], *forecast_summary["files"], *segment_summary["files"]],
        "seconds": time.perf_counter() - t0,
    }


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable demo report."""
    return "\n".join([
        "xglacier demo: synthetic Parvati-like sample, 200x200 px, 2014-2021",
        *format_preprocess(s),
        *format_forecast(s["forecast"]),
        *format_segment(s["segment"]),
        *format_motion(s),
        "  wrote:",
        *[f"    {f}" for f in s["files"]],
        f"  done in {s['seconds']:.1f} s",
    ])
