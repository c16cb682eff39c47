"""``run_glaciers``: many glaciers on a Dask cluster, one coarse task per glacier.

The cluster distributes glaciers; each task runs its glacier's own graph on a local
scheduler (see :mod:`xglacier.batch.tasks`). Outcomes live on disk (``status.json`` per
glacier, written last), so a run can be stopped at any moment and resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import pandas as pd

from .._atomic import file_sha256
from .._validate import check_flag, check_int
from ..errors import BatchError, ParameterError
from . import layout, status
from .lock import run_lock
from .progress import Progress
from .tasks import ThreadsPlugin, append_log, run_glacier_task, write_outcome

#: Settings of the LocalCluster that ``run_glaciers`` starts (see docs/many-glaciers.md).
#: worker-saturation 1.0: a worker with one thread holds one glacier task, never a queued
#: second one that the scheduler would blame when a poison glacier kills the worker.
#: MALLOC_TRIM_THRESHOLD_ unset (None): glibc keeps its dynamic mmap threshold; the
#: Nanny's default of 65536 made each glacier markedly slower (measured, see the docs).
CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": 1,
}


def _config(config: Any) -> Any:
    from .config import BatchConfig, load_config

    if config is None:
        return BatchConfig()
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    if not isinstance(config, BatchConfig):
        raise ParameterError(f"run_glaciers: config must be a BatchConfig, a TOML path or None, "
                             f"not {type(config).__name__}")
    return config


def _outlines_checksum(outlines: Any) -> tuple[str, str]:
    if isinstance(outlines, (str, os.PathLike)):
        return str(Path(outlines).resolve()), file_sha256(outlines)
    return type(outlines).__name__, hashlib.sha256(outlines.to_json().encode()).hexdigest()


def plan(glaciers: list[Any], out: Path, config_hash: str, *, rerun_failed: bool) -> pd.DataFrame:
    """What a run would do with each glacier (``run`` or ``skip``), largest glacier first."""
    rows = []
    for g in sorted(glaciers, key=lambda g: (-g.area_km2, g.id)):
        rec = status.read_status(layout.glacier_dir(out, g.id))
        state = None if rec is None else rec.get("status")
        same = rec is not None and rec.get("config_hash") == config_hash
        skip = (state == "done" and same) or (state == "failed" and same and not rerun_failed)
        rows.append({"id": g.id, "area_km2": g.area_km2, "status": state,
                     "action": "skip" if skip else "run"})
    return pd.DataFrame(rows, columns=["id", "area_km2", "status", "action"])


@contextlib.contextmanager
def _cluster(client: Any, workers: int | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with dask.config.set(CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=":0")
    try:
        with Client(cluster) as own:
            yield own
    finally:
        cluster.close()


def run_glaciers(
    outlines: Any,
    out: str | os.PathLike[str],
    *,
    config: Any = None,
    client: Any = None,
    workers: int | None = None,
    rerun_failed: bool = False,
    id_column: str = "RGIId",
    progress: bool = True,
    dry_run: bool = False,
    function: Callable[..., dict] | None = None,
    reconfigure: bool = False,
) -> pd.DataFrame:
    """Process every glacier of an outline file on a Dask cluster, resumably.

    Parameters
    ----------
    outlines
        A GeoDataFrame or a vector file with one glacier per row.
    out
        Output folder (see :mod:`xglacier.batch.layout`); a rerun into it skips the glaciers
        done with the same configuration and retries the others (``failed`` ones only with
        ``rerun_failed``).
    config
        A :class:`~xglacier.batch.BatchConfig`, a TOML file, or None for the defaults.
    client
        A ``distributed.Client`` (LocalCluster, dask-jobqueue, dask-gateway...); None starts a
        LocalCluster of ``workers`` processes (default 2) with one thread each, closed at the end.
    rerun_failed
        Also retry glaciers whose status is ``failed`` (permanent errors).
    id_column
        Column of the glacier ids (folder names).
    progress
        Show a tqdm bar and print the final report on standard error.
    dry_run
        Only return the plan (columns ``id, area_km2, status, action``); write nothing.
    function
        Per-glacier function ``f(glacier, folder, config) -> dict`` (default
        :func:`~xglacier.batch.process_glacier`); it must be importable on the workers.
    reconfigure
        Accept an output folder written with another configuration (see
        :func:`~xglacier.batch.layout.write_run`).

    Raises
    ------
    OutputInUseError
        Another run is writing ``out`` (one run at a time per folder: :mod:`xglacier.batch.lock`).

    Returns
    -------
    pandas.DataFrame
        The summary table (also written to ``OUT/summary.csv``), one row per glacier.

    Examples
    --------
    >>> import geopandas as gpd, shapely, tempfile
    >>> gdf = gpd.GeoDataFrame({"RGIId": ["g1"]}, geometry=[shapely.box(77.5, 32.0, 77.52, 32.02)], crs=4326)
    >>> run_glaciers(gdf, tempfile.mkdtemp(), dry_run=True)[["id", "action"]]
       id action
    0  g1    run
    """
    from .config import config_hash as hash_config
    from .glacier import is_transient, process_glacier, read_outlines

    check_flag("run_glaciers", "rerun_failed", rerun_failed)
    check_flag("run_glaciers", "dry_run", dry_run)
    check_flag("run_glaciers", "progress", progress)
    check_flag("run_glaciers", "reconfigure", reconfigure)
    check_int("run_glaciers", "workers", workers, low=1, high=None, allow_none=True)
    if client is not None and workers is not None:
        raise ParameterError("run_glaciers: give client or workers, not both (workers sizes the LocalCluster "
                             "started when client is None)")
    config, out = _config(config), Path(out)
    function = process_glacier if function is None else function
    glaciers = read_outlines(outlines, id_column=id_column)
    for g in glaciers:
        layout.check_id(g.id)
    digest = hash_config(config)
    source, checksum = _outlines_checksum(outlines)
    info = {"config": config.to_dict(), "config_hash": digest, "versions": layout.versions(),
            "outlines": source, "outlines_sha256": checksum, "id_column": id_column,
            "glaciers": [[g.id, g.area_km2] for g in sorted(glaciers, key=lambda g: (-g.area_km2, g.id))]}
    layout.check_config(out, digest, reconfigure=reconfigure)
    if dry_run:
        return plan(glaciers, out, digest, rerun_failed=rerun_failed)
    with run_lock(out):  # the plan, the clean-up and every write: one run at a time
        todo_plan = plan(glaciers, out, digest, rerun_failed=rerun_failed)
        layout.write_run(out, info, reconfigure=reconfigure)
        layout.clean_stale(out, [g.id for g in glaciers])
        by_id = {g.id: g for g in glaciers}
        todo = [by_id[i] for i in todo_plan.loc[todo_plan["action"] == "run", "id"]]
        bar = Progress(len(glaciers), skipped=len(glaciers) - len(todo), enabled=progress)
        try:
            if todo:
                with _cluster(client, workers) as active:
                    bar.dashboard(getattr(active, "dashboard_link", None) if _has_dashboard(active) else None)
                    with _watchdog(active if client is None or _is_local(active) else None) as watch:
                        _submit_all(active, todo, out, config, digest, function, is_transient, bar, watch)
        finally:
            bar.close()
        table = status.write_summary(out)
    if progress:
        print(status.report(out, table), file=sys.stderr)
    return table


def _is_local(client: Any) -> bool:
    """A client of a LocalCluster in this process (its workers cannot be waiting in a queue)."""
    from distributed import LocalCluster

    return isinstance(getattr(client, "cluster", None), LocalCluster)


def _has_dashboard(client: Any) -> bool:
    info = client.scheduler_info()
    return bool(info.get("services", {}).get("dashboard"))


#: Seconds without any worker after which a run on a LocalCluster gives up (workers that
#: could not restart: out of memory, an overloaded machine); a cluster of another kind may
#: legitimately wait for workers (jobs in a queue), so it is not watched.
NO_WORKER_S = 120.0


class _Watch:
    """What the watchdog and the collecting loop share: the tasks in flight, and why they stopped."""

    def __init__(self) -> None:
        self.futures: dict[Any, Any] = {}
        self.lost: list[str] = []


@contextlib.contextmanager
def _watchdog(client: Any) -> Iterator[_Watch]:
    """Cancel the run's tasks when ``client`` has had no worker for NO_WORKER_S (None: no watch)."""
    shared = _Watch()
    if client is None:
        yield shared
        return
    stop = threading.Event()

    def watch() -> None:
        since = None
        while not stop.wait(min(2.0, NO_WORKER_S / 2)):
            if client.nthreads():
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since > NO_WORKER_S:
                shared.lost.append(f"no worker for {NO_WORKER_S:.0f} s (they could not restart)")
                client.cancel(list(shared.futures), force=True)
                return

    thread = threading.Thread(target=watch, name="xglacier-watchdog", daemon=True)
    thread.start()
    try:
        yield shared
    finally:
        stop.set()
        thread.join()


def _submit_all(client: Any, todo: list[Any], out: Path, config: Any, digest: str,
                function: Callable, is_transient: Callable, bar: Progress, watch: _Watch) -> None:
    """Submit one task per glacier (largest first) and collect outcomes as they complete."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client.register_plugin(ThreadsPlugin(config.threads), name=ThreadsPlugin.name)
    allowed = client.run_on_scheduler(_allowed_failures)
    rounds: dict[str, int] = {}

    def submit(g: Any) -> Any:
        rounds[g.id] = rounds.get(g.id, 0) + 1
        append_log(out, g.id, f"submit round={rounds[g.id]}")
        token = hashlib.sha1(f"{out.resolve()}|{g.id}|{digest}".encode()).hexdigest()[:10]
        return client.submit(run_glacier_task, g, str(out), config, digest, function, is_transient,
                             key=f"glacier-{token}-{rounds[g.id]}", pure=False, retries=0)

    futures = watch.futures
    futures.update({submit(g): g for g in todo})
    bar.running(len(futures))
    pending = as_completed(list(futures))
    for fut in pending:
        g = futures.pop(fut)
        if fut.status == "finished":
            bar.finished(fut.result()["status"])
            fut.release()
            continue
        if fut.status == "cancelled":
            why = watch.lost[0] if watch.lost else "the scheduler or the client went away"
            raise BatchError(f"run_glaciers: the task of glacier {g.id} was cancelled ({why}); "
                             "rerun to resume")
        exc = fut.exception()
        fut.release()
        if not isinstance(exc, KilledWorker):
            # the wrapper itself failed (disk full, unpicklable result...): recorded, retried next run
            write_outcome(str(out), g.id, {
                "id": g.id, "status": "error", "error_type": type(exc).__name__,
                "error_message": f"the task failed outside the glacier's function: {exc}"[:2000],
                "attempts": _starts_since_submit(out, g.id), "worker": None, "config_hash": digest,
                "seconds": None, "summary": {}})
            bar.finished("error")
            continue
        on_disk = status.read_status(layout.glacier_dir(out, g.id))
        if on_disk is not None and on_disk.get("status") == "done" and on_disk.get("config_hash") == digest:
            bar.finished("done")  # finished, then its worker died before the result came back
            continue
        starts = _starts_since_submit(out, g.id)
        if starts <= allowed and rounds[g.id] <= allowed + 2:
            new = submit(g)  # blamed for another task's deaths: it did not run that often itself
            futures[new] = g
            pending.add(new)
            continue
        write_outcome(str(out), g.id, {
            "id": g.id, "status": "killed", "error_type": "KilledWorker", "attempts": starts,
            "error_message": f"the worker died {starts} times while processing this glacier "
                             f"(allowed failures: {allowed})", "worker": str(exc.last_worker.address)
            if getattr(exc, "last_worker", None) is not None else None,
            "config_hash": digest, "seconds": None, "summary": {}})
        bar.finished("killed")


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


def _starts_since_submit(out: Path, glacier_id: str) -> int:
    """How many times the glacier's task actually started since its last submission."""
    path = layout.log_path(out, glacier_id)
    lines = path.read_text().splitlines() if path.is_file() else []
    last = max((i for i, line in enumerate(lines) if line.startswith("submit")), default=-1)
    return sum(line.startswith("start") for line in lines[last + 1:])
