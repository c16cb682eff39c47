"""Faults during a batch run: killed workers, a killed driver, a poison glacier.

The per-glacier function is the stub of ``tests/_batch_faults.py`` (its values depend only
on the glacier id, so the serial truth is known); the STAC fault (5xx answers) runs the
real pipeline in ``test_batch_pipeline.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import psutil
import pytest

from tests import _glaciers
from tests._batch_faults import calls
from tests._glaciers import local_cluster
from tests.test_batch_run import check_done_equal, outlines, setup_out
from xglacier.batch import glacier_table, run_glaciers
from xglacier.batch.layout import glacier_dir, is_temporary, log_path
from xglacier.batch.status import read_status

client = _glaciers.client  # the module's warm 2-worker LocalCluster (a fixture)

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"g{i}" for i in range(6)]


def faulty():
    import tests._batch_faults as mod

    return mod.faulty


def test_worker_killed_while_writing_store(client, tmp_path):
    out, log = setup_out(tmp_path, kill_once=["g3", "g4"])
    table = run_glaciers(outlines(), out, client=client, function=faulty(), progress=False)
    assert table["status"].eq("done").all()
    check_done_equal(out, IDS)  # values equal to the serial truth, not just present
    assert calls(log).count("g3") == 2 and calls(log).count("g4") == 2
    # the killed attempt left its staging folder (removed at the next start-up only)
    assert any(is_temporary(p) for p in glacier_dir(out, "g3").parent.iterdir())
    run_glaciers(outlines(), out, client=client, function=faulty(), progress=False)
    assert not any(is_temporary(p) for p in glacier_dir(out, "g3").parent.iterdir())
    assert len(calls(log)) == 8  # nothing recomputed


@pytest.mark.slow
def test_poison_glacier_is_killed_without_blaming_others(tmp_path):
    # run_glaciers' own cluster (its settings, and its watchdog should workers fail to
    # restart on a loaded machine); one death allowed keeps the restarts few
    out, log = setup_out(tmp_path, poison=["g5"])  # the largest: it goes first
    t0 = time.monotonic()
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        table = run_glaciers(outlines(), out, workers=2, function=faulty(), progress=False)
    by = table.set_index("id")
    assert by.loc["g5", "status"] == "killed" and by.loc["g5", "error_type"] == "KilledWorker"
    assert calls(log).count("g5") == 2
    check_done_equal(out, IDS[:5])
    assert time.monotonic() - t0 < 180
    # a rerun retries the killed glacier (it may have been a machine fault), nothing else
    n = len(calls(log))
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        run_glaciers(outlines(), out, workers=2, function=faulty(), progress=False)
    assert calls(log)[n:] == ["g5"] * 2


@pytest.mark.slow
def test_queued_glaciers_blamed_by_scheduler_are_resubmitted(tmp_path):
    """A scheduler that queues tasks on workers blames them when a poison task kills their worker.

    Here one worker gets every task at once (worker-saturation inf) and no death is allowed:
    the poison glacier (largest, so first) kills the worker, and the scheduler raises
    KilledWorker for every innocent glacier queued behind it; run_glaciers sees from their
    logs that they never started and resubmits them, so only the poison glacier ends killed.
    """
    from distributed import Client

    out, _ = setup_out(tmp_path, poison=["g5"], sleep=0.5)  # all are queued before it dies
    with local_cluster(1, **{"distributed.scheduler.worker-saturation": float("inf"),
                             "distributed.scheduler.allowed-failures": 0}) as cluster, Client(cluster) as c:
        table = run_glaciers(outlines(), out, client=c, function=faulty(), progress=False)
    by = table.set_index("id")
    assert by.loc["g5", "status"] == "killed" and by.loc["g5", "attempts"] == 1
    check_done_equal(out, IDS[:5])
    submits = {g: log_path(out, g).read_text().count("submit") for g in IDS[:5]}
    assert set(submits.values()) == {2}, submits  # all blamed by the scheduler, and resubmitted


DRIVER = """
import sys
from tests._batch_faults import faulty
from xglacier.batch import run_glaciers
if __name__ == "__main__":
    run_glaciers(sys.argv[1], sys.argv[2], function=faulty, progress=False)
"""


@pytest.mark.slow
def test_driver_killed_mid_run_then_resumed(client, tmp_path):
    out, log = setup_out(tmp_path, sleep=1.0)
    gpkg = tmp_path / "outlines.gpkg"
    outlines(8).to_file(gpkg)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(gpkg), str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("glaciers/*/*/status.json"))) < 2:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the driver did not finish two glaciers in 120 s"
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    # the workers exit with their parent; wait for them so that nothing writes any more
    psutil.wait_procs(children, timeout=30)
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finished = set()
    for shard in (out / "glaciers").iterdir():
        for folder in shard.iterdir():
            if is_temporary(folder):
                continue
            # every final folder is complete: products only beside their status.json
            assert (folder / "status.json").is_file(), sorted(p.name for p in folder.iterdir())
            finished.add(folder.name)
    assert 2 <= len(finished) < 8
    assert set(glacier_table(out).query("status == 'done'")["id"]) == finished
    n = len(calls(log))
    table = run_glaciers(gpkg, out, client=client, function=faulty(), progress=False)
    assert sorted(calls(log)[n:]) == sorted(set(f"g{i}" for i in range(8)) - finished)
    assert table["status"].eq("done").all()
    check_done_equal(out, [f"g{i}" for i in range(8)])
    assert json.loads((out / "run.json").read_text())["outlines_sha256"]
    assert all(read_status(glacier_dir(out, g))["attempts"] == 1 for g in finished)
