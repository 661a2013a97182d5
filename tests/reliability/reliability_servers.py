"""Servers a reliability test owns and may stop and restart: Redis, PostgreSQL, Chroma, an LLM server, hybrec.

Each :class:`ServerProcess` is started on a fixed loopback port and data directory chosen once, so a restart brings
back the same server at the same address (with the same data, for PostgreSQL and Chroma): exactly what a client
that was never restarted sees when an operator restarts a dependency. The shared development servers are never
touched: other tests run against them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from servers import find_free_port, llama_server_command

POSTGRES_BIN = Path(os.environ.get("HYBREC_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
VENV_BIN = Path(sys.executable).parent
HYBREC = str(VENV_BIN / "hybrec")


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: ``GET url`` answers 200."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def tcp_ok(port: int) -> Callable[[], bool]:
    """A readiness probe: something accepts TCP connections on 127.0.0.1:``port``."""

    def probe() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    return probe


class ServerProcess:
    """One server process: :meth:`start` launches it and waits for ``ready``, :meth:`stop` ends it (SIGTERM, then
    SIGKILL after ``stop_timeout_s``); both may be called again, so a test can cycle it.

    Parameters
    ----------
    what : str
        Name in messages.
    command : sequence of str
        The server in the foreground (it must stay our child so that stopping it is ours to do).
    ready : callable
        Returns True once the server answers.
    log_path : Path
        stdout and stderr, appended across restarts (quoted when a start fails).
    env : dict, optional
        Environment of the process (default: ours).
    timeout_s : float
        How long a start may take.
    user : str, optional
        Run as this user (PostgreSQL refuses to run as root).
    cwd : Path, optional
        Working directory (hybrec reads a ``.env`` there).
    stop_signal : signal.Signals, default SIGTERM
        How :meth:`stop` asks the server to end.
    stop_timeout_s : float
        How long :meth:`stop` waits before SIGKILL.
    """

    def __init__(
        self,
        what: str,
        command: Sequence[str],
        ready: Callable[[], bool],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        timeout_s: float = 90.0,
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.what = what
        self.command = list(command)
        self.ready = ready
        self.log_path = log_path
        self.env = env
        self.timeout_s = timeout_s
        self.user = user
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.what} is already running")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, user=self.user, cwd=self.cwd
            )
        deadline = time.monotonic() + self.timeout_s
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.what} was not ready within {self.timeout_s:g} s: {self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """End the process and wait until its port is closed (a no-op when it is not running)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def redis_server(log_dir: Path) -> tuple[ServerProcess, str]:
    """A private redis-server without persistence (a restart empties it, as a cache restart may); and its URL."""
    port = find_free_port()
    command = [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return ServerProcess("redis-server", command, tcp_ok(port), log_dir / "redis.log"), f"redis://127.0.0.1:{port}/0"


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb in a temporary folder) on a free port.

    ``server`` runs ``postgres`` itself in the foreground; :meth:`ServerProcess.stop` sends SIGINT, PostgreSQL's
    fast shutdown (what ``pg_ctl stop`` does by default): clients are disconnected, committed transactions are on
    disk.
    """

    def __init__(self, log_dir: Path) -> None:
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user; else to us.
        user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="hybrec-reliability-pg-"))
        log = log_dir / "postgres.log"
        log.touch()
        if user is not None:
            shutil.chown(self.root, user, user)
            shutil.chown(log, user, user)
        self.data = self.root / "data"
        self.port = find_free_port()
        subprocess.run(
            [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            user=user,
            check=True,
            capture_output=True,
            cwd=self.root,
        )
        command = [
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.root}",
        ]
        self.server = ServerProcess(
            "postgres", command, self._accepts, log, user=user, cwd=self.root, stop_signal=signal.SIGINT
        )
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _accepts(self) -> bool:
        result = subprocess.run(
            [str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """A new database on this cluster; its SQLAlchemy URL."""
        from sqlalchemy import create_engine

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            admin.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def chroma_server(data_dir: Path, log_dir: Path) -> tuple[ServerProcess, str]:
    """``chroma run`` persisting under ``data_dir`` (kept across restarts); and its URL."""
    executable = VENV_BIN / "chroma"
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(executable), "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess("chroma run", command, http_ok(f"{url}/api/v2/heartbeat"), log_dir / "chroma.log"), url


def llama_server(gguf: Path, log_dir: Path, model_alias: str = "qwen-test") -> tuple[ServerProcess, str]:
    """llama-cpp-python's OpenAI-compatible server (one thread) on a fixed port; and its ``/v1`` URL."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = llama_server_command(gguf, port, model_alias=model_alias)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = ServerProcess("llama_cpp.server", command, http_ok(f"{url}/models"), log_dir / "llama.log", env=env)
    return server, url


def canned_llm_server(log_dir: Path) -> tuple[ServerProcess, str]:
    """The minimal OpenAI-compatible server of ``canned_llm_server.py`` on a fixed port; and its ``/v1`` URL."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, str(Path(__file__).with_name("canned_llm_server.py")), str(port)]
    return ServerProcess("canned LLM server", command, http_ok(f"{url}/models"), log_dir / "llm.log"), url


def hybrec_settings_env(**settings: object) -> dict[str, str]:
    """This process's environment plus ``HYBREC_<NAME>`` for each setting (None values left out)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBREC_")}
    env.update({f"HYBREC_{k.upper()}": str(v) for k, v in settings.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    # Tests run offline: models come from installed packages, and a hub lookup would only retry for seconds.
    env["HF_HUB_OFFLINE"] = "1"
    return env


def hybrec_service(component: str, env: dict[str, str], log_dir: Path, cwd: Path) -> tuple[ServerProcess, str]:
    """``hybrec serve <component>`` (reco or chat) on a free port, configured by ``env`` only (``cwd`` holds no
    ``.env``); and its base URL."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    command = [HYBREC, "serve", component, "--host", "127.0.0.1", "--port", str(port)]
    log = log_dir / f"{component}.log"
    return ServerProcess(f"hybrec serve {component}", command, http_ok(f"{url}/health"), log, env=env, cwd=cwd), url
