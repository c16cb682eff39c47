"""Atomic writes: every file or store xglacier writes appears whole or not at all.

A product is written under a hidden temporary name in its final folder (same file
system, so the rename is atomic), then renamed over the final path. Temporary names are
created by the writer itself, not by ``mkstemp``, so files get the permissions of the
user's umask like any other file they write.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Every temporary path ends with this marker (before the suffix), so that stale ones
#: left by a killed process can be recognised and removed.
PART = ".part"


def temporary_path(target: str | os.PathLike[str]) -> Path:
    """A fresh hidden path next to ``target`` that keeps its suffix (drivers go by it).

    Examples
    --------
    >>> p = temporary_path("out/glaciers.gpkg")
    >>> p.parent.name, p.name.startswith(".glaciers."), p.suffix, PART in p.name
    ('out', True, '.gpkg', True)
    """
    target = Path(target)
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}{PART}{target.suffix}")


def remove(path: Path) -> None:
    """Remove a file, link or directory tree; nothing if it does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically.

    The block must create the file (or directory) at the yielded path. If the block
    raises, whatever it wrote is removed and ``target`` is untouched.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("complete")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('complete', ['a.txt'])
    """
    target = Path(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"atomic write of {target}: nothing was written at {tmp}")
        _fsync(tmp)
        install(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def install(tmp: Path, final: Path) -> None:
    """Put the complete ``tmp`` (file or directory) at ``final``, replacing what is there.

    A file replaces a file with one ``os.replace``; a directory replaces an existing one
    by an atomic exchange where the kernel offers it, else by two renames in a row.
    """
    if tmp.is_file() and not final.is_dir():
        os.replace(tmp, final)
        return
    if not (final.exists() or final.is_symlink()):
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        remove(tmp)  # now holds the old one
        return
    aside = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.old{PART}")
    os.rename(final, aside)
    os.rename(tmp, final)
    remove(aside)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
