"""The two file mechanisms every stage relies on: an atomic write and an exclusive lock.

Atomic: a reader (or a crash) sees the old file or the new one, never half of one. The data goes to a
temporary file in the same directory, is fsynced, renamed over the target, and the directory is fsynced
so the rename itself survives a power cut. Locks are flocks (filelock): the kernel drops them when their
process dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def temp_prefix(path: Path) -> str:
    """The prefix of `path`'s temporary files: a lock holder may sweep the ones a killed writer left."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int | None = None, durable: bool = True) -> Iterator[BinaryIO]:
    """Write `path` through the yielded binary handle; it replaces `path` only if the block succeeds.

    The new file keeps the old one's permission bits unless `mode` is given. Raises OSError (disk full,
    read-only, permissions) with the old file intact and no temporary file left behind. `durable=False`
    skips the fsyncs (~10-30 ms): still atomic for readers, but a power cut may lose it (caches only).
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if mode is not None:
            tmp.chmod(mode)
        else:
            with contextlib.suppress(OSError):
                tmp.chmod(path.stat().st_mode & 0o7777)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None, durable: bool = True) -> Path:
    """Replace `path` with `data` (str is written as UTF-8, newlines untouched) atomically."""
    with atomic_writer(path, mode=mode, durable=durable) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    wait: bool = True,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
    on_timeout: Callable[[], Exception] | None = None,
) -> Iterator[bool]:
    """Hold the flock at `path`. Tries first; if taken, calls `on_wait` (to say so) and waits.

    `wait=False`: yields False at once when another process holds it. `timeout`: gives up after that
    many seconds, raising `on_timeout()` (or filelock's Timeout). Yields True while held.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            yield False
            return
        if on_wait is not None:
            on_wait()
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            if on_timeout is None:
                raise
            raise on_timeout() from None
    try:
        yield True
    finally:
        lock.release()


@contextlib.contextmanager
def locked_directory(
    directory: Path, *, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> Iterator[bool]:
    """Hold an flock on `directory` itself; like `locked`, but the lock is the directory: no lock file is made
    in or beside it, so none is left behind, and none can be deleted while another process is taking it.

    Yields False at once when another process holds it and `wait` is off. The descriptor is not inherited
    (a build's daemons never keep the lock), and closing it releases the lock.
    """
    import fcntl

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)
