"""What runs on a worker: one glacier, retried on transient errors, installed whole.

The task never raises for a glacier's own failure: it writes the outcome into the
glacier's ``status.json`` and returns the same record. Products and status are written
into a hidden staging folder beside the final one, which is then installed in one atomic
step, so the final folder is either the previous complete state or the new one: a killed
worker or driver can never leave a product at its final path without its status.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from .._atomic import PART, install, remove
from ..errors import GlacierTimeout
from .layout import glacier_dir, log_path
from .limits import GlacierLimits
from .status import write_status


def append_log(out: str | os.PathLike[str], glacier_id: str, line: str) -> None:
    """Append one line to the glacier's attempt log (a line is one small write: no interleaving)."""
    path = log_path(out, glacier_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with open(path, "a") as fh:
        fh.write(f"{line} time={stamp}\n")


def worker_name() -> str:
    """The Dask worker's address, or host:pid outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker task (a plain loop, a test)
        return f"{socket.gethostname()}:{os.getpid()}"


def staging_dir(final: Path) -> Path:
    """A fresh hidden folder beside ``final``, recognised as temporary at start-up."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}{PART}")


def check_summary(summary: Any, function: Callable) -> dict[str, Any]:
    """The function's summary row must be a flat dict of scalars (it goes into a CSV)."""
    name = getattr(function, "__name__", repr(function))
    if not isinstance(summary, dict):
        raise TypeError(f"run_glaciers: {name} returned {type(summary).__name__}, expected a dict "
                        "of scalars (the glacier's summary row)")
    for key, value in summary.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, (str, bool, int, float))
                                            or getattr(value, "ndim", None) == 0):
            raise TypeError(f"run_glaciers: {name} returned {key!r}: {value!r} in its summary row; "
                            "expected string keys and scalar values")
    return summary


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is (or was caused by) a :class:`GlacierTimeout` (a step may wrap it)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, GlacierTimeout):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run_glacier_task(glacier: Any, out: str, config: Any, config_hash: str,
                     function: Callable, is_transient: Callable[[BaseException], bool]) -> dict[str, Any]:
    """Process one glacier with retries and install its folder; return its status record.

    The glacier's :class:`~xglacier.batch.limits.GlacierLimits` start here: its deadline
    (``config.glacier_timeout_s``) and its one budget of ``config.retries`` retries, shared
    by the STAC client's retried requests and the new attempts of the whole glacier. A
    transient failure is attempted again while the budget gives a retry whose wait ends
    before the deadline; past the deadline, or when only the deadline stops a retry, the
    glacier ends ``error`` with :class:`~xglacier.errors.GlacierTimeout`.
    """
    final = glacier_dir(out, glacier.id)
    final.parent.mkdir(parents=True, exist_ok=True)
    worker = worker_name()
    append_log(out, glacier.id, f"start worker={worker} pid={os.getpid()}")
    limits = GlacierLimits(glacier.id, config)
    threads = int(getattr(config, "threads", 1))
    name = getattr(function, "__name__", "function")
    attempt = 0
    while True:
        attempt += 1
        staging = staging_dir(final)
        staging.mkdir()
        try:
            limits.enter(name)  # the glacier's own steps rename it
            # the glacier's own graph runs here, never on the cluster (no oversubscription)
            local = {"scheduler": "threads", "num_workers": threads} if threads > 1 else {"scheduler": "sync"}
            with dask.config.set(local), limits.active():
                summary = check_summary(function(glacier, staging, config), function)
            record = {"status": "done", "summary": summary}
            break
        except Exception as exc:  # a glacier's failure is recorded, never raised: the others go on
            remove(staging)
            transient = is_transient(exc)
            timed_out = _timed_out(exc) or (transient and limits.expired())
            if transient and not timed_out:
                wait = limits.budget.take()
                if wait is not None:
                    append_log(out, glacier.id, f"retry attempt={attempt} error={type(exc).__name__} "
                                                f"wait_s={wait:g}")
                    time.sleep(wait)
                    continue
                timed_out = limits.budget.left > 0  # a retry was left: only the deadline stopped it
            if timed_out:
                if not isinstance(exc, GlacierTimeout):
                    exc = limits.error(None if _timed_out(exc) else exc)
                append_log(out, glacier.id, f"timeout glacier={glacier.id} limit_s={limits.limit_s:g} "
                                            f"step={limits.step!r} elapsed_s={limits.elapsed():.2f}")
            status = "error" if timed_out or transient else "failed"
            record = {"status": status, "error_type": type(exc).__name__, "error_message": str(exc)[:2000]}
            staging.mkdir()
            break
    record.update(id=glacier.id, attempts=attempt, retries=limits.budget.used, worker=worker,
                  config_hash=config_hash, seconds=round(limits.elapsed(), 3),
                  finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_status(staging, record)  # last, then the whole folder appears at once
    install(staging, final)
    append_log(out, glacier.id, f"end status={record['status']} attempts={attempt}")
    return record


def write_outcome(out: str, glacier_id: str, record: dict[str, Any]) -> None:
    """Install a folder holding only ``status.json`` (the driver's verdict: killed, or a task error)."""
    final = glacier_dir(out, glacier_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(final)
    staging.mkdir()
    write_status(staging, record)
    install(staging, final)
    append_log(out, glacier_id, f"end status={record['status']} attempts={record.get('attempts')}")


#: Environment variables that size native thread pools (read when a library loads).
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


class ThreadsPlugin(WorkerPlugin):
    """Pin the native thread pools of a worker to the glacier's thread budget.

    A Nanny sets ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS) before the worker starts, so
    torch, which reads it at import, uses one intra-op thread; a worker started without a
    Nanny gets the same here: the variables for libraries imported later, threadpoolctl
    for BLAS/OpenMP pools already loaded, and ``torch.set_num_threads`` if torch is loaded.
    """

    name = "xglacier-threads"

    def __init__(self, threads: int = 1) -> None:
        self.threads = int(threads)

    def setup(self, worker: Any) -> None:
        # kept to be restored at teardown: a worker may run in the caller's own process
        # (LocalCluster(processes=False)), whose settings must outlive the cluster unchanged
        self._env = {var: os.environ.get(var) for var in _THREAD_VARS}
        for var in _THREAD_VARS:
            os.environ[var] = "1"
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=1)
        torch = sys.modules.get("torch")
        self._torch = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(1)

    def teardown(self, worker: Any) -> None:
        for var, value in getattr(self, "_env", {}).items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if getattr(self, "_limits", None) is not None:
            self._limits.restore_original_limits()
        if getattr(self, "_torch", None) is not None:
            sys.modules["torch"].set_num_threads(self._torch)

