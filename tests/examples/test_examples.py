"""examples/recommend.py and examples/chat.py, run as a user runs them, against a real ``hybrec serve``.

The server is a subprocess on a free loopback port serving a copy of the gift-card shop (store + product index) with
a freshly trained model, the rule-based LLM (``none``) and embedded backends.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_support import chat_embedder, gift_shop  # noqa: F401
from hybrec.store.engine import session_scope
from hybrec.store.queries import store_counts
from hybrec.training.job import run_training
from reco_support import make_settings
from servers import REPO_ROOT, find_free_port, running_server

pytestmark = pytest.mark.shared_data

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def server(gift_shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]  # noqa: F811
    """``hybrec serve`` on a trained copy of the gift shop; yields its base URL."""
    root = tmp_path_factory.mktemp("examples")
    settings = make_settings(root, llm_backend="none")
    source = Path(gift_shop.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(source) as src, sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as dst:
        src.backup(dst)
    shutil.copytree(gift_shop.settings.var_dir / "index", settings.var_dir / "index")
    assert run_training(settings).status == "published"

    port = find_free_port()
    env = {
        **os.environ,
        "HYBREC_DATABASE_URL": settings.database_url,
        "HYBREC_VAR_DIR": str(settings.var_dir),
        "HYBREC_ALS_PARAMS_PATH": str(settings.als_params_path),
        "HYBREC_LLM_BACKEND": "none",
        "HYBREC_TRAIN_INTERVAL_MINUTES": "600",
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("HYBREC_REDIS_URL", "HYBREC_CHROMA_URL", "HYBREC_API_KEYS"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "hybrec"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running_server(command, f"{base}/ready", root / "serve.log", what="hybrec serve", timeout_s=120, env=env):
        yield base


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _a_trained_user(gift_shop) -> str:  # type: ignore[no-untyped-def]  # noqa: F811
    with sqlite3.connect(gift_shop.settings.database_url.removeprefix("sqlite:///")) as db:
        (user,) = db.execute(
            "SELECT u.external_id FROM users u JOIN interactions i ON i.user_id = u.id "
            "GROUP BY u.id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return str(user)


def test_recommend_example_shows_the_list_react_to_a_click(server: str, gift_shop) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = _a_trained_user(gift_shop)
    result = _run("recommend.py", "--base-url", server, "--user", user, "--n", "5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Recommendations for {user} (model v1, strategy trained)" in out
    assert "Clicked" in out and "stored 1 event(s)" in out
    assert "right after the click (model v1, strategy folded_in)" in out
    assert len(re.findall(r"^\s+\d+\. ", out, flags=re.M)) == 10  # five before, five after


def test_recommend_example_with_a_price_ceiling(server: str) -> None:
    result = _run("recommend.py", "--base-url", server, "--user", "brand-new-shopper", "--max-price", "30", "--n", "5")
    assert result.returncode == 0, result.stderr
    assert "strategy cold_start_popular" in result.stdout
    prices = [float(p) for p in re.findall(r"\$(\d+\.\d\d)", result.stdout)]
    assert prices and all(p <= 30 for p in prices)


def test_chat_example_streams_an_answer_with_items_under_the_ceiling(server: str) -> None:
    result = _run("chat.py", "--base-url", server, "--user", "example-user", "a gift card for a coffee lover under $30")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    items = [line for line in lines if line.lstrip().startswith("•")]
    assert lines and not lines[0].lstrip().startswith("•")  # the streamed reply comes first
    assert items
    for line in items:
        match = re.search(r"\$(\d+\.\d\d)", line)
        assert match is not None and float(match.group(1)) <= 30, line


def test_examples_name_an_unreachable_server() -> None:
    url = f"http://127.0.0.1:{find_free_port()}"
    for script, args in (("recommend.py", ["--user", "u"]), ("chat.py", ["--user", "u", "hello"])):
        result = _run(script, "--base-url", url, *args)
        assert result.returncode == 1
        assert f"cannot reach {url}" in result.stderr


def test_examples_report_an_http_error(server: str) -> None:
    result = _run("recommend.py", "--base-url", server, "--user", "u", "--n", "0")
    assert result.returncode == 1
    assert "error: 422" in result.stderr


def test_store_was_not_modified_by_copying(gift_shop) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # The examples' server works on a copy: the shared gift shop keeps no model version of its own.
    with session_scope(gift_shop.settings.database_url) as session:
        assert store_counts(session)["model_versions"] == 0


def test_served_responses_name_no_server_software(server: str) -> None:
    import httpx

    response = httpx.get(f"{server}/health", timeout=10)
    assert response.status_code == 200 and "server" not in response.headers
