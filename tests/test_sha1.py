# Runs under MicroPython too
"""Tests for edgecore.sha1 with the FIPS 180 vectors; bare asserts, also run under MicroPython."""

from edgecore.sha1 import Sha1

# FIPS 180-2 appendix A / NIST example vectors.
EMPTY = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
ABC = "a9993e364706816aba3e25717850c26c9cd0d89d"
MSG448 = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"  # 56 bytes
MSG448_SUM = "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
MSG896 = (
    b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
    b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
)
MSG896_SUM = "a49b2446a02c645bf419f995b67091253a04a259"
MILLION_A_SUM = "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
# sha1 of the concatenated hex digests of b"a" * n for n in 0..129 (computed with hashlib):
# covers every tail length around the 55/56 and 63/64 padding edges, and two blocks.
PREFIXES_SUM = "020e571fd23e2a086018fa9bfa2fb3269f35017a"
# sha1(bytes(range(256)) * 4), computed with hashlib.
RANGE1024_SUM = "5b00669c480d5cffbdfa8bdba99561160f2d1b77"


def test_fips_vectors_one_shot():
    assert Sha1().hexdigest() == EMPTY
    assert Sha1(b"").hexdigest() == EMPTY
    assert Sha1(b"abc").hexdigest() == ABC
    assert Sha1(MSG448).hexdigest() == MSG448_SUM
    assert Sha1(MSG896).hexdigest() == MSG896_SUM


def test_million_a_in_chunks():
    h = Sha1()
    chunk = b"a" * 1000  # 1000 is not a multiple of 64: the tail path runs every time
    for _ in range(1000):
        h.update(chunk)
    assert h.hexdigest() == MILLION_A_SUM


def test_digest_is_bytes_of_hexdigest():
    d = Sha1(b"abc").digest()
    assert isinstance(d, bytes)
    assert len(d) == 20
    assert "".join("%02x" % x for x in d) == ABC


def test_every_tail_length():
    outer = Sha1()
    for n in range(130):
        outer.update(Sha1(b"a" * n).hexdigest().encode())
    assert outer.hexdigest() == PREFIXES_SUM


def test_split_at_every_position():
    for i in range(len(MSG896) + 1):
        h = Sha1(MSG896[:i])
        h.update(MSG896[i:])
        assert h.hexdigest() == MSG896_SUM, i


def test_byte_at_a_time():
    h = Sha1()
    for i in range(len(MSG448)):
        h.update(MSG448[i : i + 1])
    assert h.hexdigest() == MSG448_SUM


def test_chunk_sizes_around_block():
    data = bytes(range(256)) * 4
    for size in (1, 63, 64, 65, 100, 128, 1023, 1024):
        h = Sha1()
        for i in range(0, len(data), size):
            h.update(data[i : i + size])
        assert h.hexdigest() == RANGE1024_SUM, size


def test_accepts_bytearray_and_memoryview():
    assert Sha1(bytearray(b"abc")).hexdigest() == ABC
    assert Sha1(memoryview(b"abc")).hexdigest() == ABC
    buf = bytearray(b"xx" + MSG896 + b"yy")
    h = Sha1()
    h.update(memoryview(buf)[2 : 2 + len(MSG896)])  # an offset view, as a readinto loop gives
    assert h.hexdigest() == MSG896_SUM


def test_caller_buffer_reuse_does_not_corrupt_state():
    # A readinto loop overwrites its buffer after each update(): the hash must not
    # keep a reference to the caller's bytes.
    buf = bytearray(100)
    h = Sha1()
    for i in range(0, len(MSG896), 100):
        part = MSG896[i : i + 100]
        buf[: len(part)] = part
        h.update(memoryview(buf)[: len(part)])
        for j in range(len(buf)):
            buf[j] = 0xFF
    assert h.hexdigest() == MSG896_SUM


def test_empty_updates_change_nothing():
    h = Sha1(b"ab")
    h.update(b"")
    h.update(bytearray())
    h.update(b"c")
    h.update(memoryview(b""))
    assert h.hexdigest() == ABC


def test_str_is_refused():
    try:
        Sha1().update("abc")
    except TypeError as exc:
        assert "str" in str(exc)
    else:
        raise AssertionError("str accepted")


def test_digest_does_not_end_the_hash():
    h = Sha1(b"a")
    first = h.hexdigest()
    assert h.hexdigest() == first
    h.update(b"bc")
    assert h.hexdigest() == ABC
    assert h.digest() == h.digest()


def test_copy_is_independent():
    h = Sha1(b"ab")
    c = h.copy()
    c.update(b"c")
    assert c.hexdigest() == ABC
    assert h.hexdigest() == Sha1(b"ab").hexdigest()
    h.update(b"c")
    assert h.hexdigest() == ABC
    # a copy with a partial block then diverging updates on both sides
    h = Sha1(MSG896[:70])
    c = h.copy()
    h.update(MSG896[70:])
    c.update(b"zzz")
    assert h.hexdigest() == MSG896_SUM
    assert c.hexdigest() == Sha1(MSG896[:70] + b"zzz").hexdigest()
    assert c.hexdigest() != MSG896_SUM


def test_attributes():
    h = Sha1()
    assert h.digest_size == 20
    assert h.block_size == 64
    assert h.name == "sha1"
    assert Sha1.digest_size == 20


def _paths():
    """fast=False (the plain code) always; fast=True too where the viper path exists."""
    from edgecore import sha1

    return (False, True) if sha1.fast_compress() else (False,)


def test_plain_and_viper_paths_give_the_fips_and_hashlib_digests():
    data = bytes(range(256)) * 4
    for fast in _paths():
        assert Sha1(fast=fast).hexdigest() == EMPTY, fast
        assert Sha1(b"abc", fast=fast).hexdigest() == ABC, fast
        assert Sha1(MSG448, fast=fast).hexdigest() == MSG448_SUM, fast
        assert Sha1(MSG896, fast=fast).hexdigest() == MSG896_SUM, fast
        for i in (0, 1, 55, 56, 63, 64, 65, len(MSG896)):
            h = Sha1(MSG896[:i], fast=fast)
            h.update(MSG896[i:])
            assert h.hexdigest() == MSG896_SUM, (fast, i)
        for size in (1, 63, 64, 65, 1024):
            h = Sha1(fast=fast)
            for i in range(0, len(data), size):
                h.update(memoryview(data)[i : i + size])  # offset views, as readinto gives
            assert h.hexdigest() == RANGE1024_SUM, (fast, size)
        outer = Sha1(fast=fast)
        for n in range(130):
            outer.update(Sha1(b"a" * n, fast=fast).hexdigest().encode())
        assert outer.hexdigest() == PREFIXES_SUM, fast
        c = Sha1(MSG896[:70], fast=fast).copy()
        c.update(MSG896[70:])
        assert c.hexdigest() == MSG896_SUM, fast


def test_viper_path_runs_where_the_emitter_exists():
    import sys

    from edgecore import sha1

    if sys.implementation.name != "micropython" or sys.platform == "webassembly":
        # CPython has no viper; the WebAssembly port has no native emitter.
        assert sha1.fast_compress() is None
        assert Sha1()._compress is sha1._compress
    else:  # the real unix and qemu (Cortex-M3) builds
        assert sha1.fast_compress() is not None, sys.platform
        assert Sha1()._compress is sha1._compress_fast
        assert Sha1(fast=False)._compress is sha1._compress
