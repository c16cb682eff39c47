"""The one pipeline configuration of ``xglacier.batch`` and the single-glacier commands.

:class:`BatchConfig` holds every setting of the per-glacier pipeline (where the scenes
come from, the preprocessing, which products, the models, how the glacier's own graph
runs); :func:`load_config` reads it from a TOML file, :meth:`BatchConfig.to_dict` gives its
canonical JSON-able form and :func:`config_hash` the SHA-256 of that form, which a run
stores so that a rerun recognises the glaciers computed with the same settings.

>>> config = BatchConfig(local_scenes="scenes/{id}", products=("flow",))
>>> BatchConfig.from_dict(config.to_dict()) == config
True
>>> len(config_hash(config))
64
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import tomllib

from .._validate import check_choice, check_flag, check_int, check_number
from ..errors import InputError, ParameterError
from ..landsat import DEFAULT_MASK_FLAGS, QA_BAND, QA_BITS

#: The products a configuration may ask for (the NDSI composites are always written).
PRODUCTS = ("flow", "segment", "forecast")

#: Fields holding file paths: relative ones in a TOML file are taken from the file's folder.
PATH_FIELDS = ("local_scenes", "segment_model", "forecast_model", "dem")

_WHERE = "BatchConfig"


def _text(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{_WHERE}: {name}={value!r}; expected a non-empty string"
                             + (" or None" if allow_none else ""))
    return value


def _texts(name: str, value: Any, *, allow_none: bool = False, allow_empty: bool = False
           ) -> tuple[str, ...] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ParameterError(f"{_WHERE}: {name}={value!r}; expected a list of strings")
    if not value and not allow_empty:
        raise ParameterError(f"{_WHERE}: {name}={value!r}; expected at least one string")
    for v in value:
        _text(name, v)
    if len(set(value)) != len(value):
        raise ParameterError(f"{_WHERE}: {name}={value!r}; expected distinct strings")
    return tuple(value)


def _period(value: Any) -> str:
    expected = "expected 'START/END' dates, e.g. '2013-04-01/2022-12-31', or [START, END]"
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        value = "/".join(value)
    if not isinstance(value, str) or value.count("/") != 1:
        raise ParameterError(f"{_WHERE}: datetime={value!r}; {expected}")
    try:
        start, end = (pd.Timestamp(v.strip()) for v in value.split("/"))
    except (ValueError, TypeError) as err:
        raise ParameterError(f"{_WHERE}: datetime={value!r}: {err}; {expected}") from None
    if start is pd.NaT or end is pd.NaT or start > end:
        raise ParameterError(f"{_WHERE}: datetime={value!r} has its start after its end; {expected}")
    return "/".join(v.strip() for v in value.split("/"))


@dataclass(frozen=True)
class BatchConfig:
    """Every setting of the per-glacier pipeline; one object, stored with a run and hashed.

    Each field is a keyword with a default; the papers' values are the defaults where they
    give one (Müller et al., 2023: Landsat 8/9, scenes under 20 % cloud cover and 50 %
    missing pixels, ECC alignment, 5x5 gap filling, 3-month NDSI composites, four
    quarters forecast; Baraka et al., 2020: 512-px segmentation windows). Lists may be
    given as lists or tuples; they are kept as tuples. Every value is checked when the
    object is made: a bad one raises :class:`~xglacier.errors.ParameterError` naming the
    field and what was expected.

    Attributes
    ----------
    stac_url : str or None
        STAC API to search (e.g. Microsoft Planetary Computer's
        ``https://planetarycomputer.microsoft.com/api/stac/v1``). Default None.
    collections : tuple of str
        Collections searched, their items merged. Default ``("landsat-c2-l2",)``.
    datetime : str
        Period ``"START/END"`` (dates, inclusive; ``[START, END]`` is accepted and stored as
        ``"START/END"``). Default ``"2013-04-01/2022-12-31"``.
    max_cloud : float or None
        Largest scene cloud cover in percent (STAC ``eo:cloud_cover``, or the files' tags);
        scenes that state none are kept (their clouds are masked per pixel). Default 20.
    platforms : tuple of str or None
        STAC ``platform`` values kept; None: all. Default ``("landsat-8", "landsat-9")``.
    modifier : str or None
        ``"module:function"`` applied to each found item, e.g.
        ``"planetary_computer:sign_inplace"`` to sign Planetary Computer URLs. Default None.
    engine : str
        Reader of STAC assets, ``"stackstac"`` or ``"odc"``. Default ``"stackstac"``.
    local_scenes : str or None
        Instead of a STAC API: a folder or glob of local single-band rasters, read with
        :func:`xglacier.open_scenes`; ``{id}`` is replaced by the glacier id
        (``"scenes/{id}"``). Files in other CRSs are warped (nearest) onto the glacier's
        UTM grid. Exactly one of ``stac_url`` and ``local_scenes`` must be set to run.
    buffer_m : float
        Margin around the outline in metres (stable ground for the flow noise floor).
        Default 1000.
    resolution : float
        Pixel size in metres of the glacier's UTM grid. Default 30 (Landsat).
    bands : tuple of str
        Bands read (STAC common names). Must hold ``green`` and ``swir16`` (NDSI),
        ``qa_pixel`` when ``cloud_mask``, ``flow_band`` when ``flow`` is a product, and
        the bands the segmentation model's channels need.
        Default ``("green", "swir16", "nir08", "qa_pixel")``.
    cloud_mask : bool
        Mask pixels flagged in ``qa_pixel`` (:func:`xglacier.mask_clouds`). Default True.
    mask_flags : tuple of str
        QA_PIXEL flags masked. Default fill, dilated cloud, cirrus, cloud, cloud shadow.
    max_missing : float or None
        Largest fraction of missing (nodata or masked) pixels of a scene over the
        glacier's box; others are dropped (:func:`xglacier.filter_scenes`). Default 0.5.
    align : bool
        Co-register the scenes with ECC (:func:`xglacier.align_ecc`). Default True.
    gap_fill : bool
        Fill gaps with the 5x5 weighted average (:func:`xglacier.fill_gaps`). Default True.
    gap_fill_iterations : int
        Passes of the gap filling. Default 16.
    composite_freq : str
        Period of the composites (pandas frequency, start-anchored). Default ``"3MS"``.
    composite_how : str
        Reduction within a period: mean, median, min or max. Default ``"mean"``.
    products : tuple of str
        Among ``"flow"``, ``"segment"``, ``"forecast"``; the NDSI composites are always
        written. Default ``("flow",)``.
    flow_band : str
        Band whose composites the surface velocity is measured on. Default ``"nir08"``.
    segment_model : str or None
        Segmentation checkpoint (safetensors + JSON); required for ``"segment"``.
    segment_months : tuple of int
        Months whose scenes make each year's (median) composite that is segmented.
        Default ``(7, 8, 9)``: the end of the ablation season in the northern hemisphere.
    segment_tile, segment_overlap : int
        Window size and overlap of the segmentation, in pixels. Default 512 and 64.
    min_area_m2 : float
        Smaller polygons of the segmentation are dropped. Default 0 (none).
    dem : str or None
        DEM raster for models with ``elevation`` / ``slope`` channels. Default None.
    forecast_model : str or None
        Forecast checkpoint; required for ``"forecast"``.
    forecast_steps : int
        Composites forecast beyond the last one. Default 4 (a year of quarters).
    threads : int
        Threads of the glacier's local Dask scheduler (1: synchronous). Default 1.
    retries : int
        Retries of one glacier in all, one shared budget for every level: each failed STAC
        request that is sent again and each new attempt of the whole glacier after a
        transient failure takes one. So a glacier tries anything that keeps failing
        ``retries + 1`` times at most (an API that always answers 503 is asked exactly
        ``retries + 1`` times), and never more than ``retries + 1`` failures in all. The STAC
        client's retries come first; a request that used up the budget is not retried by the
        task. Default 3.
    backoff_s : float
        Wait before the first retry of the budget, doubled at each retry taken (longer when
        the server asks so with ``Retry-After``): at most ``backoff_s * (2**retries - 1)``
        seconds of waiting per glacier. Default 2.
    timeout_s : float
        Per-request timeout of the STAC API, in seconds. Default 60.
    glacier_timeout_s : float or None
        Wall-clock limit of one glacier's task, in seconds, from its start (all attempts
        and waits included); None: no limit. Checked before each step of the pipeline,
        each Dask task of the glacier's graph, each STAC request and each retry (no retry
        starts whose wait would pass it; a request's timeout is cut to the time left), so a
        glacier whose API or reads are slow cannot hold a worker for ever. A glacier past
        it ends with status ``error`` and error type
        :class:`~xglacier.errors.GlacierTimeout` (retried by every rerun: a slow server is
        usually transient). Default 21600 (6 h): far above a typical glacier (minutes),
        so it only stops a hung one; set it to a few times the largest ``task_seconds``
        of a first run.

    Examples
    --------
    >>> BatchConfig(products=("flow", "forecast"))
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: BatchConfig: products holds 'forecast' but forecast_model is None; \
expected the path of a forecast checkpoint
    """

    stac_url: str | None = None
    collections: tuple[str, ...] = ("landsat-c2-l2",)
    datetime: str = "2013-04-01/2022-12-31"
    max_cloud: float | None = 20.0
    platforms: tuple[str, ...] | None = ("landsat-8", "landsat-9")
    modifier: str | None = None
    engine: str = "stackstac"
    local_scenes: str | None = None
    buffer_m: float = 1000.0
    resolution: float = 30.0
    bands: tuple[str, ...] = ("green", "swir16", "nir08", "qa_pixel")
    cloud_mask: bool = True
    mask_flags: tuple[str, ...] = DEFAULT_MASK_FLAGS
    max_missing: float | None = 0.5
    align: bool = True
    gap_fill: bool = True
    gap_fill_iterations: int = 16
    composite_freq: str = "3MS"
    composite_how: str = "mean"
    products: tuple[str, ...] = ("flow",)
    flow_band: str = "nir08"
    segment_model: str | None = None
    segment_months: tuple[int, ...] = (7, 8, 9)
    segment_tile: int = 512
    segment_overlap: int = 64
    min_area_m2: float = 0.0
    dem: str | None = None
    forecast_model: str | None = None
    forecast_steps: int = 4
    threads: int = 1
    retries: int = 3
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    glacier_timeout_s: float | None = 21600.0

    def __post_init__(self) -> None:
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)
        _check_together(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order, tuples as lists: JSON-able and canonical.

        >>> BatchConfig().to_dict()["products"]
        ['flow']
        """
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchConfig:
        """The configuration of a mapping from :meth:`to_dict` or a TOML file; missing keys
        take their default, an unknown key raises :class:`ParameterError` naming it.

        >>> BatchConfig.from_dict({"buffer_m": 500}).buffer_m
        500.0
        >>> BatchConfig.from_dict({"bufer_m": 500})
        Traceback (most recent call last):
        ...
        xglacier.errors.ParameterError: BatchConfig: unknown key 'bufer_m'; expected keys among \
the fields of BatchConfig (docs/single-glacier.md)
        """
        if not isinstance(d, Mapping):
            raise ParameterError(f"{_WHERE}.from_dict: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ParameterError(f"{_WHERE}: unknown key {key!r}; expected keys among the fields of "
                                     "BatchConfig (docs/single-glacier.md)")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> BatchConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)


def _checked(c: BatchConfig) -> dict[str, Any]:
    """Every field validated and normalised (numbers as float or int, lists as tuples)."""
    num = check_number
    out: dict[str, Any] = {
        "stac_url": _text("stac_url", c.stac_url, allow_none=True),
        "collections": _texts("collections", c.collections),
        "datetime": _period(c.datetime),
        "max_cloud": num(_WHERE, "max_cloud", c.max_cloud, low=0, high=100, allow_none=True),
        "platforms": _texts("platforms", c.platforms, allow_none=True),
        "modifier": _text("modifier", c.modifier, allow_none=True),
        "engine": check_choice(_WHERE, "engine", c.engine, ("stackstac", "odc")),
        "local_scenes": _text("local_scenes", c.local_scenes, allow_none=True),
        "buffer_m": num(_WHERE, "buffer_m", c.buffer_m, low=0),
        "resolution": num(_WHERE, "resolution", c.resolution, low=0, low_open=True),
        "bands": _texts("bands", c.bands),
        "cloud_mask": check_flag(_WHERE, "cloud_mask", c.cloud_mask),
        "mask_flags": _texts("mask_flags", c.mask_flags),
        "max_missing": num(_WHERE, "max_missing", c.max_missing, low=0, high=1, allow_none=True),
        "align": check_flag(_WHERE, "align", c.align),
        "gap_fill": check_flag(_WHERE, "gap_fill", c.gap_fill),
        "gap_fill_iterations": check_int(_WHERE, "gap_fill_iterations", c.gap_fill_iterations, low=1),
        "composite_freq": _text("composite_freq", c.composite_freq),
        "composite_how": check_choice(_WHERE, "composite_how", c.composite_how,
                                      ("mean", "median", "min", "max")),
        "products": _texts("products", c.products, allow_empty=True),
        "flow_band": _text("flow_band", c.flow_band),
        "segment_model": _text("segment_model", c.segment_model, allow_none=True),
        "segment_tile": check_int(_WHERE, "segment_tile", c.segment_tile, low=8),
        "segment_overlap": check_int(_WHERE, "segment_overlap", c.segment_overlap, low=0),
        "min_area_m2": num(_WHERE, "min_area_m2", c.min_area_m2, low=0),
        "dem": _text("dem", c.dem, allow_none=True),
        "forecast_model": _text("forecast_model", c.forecast_model, allow_none=True),
        "forecast_steps": check_int(_WHERE, "forecast_steps", c.forecast_steps, low=1),
        "threads": check_int(_WHERE, "threads", c.threads, low=1),
        "retries": check_int(_WHERE, "retries", c.retries, low=0),
        "backoff_s": num(_WHERE, "backoff_s", c.backoff_s, low=0),
        "timeout_s": num(_WHERE, "timeout_s", c.timeout_s, low=0, low_open=True),
        "glacier_timeout_s": num(_WHERE, "glacier_timeout_s", c.glacier_timeout_s, low=0, low_open=True,
                                 allow_none=True),
    }
    months = c.segment_months
    if isinstance(months, str) or not isinstance(months, list | tuple) or not months:
        raise ParameterError(f"{_WHERE}: segment_months={months!r}; expected a list of months 1-12")
    out["segment_months"] = tuple(check_int(_WHERE, "segment_months", m, low=1, high=12) for m in months)
    for name in ("max_cloud", "buffer_m", "resolution", "max_missing", "min_area_m2", "backoff_s",
                 "timeout_s", "glacier_timeout_s"):
        out[name] = None if out[name] is None else float(out[name])
    return out


def _check_together(c: BatchConfig) -> None:
    """The rules between fields."""
    def bad(message: str) -> ParameterError:
        return ParameterError(f"{_WHERE}: {message}")

    if c.stac_url is not None and c.local_scenes is not None:
        raise bad(f"stac_url={c.stac_url!r} and local_scenes={c.local_scenes!r} are both set; expected "
                  "one source of scenes")
    if c.modifier is not None and (c.modifier.count(":") != 1 or not all(c.modifier.split(":"))):
        raise bad(f"modifier={c.modifier!r}; expected 'module:function'")
    for p in c.products:
        check_choice(_WHERE, "products", p, PRODUCTS)
    for band in ("green", "swir16"):
        if band not in c.bands:
            raise bad(f"bands={list(c.bands)} lacks {band!r}; expected green and swir16 (NDSI)")
    if c.cloud_mask and QA_BAND not in c.bands:
        raise bad(f"cloud_mask=True but bands={list(c.bands)} lacks {QA_BAND!r}; add it or set "
                  "cloud_mask = false")
    unknown = [f for f in c.mask_flags if f not in QA_BITS or f in ("snow", "water", "clear")]
    if unknown:
        raise bad(f"mask_flags holds {unknown}; expected flags among {list(DEFAULT_MASK_FLAGS)}")
    if "flow" in c.products and c.flow_band not in c.bands:
        raise bad(f"flow_band={c.flow_band!r} is not in bands={list(c.bands)}; expected one of the "
                  "bands read")
    for product, model in (("segment", c.segment_model), ("forecast", c.forecast_model)):
        if product in c.products and model is None:
            raise bad(f"products holds {product!r} but {product}_model is None; expected the path of a "
                      f"{product} checkpoint")
    if c.segment_overlap > c.segment_tile // 2:
        raise bad(f"segment_overlap={c.segment_overlap} with segment_tile={c.segment_tile}; expected "
                  f"segment_overlap <= segment_tile // 2")
    try:
        pd.tseries.frequencies.to_offset(c.composite_freq)
    except (TypeError, ValueError):
        raise bad(f"composite_freq={c.composite_freq!r} is not a pandas frequency (e.g. '3MS')") from None


#: The fields that may be None, and how a TOML file says None (it has no null).
NULLABLE_FIELDS = tuple(f.name for f in fields(BatchConfig) if "None" in str(f.type))
NONE_IN_TOML = "none"


def load_config(path: str | os.PathLike[str]) -> BatchConfig:
    """Read a :class:`BatchConfig` from a TOML file (top-level keys named like the fields).

    Relative paths in ``local_scenes``, ``segment_model``, ``forecast_model`` and ``dem``
    are taken from the file's folder, so a run folder can be moved whole. TOML has no null:
    the string ``"none"`` sets a field that may be None to None (``max_cloud = "none"``: no
    cloud limit, ``glacier_timeout_s = "none"``: no time limit).

    Raises
    ------
    InputError
        The file does not exist or is not valid TOML (the message names the file).
    ParameterError
        An unknown key or a bad value (the message names the file and the field).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = path.write_text('local_scenes = "scenes/{id}"\\nbuffer_m = 500\\n')
    >>> config = load_config(path)
    >>> config.buffer_m, config.local_scenes == str(path.parent / "scenes/{id}")
    (500.0, True)
    >>> _ = path.write_text('local_scenes = "scenes"\\nglacier_timeout_s = "none"\\n')
    >>> print(load_config(path).glacier_timeout_s)
    None
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"load_config: {path} does not exist; expected a TOML configuration file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as err:
        raise InputError(f"load_config: {path} is not a valid TOML file: {err}") from None
    for key in NULLABLE_FIELDS:
        if data.get(key) == NONE_IN_TOML:  # TOML has no null
            data[key] = None
    for key in PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            data[key] = str(path.parent / value)
        elif isinstance(value, str):
            data[key] = str(Path(value).expanduser())
    try:
        return BatchConfig.from_dict(data)
    except ParameterError as err:
        raise ParameterError(f"load_config: {path}: {err}") from None


#: Settings of how a run goes, not of what it computes: changing them keeps the hash, so a
#: rerun with more threads, more patient retries or a longer limit does not recompute finished glaciers.
RUN_ONLY = ("threads", "retries", "backoff_s", "timeout_s", "glacier_timeout_s")


def config_hash(config: BatchConfig) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config.to_dict()`` without the :data:`RUN_ONLY` fields.

    Sorted keys, no spaces: the same settings always give the same hash, whichever way
    they were written (``1000`` or ``1000.0``, a list or a tuple). The fields that only
    govern how a run goes (threads, retries, backoff, request timeout, glacier time limit)
    are left out: they cannot change a product.

    >>> config_hash(BatchConfig(buffer_m=1000)) == config_hash(BatchConfig(buffer_m=1000.0))
    True
    """
    if not isinstance(config, BatchConfig):
        raise ParameterError(f"config_hash: expected a BatchConfig, got {type(config).__name__}")
    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_ONLY}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
