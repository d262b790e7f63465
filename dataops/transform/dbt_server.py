"""``dataops-dbt`` processes forked from a server that imported dbt once (docs/decisions/0107).

Each ``dataops-dbt`` imports dbt, about two CPU-seconds, before it does anything. A process that starts one
per build run (``dataops run``) pays it once; one that runs build after build in-process (a test worker runs
dozens) pays it every time. ``enable()`` makes such a process fork them instead from the standard library's
fork server (``multiprocessing``'s ``forkserver`` start method), which imports dbt and builds its schemas once,
then forks a child per command. The child is the same ``dataops-dbt`` (``dbt_child.forked`` runs its
``main``): its stdin, stdout and stderr are the pipes ``start`` gives it, its environment is the caller's at
the start, as a ``subprocess.Popen`` child's would be, and it is handled through the same interface as one.

Its parent is the fork server, which ends when the process that started it ends; the parent-death signal that
``dataops-dbt`` asks for then ends the children, as it ends a ``Popen`` child with the process that started it.
The platform's command-line processes do not enable it: they start one dbt per process, and the server would
import dbt all the same.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import IO, Any, Protocol

from dataops.transform.dbt_child import forked

PRELOAD = "dataops.transform.dbt_preload"  # what the server imports before it forks: dbt and its schemas


class DbtProcess(Protocol):
    """What the runner uses of a ``dataops-dbt`` process: ``subprocess.Popen``'s, or ``ForkedDbt``'s."""

    @property
    def pid(self) -> int: ...
    @property
    def args(self) -> Any: ...
    @property
    def stdin(self) -> IO[str] | None: ...
    @property
    def stdout(self) -> IO[str] | None: ...
    @property
    def returncode(self) -> int | Any: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


_context: ForkServerContext | None = None


def enable() -> None:
    """From now on, this process's ``dataops-dbt`` processes are forked from the server, which starts now (it
    imports dbt while the caller goes on)."""
    global _context
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    from multiprocessing import forkserver

    forkserver.ensure_running()
    _context = context


def enabled() -> bool:
    return _context is not None


class ForkedDbt:
    """A ``dataops-dbt`` forked from the server, handled as a ``subprocess.Popen`` of it started with text pipes
    for stdin and stdout, and stderr on stdout."""

    def __init__(self, context: ForkServerContext, args: list[str], cwd: Path | None) -> None:
        self.args = args
        self.returncode: int | None = None
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        theirs = (Connection(stdin_read, writable=False), Connection(stdout_write, readable=False))
        environment = dict(os.environ)
        self._process = context.Process(
            target=forked, args=(*theirs, args[1:], environment, str(cwd) if cwd else None), daemon=True
        )
        try:
            self._process.start()  # the server gets its own copies of the child's ends
        except BaseException:
            os.close(stdin_write)
            os.close(stdout_read)
            raise
        finally:
            for end in theirs:
                end.close()
        self.stdin: IO[str] | None = open(stdin_write, "w", encoding="utf-8")  # noqa: SIM115 - the child's pipe
        self.stdout: IO[str] | None = open(stdout_read, encoding="utf-8")  # noqa: SIM115 - closed by the reader
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(args: list[str], cwd: Path | None) -> ForkedDbt:
    """``dataops-dbt`` with ``args`` (the executable first), forked in ``cwd`` (None: the caller's)."""
    if _context is None:
        raise RuntimeError("the dbt fork server is not enabled in this process (dbt_server.enable())")
    return ForkedDbt(_context, args, cwd)
