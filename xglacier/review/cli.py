"""``xglacier review``: correct predicted glacier outlines in the browser, offline."""

from __future__ import annotations

import argparse
import sys

HELP = """\
Serve a page on 127.0.0.1 showing SCENE (an RGB composite of its bands, or one band)
with the PREDICTIONS polygons over it, in their own CRS. Move, add and delete vertices,
draw and delete polygons, change classes, undo; Save writes the corrected polygons to
--out (GeoPackage, or GeoJSON by suffix) with a status column (predicted / edited /
added), the edit time, and a "deleted" layer. The predictions file is never overwritten.
The page loads nothing from the internet. Stop with Ctrl-C."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``review`` subcommand to the ``xglacier`` parser."""
    p = sub.add_parser("review", help="correct predicted outlines over a scene in the browser (offline)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", metavar="PREDICTIONS", help="vector file of predicted polygons "
                   "(GeoPackage, GeoJSON, shapefile)")
    p.add_argument("--image", required=True, metavar="SCENE",
                   help="the scene: a raster file, a folder or a glob pattern read by xglacier.open_scenes")
    p.add_argument("--out", metavar="CORRECTED", default=None,
                   help="file the corrections are saved to (default: PREDICTIONS stem + .corrected.gpkg)")
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--bands", nargs="+", default=None, metavar="BAND",
                   help="one band or three to show (default: red green blue, else swir16 nir08 red)")
    p.add_argument("--time", default=None, help="date of the scene when SCENE holds several")
    p.add_argument("--class-column", default=None, help="column of the class (default: class_name, class)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xglacier review`` with parsed arguments: serve until Ctrl-C."""
    from .server import review

    server = review(args.predictions, args.image, out=args.out, port=args.port, bands=args.bands,
                    time=args.time, class_column=args.class_column)
    print(f"xglacier review: open {server.url} in a browser (saves to {server.out}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    server.wait()
    return 0
