"""``hybrec chat`` from the terminal, on the gift-shop store and index (none backend)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hybrec.cli import app
from hybrec.config import get_settings

pytestmark = pytest.mark.shared_data


@pytest.fixture
def shop_env(gift_shop, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HYBREC_VAR_DIR", str(gift_shop.settings.var_dir))
    monkeypatch.setenv("HYBREC_DATABASE_URL", gift_shop.settings.database_url)
    monkeypatch.setenv("HYBREC_LLM_BACKEND", "none")
    get_settings.cache_clear()
    yield gift_shop
    get_settings.cache_clear()


def test_chat_command_json(shop_env) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app, ["chat", "--user", "cli-user", "--json", "I need a gift card for a coffee lover, under $30"]
    )
    assert result.exit_code == 0, result.output
    turn = json.loads(result.stdout.strip().splitlines()[-1])
    assert turn["mode"] == "new_search" and turn["items"]
    assert all(i["price"] is not None and i["price"] <= 30 for i in turn["items"])
    follow = CliRunner().invoke(app, ["chat", "-u", "cli-user", "--session", turn["session_id"], "show me more"])
    assert follow.exit_code == 0 and "Here are some products" in follow.stdout


def test_chat_command_rejects_a_blank_message(shop_env) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["chat", "--user", "cli-user", "   "])
    assert result.exit_code == 1 and "empty" in result.output
