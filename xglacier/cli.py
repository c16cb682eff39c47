"""The ``xglacier`` command.

Each subcommand lives beside the stage it runs, in a ``cli`` module with a
``register(sub)`` function that adds its parser and sets ``run`` (a function of
the parsed arguments returning the exit status). This file only lists them, so
that a new stage adds one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = "xglacier: glacier monitoring from Landsat time series, native to xarray."

# one entry per subcommand module, in the order `xglacier --help` lists them
COMMANDS = (
    "xglacier.demo.cli",
    "xglacier.batch.cli",
    "xglacier.batch.steps_cli",
    "xglacier.review.cli",
    "xglacier.segmentation.cli",
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xglacier`` console script.

    Examples
    --------
    ``main(["demo", "--out", "demo-output"])`` is ``xglacier demo --out demo-output``.
    """
    from . import __version__

    parser = argparse.ArgumentParser(prog="xglacier", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"xglacier {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
