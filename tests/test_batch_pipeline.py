"""Acceptance of ``run_glaciers`` with the real pipeline: six synthetic glaciers in two UTM
zones behind a loopback ``rustac serve`` STAC API, on 2-worker LocalClusters, checked value
for value against a serial run of ``process_glacier``; STAC 5xx answers and a worker killed
while writing a store on the way.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import xarray as xr

from xglacier.batch import glacier_table, read_outlines, run_glaciers
from xglacier.batch.glacier import process_glacier, utm_crs
from xglacier.batch.layout import glacier_dir
from xglacier.batch.status import read_status
from xglacier.cli import main

from . import _glaciers
from ._batch_faults import calls
from ._glaciers import NOSCENE, build_glaciers, serve
from ._stac_server import Proxy

client = _glaciers.client  # the module's warm 2-worker LocalCluster (a fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning",
                               "ignore:Use `@` matmul:PendingDeprecationWarning",
                               "ignore:The 'shapely.ops.transform:DeprecationWarning"),
]
GOOD = ["G43a", "G43b", "G44a", "G44b"]
EXPECTED_FAILURE = {"EMPTY": "EmptySceneError", NOSCENE: "EmptySearchError"}
# the summary fields that may differ between two runs of the same glacier
VOLATILE = {"seconds"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The glaciers, their STAC server, and the serial reference (products and summary rows)."""
    root = tmp_path_factory.mktemp("glaciers")
    glaciers = build_glaciers(root / "catalog")
    server = serve(glaciers)
    try:
        config = glaciers.config(server.url)
        reference = {}
        for g in read_outlines(glaciers.outlines):
            try:
                reference[g.id] = process_glacier(g, root / "serial" / g.id, config)
            except Exception as err:  # the expected failures; checked below
                reference[g.id] = err
        yield glaciers, server, config, root / "serial", reference
    finally:
        server.stop()


def assert_equal_to_serial(out, serial, reference):
    for gid in GOOD:
        rec = read_status(glacier_dir(out, gid))
        assert rec["status"] == "done", (gid, rec)
        ref = {k: v for k, v in reference[gid].items() if k not in VOLATILE}
        got = {k: v for k, v in rec["summary"].items() if k not in VOLATILE}
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            assert got[key] == value or (isinstance(value, float) and math.isnan(value)
                                         and math.isnan(got[key])), (gid, key)
        for name, opener in (("ndsi.zarr", xr.open_zarr), ("flow.nc", xr.open_dataset)):
            with opener(serial / gid / name) as want, opener(glacier_dir(out, gid) / name) as have:
                xr.testing.assert_equal(have.load(), want.load())


def test_serial_reference_is_as_designed(site):
    glaciers, _, _, _, reference = site
    assert {type(reference[g]).__name__ for g in EXPECTED_FAILURE} == set(EXPECTED_FAILURE.values())
    assert all(isinstance(reference[g], dict) and reference[g]["scenes_used"] > 0 for g in GOOD)
    zones = {utm_crs(g.geometry).to_epsg() for g in read_outlines(glaciers.outlines) if g.id in GOOD}
    assert zones == {32643, 32644}


def test_six_glaciers_on_two_workers_equal_serial(site, tmp_path):
    glaciers, _, config, serial, reference = site
    out = tmp_path / "out"
    table = run_glaciers(glaciers.outlines, out, config=config, workers=2, progress=False)
    assert list(table["id"]) == list(glaciers.outlines.assign(a=[g.area_km2 for g in read_outlines(
        glaciers.outlines)]).sort_values("a", ascending=False)["RGIId"])
    by = table.set_index("id")
    for gid, error in EXPECTED_FAILURE.items():
        assert by.loc[gid, "status"] == "failed" and by.loc[gid, "error_type"] == error
        assert by.loc[gid, "attempts"] == 1  # permanent: not retried
        assert not any(p.name != "status.json" for p in glacier_dir(out, gid).iterdir())
    assert_equal_to_serial(out, serial, reference)
    assert len({by.loc[g, "worker"] for g in GOOD}) == 2  # both workers took glaciers
    summary = pd.read_csv(out / "summary.csv").set_index("id")
    assert summary.loc["G43a", "scenes_used"] == reference["G43a"]["scenes_used"]
    assert json.loads((out / "run.json").read_text())["config"]["stac_url"] == config.stac_url



def test_stac_5xx_retried_then_done_by_the_command(site, tmp_path, client):
    glaciers, server, _, serial, reference = site
    # retries=8: one budget of 8 retries per glacier, shared by its requests and its attempts;
    # 8 failures in all, so no glacier can run out whoever gets them
    proxy = Proxy(server.url, fail=[503] * 8)
    gpkg = tmp_path / "outlines.gpkg"
    glaciers.outlines.to_file(gpkg)
    out = tmp_path / "out"
    toml = glaciers.write_toml(tmp_path / "run.toml", proxy.url, retries=8, backoff_s=0.02)
    try:
        status = main(["batch", "run", str(gpkg), "--out", str(out), "--config", str(toml),
                       "--address", client.scheduler.address, "--quiet"])
    finally:
        proxy.close()
    assert status == 0  # every glacier done or failed: nothing left for a rerun
    assert len(proxy.requests) > 8
    assert_equal_to_serial(out, serial, reference)
    table = glacier_table(out).set_index("id")
    # each 503 was sent again once, from the budget of the glacier that got it; no attempt
    # of a whole glacier was added on top (the old rule retried a spent request again)
    assert table["retries"].sum() == 8 and set(table["attempts"]) == {1}
    assert set(table.loc[list(EXPECTED_FAILURE), "status"]) == {"failed"}


def test_worker_killed_while_writing_real_store(site, tmp_path, client):
    glaciers, _, config, serial, reference = site
    import tests._batch_faults as faults

    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "calls.txt"
    (out / "faults.json").write_text(json.dumps({"calls": str(log), "inner": "process_glacier",
                                                 "kill_once": ["G43a", "G44b"]}))
    table = run_glaciers(glaciers.outlines, out, config=config, client=client, function=faults.faulty,
                         progress=False)
    assert calls(log).count("G43a") == 2 and calls(log).count("G44b") == 2
    assert_equal_to_serial(out, serial, reference)
    assert set(table.set_index("id").loc[list(EXPECTED_FAILURE), "status"]) == {"failed"}
