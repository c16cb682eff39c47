"""The batch's thread pinning does not outlive a cluster running in the caller's process."""

from __future__ import annotations

import os

import torch
from distributed import Client, LocalCluster

from xglacier.batch.tasks import ThreadsPlugin


def test_in_process_workers_restore_the_callers_thread_settings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # in-process comms, no dashboard: nothing listens on a port
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
        with cluster, Client(cluster) as client:
            client.register_plugin(ThreadsPlugin(1), name=ThreadsPlugin.name)
            # the worker lives in this process: pinned while it runs
            assert client.run(lambda: (torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])) == {
                next(iter(client.scheduler_info()["workers"])): (1, "1")}
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ
    finally:
        torch.set_num_threads(before)
