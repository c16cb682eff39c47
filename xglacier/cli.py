"""The ``xglacier`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xglacier`` console script.

    Examples
    --------
    ``main(["demo", "--out", "demo-output"])`` is ``xglacier demo --out demo-output``.
    """
    from . import __version__

    parser = argparse.ArgumentParser(prog="xglacier", description=__doc__)
    parser.add_argument("--version", action="version", version=f"xglacier {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the preprocessing pipeline on the synthetic sample")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--seed", type=int, default=42, help="seed of the synthetic sample")
    demo.add_argument("--epochs", type=int, default=15, help="training epochs of the forecast model")
    demo.add_argument("--seg-epochs", type=int, default=40,
                      help="training epochs of the segmentation U-Net")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import format_summary, run_demo

        print(format_summary(run_demo(args.out, seed=args.seed, epochs=args.epochs,
                                              seg_epochs=args.seg_epochs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
