"""Keep people's files no longer than promised.

A public demo receives strangers' photos and writes protected copies, masks and previews. Every
such file lives under one folder per server run, ``<root>/run-<token>/``:

- ``uploads/``: what the web framework stores (uploads and the copies of results it serves);
- ``outputs/``: what faceprot itself writes, one fresh sub-folder per request.

:class:`Retention` deletes each file once it is older than the TTL (a sweep every ``frequency``
seconds), deletes the whole run folder when the server stops cleanly, and, when a server starts,
deletes the run folders of servers that are no longer running, so that a restart after a crash
leaves nothing behind that could still be fetched. A run folder is "running" while its process
holds an exclusive lock on its ``.lock`` file, which the operating system releases when the
process dies, however it dies.

The shipped examples are kept: their cached results live outside the root (the framework's
example cache), a sweep never enters a folder named in ``exempt``, and the copies of the examples
that the framework makes when the page is built are named with :meth:`Retention.keep`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

try:  # POSIX; elsewhere stale runs are recognised by age alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

#: One hour: long enough to download results, short enough for a public demo.
DEFAULT_TTL_SECONDS = 3600
ROOT_ENV = "FACEPROT_DATA_DIR"
TTL_ENV = "FACEPROT_TTL_SECONDS"
RUN_PREFIX = "run-"
LOCK_NAME = ".lock"


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def default_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path(tempfile.gettempdir()) / "faceprot-public")


def describe_duration(seconds: float) -> str:
    """``3600`` -> "1 hour", ``90`` -> "90 seconds", ``7200`` -> "2 hours", for the privacy notice."""
    seconds = round(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


class Retention:
    """The folders of one server run and the sweeper that empties them.

    Args:
        root: the parent of every run folder (``$FACEPROT_DATA_DIR``, else ``<tmp>/faceprot-public``).
        ttl: seconds a file is kept (``$FACEPROT_TTL_SECONDS``, else one hour).
        frequency: seconds between sweeps (a tenth of the TTL, at least 1 s and at most 5 minutes).
        exempt: folders a sweep never enters (the framework's example cache, by name).
    """

    def __init__(self, root: str | os.PathLike | None = None, ttl: float | None = None,
                 frequency: float | None = None, exempt: list[str | os.PathLike] | tuple = ()):
        self.root = (Path(root) if root is not None else default_root()).resolve()
        self.ttl = float(ttl) if ttl is not None else _env_seconds(TTL_ENV, DEFAULT_TTL_SECONDS)
        if self.ttl <= 0:
            raise ValueError(f"ttl must be positive, not {self.ttl}")
        self.frequency = float(frequency) if frequency is not None else min(300.0, max(1.0, self.ttl / 10))
        self.exempt = [Path(p).resolve() for p in exempt]
        self.kept: set[Path] = set()  # single files a sweep leaves alone (see keep())
        self.run: Path | None = None
        self._lock_file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- folders

    @property
    def uploads(self) -> Path:
        return self._started() / "uploads"

    @property
    def outputs(self) -> Path:
        return self._started() / "outputs"

    def _started(self) -> Path:
        if self.run is None:
            raise RuntimeError("Retention.start() was not called")
        return self.run

    def keep(self, paths) -> set[Path]:
        """Exempt these files of this run from every sweep (the shipped examples and page images
        that the web framework copies into ``uploads/`` when the page is built: no one's data, and
        the page breaks without them). Returns the files kept so far."""
        self.kept.update(Path(p).resolve() for p in paths)
        return self.kept

    def new_dir(self, prefix: str = "faceprot-") -> Path:
        """A fresh folder for one request's files, swept like everything else."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.outputs))

    # ---------------------------------------------------------------- life cycle

    def start(self) -> Path:
        """Create this run's folder (locked while the process lives) and delete the folders of
        runs whose server is gone. Returns the run folder."""
        if self.run is not None:
            return self.run
        self.root.mkdir(parents=True, exist_ok=True)
        run = self.root / f"{RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        run.mkdir()
        (run / "uploads").mkdir()
        (run / "outputs").mkdir()
        self._lock_file = open(run / LOCK_NAME, "w")
        if fcntl is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.run = run
        removed = self.remove_stale_runs()
        if removed:
            log.info("deleted %d folder(s) left by earlier server runs", len(removed))
        return run

    def remove_stale_runs(self) -> list[Path]:
        """Delete every other run folder whose process no longer holds its lock (on systems
        without locks: every other run folder older than the TTL)."""
        removed = []
        for other in sorted(self.root.glob(f"{RUN_PREFIX}*")):
            if other == self.run or not other.is_dir():
                continue
            if any(_inside(e, other) for e in self.exempt):
                continue  # never delete the example cache, even if it was put in here
            if self._abandoned(other):
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other)
        return removed

    def _abandoned(self, run: Path) -> bool:
        lock = run / LOCK_NAME
        if fcntl is None or not lock.exists():
            try:
                return time.time() - run.stat().st_mtime > self.ttl or not lock.exists()
            except FileNotFoundError:
                return False
        try:
            with open(lock, "a") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when f closes
        except BlockingIOError:
            return False  # a live server holds it
        except FileNotFoundError:
            return False  # deleted meanwhile by someone else
        return True

    def sweep(self, now: float | None = None) -> list[Path]:
        """Delete every file of this run older than the TTL, and the folders this empties.
        Returns the files deleted."""
        run = self._started()
        now = time.time() if now is None else now
        deleted = []
        for folder, dirs, files in os.walk(run, topdown=False):
            here = Path(folder)
            if any(here == e or _inside(here, e) for e in self.exempt):
                continue
            emptied = False
            for name in files:
                path = here / name
                if path == run / LOCK_NAME or path in self.kept:
                    continue
                try:
                    if self._expired(path, now):
                        path.unlink()
                        deleted.append(path)
                        emptied = True
                except FileNotFoundError:
                    continue
            # An empty folder goes when this sweep emptied it, or when it is itself older than the
            # TTL; a request's fresh folder is empty until its first file is written.
            if here not in (run, run / "uploads", run / "outputs"):
                try:
                    if emptied or self._expired(here, now):
                        here.rmdir()  # refuses a folder that is not empty
                except OSError:
                    pass
        return deleted

    def _expired(self, path: Path, now: float) -> bool:
        st = path.lstat()
        return now - max(st.st_ctime, st.st_mtime) > self.ttl

    def start_sweeper(self) -> threading.Thread:
        """Sweep every ``frequency`` seconds in a daemon thread, until :meth:`close`."""
        self._started()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="faceprot-retention", daemon=True)
            self._thread.start()
        return self._thread

    def _loop(self) -> None:
        while not self._stop.wait(self.frequency):
            try:
                gone = self.sweep()
                if gone:
                    log.info("deleted %d file(s) older than %s", len(gone), describe_duration(self.ttl))
            except Exception:  # the sweeper must outlive a bad file; say what happened
                log.exception("sweeping %s failed", self.run)

    def close(self) -> None:
        """Stop sweeping and delete this run's folder with everything in it."""
        self._stop.set()
        if self.run is not None:
            shutil.rmtree(self.run, ignore_errors=True)
            self.run = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


__all__ = ["Retention", "DEFAULT_TTL_SECONDS", "ROOT_ENV", "TTL_ENV", "describe_duration", "default_root"]
