"""``xglacier batch run|status``: many glaciers on a Dask cluster, and where a run stands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RUN_HELP = """\
Process every glacier of an outline file (one glacier per row, an id column such as RGIId)
on a Dask cluster: by default a local one with --workers processes; --scheduler-file or
--address connect to a running scheduler (dask-jobqueue, dask-gateway, Kubernetes...).

Each glacier's products and status.json go to OUT/glaciers/<shard>/<id>/; a rerun into
the same OUT skips the glaciers done with the same configuration, retries those that ended
with a transient error or a killed worker, and retries failed ones with --rerun-failed."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``batch`` subcommand (``run`` and ``status``) to the ``xglacier`` parser."""
    batch = sub.add_parser("batch", help="many glaciers on a Dask cluster (run, status)",
                           description="Many glaciers on a Dask cluster, resumable.")
    cmds = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    run = cmds.add_parser("run", help="process the glaciers of an outline file", description=RUN_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("outlines", help="vector file of glacier outlines (GeoPackage, shapefile...)")
    run.add_argument("--out", required=True, help="output folder (created; a rerun resumes it)")
    run.add_argument("--config", help="pipeline configuration (TOML); default: the built-in one")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="worker processes of the local cluster (default 2)")
    where.add_argument("--scheduler-file", help="connect to the scheduler described by this file")
    where.add_argument("--address", help="connect to the scheduler at this address (tcp://host:port)")
    run.add_argument("--id-column", default="RGIId", help="column of glacier ids (default: RGIId)")
    run.add_argument("--rerun-failed", action="store_true",
                     help="also retry glaciers that failed permanently")
    run.add_argument("--reconfigure", action="store_true",
                     help="accept an OUT written with another configuration (recomputes every glacier)")
    run.add_argument("--dry-run", action="store_true", help="print what would run; write nothing")
    run.add_argument("--quiet", action="store_true", help="no progress bar or report")
    run.set_defaults(run=run_command)
    status = cmds.add_parser("status", help="where a run stands (also while it runs)",
                             description="Glaciers per status and failures by error type, read from OUT.")
    status.add_argument("out", help="output folder of a batch run")
    status.set_defaults(run=status_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``xglacier batch run`` with parsed arguments; 0 when every glacier is done or failed."""
    from .run import run_glaciers

    client = None
    if args.scheduler_file or args.address:
        from distributed import Client

        client = Client(scheduler_file=args.scheduler_file) if args.scheduler_file else Client(args.address)
    try:
        table = run_glaciers(args.outlines, args.out, config=args.config, client=client, workers=args.workers,
                             rerun_failed=args.rerun_failed, id_column=args.id_column,
                             progress=not args.quiet, dry_run=args.dry_run, reconfigure=args.reconfigure)
    finally:
        if client is not None:
            client.close()
    if args.dry_run:
        print(table.to_string(index=False))
        return 0
    # 1: some glaciers ended with a transient error or a killed worker: a rerun may finish them
    return 1 if table["status"].isin(["error", "killed"]).any() else 0


def status_command(args: argparse.Namespace) -> int:
    """Print ``xglacier batch status OUT``."""
    from .status import report

    if not (Path(args.out) / "run.json").is_file():
        print(f"xglacier batch status: {args.out} has no run.json (not a batch output folder)",
              file=sys.stderr)
        raise SystemExit(2)
    print(report(args.out))
    return 0
