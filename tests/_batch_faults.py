"""Per-glacier functions for the batch tests: a stub pipeline and fault-injecting wrappers.

Module-level and importable (``tests`` is a package on the workers' ``sys.path``, which
spawned worker processes inherit), so the cluster pickles them by reference. Faults are
steered by environment variables set before the cluster starts (workers inherit them):

- ``XG_CALLS``: a folder; every call appends the glacier id to ``calls.txt`` there;
- ``XG_KILL_ONCE``: glacier id whose first call kills its worker while writing its store;
- ``XG_POISON``: glacier id that kills its worker on every call;
- ``XG_SLEEP``: seconds each call sleeps before writing (to kill a driver mid-run).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import xarray as xr

from xglacier._atomic import atomic_path


def _record(glacier_id: str) -> None:
    calls = os.environ.get("XG_CALLS")
    if calls:
        with open(Path(calls) / "calls.txt", "a") as fh:
            fh.write(f"{glacier_id}\n")


def stub_values(glacier_id: str) -> xr.Dataset:
    """A small cube whose values depend only on the glacier id (the serial truth)."""
    seed = int(hashlib.sha1(glacier_id.encode()).hexdigest()[:8], 16)
    data = np.random.default_rng(seed).random((4, 16, 16)).astype("float32")
    return xr.Dataset({"ndsi": (("time", "y", "x"), data)})


def stub_pipeline(glacier, folder, config) -> dict:
    """Write ``ndsi.zarr`` atomically (chunked, like the real store) and return a summary row."""
    _record(glacier.id)
    delay = float(os.environ.get("XG_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    ds = stub_values(glacier.id).chunk({"time": 1})
    with atomic_path(Path(folder) / "ndsi.zarr") as tmp:
        if os.environ.get("XG_KILL_ONCE") == glacier.id:
            marker = Path(os.environ["XG_CALLS"]) / f"killed-{glacier.id}"
            if not marker.exists():
                marker.touch()
                ds.isel(time=slice(0, 2)).to_zarr(tmp, zarr_format=2)  # half a store on disk
                os.kill(os.getpid(), signal.SIGKILL)
        ds.to_zarr(tmp, zarr_format=2)
    return {"mean_ndsi": float(ds.ndsi.mean()), "scenes_used": 4}


def poison(glacier, folder, config) -> dict:
    """Kill the worker on every call for glacier ``XG_POISON``; the stub pipeline otherwise."""
    if glacier.id == os.environ.get("XG_POISON"):
        _record(glacier.id)
        os.kill(os.getpid(), signal.SIGKILL)
    return stub_pipeline(glacier, folder, config)
