"""Per-glacier ``status.json``, the summary table rebuilt from them, and the run report.

A glacier's ``status.json`` is written last, inside the glacier's staging folder, which
is then installed whole: its presence at the final path means the folder is complete.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> folder = out / "g"
>>> folder.mkdir()
>>> write_status(folder, {"id": "g", "status": "done", "attempts": 1})
>>> read_status(folder)["status"]
'done'
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from .._atomic import atomic_path
from ..errors import StoreError
from .layout import glacier_dir, log_path, read_run

STATUS_FILE = "status.json"
STATES = ("done", "failed", "error", "killed")
#: Columns of summary.csv that come from the status files; the function's summary row follows.
COLUMNS = ("id", "area_km2", "status", "attempts", "retries", "task_seconds", "error_type", "error_message",
           "worker", "config_hash", "finished")


def write_status(folder: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write ``folder/status.json`` atomically (call it after every product is in place)."""
    if record.get("status") not in STATES:
        raise StoreError(f"write_status: status {record.get('status')!r} is not one of {STATES}")
    text = json.dumps(_plain(record), indent=1, sort_keys=True, allow_nan=False)
    with atomic_path(Path(folder) / STATUS_FILE) as tmp:
        tmp.write_text(text)


def _plain(value: Any) -> Any:
    # JSON has no NaN/inf (other readers refuse them) and no numpy scalars: missing
    # figures become null, which read_status turns back into NaN
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise StoreError(f"write_status: {value!r} ({type(value).__name__}) is not a JSON scalar")


def read_status(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The status record of a glacier folder, or None when the folder is not finished.

    Missing figures of the summary row (``null`` in the file) come back as NaN.
    """
    path = Path(folder) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:  # written atomically, so only a foreign edit gets here
        raise StoreError(f"read_status: {path} is not valid JSON ({err})") from err
    if isinstance(record.get("summary"), dict):  # write_status stores NaN figures as null
        record["summary"] = {k: float("nan") if v is None else v for k, v in record["summary"].items()}
    return record


def last_log_line(out: str | os.PathLike[str], glacier_id: str) -> str | None:
    """The last line of a glacier's attempt log (None without one)."""
    path = log_path(out, glacier_id)
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    return lines[-1] if lines else None


def glacier_table(out: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per glacier of the run in ``out``, from run.json and the status files.

    A glacier without a status is ``running`` when its log's last line is an attempt start
    or retry, ``queued`` when it is a submission (in both cases, or the run was interrupted
    then), else ``pending``.
    """
    run = read_run(out)
    if run is None:
        raise StoreError(f"glacier_table: {Path(out) / 'run.json'} does not exist; is {out} a batch output?")
    rows = []
    for gid, area in run["glaciers"]:
        rec = read_status(glacier_dir(out, gid))
        if rec is None:
            line = last_log_line(out, gid) or ""
            state = ("running" if line.startswith(("start", "retry")) else
                     "queued" if line.startswith("submit") else "pending")
            rows.append({"id": gid, "area_km2": area, "status": state})
            continue
        row = {**rec.get("summary", {}), "id": gid, "area_km2": area}
        row.update({k: rec.get(k) for k in COLUMNS if k not in ("id", "area_km2", "task_seconds")})
        row["task_seconds"] = rec.get("seconds")
        if rec.get("status") == "done" and rec.get("config_hash") != run["config_hash"]:
            row["status"] = "stale"  # done under a previous configuration (reconfigure)
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in table:
            table[col] = None
    rest = sorted(c for c in table.columns if c not in COLUMNS)
    return table[list(COLUMNS) + rest]


def write_summary(out: str | os.PathLike[str]) -> pd.DataFrame:
    """Rebuild ``OUT/summary.csv`` from the status files (atomically) and return it."""
    table = glacier_table(out)
    with atomic_path(Path(out) / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


def counts(table: pd.DataFrame) -> dict[str, int]:
    """Glaciers per status, in a fixed order (zeros included for the four final states)."""
    found = Counter(table["status"]) if len(table) else Counter()
    order = ["done", "failed", "error", "killed", "stale", "running", "queued", "pending"]
    return {k: found.get(k, 0) for k in order if k in STATES or found.get(k)}


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """Failed, error and killed glaciers counted by status and error type, with one example id."""
    bad = table[table["status"].isin(["failed", "error", "killed"])]
    if bad.empty:
        return pd.DataFrame(columns=["status", "error_type", "glaciers", "example"])
    grouped = bad.fillna({"error_type": "?"}).groupby(["status", "error_type"], sort=True)
    return grouped["id"].agg(glaciers="count", example="first").reset_index()


def report(out: str | os.PathLike[str], table: pd.DataFrame | None = None) -> str:
    """The text that ``xglacier batch status OUT`` prints (also at the end of a run)."""
    table = glacier_table(out) if table is None else table
    run = read_run(out) or {}
    parts = ", ".join(f"{n} {k}" for k, n in counts(table).items())
    lines = [f"{out}: {len(table)} glaciers ({parts}); configuration {str(run.get('config_hash'))[:12]}"]
    bad = failures(table)
    if not bad.empty:
        lines.append("failures by error type:")
        lines.extend("  " + line for line in bad.to_string(index=False).splitlines())
        for status, error_type, _, example in bad.itertuples(index=False):
            msg = table.loc[table["id"] == example, "error_message"].iloc[0]
            lines.append(f"  e.g. {example} ({status}, {error_type}): {str(msg)[:200]}")
    return "\n".join(lines)
