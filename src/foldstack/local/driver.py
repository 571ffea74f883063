"""The process that drives a local run: who it is, the lock it holds, the job process
groups it owns, and what happens when it is told to stop.

* **Identity** (:class:`DriverIdentity`): pid, process start time (``/proc/<pid>/stat``
  field 22, clock ticks since boot) and boot id, recorded in ``run.json``. A driver is
  alive only if a process with that pid runs, started at that time, in this boot: a
  reused pid or a reboot is never mistaken for the driver.
* **Lock** (:class:`RunLock`): ``fcntl.flock`` on ``runs/<run_id>/driver.lock``, held by
  the driver for the whole execution and released by the kernel when it dies. One
  execution per run id across processes; a record that says RUNNING while the lock is
  free has nobody driving it.
* **Job process groups** (:class:`JobGroups`): each Batch job attempt runs in its own
  session; its process group id (and the leader's start time) is recorded in
  ``runs/<run_id>/procs/<pgid>.json`` until the attempt ends, so whoever finds the
  driver dead can kill what it left behind (TERM, then KILL after a grace period).
* **Signals**: SIGINT and SIGTERM to a process driving runs stop those runs cleanly (the
  drive kills the jobs, runs Cleanup and records ABORTED); a second signal exits at
  once (the next command cleans up). With no run active the previous handler applies.
  A process that exits while driving a run stops it the same way first (atexit).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

PROC = Path("/proc")


# ----------------------------------------------------------------------------- identity


def boot_id() -> str | None:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; None if there is no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _live_members(pgid: int) -> list[tuple[int, int]]:
    """(pid, start time) of the live (not zombie) processes in process group `pgid`."""
    if not PROC.is_dir():  # no /proc: ask the kernel about the group as a whole
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [(pgid, 0)]
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append((int(entry.name), int(fields[19])))
    return members


@dataclass(frozen=True)
class DriverIdentity:
    pid: int
    start_time: int | None
    boot_id: str | None
    host: str

    @classmethod
    def of(cls, pid: int) -> DriverIdentity:
        return cls(pid, start_time(pid), boot_id(), socket.gethostname())

    @classmethod
    def current(cls) -> DriverIdentity:
        return cls.of(os.getpid())

    @classmethod
    def from_record(cls, value: Any) -> DriverIdentity | None:
        if not isinstance(value, dict) or not isinstance(value.get("pid"), int):
            return None
        return cls(value["pid"], value.get("start_time"), value.get("boot_id"), str(value.get("host") or ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alive(self) -> bool:
        """False if the driver is gone: no such pid, another process under that pid,
        a zombie, or another boot. A driver on another host counts as alive (only its
        lock can tell)."""
        if self.host and self.host != socket.gethostname():
            return True
        now = boot_id()
        if self.boot_id and now and self.boot_id != now:
            return False
        if not PROC.is_dir():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        fields = _stat(self.pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return self.start_time is None or int(fields[19]) == self.start_time

    def __str__(self) -> str:
        return f"pid {self.pid}"


# ----------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive, non-blocking flock on one run's lock file. Released by closing the
    descriptor (or by the kernel when the holder dies), never unlinked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    @classmethod
    def adopt(cls, path: Path, fd: int) -> RunLock:
        """The lock a parent process acquired and passed down (the detached driver)."""
        lock = cls(path)
        os.set_inheritable(fd, False)
        lock.fd = fd
        return lock

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        """Close our descriptor: the lock is released unless a child holds it too."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def lock_is_free(path: Path) -> bool:
    """True if nobody holds the lock now (it is taken and dropped at once)."""
    lock = RunLock(path)
    if lock.try_acquire():
        lock.release()
        return True
    return False


# ----------------------------------------------------------------------------- job groups


class JobGroups:
    """Process groups of one run's job attempts, recorded under ``runs/<run_id>/procs``."""

    def __init__(self, directory: Path, *, grace: float = 5.0) -> None:
        self.directory = directory
        self.grace = grace

    def add(self, pid: int, job: str) -> None:
        """A job attempt started (its own session: pgid == pid)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {"pgid": pid, "start_time": start_time(pid), "job": job}
        with contextlib.suppress(OSError):  # a full disk must not fail the job
            (self.directory / f"{pid}.json").write_text(json.dumps(body))

    def ended(self, pid: int) -> None:
        """The attempt's leader exited: kill what it left in its group (a container's
        processes end with it on Batch), and forget the group."""
        self._kill_group(pid, None, leader_gone=True, grace=0.0)
        with contextlib.suppress(OSError):
            (self.directory / f"{pid}.json").unlink()

    def recorded(self) -> list[dict[str, Any]]:
        groups = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                body = json.loads(path.read_text())
            except (OSError, ValueError):
                body = {"pgid": int(path.stem)} if path.stem.isdigit() else None
            if isinstance(body, dict) and isinstance(body.get("pgid"), int):
                groups.append(body)
        return groups

    def alive(self) -> list[int]:
        return [g["pgid"] for g in self.recorded() if self._ours(g["pgid"], g.get("start_time"))]

    def kill_all(self) -> list[int]:
        """TERM every recorded group still alive, KILL what is left after the grace
        period; forget them all. Returns the groups that were signalled."""
        groups = self.recorded()
        killed = [g["pgid"] for g in groups if self._kill_group(g["pgid"], g.get("start_time"))]
        for g in groups:
            with contextlib.suppress(OSError):
                (self.directory / f"{g['pgid']}.json").unlink()
        return killed

    @staticmethod
    def _ours(pgid: int, leader_start: int | None, *, leader_gone: bool = False) -> bool:
        members = _live_members(pgid)
        if not members:
            return False
        leader = dict(members).get(pgid)
        if leader is None:
            return True  # a pgid is never reused while its group has members
        if leader_gone:
            return False  # the pid was reused by a new group leader: not ours
        return leader_start is None or leader == leader_start

    def _kill_group(self, pgid: int, leader_start: int | None, *, leader_gone: bool = False,
                    grace: float | None = None) -> bool:
        if not self._ours(pgid, leader_start, leader_gone=leader_gone):
            return False
        grace = self.grace if grace is None else grace
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
        deadline = time.monotonic() + grace
        while grace > 0 and _live_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _live_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return True


# ----------------------------------------------------------------------------- signals


class Stoppable(Protocol):
    run_id: str

    def interrupt(self, cause: str) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


_active: set[Stoppable] = set()
_active_lock = threading.Lock()
_previous: dict[int, Any] = {}
_stopping = threading.Event()
_atexit_registered = False


def register(drive: Stoppable) -> None:
    """`drive` is running in this process: signals and exit stop it cleanly."""
    global _atexit_registered
    with _active_lock:
        _active.add(drive)
        if not _atexit_registered:
            atexit.register(_stop_at_exit)
            _atexit_registered = True
    _install()


def unregister(drive: Stoppable) -> None:
    with _active_lock:
        _active.discard(drive)


def active() -> list[Stoppable]:
    with _active_lock:
        return list(_active)


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; a dead driver is reaped anyway
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:
            continue  # ignored on purpose (a background job of a script): leave it so
        if current is not _on_signal:
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    drives = active()
    if not drives:
        _delegate(signum, frame)
        return
    name = signal.Signals(signum).name
    if _stopping.is_set():
        print(f"foldstack: {name} again: exiting now; the next command on these runs finishes the cleanup",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)
    _stopping.set()
    print(f"foldstack: {name}: stopping {len(drives)} local run(s) (jobs, then cleanup); "
          f"{name} again exits at once", file=sys.stderr, flush=True)
    threading.Thread(target=_stop_all, args=(drives, signum, f"interrupted: {name}"),
                     name="foldstack-stop", daemon=False).start()


def _stop_all(drives: list[Stoppable], signum: int, cause: str) -> None:
    try:
        for drive in drives:
            drive.interrupt(cause)
        for drive in drives:
            drive.wait(None)
    finally:
        _stopping.clear()
    if signum == signal.SIGTERM and _previous.get(signum) in (signal.SIG_DFL, None):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)  # terminated, as SIGTERM asked: after the runs are recorded


def _delegate(signum: int, frame: Any) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _stop_at_exit() -> None:
    drives = active()
    for drive in drives:
        drive.interrupt("interrupted: the process driving it exited")
    for drive in drives:
        drive.wait(120)
