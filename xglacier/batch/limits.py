"""The wall-clock limit and the retry budget of one glacier's task.

:class:`GlacierLimits` is made when a glacier's task starts (``run_glacier_task``): its
deadline is the start plus ``config.glacier_timeout_s`` and its
:class:`~xglacier.io.retry.RetryBudget` holds the glacier's ``config.retries`` retries,
shared by the STAC client's retried requests and the task's new attempts. While the task
runs the glacier's function, the limits are *active* (a context variable of the task's
thread): the pipeline names its steps with :func:`step`, which checks the deadline first,
every Dask task of the glacier's graph checks it before it starts, and the STAC search
takes its retries from :func:`budget`, never waiting or sending past the deadline. Past
the deadline, :class:`~xglacier.errors.GlacierTimeout` names the glacier, the limit and the
step it was in. Outside a task (``process_glacier`` called directly) nothing is active:
:func:`step` does nothing and :func:`budget` is None.

>>> from xglacier.batch import BatchConfig
>>> limits = GlacierLimits("g1", BatchConfig(glacier_timeout_s=0.001, retries=2))
>>> import time; time.sleep(0.01)
>>> with limits.active():  # doctest: +ELLIPSIS
...     step("composites")
Traceback (most recent call last):
...
xglacier.errors.GlacierTimeout: run_glaciers: glacier 'g1' exceeded glacier_timeout_s=0.001 s in \
step 'start' ...
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

from dask.callbacks import Callback

from ..errors import GlacierTimeout
from ..io.retry import RetryBudget

_ACTIVE: contextvars.ContextVar[GlacierLimits | None] = contextvars.ContextVar(
    "xglacier_glacier_limits", default=None)


class GlacierLimits:
    """The deadline, the shared retry budget and the current step of one glacier's task.

    Parameters
    ----------
    glacier_id
        The glacier (named in the timeout's message).
    config
        Its :class:`~xglacier.batch.BatchConfig`: ``glacier_timeout_s``, ``retries``,
        ``backoff_s``.

    Examples
    --------
    >>> from xglacier.batch import BatchConfig
    >>> limits = GlacierLimits("g1", BatchConfig(retries=1, backoff_s=0.5))
    >>> limits.budget.take(), limits.budget.take()
    (0.5, None)
    """

    def __init__(self, glacier_id: str, config: Any) -> None:
        self.glacier_id = str(glacier_id)
        self.limit_s = getattr(config, "glacier_timeout_s", None)
        self.start = time.monotonic()
        deadline = None if self.limit_s is None else self.start + float(self.limit_s)
        self.budget = RetryBudget(int(getattr(config, "retries", 0)),
                                  float(getattr(config, "backoff_s", 0.0)), deadline=deadline)
        self.step = "start"

    def elapsed(self) -> float:
        """Seconds since the task started."""
        return time.monotonic() - self.start

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.budget.expired()

    def error(self, cause: BaseException | None = None) -> GlacierTimeout:
        """The :class:`GlacierTimeout` of this glacier in its current step (naming the failure
        ``cause`` that the deadline left no time to retry, if any)."""
        last = "" if cause is None else f"; the last failure: {type(cause).__name__}: {str(cause)[:500]}"
        return GlacierTimeout(
            f"run_glaciers: glacier {self.glacier_id!r} exceeded glacier_timeout_s={self.limit_s:g} s in "
            f"step {self.step!r} (after {self.elapsed():.1f} s); a rerun tries it again (raise "
            f"glacier_timeout_s if the glacier needs longer){last}")

    def check(self) -> None:
        """Raise :class:`GlacierTimeout` when the deadline has passed."""
        if self.expired():
            raise self.error()

    def enter(self, name: str) -> None:
        """Check the deadline (the time may have run out in the step before), then start step ``name``."""
        self.check()
        self.step = str(name)

    @contextlib.contextmanager
    def active(self) -> Iterator[GlacierLimits]:
        """Make these limits the ones :func:`step`, :func:`budget` and the Dask check see."""
        token = _ACTIVE.set(self)
        try:
            with _DeadlineCheck():
                yield self
        finally:
            _ACTIVE.reset(token)


class _DeadlineCheck(Callback):
    """Before each task of a local Dask scheduler, check the active limits of the calling thread.

    Dask's callbacks are global to the process, but the local schedulers call ``pretask`` in
    the thread that computes, so each glacier's graph checks its own limits (a worker may run
    several glacier tasks in threads).
    """

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        limits = _ACTIVE.get()
        if limits is not None:
            limits.check()


def current() -> GlacierLimits | None:
    """The limits of the glacier whose task runs in this thread, or None."""
    return _ACTIVE.get()


def step(name: str) -> None:
    """Start step ``name`` of the active glacier's pipeline (checking its deadline first); no-op
    outside a task."""
    limits = _ACTIVE.get()
    if limits is not None:
        limits.enter(name)


def budget() -> RetryBudget | None:
    """The retry budget of the glacier whose task runs in this thread, or None."""
    limits = _ACTIVE.get()
    return None if limits is None else limits.budget
