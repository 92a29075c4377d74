"""Property tests (CPython only): the pure Sha1 against hashlib.sha1."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.sha1 import Sha1

KINDS = (bytes, bytearray, memoryview)


@st.composite
def split_data(draw, max_size=1500):
    """Random data cut into random pieces, each passed as bytes, bytearray or memoryview."""
    data = draw(st.binary(max_size=max_size))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0] + cuts + [len(data)]
    pieces = []
    for lo, hi in zip(bounds, bounds[1:]):
        kind = draw(st.sampled_from(KINDS))
        pieces.append(kind(data[lo:hi]))
    return data, pieces


@settings(max_examples=200, deadline=None)
@given(split_data())
def test_pieces_match_hashlib(case):
    data, pieces = case
    h = Sha1()
    for piece in pieces:
        h.update(piece)
    want = hashlib.sha1(data)
    assert h.digest() == want.digest()
    assert h.hexdigest() == want.hexdigest()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.binary(max_size=300))
def test_copy_then_diverge(prefix, left, right):
    h = Sha1(prefix)
    c = h.copy()
    h.update(left)
    c.update(right)
    assert h.hexdigest() == hashlib.sha1(prefix + left).hexdigest()
    assert c.hexdigest() == hashlib.sha1(prefix + right).hexdigest()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_digest_midway_does_not_disturb(first, second):
    h = Sha1(first)
    assert h.digest() == hashlib.sha1(first).digest()
    h.update(second)
    assert h.digest() == hashlib.sha1(first + second).digest()
