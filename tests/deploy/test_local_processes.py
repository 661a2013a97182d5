"""The supervisor behind ``scripts/run-production-local``: process groups, readiness, failures, clean stops, the
environment it gives the hybrec processes, and its options (no hybrec server involved)."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from hybrec.production_local.options import parse_args
from hybrec.production_local.processes import ProcessGroup, ServiceFailed
from hybrec.production_local.runner import Endpoints, hybrec_environment
from hybrec.production_local.stores import display_url, ensure_postgres_database
from servers import POSTGRES_URL, drop_postgres_database

PY = sys.executable


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def group(tmp_path: Path):  # type: ignore[no-untyped-def]
    processes = ProcessGroup(tmp_path / "logs", dict(os.environ), poll_s=0.05)
    yield processes
    processes.stop_all(grace_s=2)


def test_one_shot_success_and_failure_quote_the_log(group: ProcessGroup) -> None:
    ok = group.start("ok", [PY, "-c", "print('loaded')"], one_shot=True)
    group.wait_done(ok, timeout_s=30)
    header, output = (group.log_dir / "ok.log").read_text().splitlines()
    assert header.startswith("=== ") and header.endswith("print('loaded')") and output == "loaded"

    bad = group.start("bad", [PY, "-c", "import sys; print('no such dataset'); sys.exit(3)"], one_shot=True)
    with pytest.raises(ServiceFailed, match=r"(?s)bad failed: it exited with status 3.*no such dataset"):
        group.wait_done(bad, timeout_s=30)


def test_waiting_fails_when_a_service_exits_or_never_gets_ready(group: ProcessGroup, tmp_path: Path) -> None:
    crashing = group.start("crashing", [PY, "-c", "raise SystemExit('port in use')"])
    with pytest.raises(ServiceFailed, match=r"(?s)crashing exited with status 1 before it was ready.*port in use"):
        group.wait_ready(crashing, lambda: False, timeout_s=30)

    group.services.clear()  # forget the crashed one: check_running would report it first
    slow = group.start("slow", [PY, "-c", "import time; time.sleep(60)"])
    with pytest.raises(ServiceFailed, match=r"slow was not ready within 0\.3 s"):
        group.wait_ready(slow, lambda: False, timeout_s=0.3)

    marker = tmp_path / "ready"
    starting = group.start(
        "starting", [PY, "-c", f"import time, pathlib; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"]
    )
    group.wait_ready(starting, marker.exists, timeout_s=30)
    stop_now = group.start("stop_now", [PY, "-c", "import time; time.sleep(60)"])
    group.wait_ready(stop_now, lambda: False, timeout_s=30, stop=lambda: True)  # a signal arrived: no error


def test_a_long_running_service_that_dies_is_reported(group: ProcessGroup) -> None:
    group.start("done", [PY, "-c", "pass"], one_shot=True)
    dying = group.start("dying", [PY, "-c", "print('out of memory')"])
    dying.process.wait(timeout=30)
    with pytest.raises(ServiceFailed, match=r"(?s)dying exited with status 0.*out of memory"):
        group.check_running()

    group.services.remove(dying)
    crashed = group.start("crashed", [PY, "-c", "import time; time.sleep(60)"])
    os.kill(crashed.pid, signal.SIGILL)  # what a native library does on an instruction the CPU lacks
    crashed.process.wait(timeout=30)
    with pytest.raises(ServiceFailed, match="crashed was killed by SIGILL"):
        group.check_running()


def test_stop_all_ends_every_process_of_every_group(group: ProcessGroup) -> None:
    # A server that forks a worker, and one that ignores SIGTERM: neither may survive.
    forking = group.start("forking", ["sh", "-c", f"{PY} -c 'import time; time.sleep(300)' & wait"])
    stubborn = group.start(
        "stubborn", [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"]
    )
    deadline = time.monotonic() + 30
    while not psutil.Process(forking.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = psutil.Process(forking.pid).children()[0].pid
    time.sleep(0.5)  # let the stubborn one install its handler
    group.stop_all(grace_s=1)
    # SIGKILL is delivered asynchronously: an orphaned worker may take a moment to exit after killpg returns.
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in (forking.pid, worker, stubborn.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in (forking.pid, worker, stubborn.pid))
    assert stubborn.process.returncode == -signal.SIGKILL and forking.process.returncode == -signal.SIGTERM


def _options(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return parse_args(["--run-dir", str(tmp_path / "run"), "--dataset", "demo", *extra])


def test_environment_wires_every_hybrec_process_to_the_topology(tmp_path: Path) -> None:
    options = _options(tmp_path)
    endpoints = Endpoints(
        "postgresql+psycopg://u:pw@db/x",
        "redis://127.0.0.1:7/0",
        "http://127.0.0.1:9",
        "http://127.0.0.1:5/v1",
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8001",
    )
    env = hybrec_environment(options, endpoints, {"PATH": "/bin", "HYBREC_LLM_TIMEOUT_S": "120"})
    assert env["HYBREC_DATABASE_URL"] == endpoints.database_url
    assert (env["HYBREC_REDIS_URL"], env["HYBREC_CHROMA_URL"]) == (endpoints.redis_url, endpoints.chroma_url)
    assert env["HYBREC_VAR_DIR"] == str(tmp_path / "run" / "var")  # one artifact folder for trainer and engines
    assert (env["HYBREC_LLM_BACKEND"], env["HYBREC_LLM_BASE_URL"]) == ("openai", endpoints.llm_base_url)
    assert env["HYBREC_LLM_JSON_MODE"] == "json_object" and env["HYBREC_DATASET"] == "demo"
    assert env["PATH"] == "/bin" and env["HYBREC_LLM_TIMEOUT_S"] == "120"  # the caller's own settings carry over

    rules = hybrec_environment(_options(tmp_path, "--llm", "none"), replace(endpoints, llm_base_url=None), {})
    assert rules["HYBREC_LLM_BACKEND"] == "none" and "HYBREC_LLM_BASE_URL" not in rules


def test_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = _options(tmp_path, "--reco-port", "9100", "--chat-port", "9101", "--llm", "none")
    assert (options.reco_port, options.chat_port, options.llm) == (9100, 9101, "none")
    assert options.run_dir.is_absolute()
    for bad, message in (
        (["--reco-port", "9000", "--chat-port", "9000"], "must differ"),
        (["--chat-port", "70000"], "70000 is not a TCP port"),
        (["--llm", "gpt"], "invalid choice: 'gpt'"),
        (["--ready-timeout", "0"], "must be positive"),
    ):
        with pytest.raises(SystemExit) as exited:
            _options(tmp_path, *bad)
        assert exited.value.code == 2 and message in capsys.readouterr().err


def test_display_url_hides_passwords() -> None:
    assert display_url("postgresql+psycopg://app:s3cret@db:5432/shop") == "postgresql+psycopg://app:***@db:5432/shop"
    assert display_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert display_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


@pytest.mark.integration
def test_the_local_database_is_created_once() -> None:
    name = f"hybrec_local_test_{os.getpid()}"
    url = ensure_postgres_database(POSTGRES_URL, name)
    try:
        assert url.endswith(f"/{name}") and ensure_postgres_database(POSTGRES_URL, name) == url
    finally:
        drop_postgres_database(url)
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        ensure_postgres_database(POSTGRES_URL, 'x"; DROP DATABASE test; --')
