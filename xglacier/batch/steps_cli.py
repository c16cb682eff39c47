"""The single-glacier commands: ``xglacier prepare``, ``segment``, ``forecast`` and ``flow``.

Each takes files and writes files, with the settings of ``--config run.toml`` (the same
:class:`~xglacier.batch.config.BatchConfig` as ``xglacier batch run``), so that one step
can be rerun, or run on one's own data, exactly as the batch runs it. A bad input ends the
command with exit status 1 and one line on standard error naming the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import xarray as xr

from ..errors import InputError, MissingBandError, XGlacierError
from ..io.local import open_scenes
from ..landsat import QA_BAND
from ..segmentation.vectors import write_vector
from . import steps
from .config import BatchConfig, load_config
from .glacier import Glacier, glacier_scenes, local_scheduler, read_outlines
from .models import cached_model

CONFIG_HELP = "pipeline settings (TOML; see docs/single-glacier.md); default: every field's default"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prepare``, ``segment``, ``forecast`` and ``flow`` subcommands."""
    p = sub.add_parser("prepare", help="scenes (files or a STAC search) -> cleaned NDSI composites",
                       description="Cloud-mask, filter, align and gap-fill scenes, and write their NDSI "
                       "composites (and those of the flow band) to a Zarr store or NetCDF file.")
    p.add_argument("scenes", nargs="*", help="scene files, folders or glob patterns (open_scenes); "
                   "none: the config's local_scenes or STAC search")
    p.add_argument("--out", required=True, help="output .zarr or .nc")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bbox", type=_bbox, help="WEST,SOUTH,EAST,NORTH in degrees: the area, on its "
                       "own UTM grid (no buffer)")
    where.add_argument("--outline", help="vector file of glacier outlines: the area is the glacier's "
                       "box widened by buffer_m, on its UTM grid")
    p.add_argument("--id", help="the glacier of --outline (default: its only row)")
    p.add_argument("--id-column", default=None,
                   help="id column of --outline (default: RGIId when the file has it, else the row number)")
    p.set_defaults(run=_guarded(run_prepare))

    p = sub.add_parser("segment", help="composites or scenes + segmentation checkpoint -> GeoPackage",
                       description="Segment each year's composite of the months segment_months (or the "
                       "one scene) of a NetCDF/Zarr cube and write the polygons, with a 'year' column.")
    p.add_argument("cube", help="NetCDF or Zarr: NDSI composites (prepare) or reflectance scenes")
    p.add_argument("--model", help="segmentation checkpoint (default: the config's segment_model)")
    p.add_argument("--out", required=True, help="output vector file (.gpkg)")
    p.set_defaults(run=_guarded(run_segment))

    p = sub.add_parser("forecast", help="composites + forecast checkpoint -> NetCDF",
                       description="Forecast forecast_steps composites beyond the last one.")
    p.add_argument("cube", help="NetCDF or Zarr composites (prepare)")
    p.add_argument("--model", help="forecast checkpoint (default: the config's forecast_model)")
    p.add_argument("--out", required=True, help="output .nc or .zarr")
    p.set_defaults(run=_guarded(run_forecast))

    p = sub.add_parser("flow", help="composites -> surface velocity NetCDF",
                       description="Surface velocity between consecutive frames of one variable.")
    p.add_argument("cube", help="NetCDF or Zarr cube (prepare's composites)")
    p.add_argument("--variable", help="variable to follow (default: the config's flow_band, else the "
                   "only variable)")
    p.add_argument("--outline", help="glacier outline(s): stable ground outside them gives the noise floor")
    p.add_argument("--out", required=True, help="output .nc or .zarr")
    p.set_defaults(run=_guarded(run_flow))
    for name in ("prepare", "segment", "forecast", "flow"):
        sub.choices[name].add_argument("--config", help=CONFIG_HELP)


def _bbox(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}; expected WEST,SOUTH,EAST,NORTH in degrees")
    return values


def _guarded(fn: Any) -> Any:
    """Run ``fn``; an xglacier error or an unreadable file is one line on stderr and status 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (XGlacierError, OSError) as err:
            text = " ".join(str(err).split())
            print(f"xglacier {args.command}: error: {text}", file=sys.stderr)
            return 1
    run.__doc__ = fn.__doc__
    return run


def _config(args: argparse.Namespace) -> BatchConfig:
    return load_config(args.config) if args.config else BatchConfig()


def _open(path: str, command: str) -> xr.Dataset:
    """A NetCDF file or Zarr store, opened lazily; InputError naming the file otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"xglacier {command}: {p} does not exist; expected a NetCDF file or Zarr store")
    try:
        if p.suffix == ".zarr" or (p.is_dir() and ((p / ".zgroup").exists() or (p / "zarr.json").exists())):
            return xr.open_zarr(p)
        return xr.open_dataset(p)
    except Exception as err:  # netCDF4 / zarr raise many types for a file they cannot read
        raise InputError(f"xglacier {command}: cannot open {p} as NetCDF or Zarr: {err}") from err


def _glacier(args: argparse.Namespace, config: BatchConfig) -> tuple[Glacier | None, BatchConfig]:
    """The area of ``prepare``: a box (exact), a glacier of an outline file, or None."""
    from shapely import box

    if args.bbox is not None:
        w, s, e, n = args.bbox
        if not (w < e and s < n):
            raise InputError(f"xglacier prepare: --bbox {args.bbox}; expected west < east and south < north")
        return Glacier("bbox", box(w, s, e, n), float("nan")), config.replace(buffer_m=0.0)
    if args.outline is not None:
        glaciers = read_outlines(args.outline, id_column=args.id_column)
        if args.id is not None:
            found = [g for g in glaciers if g.id == args.id]
            if not found:
                where = f"column {args.id_column!r}" if args.id_column else "column 'RGIId' nor row numbers"
                raise InputError(f"xglacier prepare: {args.outline} has no glacier {args.id!r} in {where}")
            return found[0], config
        if len(glaciers) != 1:
            raise InputError(f"xglacier prepare: {args.outline} holds {len(glaciers)} glaciers; pass --id")
        return glaciers[0], config
    return None, config


def run_prepare(args: argparse.Namespace) -> int:
    """``xglacier prepare``: scenes -> NDSI composites (and the flow band's)."""
    config = _config(args)
    glacier, config = _glacier(args, config)
    if args.scenes:
        config = config.replace(stac_url=None, local_scenes=None)
    with local_scheduler(config.threads):
        cube = _scenes(args, glacier, config)
        comps, _, info = steps.composites(cube, config, "xglacier prepare")
        steps.write(comps, Path(args.out), "xglacier prepare")
    print(f"xglacier prepare: {info['scenes_used']} scenes used, {info['scenes_dropped']} dropped, "
          f"{info['alignment_failures']} not aligned; {comps.sizes['time']} composites -> {args.out}")
    return 0


def _scenes(args: argparse.Namespace, glacier: Glacier | None, config: BatchConfig) -> xr.Dataset:
    """The scenes of ``prepare``; a missing QA band says how to go without it."""
    try:
        if glacier is None:
            if not args.scenes:
                raise InputError("xglacier prepare: no scenes given and no --bbox / --outline for a search "
                                 "or the config's local_scenes")
            return open_scenes(args.scenes, bands=list(config.bands))
        if args.scenes:
            return glacier_scenes(glacier, config, paths=args.scenes, where="xglacier prepare")
        return glacier_scenes(glacier, config, where="xglacier prepare")
    except MissingBandError as err:
        if QA_BAND not in str(err):
            raise
        # HLS and many archives ship no Landsat QA_PIXEL band: the fix is a setting, not a file
        raise MissingBandError(f"{err} (scenes without {QA_BAND!r}, e.g. HLS: set cloud_mask = false and "
                               f"leave {QA_BAND!r} out of bands in --config)") from err


def _checkpoint(path: str | None, command: str):
    """The model of ``--model`` or of the config's ``<command>_model``, loaded once per process."""
    if path is None:
        raise InputError(f"xglacier {command}: no checkpoint; pass --model or set {command}_model "
                         "in --config")
    return cached_model(path)


def run_segment(args: argparse.Namespace) -> int:
    """``xglacier segment``: composites or scenes + checkpoint -> polygons per year."""
    config = _config(args)
    model = _checkpoint(args.model or config.segment_model, "segment")
    ds = _open(args.cube, "segment")
    with local_scheduler(config.threads):
        if "time" in ds.dims:
            scenes = steps.yearly_summer(ds, config.segment_months)
            if scenes is None:
                raise InputError(f"xglacier segment: {args.cube} has no time step in the months "
                                 f"{list(config.segment_months)} (segment_months)")
            scenes = scenes.isel(time=[k for k in range(scenes.sizes["time"])
                                       if int(scenes["n_scenes"][k]) > 0])
        elif "time" in ds.coords:  # one scene, its time a scalar coordinate
            scenes = ds.expand_dims(time=[ds["time"].values])
        else:
            raise InputError(f"xglacier segment: {args.cube} has no time coordinate; expected scenes or "
                             "composites with a time (the year of each map)")
        gdf, areas = steps.segment_years(scenes, model, config)
    write_vector(gdf, args.out)
    summary = ", ".join(f"{k[len('area_km2_'):]}: {v:.3f} km²" for k, v in areas.items())
    print(f"xglacier segment: {len(gdf)} polygons ({summary}) -> {args.out}")
    return 0


def run_forecast(args: argparse.Namespace) -> int:
    """``xglacier forecast``: composites + checkpoint -> the next forecast_steps composites."""
    config = _config(args)
    model = _checkpoint(args.model or config.forecast_model, "forecast")
    ds = _open(args.cube, "forecast")
    with local_scheduler(config.threads):
        series = steps.forecast_variable(ds, model, f"xglacier forecast: {args.cube}")
        fc = steps.forecast_product(series, model, config.forecast_steps)
        steps.write(fc, Path(args.out), "xglacier forecast")
    print(f"xglacier forecast: {config.forecast_steps} steps of {series.name!r} -> {args.out}")
    return 0


def run_flow(args: argparse.Namespace) -> int:
    """``xglacier flow``: a cube -> surface velocity between its consecutive frames."""
    config = _config(args)
    ds = _open(args.cube, "flow")
    name = args.variable or (config.flow_band if config.flow_band in ds.data_vars else None)
    if name is None and len(ds.data_vars) == 1:
        name = next(iter(ds.data_vars))
    if name is None or name not in ds.data_vars:
        raise MissingBandError(f"xglacier flow: {args.cube} has no variable {name or config.flow_band!r}; "
                               f"variables: {sorted(map(str, ds.data_vars))} (pass --variable)")
    geometry = None
    if args.outline is not None:
        geometry = _union([g.geometry for g in read_outlines(args.outline, id_column=None)])
    with local_scheduler(config.threads):
        vel, speeds = steps.velocity(ds[name], geometry)
        steps.write(vel, Path(args.out), "xglacier flow")
    extra = "" if geometry is None else (f"; median speed {speeds['speed_glacier_m_a']:.1f} m/yr on the "
                                         f"glacier, {speeds['speed_stable_m_a']:.1f} m/yr on stable ground")
    print(f"xglacier flow: {vel.sizes['pair']} pairs of {name!r}{extra} -> {args.out}")
    return 0


def _union(geometries: list[Any]) -> Any:
    import shapely

    return shapely.union_all(geometries)
