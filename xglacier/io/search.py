"""Search a STAC API for Landsat scenes (pystac-client), with retries and a cloud limit.

:func:`search` asks a STAC API for the items of a collection over a bounding box and a
period; the cloud and platform limits are applied on the client too, since some servers
ignore the query extension. It cannot be shown as a doctest (it needs a server); see
``docs/io.md`` and ``examples/search_load_write.py``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from urllib3.util.retry import Retry

from ..errors import EmptySearchError, ParameterError, StacError
from .retry import RETRY_STATUSES, BudgetAdapter, RetryBudget, budgeted

#: Microsoft Planetary Computer's STAC API; its assets need signing (see :func:`search`).
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

# --------------------------------------------------------------------------- validation
def check_bbox(bbox: Any, func: str = "search") -> tuple[float, float, float, float]:
    """Return ``bbox`` as four floats ``(west, south, east, north)`` in degrees, or raise.

    Examples
    --------
    >>> check_bbox([77.488, 31.993, 77.821, 32.225])
    (77.488, 31.993, 77.821, 32.225)
    """
    expected = "expected (west, south, east, north) in degrees with west < east and south < north"
    if isinstance(bbox, str | bytes) or not isinstance(bbox, Sequence | np.ndarray) or len(bbox) != 4:
        raise ParameterError(f"{func}: bbox={bbox!r}; {expected}")
    if not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in bbox):
        raise ParameterError(f"{func}: bbox={bbox!r} holds non-numeric or non-finite values; {expected}")
    w, s, e, n = (float(v) for v in bbox)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise ParameterError(
            f"{func}: bbox={bbox!r} is outside [-180, 180] x [-90, 90] (projected coordinates?); {expected}"
        )
    if s >= n:
        raise ParameterError(f"{func}: bbox={bbox!r} has south >= north; {expected}")
    if w >= e:
        raise ParameterError(
            f"{func}: bbox={bbox!r} has west >= east (bounding boxes across the antimeridian are not "
            f"supported: split them); {expected}"
        )
    return (w, s, e, n)


def _date(value: Any, name: str) -> str:
    """An ISO 8601 string for pystac-client: a date stays a date (the API spans the whole day)."""
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ParameterError(f"search: {name}={value!r} is not a date or datetime: {err}") from err
    if t is pd.NaT:
        raise ParameterError(f"search: {name}={value!r} is not a date or datetime")
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    if isinstance(value, str) and len(value.strip()) <= 10 and t == t.normalize():
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------- search
def _stac_io(retries: int, backoff: float, timeout: float, headers: Mapping[str, str] | None,
             budget: RetryBudget | None = None):
    from pystac_client.stac_api_io import StacApiIO

    if budget is not None:  # retries from the shared budget, never past its deadline
        stac_io = StacApiIO(headers=dict(headers or {}), timeout=timeout, max_retries=None)
        for prefix in ("http://", "https://"):
            stac_io.session.mount(prefix, BudgetAdapter(budget))
        return stac_io
    retry = Retry(
        total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False,
        respect_retry_after_header=True,
    )
    return StacApiIO(headers=dict(headers or {}), timeout=timeout, max_retries=retry)


def _tries(retries: int, budget: RetryBudget | None) -> str:
    if budget is None:
        return f"{retries} retries"
    return f"{budget.used} of the {budget.retries} retries of its budget"


def _server_limits(client: Any, max_cloud: float | None, platforms: Sequence[str] | None
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """The cloud and platform limits as the API takes them: ``(query, filter, server_side)``,
    through the STAC query extension or CQL2 filters when it conforms to one, else neither."""
    from pystac_client.conformance import ConformanceClasses

    if client.conforms_to(ConformanceClasses.QUERY):
        query: dict[str, Any] = {}
        if max_cloud is not None:
            query["eo:cloud_cover"] = {"lte": max_cloud}
        if platforms:
            query["platform"] = {"in": list(platforms)}
        return query or None, None, True
    if client.conforms_to(ConformanceClasses.FILTER):
        args: list[dict[str, Any]] = []
        if max_cloud is not None:
            args.append({"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]})
        if platforms:
            args.append({"op": "in", "args": [{"property": "platform"}, list(platforms)]})
        return None, ({"op": "and", "args": args} if len(args) > 1 else args[0]) if args else None, True
    return None, None, False


def _keep(item: Any, max_cloud: float | None, platforms: Sequence[str] | None) -> bool:
    """The client-side equivalent of the server-side query (a missing property fails it)."""
    props = item.properties
    if max_cloud is not None:
        cc = props.get("eo:cloud_cover")
        if cc is None or not float(cc) <= max_cloud:
            return False
    if platforms is not None:
        if str(props.get("platform", "")).lower() not in {p.lower() for p in platforms}:
            return False
    return True


def search(
    bbox: Sequence[float],
    start: Any,
    end: Any,
    *,
    max_cloud: float | None = 20,
    collection: str = "landsat-c2-l2",
    url: str = PLANETARY_COMPUTER,
    platforms: Sequence[str] | None = ("landsat-8", "landsat-9"),
    modifier: Callable[[Any], Any] | None = None,
    max_items: int | None = None,
    page_size: int = 100,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    budget: RetryBudget | None = None,
) -> Any:
    """Find the scenes of ``collection`` over ``bbox`` between ``start`` and ``end``.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in degrees (WGS 84); validated.
    start, end
        Period, inclusive: dates (``"2020-01-01"``; an end date covers its whole day) or
        datetimes (taken as UTC when naive).
    max_cloud
        Largest ``eo:cloud_cover`` in percent (``None``: no limit). Items without a
        cloud cover are left out when a limit is set.
    collection, url
        STAC collection id and API root; the default is Microsoft Planetary Computer.
    platforms
        Keep these ``platform`` values only (``None``: all).
    modifier
        Called on every returned item, e.g. ``planetary_computer.sign_inplace`` to sign
        the asset URLs of the Planetary Computer (``pip install planetary-computer``;
        not a dependency of xglacier). A call that raises is retried as a request is (from
        ``retries`` and ``backoff``, or from ``budget`` and never past its deadline).
    max_items, page_size
        Stop after ``max_items`` items; items per page requested from the server.
    retries, backoff, timeout
        Timeouts, connection failures and HTTP 408/429/5xx are retried ``retries``
        times, waiting ``backoff * 2**n`` seconds (a ``Retry-After`` header is obeyed);
        ``timeout`` is the per-request limit in seconds.
    headers
        Extra HTTP headers (e.g. an API key).
    budget
        A :class:`~xglacier.io.retry.RetryBudget` shared with other work (``xglacier batch``
        gives one per glacier): it replaces ``retries`` and ``backoff``, each retried request
        takes one of its retries, and with its deadline no request starts after it, each
        request's timeout is cut to the time left and no retry waits past it (then
        :class:`StacError`).

    Returns
    -------
    pystac.ItemCollection
        The items, sorted by time (then id).

    Raises
    ------
    ParameterError
        Bad ``bbox``, dates or limits.
    StacError
        The API cannot be reached after the retries or answers with an error; the
        message names the URL and what was asked.
    EmptySearchError
        Nothing matched.

    Notes
    -----
    The cloud and platform limits are sent with the STAC ``query`` extension (or
    ``filter``, CQL2) when the server advertises it in its conformance classes;
    otherwise they are applied here, on ``eo:cloud_cover`` and ``platform``, with the
    same result.

    Examples
    --------
    It needs a STAC API, so it is not run here::

        items = xglacier.search(bbox=(77.488, 31.993, 77.821, 32.225),
                                start="2013-01-01", end="2022-01-01", max_cloud=20,
                                modifier=planetary_computer.sign_inplace)
    """
    from pystac import ItemCollection
    from pystac_client import Client

    bbox = check_bbox(bbox, "search")
    t0, t1 = _date(start, "start"), _date(end, "end")
    if pd.Timestamp(t0) > pd.Timestamp(t1):
        raise ParameterError(f"search: start={start!r} is after end={end!r}")
    if max_cloud is not None and not (isinstance(max_cloud, numbers.Real) and 0 <= max_cloud <= 100):
        raise ParameterError(f"search: max_cloud={max_cloud!r}; expected a percentage in [0, 100] or None")
    platforms = (platforms,) if isinstance(platforms, str) else platforms
    if retries < 0 or backoff < 0 or timeout <= 0 or page_size < 1:
        raise ParameterError("search: retries and backoff must be >= 0, timeout > 0, page_size >= 1")
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ParameterError(f"search: budget is a {type(budget).__name__}; expected a RetryBudget or None")
    asked = (
        f"collection {collection!r}, bbox {list(bbox)}, {t0}/{t1}, max_cloud {max_cloud}, "
        f"platforms {list(platforms) if platforms else None}"
    )

    if modifier is not None:  # it makes requests of its own (signing): retried as ours are
        modifier = budgeted(modifier, budget or RetryBudget(retries, backoff), "search: modifier")
    try:
        # timeout and headers again: Client.open resets those of the stac_io it is given
        client = Client.open(url, stac_io=_stac_io(retries, backoff, timeout, headers, budget),
                             modifier=modifier, timeout=timeout, headers=dict(headers or {}))
    except Exception as err:  # APIError, requests' errors, bad JSON: all mean "no usable API"
        raise StacError(
            f"search: could not open the STAC API at {url} (after {_tries(retries, budget)}) to search "
            f"{asked}: {err}"
        ) from err

    query, filt, server_side = _server_limits(client, max_cloud, platforms)

    try:
        result = client.search(
            collections=[collection], bbox=list(bbox), datetime=f"{t0}/{t1}", query=query,
            filter=filt, filter_lang="cql2-json" if filt else None, max_items=max_items,
            limit=page_size,
        )
        found = list(result.items())
    except Exception as err:  # APIError after the retries, or a malformed answer
        raise StacError(
            f"search: the STAC API at {url} failed while searching {asked} "
            f"(after {_tries(retries, budget)}): {err}"
        ) from err

    # applied in any case: it costs nothing and guards against servers that ignore the query
    kept = [i for i in found if _keep(i, max_cloud, platforms)]
    if not kept:
        hint = ""
        if not found:
            try:
                known = client.get_collection(collection) is not None
            except Exception:  # only used to word the error below
                known = False
            if not known:
                hint = f" (the API has no collection {collection!r})"
        else:
            hint = f" ({len(found)} items exceed the cloud or platform limit)"
        where = "by the server" if server_side else "on the client"
        raise EmptySearchError(
            f"search: no item at {url} for {asked}{hint}; limits applied {where}"
        )
    kept.sort(key=lambda i: (pd.Timestamp(i.datetime or i.properties.get("start_datetime")), i.id))
    return ItemCollection(kept, clone_items=False)
