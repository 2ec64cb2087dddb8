"""File safety for everything ncsn writes (see docs/refusals.md).

- **Atomic writes**: :func:`atomic_open` writes a temporary file beside the target (created
  exclusively, never through a link), flushes it to disk and renames it over the target. A crash
  leaves the old file or the new one, never half of one; a symlink planted at the target is
  replaced by the new file, never written through. :func:`atomic_dir` does the same for a
  folder of files (an exported model). :func:`remove_partial_writes` deletes what a killed
  write left.
- **Owned run directories**: ncsn marks every run directory it creates with ``.ncsn-run``;
  :func:`remove_run_dir` (``--overwrite``) deletes only a marked directory, and never ``.``, a
  folder above it, the home directory, ``/`` or a symlink.
- **One writer per run**: :class:`RunLock` holds ``.ncsn-lock`` (the holder's pid and host); a
  second writer is refused while the holder lives, and a lock left by a killed process is taken
  over.
- **Outputs checked before work**: :func:`check_output_file` and :func:`check_output_dir` make
  an unwritable, full or wrong kind of output path a one-line error before any expensive work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ncsn.errors import UserError

RUN_MARKER = ".ncsn-run"
LOCK_NAME = ".ncsn-lock"
TMP_SUFFIX = ".tmp"


def os_error_text(err: OSError) -> str:
    """The cause of an OSError in words (a full disk and an I/O error said plainly)."""
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno == errno.EIO:
        return "input/output error (failing disk or network file system?)"
    return err.strerror or str(err) or type(err).__name__


def write_error(path: str | Path, err: OSError) -> UserError:
    """A one-line UserError for a failed write of ``path``."""
    return UserError(f"cannot write {path}: {os_error_text(err)}; free space, fix the "
                     "permissions or choose another path")


def parse_json(text: str) -> Any:
    """``json.loads`` of a file's text; nesting too deep for Python's parser is a
    ``json.JSONDecodeError`` (a ValueError) like any other malformed JSON, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def temp_path(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` uses (hidden, per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, durable: bool = True) -> Iterator[IO]:
    """Open a temporary file for writing ``path``; when the block ends without an error, it
    is renamed over ``path`` (a symlink there is replaced, not followed), after an fsync of it
    (and of its folder after) when ``durable``. Any OSError becomes a one-line UserError
    naming ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            raise UserError(f"cannot write {path}: it is a folder; choose a file name")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; when the block ends without an error it is
    renamed to ``path`` (absent, or an empty folder), else removed, so no half-written folder
    ever appears at ``path``. OSErrors become one-line UserErrors naming ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files (:func:`temp_path`) that writes killed midway (``kill -9``)
    left in ``folder``; only while no other process writes there (ncsn: rank 0, before the
    others start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    partial = [p for p in folder.iterdir() if p.name.startswith(".") and
               p.name.endswith(TMP_SUFFIX) and not p.is_dir()]
    for p in partial:
        p.unlink(missing_ok=True)
    return partial


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: object, **dump_options: object) -> Path:
    """Write ``value`` as indented JSON (plus a newline) to ``path`` atomically."""
    return write_text(path, json.dumps(value, indent=2, **dump_options) + "\n")


def compare_record(path: str | Path, record: dict) -> list[str] | None:
    """Compare ``record`` with the JSON object ncsn recorded at ``path`` (the settings of a
    resumable output): None when there is no record, else the sorted keys whose values differ
    (empty: the same settings). UserError when the file is not such a record."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        old = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}): delete it or choose "
                        "another folder") from None
    if not isinstance(old, dict):
        raise UserError(f"{path} is not a settings record (a JSON object): delete it or "
                        "choose another folder")
    new = json.loads(json.dumps(record))  # as written: tuples become lists
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (created when missing); a symlink there is refused."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{path} is a symlink; ncsn does not write through links in its "
                            "output folders: remove the link") from None
        raise write_error(path, err) from None


# ---------------------------------------------------------------------- checks before work
def _probe_folder(folder: Path, what: str, named: Path) -> None:
    """UserError unless a file can be created, written and flushed in ``folder`` (the folder
    of ``named``, the path given as ``what``, or the nearest one above it that exists)."""
    probe = folder / f".ncsn-probe.{os.getpid()}{TMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, b"ncsn")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise UserError(f"{what} {named}: cannot write in {folder} ({os_error_text(err)}); fix "
                        "the permissions, free space or choose another path") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _nearest_existing(path: Path) -> Path:
    """``path`` or the nearest folder above it that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """UserError unless ``path`` is (or can become) a writable folder; nothing is created.
    ``what`` names the option in the message (e.g. ``--out``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; choose a folder")
    _check_folder_of(path, what, path)
    return path


def _check_folder_of(folder: Path, what: str, named: Path) -> None:
    """UserError unless ``folder`` (holding ``named``, the path given as ``what``) is or can
    become a writable folder."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise UserError(f"{what} {named}: {existing} is a file, not a folder")
    _probe_folder(existing, what, named)


def check_output_file(path: str | Path, what: str, *, suffixes: tuple[str, ...] = ()) -> Path:
    """UserError unless ``path`` can be written as a regular file (its folder writable, not a
    folder nor a device, one of ``suffixes`` when given); nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{what} {path} must end with {' or '.join(suffixes)}")
    if path.exists() and not path.is_file():
        raise UserError(f"{what} {path} is not a regular file (a device or a socket?); give a "
                        "file name")
    _check_folder_of(path.parent, what, path)
    return path


def check_output_model(stem: str | Path, what: str) -> Path:
    """:func:`check_output_file` for both files of a model written at ``stem`` (its
    ``.safetensors`` and ``.json``; a ``.safetensors`` or ``.json`` suffix names the stem)."""
    stem = Path(stem)
    for suffix in (".safetensors", ".json"):
        check_output_file(stem.with_suffix(suffix), what)
    return stem


# ---------------------------------------------------------------------- owned run directories
def mark_run_dir(run_dir: str | Path) -> None:
    """Create ``run_dir`` and ncsn's ownership marker in it (what ``--overwrite`` trusts)."""
    run_dir = Path(run_dir)
    marker = run_dir / RUN_MARKER
    if not marker.is_file() or marker.is_symlink():
        write_text(marker, "made by ncsn; --overwrite may delete this folder\n")


def is_run_dir(run_dir: str | Path) -> bool:
    """True when ``run_dir`` is a real folder (not a link) holding ncsn's marker."""
    run_dir, marker = Path(run_dir), Path(run_dir) / RUN_MARKER
    return (run_dir.is_dir() and not run_dir.is_symlink() and marker.is_file()
            and not marker.is_symlink())


def _protected_reason(folder: Path) -> str | None:
    """Why ``folder`` must never be deleted whole, or None."""
    if folder.is_symlink():
        return "it is a symlink"
    real, cwd = folder.resolve(), Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "it is the current folder or one above it"
    if real == Path.home().resolve() or real == Path(real.anchor):
        return "it is the home or the root folder"
    if not is_run_dir(folder):
        return f"ncsn did not make it (no {RUN_MARKER} in it)"
    return None


def remove_run_dir(run_dir: str | Path, what: str = "--run-dir") -> None:
    """Delete a run directory ncsn made (``--overwrite``); UserError for anything else."""
    run_dir = Path(run_dir)
    reason = _protected_reason(run_dir)
    if reason is not None:
        raise UserError(f"--overwrite refuses to delete {what} {run_dir}: {reason}; delete it "
                        f"yourself if you mean it, or choose another {what}")
    RunLock.check_free(run_dir)
    print(f"removing the existing run directory {run_dir} (--overwrite)")
    try:
        shutil.rmtree(run_dir)
    except OSError as err:
        raise UserError(f"cannot remove {run_dir}: {os_error_text(err)}") from None


# ---------------------------------------------------------------------- one writer per run
def _pid_alive(pid: int) -> bool:
    """Does process ``pid`` run on this host (a zombie, killed but not reaped, does not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class RunLock:
    """``run_dir/.ncsn-lock`` held by this process while it writes the run (JSON: pid, host).

    Use :meth:`acquire` and :meth:`release`; a lock whose holder died (kill -9) is taken over.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def _holder(path: Path) -> dict | None:
        """The lock's record, or None when there is no lock or it is unreadable (a partial
        write by a killed holder)."""
        try:
            record = parse_json(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    @classmethod
    def _live_holder(cls, path: Path) -> dict | None:
        """The record of a lock held by another live process, else None."""
        record = cls._holder(path)
        if record is None:
            return None
        pid, host = record.get("pid"), record.get("host")
        if host == socket.gethostname() and (pid == os.getpid() or not isinstance(pid, int)
                                             or not _pid_alive(pid)):
            return None
        return record

    @classmethod
    def check_free(cls, run_dir: str | Path) -> None:
        """UserError when another live process holds ``run_dir``'s lock."""
        path = Path(run_dir) / LOCK_NAME
        record = cls._live_holder(path)
        if record is not None:
            raise UserError(
                f"{run_dir} is in use by another ncsn process (pid {record.get('pid')} on "
                f"{record.get('host')}); wait for it to finish, or, if it is gone, delete "
                f"{path}")

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunLock:
        """Take ``run_dir``'s lock (the folder must exist); UserError while another lives."""
        path = Path(run_dir) / LOCK_NAME
        cls.check_free(run_dir)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        try:
            path.unlink(missing_ok=True)  # free or stale (checked above)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            cls.check_free(run_dir)  # another process took it in between
            raise UserError(f"{run_dir} is being taken by another ncsn process") from None
        except OSError as err:
            raise write_error(path, err) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(record)
        return cls(path)

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        record = self._holder(self.path)
        if record and record.get("pid") == os.getpid() and \
                record.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def writing_in(folder: str | Path, *, main: bool = True) -> Iterator[Path]:
    """Hold ``folder``'s :class:`RunLock` (the folder created when missing) while the block
    writes in it, so a second ncsn process writing there at once is refused instead of mixing
    or deleting the first one's files. Processes other than ``main`` (torchrun ranks 1..N-1,
    whose rank 0 holds the lock) take none."""
    folder = Path(folder)
    if not main:
        yield folder
        return
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(folder, err) from None
    lock = RunLock.acquire(folder)
    try:
        yield folder
    finally:
        lock.release()
        if made:  # a command that stopped before writing leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
