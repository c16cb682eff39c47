"""The ``xglacier`` command."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = "xglacier: glacier monitoring from Landsat time series, native to xarray."

DEMO_HELP = """\
Run the whole method on the embedded synthetic sample (a 200x200 px valley glacier,
2016-2021, with its ground truth), in a few minutes on a laptop, and write the outputs:

  1. clean the scenes (cloud mask, scene filter), align them (ECC), fill gaps,
     compute NDSI and 3-month composites, measure surface velocity (optical flow);
  2. train a small SA-LSTM-H forecast model on the composites, score it beside the
     naive baselines and forecast the held-out year;
  3. train a small U-Net on other synthetic glaciers, map clean and debris-covered
     ice on the sample and score it beside the classical baselines.

Writes NetCDF/Zarr cubes, GeoPackage outlines, model checkpoints (safetensors + JSON)
and PNG quicklooks into --out, prints progress on standard error and a summary with
every figure compared to the truth on standard output."""


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
    demo = sub.add_parser("demo", help="run the whole method on the embedded synthetic sample "
                          "(preprocessing, motion, forecasting and segmentation; trains two models)",
                          description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--seed", type=int, default=42, help="seed of the synthetic sample (default: 42)")
    demo.add_argument("--epochs", type=int, default=15,
                      help="training epochs of the forecast model (default: 15)")
    demo.add_argument("--seg-epochs", type=int, default=40,
                      help="training epochs of the segmentation U-Net (default: 40)")
    demo.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import format_summary, run_demo

        print(format_summary(run_demo(args.out, seed=args.seed, epochs=args.epochs,
                                      seg_epochs=args.seg_epochs, progress=not args.quiet)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
