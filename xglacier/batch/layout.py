"""The on-disk layout of a batch run: where each glacier's outputs, log and status live.

::

    OUT/run.json                          configuration, its hash, versions, outline checksum, glaciers
    OUT/summary.csv                       one row per glacier, rebuilt from the status files
    OUT/glaciers/<shard>/<id>/            products + status.json (the folder is installed whole)
    OUT/logs/<shard>/<id>.log             one line per attempt start and end (appended)

``<shard>`` is the first two hex digits of the SHA-1 of the glacier id, so no folder holds
more than a few hundred entries even for all 216 000 RGI glaciers.

>>> shard("RGI60-14.00005")
'11'
>>> glacier_dir("OUT", "RGI60-14.00005").as_posix()
'OUT/glaciers/11/RGI60-14.00005'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .._atomic import PART, atomic_path, remove
from ..errors import InputError, RunConfigError

RUN_FILE = "run.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: Packages whose versions are stored in run.json (those that change a product's values).
VERSIONED = ("xglacier", "numpy", "xarray", "dask", "distributed", "rasterio", "pyproj", "scipy",
             "opencv-python-headless", "torch", "zarr")


def check_id(glacier_id: str) -> str:
    """Refuse an id that cannot be a folder name on every file system (``/``, spaces, leading dot)."""
    if not isinstance(glacier_id, str) or not _SAFE_ID.match(glacier_id):
        raise InputError(
            f"run_glaciers: glacier id {glacier_id!r} cannot name a folder; expected letters, digits, "
            "'.', '_' or '-' (not starting with '.' or '-', at most 200 characters)")
    return glacier_id


def shard(glacier_id: str) -> str:
    """Two hex digits spreading glacier folders over 256 shards."""
    return hashlib.sha1(glacier_id.encode()).hexdigest()[:2]


def glacier_dir(out: str | os.PathLike[str], glacier_id: str) -> Path:
    """The final folder of a glacier's products and ``status.json``."""
    return Path(out) / "glaciers" / shard(glacier_id) / glacier_id


def log_path(out: str | os.PathLike[str], glacier_id: str) -> Path:
    """The glacier's attempt log (appended, never replaced)."""
    return Path(out) / "logs" / shard(glacier_id) / f"{glacier_id}.log"




def versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the products (None where absent)."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def read_run(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run.json of ``out`` as a dict, or None when there is none."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def check_config(out: str | os.PathLike[str], config_hash: str, *, reconfigure: bool = False
                 ) -> dict[str, Any] | None:
    """Refuse an output folder whose run.json has another configuration hash (unless
    ``reconfigure``); return that run.json (None when there is none)."""
    old = read_run(out)
    if old is not None and old.get("config_hash") != config_hash and not reconfigure:
        raise RunConfigError(
            f"run_glaciers: {Path(out) / RUN_FILE} was written with configuration {old.get('config_hash')}, "
            f"not {config_hash}; use another output folder, or reconfigure=True (CLI: --reconfigure) "
            "to recompute every glacier with the new configuration")
    return old


def write_run(out: str | os.PathLike[str], info: dict[str, Any], *, reconfigure: bool = False) -> None:
    """Write run.json; refuse a different configuration hash unless ``reconfigure``.

    With ``reconfigure`` the previous run.json is kept as ``run-<old hash>.json`` and every
    glacier finished under the old configuration is computed again (a glacier is skipped only
    when its status says done with the current hash).
    """
    out = Path(out)
    old = check_config(out, info["config_hash"], reconfigure=reconfigure)
    if old is not None and old.get("config_hash") != info["config_hash"]:
        with atomic_path(out / f"run-{old.get('config_hash')}.json") as tmp:
            tmp.write_text(json.dumps(old, indent=1, sort_keys=True))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))


def is_temporary(path: Path) -> bool:
    """True for a name written by :func:`xglacier._atomic.atomic_path` or a staging folder."""
    return path.name.startswith(".") and PART in path.name


def clean_stale(out: str | os.PathLike[str], glacier_ids: Iterable[str]) -> list[Path]:
    """Remove temporary paths left by killed writers (start-up only: nothing may be running).

    Looks in ``OUT``, each shard folder and each glacier's folder, not deeper (stores are
    written whole under a temporary name, so a stale one is found at those levels).
    """
    out = Path(out)
    places = {out}
    for gid in glacier_ids:
        folder = glacier_dir(out, gid)
        places.update((folder.parent, folder))
    removed = []
    for place in sorted(places):
        if not place.is_dir():
            continue
        for entry in place.iterdir():
            if is_temporary(entry):
                remove(entry)
                removed.append(entry)
    return removed
