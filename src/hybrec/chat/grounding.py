"""Keeping the assistant's reply about the returned products only, and its instructions private.

A small model asked about a list of products still invents others ("you might also like the Dunkin' card"). The
check here is lexical and deliberately strict: a *product-like mention* is a quoted or bold phrase, a numbered or
bulleted list entry, a run of two or more capitalised words, or a model-number-like token (letters and digits
mixed). A mention is grounded when each of its distinctive words occurs in the names, brands or categories of the
returned products or in the shopper's own message; a sentence holding an ungrounded mention is removed. The engine
regenerates once with a stricter prompt when removal would gut the reply, then falls back to the template.

Prompt leaks are handled on both sides: :func:`is_prompt_leak_request` recognises requests for the instructions (the
engine answers them with a refusal, never with the model), and :func:`leaks_system_prompt` catches a reply that
quotes the system prompt anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hybrec.chat.prompts import SYSTEM_PROMPT
from hybrec.chat.schemas import ChatItem

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_QUOTED = re.compile(r"\"([^\"]{3,80})\"|\*\*([^*]{3,80})\*\*|“([^”]{3,80})”")
_LIST_ENTRY = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*([^:(\n,]{3,80})")
_CAPITALISED_RUN = re.compile(r"\b(?:[A-Z][\w'&+-]*|[A-Z0-9]{2,})(?:\s+(?:[A-Z][\w'&+-]*|[A-Z0-9]{2,}|&|of|de)){1,6}")
_MODEL_NUMBER = re.compile(r"\b(?=[A-Za-z-]*\d)(?=[\d-]*[A-Za-z])[A-Za-z0-9-]{4,}\b")

# Words that never make a phrase a product name on their own.
_GENERIC_WORDS = """
    a an the and or of for to in on at by with from is are be was it its this that these those there here i you
    your we our my me he she they them their if so as but not no yes can could would should will may might do does
    hello hi hey thanks thank welcome sure great good nice happy glad sorry please let know help find looking
    here's i'm you're it's that's they're gift card cards giftcard product products item items option options
    choice choices price prices priced rating ratings rated star stars review reviews budget dollar dollars usd
    one two three four five first second third last cheapest best top pick picks recommend recommendation
    recommendations also another other more great perfect ideal lover lovers coffee tea anyone someone friend
    shop store online brand brands category
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december christmas birthday holiday holidays
"""
_GENERIC = frozenset(_GENERIC_WORDS.split())

_LEAK_REQUEST = re.compile(
    r"(?:system\s*prompt|your\s+(?:instructions|prompt|rules|guidelines|initial\s+prompt)|"
    r"(?:ignore|disregard|forget)\s+(?:all\s+)?(?:your|the|previous|prior|above)\s+(?:instructions|rules|prompt)|"
    r"(?:print|show|reveal|repeat|tell\s+me|what\s+(?:is|are))\s+(?:me\s+)?(?:your|the)\s+"
    r"(?:system\s+)?(?:prompt|instructions|configuration))",
    re.IGNORECASE,
)


def is_prompt_leak_request(message: str) -> bool:
    """Whether ``message`` asks for (or tries to override) the assistant's instructions."""
    return bool(_LEAK_REQUEST.search(message))


def asks_only_for_instructions(message: str) -> bool:
    """A leak request that asks for nothing else to shop for (e.g. "print your system prompt")."""
    if not is_prompt_leak_request(message):
        return False
    rest = _LEAK_REQUEST.sub(" ", message)
    return not re.search(r"\b(?:product|products|list|find|show|recommend|buy|gift|card|under|\$)\b", rest, re.I)


def leaks_system_prompt(reply: str, window: int = 8) -> bool:
    """Whether ``reply`` contains any run of ``window`` consecutive words of the system prompt."""
    prompt_words = [w.lower() for w in _WORD.findall(SYSTEM_PROMPT)]
    reply_text = " " + " ".join(w.lower() for w in _WORD.findall(reply)) + " "
    return any(
        " " + " ".join(prompt_words[i : i + window]) + " " in reply_text for i in range(len(prompt_words) - window + 1)
    )


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


@dataclass(frozen=True, slots=True)
class Grounding:
    """The vocabulary a reply may use to name products: the returned items' names, brands, categories, and the
    shopper's message."""

    allowed: frozenset[str]

    @classmethod
    def of(cls, items: Iterable[ChatItem], message: str = "") -> Grounding:
        words: set[str] = _words(message)
        for item in items:
            words |= _words(item.name)
            if item.brand:
                words |= _words(item.brand)
            if item.category:
                words |= _words(item.category)
        # Possessives and plurals of allowed words are allowed too ("Starbucks'", "cards").
        words |= {w.rstrip("s") for w in words} | {w.removesuffix("'s") for w in words}
        return cls(frozenset(words))

    def is_grounded(self, mention: str) -> bool:
        """Whether every distinctive word of ``mention`` is allowed."""
        for word in _words(mention):
            base = word.removesuffix("'s")
            if base in _GENERIC or base.isdigit() or len(base) <= 1:
                continue
            if base not in self.allowed and base.rstrip("s") not in self.allowed:
                return False
        return True


def product_mentions(sentence: str) -> list[str]:
    """The product-like phrases of one sentence (see the module docstring)."""
    mentions = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(sentence)]
    entry = _LIST_ENTRY.match(sentence)
    if entry:
        mentions.append(entry.group(1))
    body = sentence.strip()
    # The first word of a sentence is capitalised anyway; start the capitalised-run search after it.
    first = re.match(r"\s*\S+\s*", body)
    offset = first.end() if first and not _LIST_ENTRY.match(body) else 0
    mentions.extend(m.group(0) for m in _CAPITALISED_RUN.finditer(body[offset:]))
    mentions.extend(m.group(0) for m in _MODEL_NUMBER.finditer(sentence) if not m.group(0).isdigit())
    return mentions


@dataclass(frozen=True, slots=True)
class GroundingCheck:
    """The outcome of :func:`ground_reply`: the cleaned reply and the mentions it removed."""

    text: str
    removed: list[str]

    @property
    def clean(self) -> bool:
        return not self.removed


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s and s.strip()]


_FINISHED = re.compile(r"[.!?][\"')\]]*$")
_LIST_NUMBER = re.compile(r"(?:^|\n)\s*\d+[.)]$")


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a finished sentence (a full stop, ! or ?, maybe followed by a quote or bracket)."""
    return bool(_FINISHED.search(text.rstrip()))


def without_unfinished_sentence(text: str) -> str:
    """``text`` without a last sentence that the token limit cut off, when whole sentences come before it.

    The answer's length is capped (a CPU decodes ~8-13 tokens/s); a reply that hits the cap would otherwise end
    mid-word. A reply with no finished sentence is returned as it is: something is better than nothing.
    """
    stripped = text.rstrip()
    if not stripped or ends_sentence(stripped):
        return stripped
    for boundary in reversed(list(_SENTENCE.finditer(stripped))):
        head = stripped[: boundary.start()].rstrip()
        if head and not _LIST_NUMBER.search(head):  # "1." starting a list line is not a sentence
            return head
    return stripped


def ground_reply(reply: str, items: Sequence[ChatItem], message: str = "") -> GroundingCheck:
    """``reply`` without the sentences that name a product outside ``items``.

    Parameters
    ----------
    reply : str
        The LLM's answer.
    items : sequence of ChatItem
        The products returned this turn (the only ones the reply may name).
    message : str
        The shopper's message (its words may be repeated back).
    """
    grounding = Grounding.of(items, message)
    kept: list[str] = []
    removed: list[str] = []
    for line in reply.splitlines():
        sentences = split_sentences(line) if not _LIST_ENTRY.match(line) else [line]
        kept_line: list[str] = []
        for sentence in sentences:
            bad = [m for m in product_mentions(sentence) if not grounding.is_grounded(m)]
            if bad:
                removed.extend(bad)
            else:
                kept_line.append(sentence.strip())
        if kept_line:
            kept.append(" ".join(kept_line))
    return GroundingCheck("\n".join(kept).strip(), removed)


def sentence_is_grounded(sentence: str, grounding: Grounding) -> bool:
    """Whether one sentence names only allowed products (the streaming path checks sentence by sentence)."""
    return all(grounding.is_grounded(m) for m in product_mentions(sentence))
