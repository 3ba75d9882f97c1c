"""Heap probes in a forked child: the program goes on while a copy of its heap is collected and counted.

At the end of a cycle the profiler reads the cheap probes (RSS, JAX) itself, looks for closures and instances to
sample among the objects that are new since the previous cycle (weak references, which must stay in the
profiler's process), and then ``os.fork()``\\ s. The child owns a copy-on-write snapshot of the heap as it was at
that instant: it runs the full ``gc.collect()``, the type census and every probe that needs the heap
(``needs_heap``), and writes the counts to a pipe. The parent does not wait: it folds the counts into that cycle's
record before the next cycle ends, or when the run stops.

The child's counts are those of a collected heap, so ``gc_objects`` and the census stay true although the
program's process itself is no longer collected at each cycle end (its RSS then includes garbage the program has
not collected yet, as it would without the tool).

Safety: a child that has not answered within :func:`child_timeout` seconds of its fork is killed, and the
profiler probes in process from then on, recording a ``probe_fallback`` event. The child ignores SIGINT (a Ctrl-C
meant for the program), dies with its parent (``PR_SET_PDEATHSIG`` on Linux), writes to no file of the program's
(its descriptors other than the pipe are closed, stdio goes to ``/dev/null``) and leaves with ``os._exit``.
:func:`unsafe_reason` says where forking is not offered at all (no ``fork``, macOS, a live GPU context).
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ChildFailed", "SnapshotChild", "child_timeout", "prepare", "unsafe_reason"]

#: Seconds a child has, from its fork, to deliver its counts (``CLOSURETRACE_SNAPSHOT_TIMEOUT`` overrides).
CHILD_TIMEOUT_S = 10.0
_TIMEOUT_ENV = "CLOSURETRACE_SNAPSHOT_TIMEOUT"
#: Test hook: the child sleeps this many seconds before its work (a child that hangs).
_HANG_ENV = "CLOSURETRACE_SNAPSHOT_TEST_HANG"
#: Test hook: called in the child before its work (in-process tests make it block).
child_hook: Callable[[], None] | None = None

_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1
_libc: Any = None
_prctl: Any = None


def child_timeout() -> float:
    """Seconds a snapshot child has to answer, counted from its fork."""
    try:
        value = float(os.environ.get(_TIMEOUT_ENV, ""))
    except ValueError:
        return CHILD_TIMEOUT_S
    return value if value > 0 else CHILD_TIMEOUT_S


def unsafe_reason() -> str | None:
    """Why probing in a forked child is not safe in this process now, or ``None`` where it is.

    Never imports or initialises a library to find out: it only looks at what the program already set up.
    """
    if not hasattr(os, "fork") or not hasattr(os, "waitpid"):
        return "this platform has no fork()"
    if sys.platform == "darwin":
        return "fork() is unsafe on macOS (Objective-C runtime)"
    if sys.platform != "linux":
        return f"forking is only used on Linux (this is {sys.platform})"
    return _gpu_context()


def _gpu_context() -> str | None:
    ctx_mod = sys.modules.get("tensorflow.python.eager.context")
    ctx = getattr(ctx_mod, "_context", None)
    if ctx is not None and getattr(ctx, "_context_handle", None) is not None:
        devices = getattr(ctx, "_logical_devices", None) or []
        if any(getattr(d, "device_type", "") == "GPU" for d in devices):
            return "TensorFlow has a GPU device (forking a CUDA context is unsafe)"
    torch: Any = sys.modules.get("torch")
    with contextlib.suppress(Exception):
        if torch is not None and torch.cuda.is_initialized():
            return "torch has initialised CUDA (forking a CUDA context is unsafe)"
    bridge = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(bridge, "_backends", None)
    if isinstance(backends, dict) and any(name != "cpu" for name in backends):
        return "JAX has a non-CPU backend (forking a device runtime is unsafe)"
    if isinstance(backends, dict) and backends:
        return "JAX's runtime is running (its threads make fork() prone to deadlock, as Python warns)"
    return _cuda_mapped()


_maps_checked_at = -1


def _cuda_mapped() -> str | None:
    """Whether the CUDA driver library is mapped (any library may have set up a context with it). The map is
    read again only when modules were imported since: a native library comes with one."""
    global _maps_checked_at
    n = len(sys.modules)
    if n == _maps_checked_at:
        return None
    try:
        with open("/proc/self/maps", "rb") as f:
            if b"/libcuda.so" in f.read():
                return "the CUDA driver is loaded in this process (forking a CUDA context is unsafe)"
    except OSError:
        pass
    _maps_checked_at = n
    return None


class ChildFailed(Exception):
    """A snapshot child did not deliver its counts; the message says why."""


class SnapshotChild:
    """One forked child computing ``work()``; :meth:`result` reads what it returned."""

    def __init__(self, pid: int, fd: int, started: float) -> None:
        self.pid = pid
        self.fd = fd
        self.started = started
        self.owner = os.getpid()
        self.done = False

    @classmethod
    def spawn(cls, work: Callable[[], dict[str, Any]]) -> SnapshotChild:
        """Fork a child that runs ``work()`` and sends its result (marshal-able data) through a pipe."""
        prepare()
        rfd, wfd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # room for a full census without blocking the child
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)  # type: ignore[attr-defined,unused-ignore]
        parent = os.getpid()
        # SIGINT/SIGTERM wait until the child has set its own handlers (it must never run the program's).
        # As plain ints: the child holds this while it counts, and gc untracks a tuple of ints.
        old = tuple(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS))
        try:
            pid = os.fork()
            if pid == 0:
                _child_main(wfd, rfd, parent, old, work)  # never returns
        except BaseException:
            os.close(rfd)
            os.close(wfd)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(wfd)
        return cls(pid, rfd, time.monotonic())

    def result(self, timeout: float) -> dict[str, Any]:
        """The child's result; waits until ``timeout`` seconds after its fork, then kills it (:exc:`ChildFailed`)."""
        if self.done:
            raise ChildFailed("the probe child was already read")
        deadline = self.started + timeout
        data = bytearray()
        try:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN | select.POLLHUP)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise ChildFailed(f"the probe child did not answer within {timeout:g} s; it was killed")
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        except BaseException:
            self.kill()
            raise
        status = self._reap(deadline)
        self.close()
        try:
            out = marshal.loads(bytes(data))
        except (ValueError, EOFError, TypeError):
            out = None
        if not isinstance(out, dict):
            raise ChildFailed(f"the probe child ended without its counts ({_describe(status)})")
        if "error" in out:
            raise ChildFailed(f"the probe child failed: {out['error']}")
        return out

    def _reap(self, deadline: float) -> int | None:
        # The pipe closed: the child is leaving. Give it until the deadline (at least a second), then kill it.
        end = max(deadline, time.monotonic() + 1.0)
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # the program reaped it (os.wait(), a SIGCHLD handler)
                return None
            if pid:
                return status
            if time.monotonic() > end:
                self.kill()
                return None
            time.sleep(0.002)

    def kill(self) -> None:
        """Kill and reap the child (only ever this child, and only from the process that forked it)."""
        if self.done:
            return
        if os.getpid() == self.owner:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self.close()

    def close(self) -> None:
        if not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                os.close(self.fd)

    @property
    def ours(self) -> bool:
        """False in a process the program forked after this child was made: it must not read nor reap it."""
        return os.getpid() == self.owner


def _describe(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def prepare() -> None:
    """Load what a fork needs (libc's ``prctl``) ahead of the first cycle end."""
    global _libc, _prctl
    if _libc is None and sys.platform == "linux":
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
            _prctl = _libc.prctl  # looked up here: the child must make no objects of its own before it counts
        except (OSError, ImportError, AttributeError):
            _libc = False


def _child_main(wfd: int, rfd: int, parent: int, mask: Any, work: Callable[[], dict[str, Any]]) -> None:
    """The child: never returns, never runs the program's exit handlers."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the program; the parent stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            raise SystemExit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(rfd)
        wfd = _isolate(wfd)
        hang = os.environ.get(_HANG_ENV)
        if hang:
            time.sleep(float(hang))
        if child_hook is not None:
            child_hook()
        try:
            payload = marshal.dumps(work())
        except Exception as exc:
            payload = marshal.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]})
        view = memoryview(payload)
        while view:
            view = view[os.write(wfd, view):]
        status = 0
    except BaseException:
        status = 1
    finally:
        # os._exit may be wrapped by the runner (it warns there); the real one, with no clean-up of any kind.
        real_exit = getattr(os._exit, "__wrapped__", os._exit)
        real_exit(status)


def _isolate(wfd: int) -> int:
    """Close every descriptor but the pipe and point stdio at /dev/null: a finalizer run by the child's
    collection (a file flushed, a socket shut down) must not act on the program's files."""
    if wfd < 3:
        wfd = fcntl.fcntl(wfd, fcntl.F_DUPFD, 3)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, max(wfd + 2, _max_fd()))
    return wfd


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536
