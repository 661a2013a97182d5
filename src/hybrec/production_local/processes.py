"""Start, watch and stop the processes of a local production topology.

Each process runs in its own session (process group), so a Ctrl-C in the terminal reaches only the supervisor, which
then stops the services in the reverse order of their start (engines before the stores they use), and so a service
that forks (a server with workers) is stopped as a whole: SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 3000


class ServiceFailed(RuntimeError):
    """A service exited with an error, exited when it should have kept running, or never got ready."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``GET url`` answers 200 right now (a refused connection or any other status is False)."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log file, for an error message ("" when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def describe_exit(status: int) -> str:
    """``exited with status 3``, or ``was killed by SIGILL`` for a negative status (a signal, as Popen reports it)."""
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


@dataclass
class Service:
    """One process of the topology and its log file."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    one_shot: bool = False
    # Set once the group has been cleaned up after the leader exited: its id may be reused later, never signal it.
    cleaned: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def failure(self, what: str) -> ServiceFailed:
        return ServiceFailed(f"{self.name} {what} (log {self.log_path}):\n{log_tail(self.log_path)}")


@dataclass
class ProcessGroup:
    """The services started so far, in start order; :meth:`stop_all` stops them newest first.

    Parameters
    ----------
    log_dir : Path
        Each service writes stdout and stderr to ``<log_dir>/<name>.log``.
    env : mapping
        The environment every service starts with (a service may add to it).
    poll_s : float, default 0.25
        How often readiness and completion are checked.
    """

    log_dir: Path
    env: Mapping[str, str]
    poll_s: float = 0.25
    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        one_shot: bool = False,
        cwd: Path | None = None,
    ) -> Service:
        """Start ``command`` in its own process group, output appended to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            # Logs are appended run after run (a run folder is reused): a header says where each run starts.
            log_file.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        service = Service(name, list(command), log_path, process, one_shot)
        self.services.append(service)
        log.info("started %s (pid %d): %s", name, process.pid, " ".join(command))
        return service

    def wait_ready(
        self, service: Service, ready: Callable[[], bool], *, timeout_s: float, stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Block until ``ready()`` is true; raise :class:`ServiceFailed` when the service exits first or
        ``timeout_s`` passes. Returns early (without error) when ``stop()`` becomes true (a signal arrived)."""
        deadline = time.monotonic() + timeout_s
        while not stop():
            if ready():
                log.info("%s is ready", service.name)
                return
            if not service.running():
                raise service.failure(f"{describe_exit(service.process.returncode)} before it was ready")
            if time.monotonic() > deadline:
                raise service.failure(f"was not ready within {timeout_s:g} s")
            self.check_running()
            time.sleep(self.poll_s)

    def wait_done(self, service: Service, *, timeout_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Block until a one-shot ``service`` exits; raise :class:`ServiceFailed` on a non-zero status or timeout."""
        deadline = time.monotonic() + timeout_s
        while not stop():
            status = service.process.poll()
            if status is not None:
                _clean_up(service)
                if status != 0:
                    raise service.failure(f"failed: it {describe_exit(status)}")
                log.info("%s finished", service.name)
                return
            if time.monotonic() > deadline:
                raise service.failure(f"did not finish within {timeout_s:g} s")
            self.check_running()
            time.sleep(self.poll_s)

    def check_running(self) -> None:
        """Raise :class:`ServiceFailed` when a long-running service has exited, or a one-shot failed."""
        for service in self.services:
            status = service.process.poll()
            if status is None:
                continue
            if not service.one_shot:
                raise service.failure(describe_exit(status))
            _clean_up(service)
            if status != 0:
                raise service.failure(f"failed: it {describe_exit(status)}")

    def pids(self) -> dict[str, int]:
        return {service.name: service.pid for service in self.services}

    def stop_all(self, grace_s: float = 15.0) -> None:
        """Stop every service still running, newest first: SIGTERM to its group, SIGKILL after ``grace_s``."""
        for service in reversed(self.services):
            _stop_group(service, grace_s)


def _clean_up(service: Service) -> None:
    """Kill what a finished one-shot may have left in its group, once, while its id cannot have been reused."""
    if not service.cleaned:
        _signal_group(service.pid, signal.SIGKILL)
        service.cleaned = True


def _stop_group(service: Service, grace_s: float) -> None:
    if service.cleaned:
        return
    process = service.process
    if process.poll() is None:
        log.info("stopping %s (pid %d)", service.name, process.pid)
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %g s: killing it", service.name, grace_s)
    # The group may outlive its leader (a child it forked); nothing of it may survive the supervisor.
    _signal_group(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    # ProcessLookupError: the group is gone already; PermissionError: its id now belongs to a process not ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
