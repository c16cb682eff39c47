"""Orchestration of ``run_glaciers``: layout, status, resume, failure states, report, CLI.

These use a stub per-glacier function (``tests/_batch_faults.py``) on one warm 2-worker
LocalCluster; the end-to-end test over a STAC server is in ``test_batch_pipeline.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import geopandas as gpd
import pytest
import shapely
import xarray as xr

from tests import _glaciers
from tests._batch_faults import calls, stub_values
from xglacier.batch import BatchConfig, glacier_table, run_glaciers
from xglacier.batch.layout import check_id, clean_stale, glacier_dir, log_path, shard
from xglacier.batch.status import read_status, report
from xglacier.errors import InputError, OutputInUseError, ParameterError, RunConfigError

client = _glaciers.client  # the module's warm 2-worker LocalCluster (a fixture)

FAULTY = "tests._batch_faults.faulty"


def outlines(n: int = 6) -> gpd.GeoDataFrame:
    """``n`` glaciers of growing size (g0 smallest) in two UTM zones (43N, 44N)."""
    geoms = [shapely.box(lon, 32.0, lon + 0.01 * (i + 1), 32.01) for i, lon in
             enumerate([77.5, 77.6, 77.7, 78.1, 78.2, 78.3][:n] + [77.4 + 0.1 * k for k in range(n - 6)])]
    return gpd.GeoDataFrame({"RGIId": [f"g{i}" for i in range(n)]}, geometry=geoms, crs=4326)



def faulty():
    import tests._batch_faults as mod

    return mod.faulty


def setup_out(tmp_path, **spec):
    out = tmp_path / "out"
    out.mkdir()
    spec.setdefault("calls", str(tmp_path / "calls.txt"))
    (out / "faults.json").write_text(json.dumps(spec))
    return out, tmp_path / "calls.txt"


def check_done_equal(out, ids):
    for gid in ids:
        rec = read_status(glacier_dir(out, gid))
        assert rec["status"] == "done", (gid, rec)
        with xr.open_zarr(glacier_dir(out, gid) / "ndsi.zarr") as got:
            xr.testing.assert_equal(got.load(), stub_values(gid))


def test_run_resume_and_summary(client, tmp_path):
    out, log = setup_out(tmp_path)
    table = run_glaciers(outlines(), out, client=client, function=faulty(), progress=False)
    ids = [f"g{i}" for i in range(6)]
    assert list(table["id"]) == ids[::-1]  # largest first
    assert set(table["status"]) == {"done"}
    check_done_equal(out, ids)
    assert sorted(calls(log)) == ids
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 7 and "mean_ndsi" in summary[0]
    run = json.loads((out / "run.json").read_text())
    assert run["config_hash"] == table["config_hash"].iloc[0] and run["versions"]["dask"]
    assert [g for g, _ in run["glaciers"]] == ids[::-1]
    assert (out / "glaciers" / shard("g3") / "g3" / "status.json").is_file()
    # a rerun computes nothing, and says so in its plan
    plan = run_glaciers(outlines(), out, client=client, function=faulty(), dry_run=True)
    assert set(plan["action"]) == {"skip"}
    again = run_glaciers(outlines(), out, client=client, function=faulty(), progress=False)
    assert sorted(calls(log)) == ids
    assert list(again["finished"]) == list(table["finished"])


def test_failed_error_and_retries(client, tmp_path, capsys):
    out, log = setup_out(tmp_path, permanent=["g1"], transient={"g2": 2, "g3": 9})
    config = BatchConfig(retries=2, backoff_s=0.01)
    table = run_glaciers(outlines(), out, client=client, config=config, function=faulty())
    by = table.set_index("id")
    assert by.loc["g1", "status"] == "failed" and by.loc["g1", "error_type"] == "EmptySceneError"
    assert by.loc["g1", "attempts"] == 1  # permanent: not retried
    assert by.loc["g2", "status"] == "done" and by.loc["g2", "attempts"] == 3  # 2 transient, then done
    assert by.loc["g3", "status"] == "error" and by.loc["g3", "attempts"] == 3
    assert "injected" in by.loc["g3", "error_message"]
    check_done_equal(out, ["g0", "g2", "g4", "g5"])
    assert not (glacier_dir(out, "g1") / "ndsi.zarr").exists()
    err = capsys.readouterr().err
    assert "failures by error type" in err and "EmptySceneError" in err and "StacError" in err
    # rerun: the error glacier is retried (it fails 9 times: three more calls), the failed one is not
    n = len(calls(log))
    run_glaciers(outlines(), out, client=client, config=config, function=faulty(), progress=False)
    assert sorted(calls(log)[n:]) == ["g3"] * 3
    n = len(calls(log))
    table = run_glaciers(outlines(), out, client=client, config=config, function=faulty(),
                         progress=False, rerun_failed=True)
    assert sorted(calls(log)[n:]) == ["g1", "g3", "g3", "g3"]
    assert "start" in log_path(out, "g1").read_text()


def test_glacier_timeout_on_the_cluster_then_a_rerun(client, tmp_path):
    out, log = setup_out(tmp_path, slow={"g4": 8.0})
    config = BatchConfig(glacier_timeout_s=1.0, retries=1, backoff_s=0.01)
    table = run_glaciers(outlines(), out, client=client, config=config, function=faulty(), progress=False)
    by = table.set_index("id")
    assert by.loc["g4", "status"] == "error" and by.loc["g4", "error_type"] == "GlacierTimeout"
    assert "glacier 'g4' exceeded glacier_timeout_s=1 s in step 'slow stub'" in by.loc["g4", "error_message"]
    assert 1.0 <= by.loc["g4", "task_seconds"] < 4.0  # stopped at a 0.2 s Dask task of 40
    others = [f"g{i}" for i in (0, 1, 2, 3, 5)]
    check_done_equal(out, others)  # the run went on with the other glaciers
    assert any(line.startswith("timeout glacier=g4 limit_s=1 step='slow stub'")
               for line in log_path(out, "g4").read_text().splitlines())
    assert "GlacierTimeout" in report(out)
    # a timeout is an error: every rerun tries the glacier again (no --rerun-failed), and a
    # longer limit is a run-only change (no reconfigure)
    longer = config.replace(glacier_timeout_s=60.0)
    plan = run_glaciers(outlines(), out, client=client, config=longer, function=faulty(), dry_run=True)
    assert plan.set_index("id")["action"].to_dict() == {g: "skip" for g in others} | {"g4": "run"}
    (out / "faults.json").write_text(json.dumps({"calls": str(log), "slow": {"g4": 0.4}}))
    n = len(calls(log))
    table = run_glaciers(outlines(), out, client=client, config=longer, function=faulty(), progress=False)
    assert calls(log)[n:] == ["g4"] and set(table["status"]) == {"done"}


def test_config_change_is_refused_unless_reconfigured(client, tmp_path):
    out, log = setup_out(tmp_path)
    run_glaciers(outlines(3), out, client=client, function=faulty(), progress=False)
    # how the run goes (retries, threads) is not what it computes: a rerun resumes, nothing runs
    run_glaciers(outlines(3), out, client=client, config=BatchConfig(retries=1, threads=2),
                 function=faulty(), progress=False)
    assert len(calls(log)) == 3
    other = BatchConfig(max_cloud=19.5)
    with pytest.raises(RunConfigError, match="configuration"):
        run_glaciers(outlines(3), out, client=client, config=other, function=faulty(), progress=False)
    with pytest.raises(RunConfigError):
        run_glaciers(outlines(3), out, config=other, function=faulty(), dry_run=True)
    assert glacier_table(out)["status"].eq("done").all()
    table = run_glaciers(outlines(3), out, client=client, config=other, function=faulty(),
                         progress=False, reconfigure=True)
    assert len(calls(log)) == 6 and table["status"].eq("done").all()
    assert len(list(out.glob("run-*.json"))) == 1


def test_stale_temporaries_removed_at_start_only(client, tmp_path):
    out, _ = setup_out(tmp_path)
    folder = glacier_dir(out, "g0")
    folder.mkdir(parents=True)
    stale = [folder.parent / ".g0.0123456789ab.part", folder / ".ndsi.0123.part.zarr",
             out / ".run.abc.part.json"]
    for p in stale:
        p.mkdir()
    keep = folder.parent / "notes.txt"
    keep.write_text("mine")
    assert sorted(clean_stale(out, ["g0"])) == sorted(stale)
    assert keep.exists() and not any(p.exists() for p in stale)


def test_one_run_at_a_time_per_folder(client, tmp_path):
    """A second run into a folder that a live run holds stops before touching anything; the
    lock of a killed run goes with its process."""
    out, _ = setup_out(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from xglacier.batch.lock import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        theirs = out / ".ndsi.0123.part.zarr"  # a file the other run is writing
        theirs.mkdir()
        with pytest.raises(OutputInUseError, match=rf"run_glaciers: another run is writing {out} "
                                                   rf"\(process {holder.pid} on "):
            run_glaciers(outlines(2), out, client=client, function=faulty(), progress=False)
        assert theirs.exists() and not (out / "run.json").exists()
        # a dry run writes nothing and needs no lock
        assert list(run_glaciers(outlines(2), out, function=faulty(), dry_run=True)["action"]) == ["run"] * 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    table = run_glaciers(outlines(2), out, client=client, function=faulty(), progress=False)
    assert list(table["status"]) == ["done"] * 2 and not theirs.exists()


@pytest.mark.parametrize("bad", ["a/b", "../x", ".hidden", "", "with space", "x" * 201])
def test_unsafe_ids_refused(bad):
    with pytest.raises(InputError, match="cannot name a folder"):
        check_id(bad)


def test_bad_arguments(tmp_path, client):
    with pytest.raises(ParameterError, match="workers"):
        run_glaciers(outlines(1), tmp_path, workers=0, dry_run=True)
    with pytest.raises(ParameterError, match="client or workers"):
        run_glaciers(outlines(1), tmp_path, client=client, workers=2, dry_run=True)
    with pytest.raises(ParameterError, match="config"):
        run_glaciers(outlines(1), tmp_path, config={"retries": 1}, dry_run=True)
    assert not any(tmp_path.iterdir())  # dry runs write nothing


def test_status_command_and_pending(client, tmp_path, capsys):
    from xglacier.cli import main

    out, _ = setup_out(tmp_path, permanent=["g0"])
    run_glaciers(outlines(3), out, client=client, function=faulty(), progress=False)
    # a glacier of a later, interrupted run: submitted and started, no status yet
    run = json.loads((out / "run.json").read_text())
    run["glaciers"] += [["g9", 0.1], ["g8", 0.1], ["g7", 0.1]]
    (out / "run.json").write_text(json.dumps(run))
    for gid, text in (("g9", "submit round=1\nstart worker=x pid=1\n"), ("g8", "submit round=1\n")):
        log_path(out, gid).parent.mkdir(parents=True, exist_ok=True)
        log_path(out, gid).write_text(text)
    assert main(["batch", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 glaciers (2 done, 1 failed, 0 error, 0 killed, 1 running, 1 queued, 1 pending)" in text
    assert "EmptySceneError" in text and "g0" in text
    with pytest.raises(SystemExit):
        main(["batch", "status", str(tmp_path / "nothing")])


def test_run_command_dry_run(tmp_path, capsys):
    from xglacier.cli import main

    gpkg = tmp_path / "outlines.gpkg"
    outlines(3).to_file(gpkg)
    toml = tmp_path / "run.toml"
    toml.write_text('local_scenes = "scenes/{id}"\nretries = 1\n')
    assert main(["batch", "run", str(gpkg), "--out", str(tmp_path / "out"), "--config", str(toml),
                 "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "area_km2", "status", "action"]
    assert [line.split()[0] for line in lines[1:]] == ["g2", "g1", "g0"]
    assert all(line.split()[-1] == "run" for line in lines[1:])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # one place to run at a time
        main(["batch", "run", str(gpkg), "--out", "o", "--workers", "2", "--address", "tcp://x:1"])


def test_local_cluster_without_workers_stops_the_run(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    import xglacier.batch.run as run_module
    from xglacier.errors import BatchError

    monkeypatch.setattr(run_module, "NO_WORKER_S", 1.0)
    out, _ = setup_out(tmp_path)
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as c, pytest.raises(BatchError, match="no worker"):
        run_glaciers(outlines(2), out, client=c, function=faulty(), progress=False)
    assert not list(out.glob("glaciers/*/*/status.json"))  # nothing ran: a rerun does it all


def test_status_json_is_strict_json_and_nan_round_trips(tmp_path):
    # a glacier without motion has NaN speeds: status.json must stay valid for strict readers
    import numpy as np

    from xglacier.batch.status import write_status
    from xglacier.errors import StoreError

    folder = tmp_path / "g"
    folder.mkdir()
    summary = {"speed_glacier_m_a": np.float32(np.nan), "scenes": np.int64(3), "skill": float("inf")}
    write_status(folder, {"id": "g", "status": "done", "attempts": 1, "summary": summary})
    text = (folder / "status.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rec = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert rec["summary"] == {"speed_glacier_m_a": None, "scenes": 3, "skill": None}
    back = read_status(folder)["summary"]
    assert np.isnan(back["speed_glacier_m_a"]) and np.isnan(back["skill"]) and back["scenes"] == 3
    with pytest.raises(StoreError, match="write_status"):
        write_status(folder, {"id": "g", "status": "done", "summary": {"x": object()}})


def test_summary_table_reads_missing_figures_as_nan(tmp_path):
    import numpy as np

    from xglacier.batch.layout import write_run
    from xglacier.batch.status import write_status

    write_run(tmp_path, {"glaciers": [["g1", 1.0]], "config_hash": "h"})
    folder = glacier_dir(tmp_path, "g1")
    folder.mkdir(parents=True)
    write_status(folder, {"status": "done", "config_hash": "h", "summary": {"speed": np.nan, "n": 2}})
    table = glacier_table(tmp_path)
    assert np.isnan(table.loc[0, "speed"]) and table.loc[0, "n"] == 2 and table.loc[0, "status"] == "done"
