"""A glacier's wall-clock limit (``glacier_timeout_s``) and its one retry budget (``retries``).

The tasks run in this process (``run_glacier_task``, as a worker runs them); the STAC API
is a failure-injecting loopback :class:`Proxy` whose failures or delays come before any
forwarding, so no upstream server is needed. The run on a cluster, with the rerun, is in
``test_batch_run.py`` (its warm LocalCluster).
"""

from __future__ import annotations

import json
import time

import pytest
import shapely

from tests._batch_faults import calls, faulty
from tests._stac_server import Proxy, free_port
from xglacier.batch import BatchConfig
from xglacier.batch.glacier import Glacier, is_transient, process_glacier
from xglacier.batch.layout import glacier_dir, log_path
from xglacier.batch.limits import GlacierLimits, budget, current, step
from xglacier.batch.tasks import run_glacier_task
from xglacier.errors import GlacierTimeout, ParameterError
from xglacier.io.retry import BudgetAdapter, RetryBudget

NOWHERE = f"http://127.0.0.1:{free_port()}"  # upstream of proxies that never forward


def glacier(gid: str) -> Glacier:
    return Glacier(gid, shapely.box(77.5, 32.0, 77.52, 32.02), 4.0)


def setup_out(tmp_path, **spec):
    out = tmp_path / "out"
    out.mkdir()
    spec.setdefault("calls", str(tmp_path / "calls.txt"))
    (out / "faults.json").write_text(json.dumps(spec))
    return out


def run_task(out, gid, config, function=faulty):
    return run_glacier_task(glacier(gid), str(out), config, "hash", function, is_transient)


def log_lines(out, gid):
    return log_path(out, gid).read_text().splitlines()


# ------------------------------------------------------------------------- retry budget
def test_budget_waits_double_and_run_out():
    b = RetryBudget(3, 0.25)
    assert [b.take() for _ in range(4)] == [0.25, 0.5, 1.0, None]
    assert (b.used, b.left, b.time_left(), b.expired()) == (3, 0, None, False)
    assert RetryBudget(2, 0.1).take(at_least=7) == 7.0  # a server's Retry-After is obeyed


def test_budget_never_gives_a_wait_past_its_deadline():
    b = RetryBudget(5, 0.4, deadline=time.monotonic() + 1.5)
    # the caller sleeps each wait; each is measured from now: 1.6 s would end after the deadline
    assert [b.take(), b.take(), b.take()] == [0.4, 0.8, None]
    assert b.used == 2 and b.left == 3 and 0 < b.time_left() <= 1.5
    assert RetryBudget(1, 0.0, deadline=time.monotonic() - 1).expired()


@pytest.mark.parametrize("kw, match", [
    ({"retries": -1, "backoff": 1}, "retries=-1"),
    ({"retries": 1.5, "backoff": 1}, "retries=1.5"),
    ({"retries": 1, "backoff": -0.1}, "backoff=-0.1"),
    ({"retries": 1, "backoff": "1"}, "backoff='1'"),
])
def test_budget_validates(kw, match):
    with pytest.raises(ParameterError, match=f"^RetryBudget: {match}"):
        RetryBudget(**kw)


def test_limits_are_active_only_inside_the_task():
    assert current() is None and budget() is None
    step("scenes")  # outside a task: nothing to check
    limits = GlacierLimits("g", BatchConfig(glacier_timeout_s=60, retries=2))
    with limits.active():
        step("composites")
        assert current() is limits and budget() is limits.budget and limits.step == "composites"
    assert current() is None
    assert GlacierLimits("g", BatchConfig(glacier_timeout_s=None)).budget.deadline is None


# ------------------------------------------------------------- the bounded request count
@pytest.mark.parametrize("retries", [0, 3])
def test_an_always_failing_api_is_asked_retries_plus_one_times(tmp_path, retries):
    """One budget per glacier: the STAC client's retries use it up, the task adds none."""
    config = BatchConfig(stac_url="http://placeholder", retries=retries, backoff_s=0.01, timeout_s=5)
    proxy = Proxy(NOWHERE, fail=[503] * 50)
    try:
        record = run_task(tmp_path / "out", "g", config.replace(stac_url=proxy.url), process_glacier)
    finally:
        proxy.close()
    expected = config.retries + 1  # the rule of BatchConfig.retries (was (retries + 1) ** 2)
    assert len(proxy.requests) == expected
    assert record["status"] == "error" and record["error_type"] == "StacError"
    assert record["attempts"] == 1 and record["retries"] == config.retries
    assert f"{config.retries} of the {config.retries} retries of its budget" in record["error_message"]


def test_task_attempts_and_requests_share_the_budget(tmp_path):
    # one transient failure of the whole glacier, then an API that always answers 503
    proxy = Proxy(NOWHERE, fail=[503] * 50)
    out = setup_out(tmp_path, transient={"g": 1}, inner="process_glacier")
    config = BatchConfig(stac_url=proxy.url, retries=3, backoff_s=0.01, timeout_s=5)
    try:
        record = run_task(out, "g", config)
    finally:
        proxy.close()
    assert calls(tmp_path / "calls.txt") == ["g", "g"]
    assert record["attempts"] == 2 and record["retries"] == 3
    # retries + 1 failures in all: one attempt, then three requests
    assert len(proxy.requests) == config.retries + 1 - 1
    assert record["status"] == "error"
    assert [line.split()[0] for line in log_lines(out, "g")] == ["start", "retry", "end"]


def test_the_adapter_returns_the_last_failing_answer_when_the_budget_is_spent():
    import requests

    proxy = Proxy(NOWHERE, fail=[503] * 5)
    try:
        with requests.Session() as session:
            session.mount("http://", BudgetAdapter(RetryBudget(2, 0.01)))
            assert session.get(proxy.url + "/x", timeout=5).status_code == 503
    finally:
        proxy.close()
    assert len(proxy.requests) == 3


# ------------------------------------------------------------------------- the time limit
def test_a_slow_glacier_times_out_and_the_next_is_done(tmp_path):
    out = setup_out(tmp_path, slow={"slow": 8.0})
    config = BatchConfig(glacier_timeout_s=0.5, retries=2, backoff_s=0.01)
    slow = run_task(out, "slow", config)
    fast = run_task(out, "fast", config)
    assert fast["status"] == "done"
    assert slow["status"] == "error" and slow["error_type"] == "GlacierTimeout"
    assert slow["error_message"].startswith(
        "run_glaciers: glacier 'slow' exceeded glacier_timeout_s=0.5 s in step 'slow stub'")
    # stopped at the first Dask task after the deadline (each sleeps 0.2 s; all of them: 8 s)
    assert 0.5 <= slow["seconds"] < 2.5
    assert slow["attempts"] == 1 and slow["retries"] == 0  # a timeout is not retried in the task
    lines = log_lines(out, "slow")
    assert lines[-2].startswith("timeout glacier=slow limit_s=0.5 step='slow stub' elapsed_s=")
    assert lines[-1].startswith("end status=error")
    assert not any(p.name != "status.json" for p in glacier_dir(out, "slow").iterdir())


def test_no_retry_is_started_whose_wait_would_pass_the_deadline(tmp_path):
    out = setup_out(tmp_path, transient={"g": 99, "h": 99})
    # waits 0.4 and 0.8 fit in 2 s; the third (1.6) would end after it
    record = run_task(out, "g", BatchConfig(glacier_timeout_s=2.0, retries=5, backoff_s=0.4))
    assert record["error_type"] == "GlacierTimeout" and record["status"] == "error"
    assert record["attempts"] == 3 and record["retries"] == 2
    assert 1.2 <= record["seconds"] < 2.0  # never slept past the deadline
    assert "in step 'faulty'" in record["error_message"]
    # the same with a first wait longer than the whole limit: ends at once
    record = run_task(out, "h", BatchConfig(glacier_timeout_s=5.0, retries=3, backoff_s=10.0))
    assert record["error_type"] == "GlacierTimeout" and record["seconds"] < 1.0


def test_a_permanent_failure_past_the_deadline_keeps_its_own_type(tmp_path):
    out = setup_out(tmp_path, sleep=0.3, permanent=["g"])
    record = run_task(out, "g", BatchConfig(glacier_timeout_s=0.1))
    assert record["status"] == "failed" and record["error_type"] == "EmptySceneError"
    # without that failure, the store written after the deadline is stopped by the Dask check
    record = run_task(out, "h", BatchConfig(glacier_timeout_s=0.1))
    assert record["error_type"] == "GlacierTimeout" and "in step 'faulty'" in record["error_message"]
    assert not any(p.name != "status.json" for p in glacier_dir(out, "h").iterdir())


def test_a_slow_stac_request_is_cut_at_the_deadline(tmp_path):
    proxy = Proxy(NOWHERE, delay=[5.0] * 3)  # each answer would take 5 s; timeout_s is 60
    # the delayed answer goes nowhere after the test: not an error worth a traceback
    proxy.server.handle_error = lambda request, client_address: None
    config = BatchConfig(stac_url=proxy.url, timeout_s=60, glacier_timeout_s=1.0, retries=3, backoff_s=0.01)
    try:
        record = run_task(tmp_path / "out", "g", config, process_glacier)
    finally:
        proxy.close()
    assert record["error_type"] == "GlacierTimeout" and record["status"] == "error"
    assert "glacier 'g' exceeded glacier_timeout_s=1 s in step 'scenes'" in record["error_message"]
    assert "the last failure: StacError: search: could not open the STAC API" in record["error_message"]
    assert 1.0 <= record["seconds"] < 3.0  # the proxy answers after 5 s
    assert len(proxy.requests) == 1  # no request, and no retry, after the deadline


def test_glacier_timeout_is_a_batch_error():
    from xglacier.errors import BatchError

    assert issubclass(GlacierTimeout, BatchError) and not is_transient(GlacierTimeout("x"))
