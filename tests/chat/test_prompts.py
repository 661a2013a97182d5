"""The answer prompt stays short: clipped names, one clipped review per product."""

from __future__ import annotations

from hybrec.chat.grounding import ground_reply
from hybrec.chat.prompts import PROMPT_NAME_CHARS, PROMPT_SNIPPET_CHARS, clip, describe_item, short_name
from hybrec.chat.schemas import ChatItem

LONG_NAME = (
    "3M Secure Fit Safety Glasses SF201AF Clear Anti-Fog Lens Adjustable Temples Lightweight "
    "Wraparound Design for Construction Workshop Laboratory Use Pack of 20"
)


def test_clip_cuts_at_a_word_boundary() -> None:
    assert clip("short name", 40) == "short name"
    clipped = clip(LONG_NAME, PROMPT_NAME_CHARS)
    assert len(clipped) <= PROMPT_NAME_CHARS + 3 and clipped.endswith("...")
    assert LONG_NAME.startswith(clipped.removesuffix("..."))
    assert clip("x" * 50, 10) == "x" * 10 + "..."  # no space to cut at


def test_describe_item_keeps_one_short_review() -> None:
    item = ChatItem("i1", LONG_NAME, "3M", 24.5, 4.6, 1.0)
    line = describe_item(1, item, ["great " * 60, "second review"])
    assert line.count("review:") == 1 and "second review" not in line
    review = line.split('review: "')[1].rstrip('"')
    assert len(review) <= PROMPT_SNIPPET_CHARS + 3
    assert line.startswith(f"1. {short_name(LONG_NAME)}, $24.50, rated 4.6/5.\n")
    assert short_name(LONG_NAME) == clip(LONG_NAME, PROMPT_NAME_CHARS).removesuffix("...")  # one phrase: clipped


def test_describe_item_reads_as_a_sentence_and_names_a_brand_the_name_lacks() -> None:
    assert describe_item(2, ChatItem("g", "Burger King Gift Card", "Burger King", 25.0, 4.9, 1.0)) == (
        "2. Burger King Gift Card, $25.00, rated 4.9/5."
    )
    assert describe_item(3, ChatItem("n", "Finish Nail, 16 Gauge", "DEWALT", None, None, 1.0)) == (
        "3. Finish Nail, 16 Gauge by DEWALT, price unknown."
    )


def test_a_reply_naming_the_clipped_name_is_grounded() -> None:
    item = ChatItem("i1", LONG_NAME, "3M", 24.5, 4.6, 1.0)
    name = clip(LONG_NAME, PROMPT_NAME_CHARS).removesuffix("...")
    check = ground_reply(f"The **{name}** is a solid pick at $24.50.", [item], "safety glasses")
    assert check.clean and check.text.startswith("The **3M Secure Fit")


def test_short_name_is_the_titles_first_phrase() -> None:
    assert short_name("Karter Scientific 206D2 Plastic Petri Dishes, 60 mm x 15 mm, 3 Vents, Sterile (Pack of 10)") == (
        "Karter Scientific 206D2 Plastic Petri Dishes"
    )
    assert short_name("Hillman 830506 Stainless Steel 3/8-Inch Flat Washers - 100 Pack") == (
        "Hillman 830506 Stainless Steel 3/8-Inch Flat Washers"
    )
    # A break too early to leave a name is skipped: the brand in parentheses, a comma after two words.
    nails = "PORTER-CABLE (PBN18075-1) 18 Gauge Brad Nails"
    assert short_name(nails) == nails
    assert short_name("Finish Nail, 16 Gauge") == "Finish Nail, 16 Gauge"
    assert describe_item(1, ChatItem("p", "Karter Scientific Petri Dishes, 60 mm, Sterile", None, 9.0, None, 1.0)) == (
        "1. Karter Scientific Petri Dishes, $9.00."
    )
    item = ChatItem("p", "Karter Scientific 206D2 Plastic Petri Dishes, 60 mm x 15 mm, Sterile", None, 9.0, 4.5, 1.0)
    check = ground_reply(f"I recommend the {short_name(item.name)}.", [item], "petri dishes")
    assert check.clean
