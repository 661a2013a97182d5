"""``hybrec chat`` (one message from the terminal), ``hybrec serve chat`` (the chat API alone) and
``hybrec evaluate-chat`` (constraint satisfaction, Recall@5/NDCG@5 and stage latencies on real catalogs)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with

LLMChoice = typer.Option(
    None, "--llm", help="none (rules and templates) or embedded (llama.cpp); default: HYBREC_LLM_BACKEND."
)


def _with_llm(settings, llm: str | None):  # type: ignore[no-untyped-def]
    if llm is None:
        return settings
    if llm not in ("none", "embedded"):
        raise typer.BadParameter(f"--llm must be none or embedded, not {llm!r}")
    return settings.model_copy(update={"llm_backend": "none" if llm == "none" else "llama_cpp"})


@app.command("chat")
def chat_command(
    message: Annotated[str, typer.Argument(help="What the shopper says.")],
    user: Annotated[str, typer.Option("--user", "-u", help="The shopper's user id (new ids are new shoppers).")],
    session: Annotated[str | None, typer.Option("--session", help="Continue this chat session.")] = None,
    llm: str | None = LLMChoice,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole turn as JSON.")] = False,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Ask the shopping assistant one question; prints the reply and the products (or the turn as JSON)."""
    from hybrec.chat.engine import ChatEngine
    from hybrec.chat.memory import UnknownSession
    from hybrec.llm import LLMUnavailable
    from hybrec.vectors.base import CollectionNotFound

    settings = _with_llm(settings_with(database_url), llm)
    try:
        turn = ChatEngine.from_settings(settings).turn(user, message, session)
    except (ValueError, UnknownSession, CollectionNotFound, LLMUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if as_json:
        payload = {
            "session_id": turn.session_id,
            "reply": turn.reply,
            "mode": turn.mode,
            "filters": turn.filters,
            "items": [i.as_dict() for i in turn.items],
            "relaxed": turn.relaxed,
            "degraded": turn.degraded,
            "timings_ms": turn.timings_ms,
        }
        typer.echo(json.dumps(payload))
        return
    typer.echo(turn.reply)
    typer.echo(f"\n[session {turn.session_id} | mode {turn.mode} | filters {json.dumps(turn.filters)}]", err=True)


@app.command("evaluate-chat")
def evaluate_chat_command(
    llm: str | None = LLMChoice,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="gift_cards and/or industrial (default: both).")
    ] = None,
    max_items: Annotated[int, typer.Option("--max-items", min=10, help="Products per catalog (industrial).")] = 300,
    max_queries: Annotated[int, typer.Option("--max-queries", min=1, help="Queries per catalog.")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    replies: Annotated[
        bool, typer.Option("--replies", help="List every query with its reply and time in the report.")
    ] = False,
) -> None:
    """Evaluate the assistant on labelled queries generated from the real catalogs in ../shared/data."""
    from hybrec.chat.engine import ChatEngine
    from hybrec.chat.eval_data import DATASETS, prepare_catalog
    from hybrec.chat.evaluation import build_queries, evaluate_chat, load_catalog
    from hybrec.llm import LLMUnavailable, make_llm

    settings = _with_llm(settings_with(None), llm)
    names = dataset or list(DATASETS)
    report: dict[str, object] = {"llm": settings.llm_backend}
    try:
        # Built from the main settings, so the embedded weights stay under the usual var_dir.
        model = make_llm(settings)
    except LLMUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    for name in names:
        if name not in DATASETS:
            raise typer.BadParameter(f"--dataset must be one of {sorted(DATASETS)}, not {name!r}")
        catalog = prepare_catalog(name, settings, max_items, progress=not as_json)
        queries = build_queries(
            load_catalog(catalog.settings.database_url), catalog.product_type, max_queries=max_queries
        )
        engine = ChatEngine.from_settings(catalog.settings, llm=model)
        report[name] = evaluate_chat(engine, queries, progress=not as_json, keep_replies=replies).as_dict()
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(json.dumps(report, indent=2))
