# Runs under MicroPython too
"""Tests for edgecore.checksum; plain asserts, runs under MicroPython too (pure Sha1 there)."""

import io

from edgecore.checksum import (
    DEFAULT_CHUNK_SIZE,
    StreamTooLong,
    Verifier,
    check_expected,
    new_hasher,
    verify_stream,
)
from edgecore.errors import ChecksumMismatch, EdgecoreError, ParamValidationError
from edgecore.sha1 import Sha1

ABC = "a9993e364706816aba3e25717850c26c9cd0d89d"
DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes: not a multiple of any chunk size used


def _huge(digits):
    """10**digits, computed at run time: a constant that large cannot be frozen into
    firmware (mpy-tool cannot write it), and these files are frozen for the qemu port."""
    return 10**digits


def _sum(data):
    # The pure Sha1 is itself checked against FIPS vectors in test_sha1.py.
    return Sha1(data).hexdigest()


DATA_SUM = _sum(DATA)


def _has_hashlib_sha1():
    try:
        import hashlib
    except ImportError:
        return False
    return hasattr(hashlib, "sha1")


class ShortReadinto:
    """A readinto source that returns at most ``step`` bytes per call and records its buffers."""

    def __init__(self, data, step=1000000):
        self.data = data
        self.pos = 0
        self.step = step
        self.buffers = []
        self.calls = 0

    def readinto(self, buf):
        self.calls += 1
        self.buffers.append(buf)
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


class ReadOnly:
    """A source with read(n) only; records the sizes asked for."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.sizes = []

    def read(self, n):
        self.sizes.append(n)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def _expect(exc_type, func, *args, **kwargs):
    try:
        func(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s not raised" % exc_type.__name__)


def test_new_hasher_uses_hashlib_when_present_else_pure_sha1():
    h = new_hasher("SHA1")
    if _has_hashlib_sha1():
        assert not isinstance(h, Sha1)
    else:  # a port without it (qemu's Cortex-M3, some boards): the fallback runs
        assert isinstance(h, Sha1)
    h.update(b"abc")
    assert "".join("%02x" % x for x in h.digest()) == ABC


def test_new_hasher_unknown_type_names_it_and_the_supported_ones():
    for bad in ("MD5", "sha1", "", None, ["SHA1"]):
        exc = _expect(ParamValidationError, new_hasher, bad)
        assert exc.field == "Checksum.Type"
        assert exc.rule == "enum"
        assert "SHA1" in str(exc)
        assert repr(bad) in str(exc)


def test_verify_stream_bytesio():
    assert verify_stream(io.BytesIO(DATA), "SHA1", DATA_SUM) == len(DATA)
    assert verify_stream(io.BytesIO(b"abc"), "SHA1", ABC) == 3
    assert verify_stream(io.BytesIO(b""), "SHA1", _sum(b"")) == 0


def test_verify_stream_chunk_boundaries_all_source_kinds():
    for length in (0, 1, 63, 64, 65, 1028):
        data = DATA[:length]
        want = _sum(data)
        for chunk in (1, 63, 64, 65, 1000, DEFAULT_CHUNK_SIZE):
            assert verify_stream(ShortReadinto(data), "SHA1", want, chunk_size=chunk) == length
            assert verify_stream(ReadOnly(data), "SHA1", want, chunk_size=chunk) == length
            assert verify_stream(ReadOnly(data).read, "SHA1", want, chunk_size=chunk) == length


def test_short_reads_from_readinto():
    for step in (1, 7, 64, 100):
        src = ShortReadinto(DATA, step=step)
        assert verify_stream(src, "SHA1", DATA_SUM, chunk_size=256) == len(DATA)


def test_readinto_reuses_one_buffer():
    src = ShortReadinto(DATA)
    verify_stream(src, "SHA1", DATA_SUM, chunk_size=100)
    assert src.calls == 12  # 11 chunks (10 full + 28 bytes) then EOF
    first = src.buffers[0]
    assert all(b is first for b in src.buffers)
    assert len(first) == 100


def test_caller_buffer_is_used():
    buf = bytearray(50)
    src = ShortReadinto(DATA)
    verify_stream(src, "SHA1", DATA_SUM, buffer=buf)
    assert len(src.buffers[0]) == 50
    assert bytes(buf[:28]) == DATA[1000:]  # the last read went into the caller's buffer
    assert src.calls == 22  # 1028 / 50 -> 21 reads with data, then EOF


def test_read_source_asks_fixed_chunks():
    src = ReadOnly(DATA)
    verify_stream(src, "SHA1", DATA_SUM, chunk_size=300)
    assert src.sizes == [300, 300, 300, 300, 300]


def test_mismatch_fields():
    corrupt = bytearray(DATA)
    corrupt[500] ^= 1
    exc = _expect(ChecksumMismatch, verify_stream, io.BytesIO(bytes(corrupt)), "SHA1", DATA_SUM)
    assert exc.algorithm == "SHA1"
    assert exc.expected == DATA_SUM
    assert exc.actual == _sum(bytes(corrupt))
    assert exc.bytes_read == len(DATA)
    assert DATA_SUM in str(exc)
    assert isinstance(exc, EdgecoreError)


def test_truncated_stream_is_a_mismatch():
    exc = _expect(ChecksumMismatch, verify_stream, io.BytesIO(DATA[:-1]), "SHA1", DATA_SUM)
    assert exc.bytes_read == len(DATA) - 1


def test_upper_case_expected_is_accepted_and_reported_lower():
    assert verify_stream(io.BytesIO(b"abc"), "SHA1", ABC.upper()) == 3
    exc = _expect(ChecksumMismatch, verify_stream, io.BytesIO(b"abd"), "SHA1", ABC.upper())
    assert exc.expected == ABC
    assert check_expected("SHA1", ABC.upper()) == ABC


def test_bad_expected_sum_is_refused_before_reading():
    bad_sums = (
        "",
        "abc",
        ABC[:-1],
        ABC + "0",
        "g" + ABC[1:],
        "-" + ABC[1:],
        ABC[:-1] + "-",
        ABC[:20] + "-" + ABC[21:],
        " " + ABC[1:],
        "a" * 64,
        None,
        ABC.encode(),
    )
    for bad in bad_sums:
        src = ReadOnly(b"abc")
        exc = _expect(ParamValidationError, verify_stream, src, "SHA1", bad)
        assert exc.field == "Checksum.Sum", bad
        assert exc.operation == "verify_stream"
        assert src.sizes == []  # nothing read
    exc = _expect(ParamValidationError, verify_stream, ReadOnly(b""), "MD5", ABC)
    assert exc.field == "Checksum.Type"
    assert "MD5" in str(exc) and "SHA1" in str(exc)


def test_limit():
    assert verify_stream(io.BytesIO(DATA), "SHA1", DATA_SUM, limit=len(DATA)) == len(DATA)
    exc = _expect(
        StreamTooLong,
        verify_stream,
        io.BytesIO(DATA),
        "SHA1",
        DATA_SUM,
        chunk_size=100,
        limit=len(DATA) - 1,
    )
    assert isinstance(exc, EdgecoreError)
    assert exc.limit == len(DATA) - 1
    assert exc.bytes_read == len(DATA)
    assert "verify_stream" in str(exc)
    # the chunk that crosses the limit is not hashed
    v = Verifier("SHA1", ABC, limit=2)
    v.update(b"ab")
    _expect(StreamTooLong, v.update, b"c")
    assert v.bytes_seen == 2


def test_verifier_incremental():
    v = Verifier("SHA1", DATA_SUM)
    for i in range(0, len(DATA), 77):
        v.update(DATA[i : i + 77])
    assert v.bytes_seen == len(DATA)
    assert v.hexdigest() == DATA_SUM
    assert v.finish() == len(DATA)
    assert v.finish() == len(DATA)  # idempotent
    _expect(ValueError, v.update, b"x")


def test_verifier_mismatch():
    v = Verifier("SHA1", ABC)
    v.update(bytearray(b"ab"))
    v.update(memoryview(b"d"))
    exc = _expect(ChecksumMismatch, v.finish)
    assert exc.bytes_read == 3
    assert exc.actual == _sum(b"abd")
    assert v.hexdigest() == _sum(b"abd")


def test_resumed_download_rehashes_partial_then_continues():
    partial = io.BytesIO(DATA[:600])  # what a previous attempt left on disk
    v = Verifier("SHA1", DATA_SUM)
    assert v.consume(partial, chunk_size=64) == 600
    for i in range(600, len(DATA), 128):  # the rest arrives from the network
        v.update(DATA[i : i + 128])
    assert v.finish() == len(DATA)


def test_nonblocking_readinto_none_is_an_error():
    class NoData:
        def readinto(self, buf):
            return None

    exc = _expect(ValueError, verify_stream, NoData(), "SHA1", ABC)
    assert "readinto" in str(exc)


def test_bad_source_type():
    exc = _expect(TypeError, verify_stream, 42, "SHA1", ABC)
    assert "readinto" in str(exc) and "int" in str(exc)


def test_zero_chunk_size_is_refused():
    _expect(ValueError, verify_stream, io.BytesIO(b"abc"), "SHA1", ABC, chunk_size=0)
    _expect(ValueError, verify_stream, ReadOnly(b"abc"), "SHA1", ABC, chunk_size=0)


def test_readinto_overclaiming_is_refused():
    class Liar:
        def readinto(self, buf):
            return len(buf) + 1

    _expect(ValueError, verify_stream, Liar(), "SHA1", ABC, chunk_size=8)


def test_readinto_negative_count_is_refused():
    # A negative count used to slice the buffer from its end and hash the wrong bytes.
    class Negative:
        def __init__(self):
            self.calls = 0

        def readinto(self, buf):
            self.calls += 1
            buf[:3] = b"abc"
            return 3 if self.calls == 1 else -1

    exc = _expect(ValueError, verify_stream, Negative(), "SHA1", ABC, chunk_size=8)
    assert "readinto returned -1" in str(exc) and "0..8" in str(exc)


def test_huge_int_checksum_type_is_a_typed_error():
    # repr() of a >4300-digit int raises ValueError on CPython; the message must not.
    exc = _expect(ParamValidationError, verify_stream, io.BytesIO(b""), _huge(5000), ABC)
    assert "Checksum.Type" in str(exc) and len(str(exc)) < 200
    exc = _expect(ParamValidationError, check_expected, "SHA1", _huge(5000))
    assert "Checksum.Sum" in str(exc)


def test_short_repr_never_raises():
    from edgecore.errors import short_repr

    text = short_repr(_huge(5000))  # CPython: "<int of 16610 bits>"; MicroPython prints it
    assert len(text) <= 60 and (text == "<int of 16610 bits>" or text.startswith("1000"))

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert short_repr(Broken()) == "<Broken>"
    assert short_repr("x" * 100) == "'" + "x" * 56 + "..."
    assert short_repr("abc") == "'abc'"
