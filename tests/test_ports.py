"""The shared helpers of edgecore_ports (ports/__init__.py) that read network text:
``ascii_digits`` and ``content_range_total`` (the 206 answer to a resumed download)."""

from hypothesis import given
from hypothesis import strategies as st

from edgecore_ports import ascii_digits, content_range_total


def test_ascii_digits_accepts_only_0_to_9():
    assert ascii_digits("0") and ascii_digits("1234567890")
    for text in ("", " 1", "1 ", "-1", "+1", "1.0", "\u0663", "\u00b2", "1_000", None):
        assert not ascii_digits(text), repr(text)


def test_content_range_total_examples():
    assert content_range_total("bytes 100-299/300", 100) == 300
    assert content_range_total("bytes 0-0/1", 0) == 1
    for value, start in (
        ("bytes 100-299/300", 99),  # not where we asked
        ("bytes 100-298/300", 100),  # not to the end
        ("bytes 100-299/*", 100),  # unknown total
        ("bytes */300", 100),  # a 416's form
        ("bytes 100-299/301", 100),
        ("bytes 5-4/5", 5),  # nothing left: not a 206 for a resumed download
        ("bits 100-299/300", 100),
        ("bytes  100-299/300", 100),
        ("bytes 1\u0663-299/300", 100),
        ("", 0),
        (None, 0),
    ):
        assert content_range_total(value, start) is None, (value, start)


@given(st.integers(0, 2**63), st.integers(1, 2**63))
def test_content_range_total_round_trip(start, length):
    total = start + length
    assert content_range_total("bytes %d-%d/%d" % (start, total - 1, total), start) == total
    assert content_range_total("bytes %d-%d/%d" % (start, total - 1, total), start + 1) is None


@given(st.text(max_size=40), st.integers(0, 10**6))
def test_content_range_total_any_text_gives_a_consistent_total_or_none(value, start):
    got = content_range_total(value, start)
    if got is not None:  # leading zeros are fine: the numbers are what count
        span, total = value[len("bytes ") :].split("/")
        assert value.startswith("bytes ") and int(total) == got > start
        assert [int(n) for n in span.split("-")] == [start, got - 1]
