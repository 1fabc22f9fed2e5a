"""Supervised children end with their parent: on stop, on SIGTERM, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fednet.deploy.procs import Supervisor, descendants, pids_alive

GRANDCHILD = (
    "import subprocess, time\n"
    "p = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
    "time.sleep(60)\n"
)


# the reaper finds what escaped by the marker in other processes' environments
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads environments")


def _gone(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pids_alive(pids)


def test_stop_ends_descendants_in_other_sessions():
    with Supervisor(grace_s=3) as sup:
        child = sup.spawn("parent", [sys.executable, "-c", GRANDCHILD], pipe=True)
        grandchild = int(child.proc.stdout.readline())
        assert grandchild in descendants(child.pid)
        sup.stop(child)
        assert _gone([child.pid, grandchild])
        assert sup.children == []


def _helper() -> subprocess.Popen[str]:
    code = textwrap.dedent(
        """
        import sys, time
        from fednet.deploy.procs import Shutdown, Supervisor
        try:
            with Supervisor(grace_s=3) as sup:
                child = sup.spawn("sleep", ["sleep", "60"])
                print(child.pid, flush=True)
                time.sleep(60)
        except Shutdown as e:
            sys.exit(128 + e.signum)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )


@LINUX
def test_children_die_when_the_command_is_killed():
    helper = _helper()
    try:
        child = int(helper.stdout.readline())
        os.kill(helper.pid, signal.SIGKILL)  # no Python clean-up runs
        helper.wait(timeout=10)
        assert _gone([child]), "the child outlived a SIGKILLed parent"
    finally:
        if pids_alive([helper.pid]):
            os.killpg(helper.pid, signal.SIGKILL)


def test_sigterm_stops_children_and_exits():
    helper = _helper()
    try:
        child = int(helper.stdout.readline())
        helper.send_signal(signal.SIGTERM)
        assert helper.wait(timeout=20) == 128 + signal.SIGTERM
        assert not pids_alive([child])
    finally:
        if pids_alive([helper.pid]):
            os.killpg(helper.pid, signal.SIGKILL)


def test_run_returns_status_and_output():
    with Supervisor() as sup:
        rc, out = sup.run("echo", [sys.executable, "-c", "print('hi'); raise SystemExit(3)"])
    assert (rc, out.strip()) == (3, "hi")


DAEMON = (
    "import os, sys\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "print(os.getpid(), flush=True)\n"
    "os.execvp('sleep', ['sleep', '60'])\n"
)


@LINUX
def test_a_daemonised_descendant_ends_after_the_command_is_killed():
    code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from fednet.deploy.procs import Supervisor
        with Supervisor(grace_s=2) as sup:
            child = sup.spawn("daemon", [sys.executable, "-c", {DAEMON!r}], pipe=True)
            print(child.proc.stdout.readline().strip(), flush=True)
            time.sleep(60)
        """
    )
    helper = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        daemon = int(helper.stdout.readline())
        assert daemon not in descendants(helper.pid)  # escaped the tree and the group
        os.kill(helper.pid, signal.SIGKILL)
        helper.wait(timeout=10)
        assert _gone([daemon], timeout=15), "the daemonised process outlived its supervisor"
    finally:
        if pids_alive([helper.pid]):
            os.killpg(helper.pid, signal.SIGKILL)


def test_stop_never_signals_a_process_that_reused_a_remembered_pid():
    """A descendant seen earlier may be long gone, its pid taken by someone else's process."""
    import psutil

    bystander = subprocess.Popen(["sleep", "60"])  # not ours to stop
    try:
        with Supervisor(grace_s=3) as sup:
            child = sup.spawn("quiet", [sys.executable, "-c", "import time; time.sleep(60)"])
            # what `poll()` remembered of a descendant whose pid the bystander now holds:
            # the same pid, an earlier start
            stale = psutil.Process(bystander.pid)
            stale._ident = (stale.pid, stale.create_time() - 100.0)
            child._known.add(stale)
            sup.stop(child)
        assert bystander.poll() is None, "a process that reused a remembered pid was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_never_kills_the_group_of_a_pid_reused_after_the_child_ended():
    """A child reaped long ago: its pid may now lead someone else's process group."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads its group
    try:
        with Supervisor(grace_s=3) as sup:
            child = sup.spawn("brief", [sys.executable, "-c", "pass"])
            child.proc.wait(timeout=30)
            assert child.poll() is not None  # ended and reaped
            child.proc.pid = bystander.pid  # what pid reuse would make of its number
            sup.stop(child)
        assert bystander.poll() is None, "stop killed the group of a reused pid"
    finally:
        bystander.kill()
        bystander.wait()
