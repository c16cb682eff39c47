"""Helpers shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``, which
puts this folder on ``sys.path``)."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import xarray as xr


class PeakRSS:
    """Sample the process's resident memory every ``interval`` seconds in a thread; keep the
    peak (``peak``) and the value on entry (``base``), in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def lowpass(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise Gaussian-filtered (in Fourier space) at ``sigma`` px, unit variance."""
    ny, nx = shape
    k2 = np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.rfftfreq(nx)[None, :] ** 2
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape))
                          * np.exp(-2 * np.pi**2 * sigma**2 * k2), s=shape)
    return field / field.std()


def demo_composites(path: str | None, seed: int, **overrides: object) -> xr.DataArray:
    """The demo's quarterly NDSI composites: read from ``path`` (the demo's ``composites.nc``),
    or made by the demo's preprocessing from ``open_sample(seed, **overrides)``."""
    if path:
        return xr.open_dataset(path)["ndsi"].load()
    from xglacier.datasets import open_sample
    from xglacier.demo.preprocess import run_preprocess_demo

    cube, truth = open_sample(seed=seed, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        return run_preprocess_demo(cube, truth, Path(tmp))["arrays"]["composites"].load()
