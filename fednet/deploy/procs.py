"""Child processes that never outlive the command that started them.

``flower-server`` and ``flower-client`` each start Flower processes
(``flower-superlink``, ``flower-supernode``, the ``flwr`` CLI). Those start
more processes of their own (SuperExec, one ``flwr-serverapp`` per run, one
``flwr-clientapp`` per message), some in sessions of their own. Three layers
keep the tree clean (processes are found and awaited with ``psutil``):

- every child runs in its own process group; :meth:`Supervisor.stop`
  terminates a child's whole group, waits, kills what is left, then kills
  any descendant that escaped into another session;
- :class:`Supervisor` turns SIGTERM and SIGHUP into :class:`Shutdown`, so
  ``with Supervisor() as sup: ...`` cleans up on Ctrl-C, ``kill`` and errors;
- every child's environment carries a marker of its supervisor, which all
  its descendants inherit, and a small reaper process outlives the
  supervisor just long enough to end every marked process. This catches what
  a SIGKILL of the fednet command leaves, the children and whatever escaped
  their group: after a SIGKILL of ``flower-server``, Flower's
  ``flwr-serverapp`` keeps retrying a SuperLink that is gone for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import psutil

__all__ = ["Child", "Shutdown", "Supervisor", "descendants", "pids_alive", "watch_output"]

logger = logging.getLogger(__name__)


class Shutdown(KeyboardInterrupt):
    """Raised in the main thread when the command receives SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (empty if it is gone)."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _descendant_procs(pid: int) -> list[psutil.Process]:
    """Every descendant of ``pid`` as a ``psutil.Process`` (empty if it is gone).

    A ``psutil.Process`` is the pid together with the process's start time, and
    psutil signals it only while both still match: a descendant remembered now
    and gone later is never confused with a process that reused its pid.
    """
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() not in (
            psutil.STATUS_ZOMBIE,
            psutil.STATUS_DEAD,
        )
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process by that id: it runs


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` end (zombies count as ended); return those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.1)  # reaps this process's own children
        alive = [p for p in alive if _running(p)]
    return alive


def pids_alive(pids: Sequence[int]) -> list[int]:
    """The ids in ``pids`` that still name a running (non-zombie) process."""
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            alive.append(pid)
            continue
        if _running(proc):
            alive.append(pid)
    return alive


@dataclass
class Child:
    """One supervised child process.

    Parameters
    ----------
    name : str
        Short name for messages (``superlink``, ``supernode``).
    proc : subprocess.Popen
        The process; it leads its own process group.
    log_path : Path or None
        File receiving its output, when not piped.
    """

    name: str
    proc: subprocess.Popen[str]
    log_path: Path | None = None
    _known: set[psutil.Process] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """Exit status, or None while it runs; remembers descendants seen so far."""
        rc = self.proc.poll()
        if rc is None:
            self._known.update(_descendant_procs(self.pid))
        return rc

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log file ('' when none)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children and guarantees that they and their descendants end.

    Use as a context manager in the main thread; on exit (normal, exception,
    Ctrl-C or SIGTERM) every child is stopped, newest first.
    """

    def __init__(self, *, grace_s: float = 8.0) -> None:
        self.grace_s = grace_s
        self.children: list[Child] = []
        self.marker = f"{_MARKER_PREFIX}{uuid.uuid4().hex}"
        self._old: dict[int, object] = {}
        self._lock = threading.Lock()
        self._reaper: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> Supervisor:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._old[sig] = signal.signal(sig, self._on_signal)
        self._reaper = _start_reaper(self.marker, grace_s=min(self.grace_s, 5.0))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # a second SIGTERM during clean-up must not abort it
        for sig in self._old:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.stop_all()
            if self._reaper is not None:  # a last sweep for anything that escaped
                self._reaper.send_signal(signal.SIGTERM)
                try:
                    self._reaper.wait(timeout=2 * self.grace_s + 5)
                except subprocess.TimeoutExpired:
                    self._reaper.kill()
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)  # type: ignore[arg-type]

    @staticmethod
    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        raise Shutdown(signum)

    # -- children --------------------------------------------------------------
    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path | None = None,
        pipe: bool = False,
    ) -> Child:
        """Start ``cmd`` in its own process group.

        Output goes to ``log_path`` (appended), to a pipe (``pipe=True``, read
        ``child.proc.stdout``), or to this process's stderr.
        """
        out: int | IO[str] | None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        elif pipe:
            out = subprocess.PIPE
        else:
            out = sys.stderr
        try:
            proc = subprocess.Popen(
                list(cmd),
                env={**(os.environ if env is None else env), self.marker: "1"},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        finally:
            if log_path is not None and not isinstance(out, int) and out is not None:
                out.close()
        child = Child(name, proc, log_path)
        with self._lock:
            self.children.append(child)
        logger.debug("started %s (pid %s): %s", name, proc.pid, " ".join(cmd))
        return child

    def run(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = 120.0,
    ) -> tuple[int, str]:
        """Run ``cmd`` to completion as a supervised child; return (status, output)."""
        child = self.spawn(name, cmd, env=env, cwd=cwd, pipe=True)
        try:
            out, _ = child.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            return 124, f"{name} did not finish within {timeout:.0f}s"
        finally:
            self._forget(child)
        return child.proc.returncode, out or ""

    def _forget(self, child: Child) -> None:
        with self._lock:
            if child in self.children:
                self.children.remove(child)

    def stop(self, child: Child, *, sig: int = signal.SIGTERM) -> int | None:
        """Stop ``child``, its process group and every descendant; return its status.

        The group is signalled by the child's pid only while this call has seen
        the child running: once a child is reaped its pid may be reused, even as
        another group's leader. What escaped a child that ended earlier is
        stopped through the descendants remembered as processes.
        """
        known = set(child._known) | set(_descendant_procs(child.pid))
        was_running = child.proc.poll() is None
        if was_running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, sig)
            try:
                child.proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs; killing it", child.name, self.grace_s)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait(timeout=5)
        if was_running:  # stragglers keep the group, so its id cannot be reused yet
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        _reap(known, grace_s=min(self.grace_s, 5.0))
        if child.proc.stdout is not None:
            with contextlib.suppress(OSError):
                child.proc.stdout.close()
        self._forget(child)
        return child.proc.returncode

    def stop_all(self) -> None:
        """Stop every child, newest first."""
        with self._lock:
            children = list(reversed(self.children))
        for child in children:
            try:
                self.stop(child)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                logger.warning("could not stop %s (pid %s): %s", child.name, child.pid, e)


_MARKER_PREFIX = "FEDNET_SUPERVISED_"

_REAPER = """
import os, signal, sys, time
import psutil
entry, parent, grace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
me = os.getpid()
def marked():
    out = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            if p.environ().get(entry) == "1":
                out.append(p)
        except (psutil.Error, OSError):
            pass
    return out
def running(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
def sweep(*_):
    procs = marked()
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    end = time.time() + grace
    while procs and time.time() < end:
        _, procs = psutil.wait_procs(procs, timeout=0.1)
        procs = [p for p in procs if running(p)]
    for p in procs + marked():
        try:
            p.kill()
        except psutil.Error:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, sweep)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.getppid() == parent:
    time.sleep(0.5)
sweep()
"""


def _start_reaper(marker: str, *, grace_s: float) -> subprocess.Popen[bytes] | None:
    """A process that ends every process carrying ``marker`` once this one is gone."""
    try:
        psutil.Process().environ()
    except (psutil.AccessDenied, NotImplementedError):
        return None  # no way to read other processes' markers here
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MARKER_PREFIX)}
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _REAPER, marker, str(os.getpid()), str(grace_s)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _reap(known: set[psutil.Process], *, grace_s: float) -> None:
    """SIGTERM, then SIGKILL, descendants that escaped their group (new sessions).

    Only the very processes seen as descendants are signalled: one whose pid
    now names another process (pid reuse) is skipped, by psutil's identity check.
    """
    procs = []
    for proc in sorted(known, key=lambda p: p.pid):
        with contextlib.suppress(psutil.Error):
            if _running(proc):
                proc.terminate()
                procs.append(proc)
    for proc in _wait_gone(procs, grace_s):
        logger.debug("killing leftover process %s", proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.kill()


@contextlib.contextmanager
def watch_output(child: Child, on_line: Callable[[str], None]) -> Iterator[threading.Thread]:
    """Call ``on_line`` for every line ``child`` writes to its pipe, in a thread."""

    def pump() -> None:
        assert child.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in child.proc.stdout:
                on_line(line.rstrip("\n"))

    t = threading.Thread(target=pump, name=f"{child.name}-output", daemon=True)
    t.start()
    try:
        yield t
    finally:
        t.join(timeout=2)


def run_command(prog: str, body: Callable[[], int], *, other_error_status: int = 2) -> int:
    """Run a command's ``body`` and turn how it ends into an exit status.

    A signal or Ctrl-C is reported as such (every child has ended by then); a
    bad input (config, value, type or missing file) prints one line and gives
    2; an error with a ``status`` attribute gives that status; any other
    :class:`~fednet.errors.FednetError` gives ``other_error_status``.
    """
    from fednet.errors import ConfigError, FednetError

    try:
        return body()
    except Shutdown as e:
        print(f"{prog}: stopped by {e}; every process it started has ended", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; every process it started has ended", file=sys.stderr)
        return 130
    except (FednetError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        status = getattr(e, "status", None)
        if isinstance(status, int):
            return status
        bad_input = ConfigError | ValueError | TypeError | FileNotFoundError
        return 2 if isinstance(e, bad_input) else other_error_status
