from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from hybrec.data.cleaning import (
    clean_list,
    clean_text,
    merge_fields,
    normalise_whitespace,
    parse_price,
    parse_rating,
    parse_timestamp,
    strip_html,
)


class TestCleanText:
    def test_unescapes_entities_and_strips_tags(self) -> None:
        assert clean_text(" Maggiano&#39;s <b>Gift</b>&amp;Card ") == "Maggiano's Gift &Card"

    def test_unterminated_amazon_span_is_junk(self) -> None:
        assert clean_text('<span class="a-size-medium a-color-secondary"') is None

    def test_double_escaped_entity(self) -> None:
        assert clean_text("Valentine&amp;#39;s Day") == "Valentine's Day"

    def test_escaped_tags_are_stripped_too(self) -> None:
        assert clean_text("line&lt;br /&gt;two") == "line two"

    def test_script_and_style_blocks_dropped_with_content(self) -> None:
        assert clean_text("<style>.a{color:red}</style>Good<script>alert(1)</script> stuff") == "Good stuff"

    def test_stray_tag_end_left_by_scraper(self) -> None:
        assert clean_text("Industrial & Scientific />") == "Industrial & Scientific"

    def test_comparison_sign_is_not_a_tag(self) -> None:
        assert clean_text("size < 5 and > 2") == "size < 5 and > 2"

    def test_list_joined(self) -> None:
        assert clean_text(["<div>Para one.</div>", "Para\ntwo."]) == "Para one. Para two."

    def test_empty_is_none(self) -> None:
        assert clean_text("   <br/>  ") is None
        assert clean_text(None) is None
        assert clean_text([]) is None


def test_normalise_whitespace_nfkc_and_collapse() -> None:
    # NFKC folds the full-width letters and the ligature; \u00a0 is whitespace.
    assert normalise_whitespace("\u00a0Ｃａｆé\t\n ﬁne  ") == "Café fine"


def test_strip_html_replaces_tags_with_space() -> None:
    assert strip_html("a<br>b") == "a b"


def test_clean_list_drops_empty_and_repeats() -> None:
    assert clean_list(["x ", "", "<p></p>", "x", "y&amp;z"]) == ["x", "y&z"]
    assert clean_list(None) == []
    assert clean_list("single") == ["single"]


class TestParsePrice:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("$1,299.00", 1299.0), ("$50.00", 50.0), ("12.5", 12.5), (" $ 7 ", 7.0), (19, 19.0), (0.0, 0.0)],
    )
    def test_plain_prices(self, raw: object, expected: float) -> None:
        assert parse_price(raw) == expected

    def test_range_gives_lower_bound(self) -> None:
        assert parse_price("$10.00 - $25.00") == 10.0
        assert parse_price("$25.00 - $10.00") == 10.0

    @pytest.mark.parametrize(
        "raw",
        ["", "   ", None, '<span class="a-price"', ".a-box-inner{background-color:#fff}", "\n\t\t \r\n  ", "call us"],
    )
    def test_junk_is_none(self, raw: object) -> None:
        assert parse_price(raw) is None

    def test_junk_is_error_when_strict(self) -> None:
        with pytest.raises(ValueError, match="not a price"):
            parse_price("call us", strict=True)

    @pytest.mark.parametrize("raw", ["-$5.00", "$-5", "-3", -1.5])
    def test_negative_is_error(self, raw: object) -> None:
        with pytest.raises(ValueError, match="negative price"):
            parse_price(raw)

    def test_nan_is_error(self) -> None:
        with pytest.raises(ValueError, match="finite"):
            parse_price(math.nan)


class TestParseRating:
    def test_valid(self) -> None:
        assert parse_rating("4") == 4.0
        assert parse_rating(0.5, low=0.5) == 0.5

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            ("abc", "not a number"),
            ("nan", "finite"),
            ("7", "outside the range 1-5"),
            ("0", "outside"),
            ("", "missing"),
            (None, "missing"),
        ],
    )
    def test_invalid(self, raw: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_rating(raw)


class TestParseTimestamp:
    def test_unix_seconds(self) -> None:
        assert parse_timestamp("881250949") == datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)
        assert parse_timestamp(881250949) == parse_timestamp("881250949.0")

    def test_unix_milliseconds(self) -> None:
        assert parse_timestamp(881250949000) == datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)

    def test_iso_naive_is_utc(self) -> None:
        assert parse_timestamp("2003-04-27T00:00:00") == datetime(2003, 4, 27, tzinfo=UTC)

    def test_iso_with_offset_converted_to_utc(self) -> None:
        assert parse_timestamp("2020-01-01T02:00:00+02:00") == datetime(2020, 1, 1, tzinfo=UTC)
        assert parse_timestamp("2020-01-01T00:00:00Z") == datetime(2020, 1, 1, tzinfo=UTC)

    @pytest.mark.parametrize("raw", ["yesterday", "", None, "inf"])
    def test_invalid(self, raw: object) -> None:
        with pytest.raises(ValueError):
            parse_timestamp(raw)


def test_merge_fields_first_wins_later_fills_gaps() -> None:
    first = {"asin": "A1", "title": "Mug", "brand": None, "price": None, "features": []}
    later = {"asin": "A1", "title": "Other mug", "brand": "Acme", "price": 9.0, "features": ["big"]}
    assert merge_fields(first, later) == {
        "asin": "A1",
        "title": "Mug",
        "brand": "Acme",
        "price": 9.0,
        "features": ["big"],
    }
