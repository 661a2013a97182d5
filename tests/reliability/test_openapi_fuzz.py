"""Schemathesis over both OpenAPI schemas: ``hybrec serve reco`` and ``hybrec serve chat``, each a real uvicorn
server on loopback over a PostgreSQL store with the small synthetic shop trained and indexed. Generated requests,
valid and invalid, must never get a 5xx (the ``not_a_server_error`` check).

The number of examples per operation is bounded (``HYBREC_FUZZ_EXAMPLES``, default 25, valid and again invalid
requests) so both schemas take a minute or two; derandomized, so a failure reproduces. Needs PostgreSQL at
HYBREC_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from load_deployment import prepare_shop
from reliability_servers import ServerProcess, hybrec_service, hybrec_settings_env
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from reco_support import make_settings
from servers import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("HYBREC_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# POST /v1/train starts a background training run per call: fuzzing it would train dozens of times (its 202 and
# validation are covered by tests/api).
SKIPPED = {("POST", "/v1/train")}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Base URLs of the reco and the chat service, both running on one prepared store."""
    root = tmp_path_factory.mktemp("fuzz")
    database_url = create_postgres_database("hybrec_fuzz")
    running: list[ServerProcess] = []
    try:
        shop = make_settings(root / "shop", database_url, llm_backend="none")
        prepare_shop(shop, n_users=150, n_items=100)
        env = hybrec_settings_env(
            database_url=database_url, var_dir=shop.var_dir, als_params_path=shop.als_params_path, llm_backend="none"
        )
        urls = {}
        for component in ("reco", "chat"):
            server, urls[component] = hybrec_service(component, env, root, root)
            server.start()
            running.append(server)
        # The first turn loads the embedder and the reranker: slow once, and not what the fuzzing is about.
        warm = httpx.post(f"{urls['chat']}/v1/chat", json={"user_id": "warm-up", "message": "headphones"}, timeout=300)
        assert warm.status_code == 200, warm.text
        yield urls
        for server in running:  # a crash under fuzzing would be a server error too
            assert server.alive(), server.tail()
            assert "unhandled error" not in server.tail(500_000), server.tail()
    finally:
        for server in running:
            server.stop()
        drop_postgres_database(database_url)


def _server_errors(base_url: str, mode: GenerationMode) -> list[str]:
    """Fuzz every operation of the schema served at ``base_url``; one line per operation that got a 5xx."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        operations += 1

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=base_url, checks=[not_a_server_error])

        try:
            fuzz()
        except Unsatisfiable:  # nothing invalid to send (an operation without parameters or body)
            continue
        except Exception as exc:  # the falsifying example and its reproduction, per operation
            failures.append(f"{operation.label}: {exc}")
    assert operations > 3, f"only {operations} operations in the schema at {base_url}"
    return failures


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("service", ["reco", "chat"])
def test_api_never_answers_a_server_error(services: dict[str, str], service: str, mode: GenerationMode) -> None:
    failures = _server_errors(services[service], mode)
    assert not failures, "\n\n".join(failures)


def test_activating_a_version_beyond_the_store_range_is_a_422(services: dict[str, str]) -> None:
    # Found by the fuzzing: PostgreSQL rejected the id as out of range for INTEGER, and the API answered 500.
    assert httpx.post(f"{services['reco']}/v1/models/2147483648/activate", timeout=30).status_code == 422
    assert httpx.post(f"{services['reco']}/v1/models/2147483647/activate", timeout=30).status_code == 404
