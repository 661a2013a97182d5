"""Rule-based reading of a shopping message: prices, ratings, brands, categories and the kind of turn.

These rules are both the ``none`` LLM backend's understanding and the safety net of every other backend: prices and
ratings come only from here (a model's numbers are never trusted), and a brand or category is kept only when it is
a catalog value the message itself names. Everything is a literal: a brand spelled ``' OR 1=1 --`` is text to
compare, never code.

Price grammar (case-insensitive; ``N`` is a number with an optional ``$`` and optional ``dollars``/``usd``/``bucks``):
``under/below/less than/at most/up to/no more than/max/within/budget of N`` → ceiling; ``N or less/and under`` →
ceiling; ``over/above/more than/at least/min N`` (with a currency mark) → floor; ``between N and M`` /
``from N to M`` / ``$N-$M`` → both. A negative price is ignored with a notice; "cheap" has no number and sets nothing.

Rating grammar: ``N stars and up / or more / +``, ``at least N stars``, ``rated (at least|above|over) N``,
``rating of at least N``; N must be within 0-5 (otherwise ignored with a notice).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hybrec.chat.schemas import QueryFilters
from hybrec.vectors.filters import normalise_brand

_NUM = r"(?P<{name}>-?\s*\$?\s*-?\d[\d,]*(?:\.\d+)?)\s*(?:dollars?|usd|bucks)?"
_CEILING_WORDS = (
    r"under|below|less\s+than|cheaper\s+than|at\s+most|up\s+to|no\s+more\s+than|not\s+more\s+than|not\s+over|"
    r"max(?:imum)?(?:\s+of)?|within|budget(?:\s+of|\s+is)?|<=?|"
    r"(?:price|priced|cost|costs|costing)(?:\s+(?:of|at|is))?"
)
_FLOOR_WORDS = r"over|above|more\s+than|at\s+least|min(?:imum)?(?:\s+of)?|starting\s+at|>=?"

_RATING_PATTERNS = [
    re.compile(
        r"(?P<r>-?\d+(?:\.\d+)?)\s*\+?\s*stars?(?:\s*(?:and|&)\s*(?:up|above|higher|more)|\s*or\s*(?:more|higher|better|above|up)|\s*\+)?"
    ),
    re.compile(
        r"(?:rated|rating(?:\s+of)?|reviews?\s+of)\s*(?:at\s+least|above|over|of\s+at\s+least|>=?|min(?:imum)?)?\s*(?P<r>-?\d+(?:\.\d+)?)(?:\s*stars?)?(?:\s*(?:and\s+up|or\s+(?:more|higher|better)|\+))?"
    ),
]
_BETWEEN = re.compile(r"(?:between|from)\s+" + _NUM.format(name="a") + r"\s*(?:and|to|-)\s*" + _NUM.format(name="b"))
_DASH_RANGE = re.compile(r"\$\s*(?P<a>\d[\d,]*(?:\.\d+)?)\s*(?:-|to)\s*\$\s*(?P<b>\d[\d,]*(?:\.\d+)?)")
_CEILING = re.compile(r"(?:" + _CEILING_WORDS + r")\s*" + _NUM.format(name="n"))
_CEILING_AFTER = re.compile(
    _NUM.format(name="n") + r"\s*(?:or\s+(?:less|under|below|cheaper)|and\s+(?:under|below)|max\b|tops\b)"
)
_FLOOR = re.compile(r"(?:" + _FLOOR_WORDS + r")\s*" + _NUM.format(name="n"))

_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|hiya|yo|good\s+(?:morning|afternoon|evening)|thanks?(?:\s+you)?|thank\s+you|cheers|bye|"
    r"goodbye|how\s+are\s+you|who\s+are\s+you|what\s+can\s+you\s+do|what\s+are\s+you|ok(?:ay)?|cool|great|nice)\b",
    re.IGNORECASE,
)
_FOLLOW_UP = re.compile(
    r"\b(?:those|these|them|that\s+one|this\s+one|the\s+(?:first|second|third|last|cheapest|other)\b|of\s+them|"
    r"tell\s+me\s+more\s+about|compare|which\s+one|the\s+one)\b|\bit\b",
    re.IGNORECASE,
)
_MORE = re.compile(
    r"\b(?:more|others?|another|anything\s+else|something\s+else|similar|next|different\s+ones)\b", re.IGNORECASE
)
_FILLER = re.compile(
    r"^(?:please\s+)?(?:(?:i\s+(?:need|want|would\s+like|'d\s+like|am\s+looking\s+for|'m\s+looking\s+for)|"
    r"looking\s+for|show\s+me|find\s+me|find|get\s+me|can\s+you\s+(?:find|show|recommend)(?:\s+me)?|"
    r"recommend(?:\s+me)?|search\s+for|do\s+you\s+have)\s+)?(?:(?:a|an|some|the)\s+)?",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9]+")
_COMMON_WORDS = (
    "a an the and or of for to in on with at by from is are be it this that i me my you your we our some any "
    "need want like show find get gift card cards item items product products one more"
)
_COMMON = frozenset(_COMMON_WORDS.split())


@dataclass(frozen=True, slots=True)
class CatalogVocabulary:
    """The catalog's known brands and categories, keyed by their normalised spelling.

    Parameters
    ----------
    brands : dict
        ``normalise_brand(brand) -> brand`` as the catalog spells it.
    categories : dict
        ``normalise_brand(category) -> category`` for the categories worth matching (a category holding most of
        the catalog says nothing and is left out by :meth:`build`).
    """

    brands: dict[str, str] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls, brands: Iterable[str | None], categories: dict[str, int] | None = None, *, max_category_share: float = 0.5
    ) -> CatalogVocabulary:
        """From raw brand names and ``{category: item count}``; skips empty, 1-2 character and stop-word names."""
        known: dict[str, str] = {}
        for brand in brands:
            if not brand:
                continue
            norm = _key(brand)
            # A "brand" made only of common words ("Gift Card") would match every request.
            if len(norm) >= 3 and not set(norm.split()) <= _COMMON:
                known.setdefault(norm, brand.strip())
        cats: dict[str, str] = {}
        total = sum((categories or {}).values())
        for category, count in (categories or {}).items():
            norm = _key(category) if category else ""
            informative = len(norm) >= 3 and not set(norm.split()) <= _COMMON and norm not in known
            if informative and (total == 0 or count / total <= max_category_share):
                cats.setdefault(norm, category)
        return cls(known, cats)

    def find_brand(self, text: str) -> str | None:
        """The longest known brand the text names as whole words, or None."""
        return _longest_match(text, self.brands)

    def find_category(self, text: str) -> str | None:
        """The longest known category the text names as whole words, or None."""
        return _longest_match(text, self.categories)

    def resolve_brand(self, brand: str | None, message: str) -> str | None:
        """``brand`` as the catalog spells it, when it is a known brand that ``message`` names; else None."""
        return _resolve(brand, message, self.brands)

    def resolve_category(self, category: str | None, message: str) -> str | None:
        """``category`` as the catalog spells it, when it is a known category that ``message`` names; else None."""
        return _resolve(category, message, self.categories)


def _key(text: str) -> str:
    """Normalised spelling for matching names: apostrophes dropped ("Applebee's" ~ "applebees"), then
    :func:`~hybrec.vectors.filters.normalise_brand`."""
    return normalise_brand(text.replace("'", "").replace("\u2019", ""))


def _longest_match(text: str, known: dict[str, str]) -> str | None:
    padded = f" {_key(text)} "
    best: str | None = None
    for norm in known:
        if f" {norm} " in padded and (best is None or len(norm) > len(best)):
            best = norm
    return None if best is None else known[best]


def _resolve(value: str | None, message: str, known: dict[str, str]) -> str | None:
    if not value or not isinstance(value, str):
        return None
    norm = _key(value)
    if norm in known and f" {norm} " in f" {_key(message)} ":
        return known[norm]
    return None


def _amount(raw: str) -> float:
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "")
    return float(cleaned)


@dataclass(slots=True)
class ParsedMessage:
    """What the rules read in one message: the filters, and notices about values they ignored."""

    filters: QueryFilters
    notices: list[str] = field(default_factory=list)


def parse_message(message: str, vocabulary: CatalogVocabulary | None = None) -> ParsedMessage:
    """Read the product, brand, category, price range and rating floor of ``message`` by rules.

    Parameters
    ----------
    message : str
        One shopper message.
    vocabulary : CatalogVocabulary, optional
        Known brands and categories; without it no brand or category is recognised.

    Returns
    -------
    ParsedMessage
        Filters (None where the message states nothing usable) and notices naming ignored values.
    """
    vocabulary = vocabulary or CatalogVocabulary()
    text = message.lower()
    notices: list[str] = []
    spans: list[tuple[int, int]] = []
    min_rating: float | None = None
    for pattern in _RATING_PATTERNS:
        for match in pattern.finditer(text):
            value = float(match.group("r").replace(" ", ""))
            spans.append(match.span())
            if 0 <= value <= 5:
                min_rating = value if min_rating is None else max(min_rating, value)
            else:
                notices.append(f"ignored the rating {match.group('r')!s}: ratings go from 0 to 5 stars")
    masked = _mask(text, spans)
    low: float | None = None
    high: float | None = None
    price_spans: list[tuple[int, int]] = []

    def take(raw: str) -> float | None:
        try:
            value = _amount(raw)
        except ValueError:
            return None
        if value < 0:
            notices.append(f"ignored the price {raw.strip()}: a price cannot be negative")
            return None
        return value

    for pattern in (_BETWEEN, _DASH_RANGE):
        for match in pattern.finditer(masked):
            a, b = take(match.group("a")), take(match.group("b"))
            price_spans.append(match.span())
            if a is not None and b is not None:
                low, high = min(a, b), max(a, b)
    masked = _mask(masked, price_spans)
    for pattern in (_CEILING, _CEILING_AFTER):
        for match in pattern.finditer(masked):
            price_spans.append(match.span())
            ceiling = take(match.group("n"))
            if ceiling is not None:
                high = ceiling if high is None else min(high, ceiling)
    masked = _mask(masked, price_spans)
    for match in _FLOOR.finditer(masked):
        raw = match.group("n")
        # "over 4" alone is ambiguous; a floor is a price only with a currency mark.
        if "$" not in raw and not re.search(r"dollars?|usd|bucks", match.group(0)):
            continue
        price_spans.append(match.span())
        floor = take(raw)
        if floor is not None:
            low = floor if low is None else max(low, floor)
    if low is not None and high is not None and low > high:
        notices.append(f"ignored the price floor ${low:g}: it is above the ceiling ${high:g}")
        low = None
    brand = vocabulary.find_brand(message)
    category = vocabulary.find_category(message)
    product = _product_phrase(_mask(text, spans + price_spans))
    filters = QueryFilters(
        product=product, brand=brand, category=category, max_price=high, min_price=low, min_rating=min_rating
    )
    return ParsedMessage(filters, notices)


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            chars[i] = " "
    return "".join(chars)


def _product_phrase(text: str) -> str | None:
    cleaned = re.sub(r"\s+", " ", text).strip(" ,.!?;:")
    cleaned = _FILLER.sub("", cleaned, count=1).strip(" ,.!?;:")
    cleaned = re.sub(r"\s+(?:and|with|for|that\s+is|which\s+is|rated|priced)$", "", cleaned)
    return cleaned or None


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not stop words (used to tell small talk from a request)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _COMMON]


# Words a bare "more" request may hold besides _MORE's (which are not all in _COMMON): "show me others, please".
_MORE_REQUEST_WORDS = (
    "more other others another anything something else similar next different ones options please give see can could "
    "would"
)
_MORE_WORDS = frozenset(_MORE_REQUEST_WORDS.split())


def is_bare_more_request(message: str) -> bool:
    """A request for more of the same that names nothing new ("show me more", "any others?", "something else"):
    it can only mean continuing the last search, whatever a model reads into it."""
    return bool(_MORE.search(message)) and not [w for w in content_words(message) if w not in _MORE_WORDS]


def route_by_rules(message: str, parsed: QueryFilters, *, has_shown_items: bool) -> str:
    """The turn's mode by rules (see :class:`~hybrec.chat.schemas.RouteDecision` for the modes).

    A greeting or thanks with at most two other words and no constraint is small talk; a message referring to the
    products already shown ("those", "the first one", "compare") is a follow-up and one asking for more/others is
    ``more_of_category`` — both only when products were shown before in the session; everything else is a search.
    """
    has_constraints = bool(parsed.constraints())
    greeting = _GREETING.match(message)
    if greeting and not has_constraints:
        rest = content_words(message[greeting.end() :])
        if len(rest) <= 2:
            return "small_talk"
    if has_shown_items and not parsed.brand and not parsed.category:
        about = re.search(r"\b(?:tell\s+me\s+more|more\s+(?:about|details|info))\b", message, re.IGNORECASE)
        if _MORE.search(message) and not about and len(content_words(message)) <= 6:
            return "more_of_category"
        if _FOLLOW_UP.search(message):
            return "follow_up"
    return "new_search"
