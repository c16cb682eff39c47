"""One run at a time per output folder.

Two runs writing the same ``OUT`` would process the same glaciers at once, and each one's
start-up clean-up (:func:`xglacier.batch.layout.clean_stale`) would delete the other's files
being written. :func:`run_lock` holds an exclusive ``flock`` on ``OUT/.xglacier-run.lock``
for the whole run; the system releases it when the process ends, however it ends, so a
killed run leaves no lock behind. Where ``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".xglacier-run.lock"

__all__ = ["LOCK_FILE", "run_lock"]


@contextlib.contextmanager
def run_lock(out: str | os.PathLike[str], *, func: str = "run_glaciers") -> Iterator[Path]:
    """Hold ``OUT``'s run lock inside the block (``OUT`` is created if needed).

    Raises
    ------
    OutputInUseError
        Another process holds it; the message names the folder and that run's process,
        host and start time.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> with run_lock(out):
    ...     with run_lock(out):
    ...         pass
    Traceback (most recent call last):
    ...
    xglacier.errors.OutputInUseError: run_glaciers: ...
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    if fcntl is None:  # pragma: no cover - Windows
        yield path
        return
    # not O_TRUNC: the holder's description must survive a failed attempt to take the lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUseError(
                f"{func}: another run is writing {out} ({_holder(path)}); wait for it to end, or use "
                "another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                                 }).encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    """The locking run's description, as it wrote it."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a run that is starting"
    return f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
