"""Property tests (CPython only): verify_stream / Verifier against hashlib.sha1."""

import hashlib
import io
import re
import sys
import types
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgecore.checksum import Verifier, check_expected, new_hasher, verify_stream
from edgecore.errors import ChecksumMismatch, ParamValidationError
from edgecore.sha1 import Sha1
from edgecore.shapes import check_checksum


class ShortReadinto:
    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step

    def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def make_source(kind, data, step):
    if kind == "bytesio":
        return io.BytesIO(data)
    if kind == "short":
        return ShortReadinto(data, step)
    if kind == "read":
        return types.SimpleNamespace(read=io.BytesIO(data).read)
    return io.BytesIO(data).read  # a bare callable read(n)


SOURCE_KINDS = st.sampled_from(["bytesio", "short", "read", "callable"])
CHUNK = st.integers(1, 300)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), CHUNK, SOURCE_KINDS, st.integers(1, 400))
def test_verify_stream_matches_hashlib(data, chunk, kind, step):
    want = hashlib.sha1(data).hexdigest()
    assert verify_stream(make_source(kind, data, step), "SHA1", want, chunk_size=chunk) == len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.data(), CHUNK, SOURCE_KINDS)
def test_corrupted_byte_always_mismatches(data, draw, chunk, kind):
    index = draw.draw(st.integers(0, len(data) - 1))
    flip = draw.draw(st.integers(1, 255))
    bad = bytearray(data)
    bad[index] ^= flip
    want = hashlib.sha1(data).hexdigest()
    try:
        verify_stream(make_source(kind, bytes(bad), 7), "SHA1", want, chunk_size=chunk)
    except ChecksumMismatch as exc:
        assert exc.algorithm == "SHA1"
        assert exc.expected == want
        assert exc.actual == hashlib.sha1(bytes(bad)).hexdigest()
        assert exc.bytes_read == len(data)
    else:
        raise AssertionError("corruption at %d not detected" % index)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
def test_fallback_to_pure_sha1_without_hashlib_sha1(data, cuts):
    # As on MicroPython's wasm port: a hashlib without sha1.
    with mock.patch.dict(sys.modules, {"hashlib": types.ModuleType("hashlib")}):
        assert isinstance(new_hasher("SHA1"), Sha1)
        v = Verifier("SHA1", hashlib.sha1(data).hexdigest())
        assert isinstance(v._hash, Sha1)
        bounds = [0] + sorted(min(c, len(data)) for c in cuts) + [len(data)]
        for lo, hi in zip(bounds, bounds[1:]):
            v.update(data[lo:hi])
        assert v.finish() == len(data)


CHECKSUM_STRING = re.compile(r"[a-z0-9](-*[a-z0-9])*")  # the model's pattern, used with fullmatch
SUM_ALPHABET = st.sampled_from("0123456789abcdefABCDEFgz-_ ")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from("a0-Z_\n"), max_size=8),  # short: dashes at both ends are likely
        st.text(SUM_ALPHABET, max_size=70),
        st.text(max_size=70),
    )
)
@example("a-")
@example("-a")
@example("a\n")
@example("a--0")
def test_checksum_string_check_matches_model_regex(text):
    assert check_checksum(text) == (CHECKSUM_STRING.fullmatch(text) is not None)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(SUM_ALPHABET, min_size=38, max_size=42),
        st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=40, max_size=40),
        st.text(max_size=64),
    )
)
def test_expected_sum_accepted_iff_40_hex(text):
    ok = re.fullmatch(r"[0-9a-f]{40}", text.lower()) is not None
    try:
        got = check_expected("SHA1", text)
    except ParamValidationError as exc:
        assert not ok
        assert exc.field == "Checksum.Sum"
    else:
        assert ok
        assert got == text.lower()
