"""Retries shared by many requests, with a deadline: :class:`RetryBudget` and its HTTP adapter.

A :class:`RetryBudget` holds a fixed number of retries for a whole piece of work (one glacier
of a batch run: its STAC requests and its new attempts together), so that retry loops nested
in each other cannot multiply. :class:`BudgetAdapter` retries the HTTP requests of a
``requests`` session from such a budget (instead of urllib3's per-request ``Retry``) and never
lets a request or a wait run past the budget's deadline.

>>> budget = RetryBudget(2, 0.5)
>>> budget.take(), budget.take(), budget.take(), budget.left
(0.5, 1.0, None, 0)
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from typing import Any

from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout

from .._validate import check_int, check_number

#: HTTP statuses worth retrying: timeouts, rate limiting and server-side failures.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class RetryBudget:
    """``retries`` retries in all, shared by whoever takes them, and an optional deadline.

    The n-th retry taken (n = 0, 1, ...) waits ``backoff * 2**n`` seconds (longer when a
    server asks so with ``Retry-After``). With ``deadline`` (a :func:`time.monotonic`
    instant) no retry is given whose wait would end after it. So ``retries + 1`` tries at
    most of anything that keeps failing, and at most ``backoff * (2**retries - 1)`` seconds
    of waiting in all (without ``Retry-After``).

    Parameters
    ----------
    retries
        Retries in all (>= 0).
    backoff
        Wait before the first retry, in seconds (>= 0); doubled at each retry taken.
    deadline
        :func:`time.monotonic` instant after which nothing more is tried; None: none.

    Examples
    --------
    >>> import time
    >>> budget = RetryBudget(3, 10.0, deadline=time.monotonic() + 15)
    >>> budget.take(), budget.take(), budget.left  # a second wait of 20 s would pass the deadline
    (10.0, None, 2)
    """

    def __init__(self, retries: int, backoff: float, *, deadline: float | None = None) -> None:
        self.retries = check_int("RetryBudget", "retries", retries, low=0)
        self.backoff = float(check_number("RetryBudget", "backoff", backoff, low=0))
        self.deadline = check_number("RetryBudget", "deadline", deadline, allow_none=True)
        self.used = 0
        self._lock = threading.Lock()

    @property
    def left(self) -> int:
        """Retries not taken yet."""
        return self.retries - self.used

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once passed); None without a deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        left = self.time_left()
        return left is not None and left <= 0

    def take(self, *, at_least: float = 0.0) -> float | None:
        """Take one retry and return how long to wait before it (the caller sleeps), or None,
        taking nothing, when none is left or the wait (at least ``at_least``) would end after
        the deadline."""
        with self._lock:
            if self.used >= self.retries:
                return None
            wait = max(self.backoff * 2 ** self.used, float(at_least))
            left = self.time_left()
            if left is not None and wait >= left:
                return None
            self.used += 1
            return wait


def _cut(timeout: Any, left: float | None) -> Any:
    """A requests timeout (a number, a (connect, read) pair or None) cut to ``left`` seconds."""
    if left is None:
        return timeout
    if timeout is None:
        return left
    if isinstance(timeout, tuple):
        return tuple(left if t is None else min(float(t), left) for t in timeout)
    return min(float(timeout), left)


def _retry_after(response: Any) -> float:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date); 0 without one."""
    value = response.headers.get("Retry-After")
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if email.utils.parsedate_tz(value) else None
        return 0.0 if when is None else max(0.0, when.timestamp() - time.time())


class BudgetAdapter(HTTPAdapter):
    """A ``requests`` adapter that retries failed requests from a :class:`RetryBudget`.

    Connection errors, timeouts and the statuses of :data:`RETRY_STATUSES` are retried while
    the budget gives retries (waiting as it says; the last failing answer is returned, or the
    last error raised, when it gives none). With a deadline, no request starts after it
    (:class:`TimeoutError`) and each request's timeout is cut to the time left. Mount it on a
    session for ``http://`` and ``https://``.
    """

    def __init__(self, budget: RetryBudget) -> None:
        super().__init__(max_retries=0)
        self.budget = budget

    def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
             cert: Any = None, proxies: Any = None) -> Any:
        while True:
            left = self.budget.time_left()
            if left is not None and left <= 0:
                raise TimeoutError(f"BudgetAdapter: the deadline passed before {request.method} "
                                   f"{request.url}; no request was sent")
            try:
                response = super().send(request, stream=stream, timeout=_cut(timeout, left), verify=verify,
                                        cert=cert, proxies=proxies)
            except (RequestsConnectionError, RequestsTimeout):
                wait = self.budget.take()
                if wait is None:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                wait = self.budget.take(at_least=_retry_after(response))
                if wait is None:
                    return response
                response.close()
            time.sleep(wait)


def budgeted(func: Callable[..., Any], budget: RetryBudget, what: str) -> Callable[..., Any]:
    """``func`` retried from ``budget``: each call that raises takes one of its retries (and
    waits as it says); with none left, or a wait that would pass the deadline, the failure
    is raised. No call starts after the deadline (:class:`TimeoutError` naming ``what``).

    For work that makes its own requests outside a session of ours, such as the ``modifier``
    of :func:`~xglacier.search` (signing asset URLs with another web service).

    Examples
    --------
    >>> calls = []
    >>> def flaky(x):
    ...     calls.append(x)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("try again")
    ...     return x * 2
    >>> budgeted(flaky, RetryBudget(5, 0.0), "flaky")(21), len(calls)
    (42, 3)
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        while True:
            if budget.expired():
                raise TimeoutError(f"{what}: the deadline passed; not called")
            try:
                return func(*args, **kwargs)
            except Exception:
                wait = budget.take()
                if wait is None:
                    raise
                time.sleep(wait)

    return call
