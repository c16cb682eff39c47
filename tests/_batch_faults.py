"""Per-glacier functions for the batch tests: a stub pipeline and fault-injecting wrappers.

Module-level and importable (``tests`` is a package on the workers' ``sys.path``, which
spawned worker processes inherit), so the cluster pickles them by reference. Faults are
steered by ``OUT/faults.json``, written by the test before the run (a worker finds OUT
from the glacier's folder, ``OUT/glaciers/<shard>/<staging>``), so one warm cluster serves
several tests:

- ``calls``: a file; every call appends the glacier id to it;
- ``kill_once``: ids whose first call kills the worker while it writes the store;
- ``poison``: ids whose every call kills the worker;
- ``permanent``: ids that raise ``EmptySceneError``; ``transient``: id -> how many first
  calls raise ``StacError``;
- ``sleep``: seconds each call sleeps first (to kill a driver mid-run);
- ``slow``: id -> seconds of a Dask graph of 40 sleeping tasks computed in a step named
  ``slow stub`` (the glacier's deadline is checked before each task);
- ``inner``: "stub" (default) or "process_glacier" (the real pipeline after the faults).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xglacier._atomic import atomic_path
from xglacier.errors import EmptySceneError, StacError


def faults(folder: Path) -> dict[str, Any]:
    path = Path(folder).parents[2] / "faults.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def calls(path: str | Path) -> list[str]:
    """The glacier ids called so far, in order (empty without a calls file)."""
    path = Path(path)
    return path.read_text().split() if path.is_file() else []


def _record(spec: dict[str, Any], glacier_id: str) -> int:
    """Append the call; return how many calls this glacier had before it."""
    if "calls" not in spec:
        return 0
    before = calls(spec["calls"]).count(glacier_id)
    with open(spec["calls"], "a") as fh:
        fh.write(f"{glacier_id}\n")
    return before


def stub_values(glacier_id: str) -> xr.Dataset:
    """A small cube whose values depend only on the glacier id (the serial truth)."""
    seed = int(hashlib.sha1(glacier_id.encode()).hexdigest()[:8], 16)
    data = np.random.default_rng(seed).random((4, 16, 16)).astype("float32")
    return xr.Dataset({"ndsi": (("time", "y", "x"), data)})


def stub_pipeline(glacier, folder, config) -> dict:
    """Write ``ndsi.zarr`` atomically (chunked, like the real store) and return a summary row."""
    ds = stub_values(glacier.id).chunk({"time": 1})
    with atomic_path(Path(folder) / "ndsi.zarr") as tmp:
        ds.to_zarr(tmp, zarr_format=2)
    return {"mean_ndsi": float(ds.ndsi.mean()), "scenes_used": 4}


def faulty(glacier, folder, config) -> dict:
    """The stub (or real) pipeline with the faults of ``OUT/faults.json``."""
    spec = faults(folder)
    before = _record(spec, glacier.id)
    if spec.get("sleep"):
        time.sleep(float(spec["sleep"]))
    if glacier.id in spec.get("slow", {}):
        _slow_graph(float(spec["slow"][glacier.id]))
    if glacier.id in spec.get("poison", ()):
        os.kill(os.getpid(), signal.SIGKILL)
    if glacier.id in spec.get("permanent", ()):
        raise EmptySceneError(f"faulty: glacier {glacier.id} has only empty scenes (injected)")
    if before < spec.get("transient", {}).get(glacier.id, 0):
        raise StacError(f"faulty: HTTP 503 from the STAC API for glacier {glacier.id} (injected)")
    if glacier.id in spec.get("kill_once", ()) and before == 0 and spec.get("inner") == "process_glacier":
        _die_after_writing_a_store()
    elif glacier.id in spec.get("kill_once", ()) and before == 0:
        ds = stub_values(glacier.id).chunk({"time": 1})
        with atomic_path(Path(folder) / "ndsi.zarr") as tmp:
            ds.isel(time=slice(0, 2)).to_zarr(tmp, zarr_format=2)  # half a store on disk
            os.kill(os.getpid(), signal.SIGKILL)
    if spec.get("inner") == "process_glacier":
        from xglacier.batch.glacier import process_glacier

        return process_glacier(glacier, folder, config)
    return stub_pipeline(glacier, folder, config)


def _slow_graph(seconds: float, n: int = 40) -> None:
    """A chain of ``n`` Dask tasks sleeping ``seconds / n`` each, computed on the task's scheduler."""
    import dask

    from xglacier.batch import limits

    limits.step("slow stub")
    value = 0
    for _ in range(n):
        value = dask.delayed(_nap)(value, seconds / n)
    value.compute()


def _nap(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value + 1


def _die_after_writing_a_store() -> None:
    """Make this worker die once the pipeline has written its first store at its temporary path,
    before the rename that would install it (the process dies, so the patch dies with it)."""
    original = xr.Dataset.to_zarr

    def to_zarr_then_die(self, store=None, *args, **kwargs):
        original(self, store, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    xr.Dataset.to_zarr = to_zarr_then_die
