"""The conversational engine: one shopper message in, a grounded answer about real catalog products out.

Per turn (:meth:`ChatEngine.turn`; :meth:`ChatEngine.stream_turn` yields the products first, then the reply):

1. **history** — load the session (new shopper and new session created on first contact);
2. **understanding** — route and extract filters (:mod:`hybrec.chat.understanding`);
3. **retrieval** — :class:`~hybrec.retrieval.search.ProductSearch` with the filters inside the search, cross-encoder
   rerank and the shopper's ALS vector; nothing found → :mod:`hybrec.chat.relaxation`;
4. **generation** — the LLM answers about those products only (with review snippets); mentions of other products
   are removed or the answer regenerated once (:mod:`hybrec.chat.grounding`); any LLM failure gives a templated
   answer, never an exception;
5. **store** — message, reply, mode, item ids, category and filters; long sessions are summarised.

Messages longer than ``max_message_chars`` (default 2000) are truncated, and the reply says so.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrec.chat import prompts
from hybrec.chat.grounding import (
    Grounding,
    asks_only_for_instructions,
    ends_sentence,
    ground_reply,
    leaks_system_prompt,
    sentence_is_grounded,
    without_unfinished_sentence,
)
from hybrec.chat.memory import RECENT_TURNS, SUMMARY_AFTER, ChatStore, SessionContext, plain_summary
from hybrec.chat.reasons import follow_up_reason, search_reasons
from hybrec.chat.relaxation import satisfies, search_with_relaxation
from hybrec.chat.rules import CatalogVocabulary
from hybrec.chat.schemas import ChatItem, ChatTurn, Personaliser, QueryFilters
from hybrec.chat.understanding import Understander, Understanding
from hybrec.llm import LLM, LLMError
from hybrec.llm.rules import RuleBasedLLM
from hybrec.retrieval.search import ProductSearch, ScoredProduct
from hybrec.vectors.base import CollectionNotFound
from hybrec.vectors.filters import Filter

if TYPE_CHECKING:
    from hybrec.config import Settings

logger = logging.getLogger(__name__)

UserVectors = Callable[[str], "np.ndarray | None"]


ChatEvent = tuple[str, Any]
#: Tokens of an answer: two or three short sentences. Long catalog names make answers long (the 1.5B model repeats
#: 60-character titles), and each token costs 75-130 ms on a CPU; a reply cut here ends on its last whole sentence.
ANSWER_MAX_TOKENS = 96
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CHUNK = re.compile(r"\S+\s*|\s+")


@dataclass(slots=True)
class _Plan:
    """Everything decided before generation."""

    context: SessionContext
    message: str
    understanding: Understanding
    items: list[ChatItem]
    applied: QueryFilters
    relaxed: list[str] = field(default_factory=list)
    fixed_reply: str | None = None
    snippets: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0


def _item(product: ScoredProduct, reason: str) -> ChatItem:
    return ChatItem(
        product.item_id,
        product.name,
        product.brand,
        product.price,
        product.avg_rating,
        round(product.score, 6),
        product.category,
        reason,
    )


class ChatEngine:
    """The shopping assistant.

    Parameters
    ----------
    search : ProductSearch
        Product retrieval (filters, rerank, personalisation).
    llm : LLM
        Any backend; ``none`` (:class:`~hybrec.llm.rules.RuleBasedLLM`) answers with rules and templates.
    store : ChatStore
        Chat history and catalog reads.
    user_vectors : callable, optional
        ``user_vectors(user_id) -> ALS vector or None`` (None: a new user, ranked by relevance alone).
    n_items : int, default 5
        Products shown per turn.
    max_message_chars : int, default 2000
        Longer messages are truncated with a notice.
    vocabulary_ttl_s : float, default 300
        How long the catalog's brand/category list is cached.
    """

    def __init__(
        self,
        search: ProductSearch,
        llm: LLM,
        store: ChatStore,
        *,
        user_vectors: UserVectors | None = None,
        n_items: int = 5,
        max_message_chars: int = 2000,
        vocabulary_ttl_s: float = 300.0,
    ) -> None:
        if n_items < 1 or max_message_chars < 1:
            raise ValueError("n_items and max_message_chars must be >= 1")
        self.search = search
        self.llm = llm
        self.store = store
        self.user_vectors = user_vectors
        self.n_items = min(n_items, search.candidates)
        self.max_message_chars = max_message_chars
        self.vocabulary_ttl_s = vocabulary_ttl_s
        self._vocabulary: CatalogVocabulary | None = None
        self._vocabulary_at = -float("inf")
        self.understander = Understander(llm, self.vocabulary)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        llm: LLM | None = None,
        search: ProductSearch | None = None,
        personaliser: Personaliser | None = None,
        **kwargs: Any,
    ) -> ChatEngine:
        """An engine on ``settings``' store, product index and LLM backend (or the ones given); with a
        ``personaliser`` (the collaborative engine) the ranking blends in the shopper's ALS scores."""
        from hybrec.llm import make_llm

        scorer = personaliser.score_items if personaliser is not None else None
        return cls(
            search or ProductSearch.from_settings(settings, item_scorer=scorer),
            llm or make_llm(settings),
            ChatStore(settings.database_url),
            user_vectors=personaliser.user_vector if personaliser is not None else None,
            **kwargs,
        )

    def warm_up(self) -> float:
        """Run one product search and read the routing instruction once, outside any session (nothing is stored);
        returns the seconds taken.

        The first turn after a start reads the whole understanding instruction (~270 tokens, 10-20 s for the
        embedded 1.5B model on a CPU); with the embedded model's prompt cache (:mod:`hybrec.llm.prefix_cache`) every
        later turn reuses it, so a warm-up moves that cost from the first shopper to the start. The answer prompt
        opens with the same instruction every turn too: it is read once here as well (one token generated), which
        took the first industrial answer from ~16 s to the others' ~11 s.
        """
        started = time.perf_counter()
        try:  # the first search builds the lexical index and runs the embedder and reranker once
            self.search.search("gift", n=1)
        except CollectionNotFound:
            logger.warning("no product index yet (run `hybrec index catalog`); warm-up skips the search")
        self.understander.understand("hello")
        if not isinstance(self.llm, RuleBasedLLM):
            try:
                self.llm.complete(prompts.answer_messages("hello", "small_talk", [], {}, [], None, []), max_tokens=1)
            except LLMError as exc:  # the first real answer reads it instead
                logger.warning("warm-up could not read the answer instruction: %s", exc)
        return time.perf_counter() - started

    def vocabulary(self) -> CatalogVocabulary:
        """The catalog's brands and categories, re-read every ``vocabulary_ttl_s`` seconds."""
        if self._vocabulary is None or time.monotonic() - self._vocabulary_at > self.vocabulary_ttl_s:
            self._vocabulary = self.store.vocabulary()
            self._vocabulary_at = time.monotonic()
        return self._vocabulary

    # --- public API ----------------------------------------------------------------------------------------------
    def turn(self, user_id: str, message: str, session_id: str | None = None) -> ChatTurn:
        """Answer one message. Raises ``ValueError`` for an empty message or user id and
        :class:`~hybrec.chat.memory.UnknownSession` for a session id that is not the user's."""
        plan = self._plan(user_id, message, session_id)
        clock = time.perf_counter()
        reply, degraded = self._generate(plan)
        plan.timings["generation"] = _ms(clock)
        return self._finish(plan, reply, degraded)

    def stream_turn(self, user_id: str, message: str, session_id: str | None = None) -> Iterator[ChatEvent]:
        """Yield ``("items", {...})`` first, then ``("token", text)`` chunks, then ``("done", ChatTurn)``.

        Validation errors are raised before the first event."""
        plan = self._plan(user_id, message, session_id)
        return self._stream(plan)

    # --- planning ------------------------------------------------------------------------------------------------
    def _plan(self, user_id: str, message: str, session_id: str | None) -> _Plan:
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user_id must be a non-empty string")
        if not isinstance(message, str) or not message.strip():
            raise ValueError("message must not be empty or whitespace")
        started = time.perf_counter()
        notices: list[str] = []
        text = message.strip()
        if len(text) > self.max_message_chars:
            notices.append(
                f"Your message was {len(text)} characters long; I read only the first {self.max_message_chars}."
            )
            text = text[: self.max_message_chars]
        clock = time.perf_counter()
        context = self.store.open_session(user_id.strip(), session_id)
        timings = {"history": _ms(clock)}
        clock = time.perf_counter()
        last = context.last_with_items
        shown_names = [i.name for i in self.store.items(last.item_ids)] if last else []
        if asks_only_for_instructions(text):
            understanding = Understanding("small_talk", QueryFilters(), notices)
            fixed: str | None = prompts.refusal_reply()
        else:
            understanding = self.understander.understand(text, context.recent, context.summary, shown_names)
            understanding.notices[:0] = notices
            fixed = None
        timings["understanding"] = _ms(clock)
        plan = _Plan(context, text, understanding, [], understanding.filters, fixed_reply=fixed, started=started)
        plan.timings = timings
        clock = time.perf_counter()
        if understanding.mode in ("new_search", "more_of_category"):
            search = context.last_search
            self._retrieve(plan, user_id.strip(), search.filters if search else {})
        elif understanding.mode == "follow_up" and last is not None:
            self._follow_up(plan, last.item_ids)
        timings["retrieval"] = _ms(clock)
        if plan.items and fixed is None and not isinstance(self.llm, RuleBasedLLM):
            try:
                plan.snippets = self.store.review_snippets([i.item_id for i in plan.items], per_item=1)
            except Exception as exc:  # snippets are a nicety; never fail the turn on them
                logger.warning("could not read review snippets: %s", exc)
        return plan

    def _retrieve(self, plan: _Plan, user_id: str, previous: dict[str, Any]) -> None:
        filters = plan.understanding.filters
        exclude: set[str] = set()
        if plan.understanding.mode == "more_of_category":
            # More of the same: the previous request's constraints, overridden by anything stated now.
            merged = {k: v for k, v in previous.items() if k in QueryFilters.model_fields}
            merged.update({k: v for k, v in filters.model_dump().items() if v is not None})
            filters = QueryFilters.model_validate(merged)
            exclude = plan.context.shown_ids
        query = filters.product or plan.message
        vector = self._user_vector(user_id, plan.understanding.degraded)
        stage_ms: dict[str, float] = {}

        def run(where: Filter | None) -> list[ScoredProduct]:
            result = self.search.search_with_timings(query, where, self.n_items, vector, exclude_ids=exclude or None)
            for stage, ms in result.timings_ms.items():
                stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
            return result.products

        found = search_with_relaxation(run, filters)
        reasons = search_reasons(found.products, found.applied)
        plan.items = [_item(p, r) for p, r in zip(found.products, reasons, strict=True)]
        plan.applied = found.applied
        plan.relaxed = found.relaxed
        plan.timings.update({f"retrieval_{k}": v for k, v in stage_ms.items()})

    def _follow_up(self, plan: _Plan, item_ids: list[str]) -> None:
        shown = self.store.items(item_ids)
        constraints = plan.understanding.filters.model_copy(update={"product": None, "category": None})
        kept = [i for i in shown if satisfies(i, constraints)]
        if constraints.constraints() and not kept:
            plan.understanding.notices.append("None of the products I showed meets that; here they are again.")
            kept, constraints = shown, QueryFilters()
        lowered = plan.message.lower()
        if "cheap" in lowered or "lowest price" in lowered:
            kept.sort(key=lambda i: (i.price is None, i.price or 0.0))
        elif "rated" in lowered or "rating" in lowered:
            kept.sort(key=lambda i: -(i.avg_rating or 0.0))
        n = max(len(kept), 1)
        plan.items = [
            replace(i, score=round(1 - k / n, 6), reason=follow_up_reason(i, constraints)) for k, i in enumerate(kept)
        ]
        plan.applied = constraints

    def _user_vector(self, user_id: str, degraded: list[str]) -> np.ndarray | None:
        if self.user_vectors is None:
            return None
        try:
            return self.user_vectors(user_id)
        except Exception as exc:  # personalisation is optional; rank by relevance alone
            logger.warning("no user vector for %r: %s", user_id, exc)
            degraded.append(f"personalisation_unavailable: {type(exc).__name__}")
            return None

    # --- generation ----------------------------------------------------------------------------------------------
    def _preamble(self, plan: _Plan) -> str:
        lines = list(plan.understanding.notices)
        if plan.relaxed:
            lines.append("Nothing matched every constraint, so I relaxed " + ", then ".join(plan.relaxed) + ".")
        return " ".join(lines)

    def _template(self, plan: _Plan) -> str:
        return prompts.template_reply(plan.understanding.mode, plan.items, plan.relaxed, plan.understanding.notices)

    def _answer_messages(self, plan: _Plan, strict: bool = False) -> list[Any]:
        return prompts.answer_messages(
            plan.message,
            plan.understanding.mode,
            plan.items,
            plan.snippets,
            plan.context.recent,
            plan.context.summary,
            plan.relaxed,
            strict,
        )

    def _generate(self, plan: _Plan) -> tuple[str, list[str]]:
        if plan.fixed_reply is not None:
            return plan.fixed_reply, []
        if isinstance(self.llm, RuleBasedLLM):
            return self._template(plan), []
        try:
            for strict in (False, True):
                raw = without_unfinished_sentence(
                    self.llm.complete(self._answer_messages(plan, strict), max_tokens=ANSWER_MAX_TOKENS)
                )
                if leaks_system_prompt(raw):
                    logger.warning("the model quoted its instructions; answer regenerated")
                    continue
                check = ground_reply(raw, plan.items, plan.message)
                if check.clean or (strict and check.text):
                    if check.removed:
                        logger.warning("removed ungrounded product mentions: %s", check.removed)
                    preamble = self._preamble(plan)
                    return (f"{preamble}\n{check.text}" if preamble else check.text), []
                logger.warning("answer named products outside the results %s; regenerating", check.removed)
            return self._template(plan), ["llm_answer_ungrounded: templated answer"]
        except LLMError as exc:
            logger.warning("answering from the template: %s", exc)
            return self._template(plan), [f"llm_answer_failed: {type(exc).__name__}"]

    def _stream(self, plan: _Plan) -> Iterator[ChatEvent]:
        yield (
            "items",
            {
                "session_id": plan.context.session_id,
                "mode": plan.understanding.mode,
                "filters": plan.applied.constraints(),
                "items": [i.as_dict() for i in plan.items],
            },
        )
        clock = time.perf_counter()
        emitted: list[str] = []
        degraded: list[str] = []
        if plan.fixed_reply is not None or isinstance(self.llm, RuleBasedLLM):
            reply, degraded = self._generate(plan)
            for chunk in _CHUNK.findall(reply):
                emitted.append(chunk)
                yield "token", chunk
        else:
            preamble = self._preamble(plan)
            if preamble:
                emitted.append(preamble + "\n")
                yield "token", preamble + "\n"
            grounding = Grounding.of(plan.items, plan.message)
            buffer = ""
            spoke = False
            try:
                for piece in self.llm.stream(self._answer_messages(plan), max_tokens=ANSWER_MAX_TOKENS):
                    buffer += piece
                    parts = _SENTENCE_END.split(buffer)
                    for sentence in parts[:-1]:
                        ok = sentence.strip() and sentence_is_grounded(sentence, grounding)
                        if ok and not leaks_system_prompt(sentence):
                            spoke = True
                            emitted.append(sentence + " ")
                            yield "token", sentence + " "
                    buffer = parts[-1]
                if spoke and not ends_sentence(buffer):  # a last sentence cut off by the token limit is left out
                    buffer = ""
                if buffer.strip() and sentence_is_grounded(buffer, grounding) and not leaks_system_prompt(buffer):
                    spoke = True
                    emitted.append(buffer)
                    yield "token", buffer
            except LLMError as exc:
                degraded.append(f"llm_answer_failed: {type(exc).__name__}")
            if not spoke:
                fallback = self._template(plan)
                emitted = [fallback]
                yield "token", fallback
        plan.timings["generation"] = _ms(clock)
        yield "done", self._finish(plan, "".join(emitted).strip(), degraded)

    # --- storing -------------------------------------------------------------------------------------------------
    def _finish(self, plan: _Plan, reply: str, degraded: list[str]) -> ChatTurn:
        clock = time.perf_counter()
        filters = plan.applied.constraints()
        stored_filters = {**filters, "product": plan.applied.product} if plan.applied.product else dict(filters)
        category = plan.applied.category or next((i.category for i in plan.items if i.category), None)
        self.store.save_turn(
            plan.context,
            plan.message,
            reply,
            plan.understanding.mode,
            [i.item_id for i in plan.items],
            category,
            stored_filters,
        )
        self._maybe_summarise(plan, reply)
        plan.timings["store"] = _ms(clock)
        plan.timings["total"] = _ms(plan.started)
        return ChatTurn(
            session_id=plan.context.session_id,
            reply=reply,
            mode=plan.understanding.mode,
            filters=filters,
            items=plan.items,
            relaxed=plan.relaxed,
            notices=plan.understanding.notices,
            degraded=plan.understanding.degraded + degraded,
            timings_ms={k: round(v, 3) for k, v in plan.timings.items()},
        )

    def _maybe_summarise(self, plan: _Plan, reply: str) -> None:
        """Every few turns past :data:`SUMMARY_AFTER`, summarise all but the recent turns into the session."""
        turns = [(t.message, t.reply, t.mode) for t in plan.context.turns]
        turns.append((plan.message, reply, plan.understanding.mode))
        if len(turns) <= SUMMARY_AFTER or (len(turns) - SUMMARY_AFTER - 1) % RECENT_TURNS:
            return
        older = turns[:-RECENT_TURNS]
        summary: str | None = None
        if not isinstance(self.llm, RuleBasedLLM):
            try:
                messages = prompts.summary_messages([(m, r) for m, r, _ in older], plan.context.summary)
                summary = self.llm.complete(messages, max_tokens=120)
            except LLMError as exc:
                logger.warning("summarising without the LLM: %s", exc)
        text = summary.strip() if summary and summary.strip() else plain_summary(older)
        self.store.set_summary(plan.context.session_id, text[:1000])


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
