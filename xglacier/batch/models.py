"""Model checkpoints loaded once per process: what every glacier task of a worker shares.

Glacier tasks receive checkpoint *paths* (a few bytes to ship), never pickled modules;
:func:`cached_model` loads each checkpoint the first time a process needs it and hands the
same model to every later glacier of that process. A checkpoint rewritten on disk (other
JSON bytes, or another modification time or size of its weights) is loaded again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def _key(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    from ..nn.metadata import checkpoint_paths

    json_path, weights_path = checkpoint_paths(path)
    try:
        # the JSON is small and records the weights' SHA-256: its bytes identify the checkpoint
        content = hashlib.sha256(json_path.read_bytes()).hexdigest()
    except OSError:
        content = None  # load_model names the missing file
    try:
        st = weights_path.stat()
        weights = (st.st_mtime_ns, st.st_size)
    except OSError:
        weights = None
    return (str(Path(json_path).resolve()), content, weights)


def cached_model(path: str | os.PathLike[str]) -> Any:
    """The model of checkpoint ``path`` (safetensors + JSON), loaded once per process.

    Calls :func:`xglacier.load_model` the first time a checkpoint (by resolved path and
    content) is asked for, and returns that same model, in eval mode,
    afterwards. Errors are :func:`~xglacier.load_model`'s
    (:class:`~xglacier.errors.CheckpointNotFoundError`, :class:`~xglacier.errors.CheckpointError`)
    and are not cached.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from xglacier.models import Persistence
    >>> from xglacier.nn.checkpoint import save_model
    >>> ckpt = save_model(Persistence(patch_size=8), pathlib.Path(tempfile.mkdtemp()) / "persistence")
    >>> cached_model(ckpt) is cached_model(ckpt)
    True
    """
    from ..nn.checkpoint import load_model

    key = _key(path)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = load_model(path)
            _CACHE[key] = model
        return model


def clear_cache() -> None:
    """Forget every loaded model (tests; a long-lived process that wants memory back)."""
    with _LOCK:
        _CACHE.clear()
