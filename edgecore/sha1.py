"""Pure-Python SHA1 (FIPS 180-4), for ports whose ``hashlib`` has no ``sha1``.

Only ``edgecore.checksum.new_hasher`` should pick this; where ``hashlib.sha1``
exists it is used instead (it is a hundred times faster). The interface follows
``hashlib``: ``Sha1(data=b"")``, ``update()``, ``digest()``, ``hexdigest()``,
``copy()``, ``digest_size``, ``block_size``, ``name``.

Runs unchanged on CPython and MicroPython. Whole 64-byte blocks are compressed
straight from the caller's buffer (``struct.unpack_from`` at an offset, so no
slice copies); only the < 64-byte tail is kept between calls, in one fixed
``bytearray(64)``.

Where MicroPython has the viper emitter (unix, most ARM and Xtensa boards), blocks are
compressed by a ``@micropython.viper`` function (machine-word arithmetic, ~40x the
plain code there). Its source is compiled at first use by the runtime itself: a port
without the emitter (the WebAssembly port, CPython) refuses it, and the plain code is
used; ``mpy-cross`` and frozen firmware never see viper code (it would tie a ``.mpy`` to
one CPU). ``fast_compress()`` says which one runs.
"""

import struct

_M = 0xFFFFFFFF
_H0 = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)


def _compress(h, data, off, nblocks):
    """Compress ``nblocks`` 64-byte blocks of ``data`` from ``off`` into state ``h``.

    Returns the new state tuple. The 80 rounds are unrolled by five so the five
    working variables never need shuffling: after five rounds they are back in
    place. Every value is masked to 32 bits before it is shifted right again.
    """
    M = _M
    unpack_from = struct.unpack_from
    h0, h1, h2, h3, h4 = h
    for _ in range(nblocks):
        w = list(unpack_from(">16I", data, off))
        off += 64
        append = w.append
        for i in range(16, 80):
            x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
            append(((x << 1) | (x >> 31)) & M)
        a = h0
        b = h1
        c = h2
        d = h3
        e = h4
        for i in range(0, 20, 5):
            e = (e + ((a << 5) | (a >> 27)) + (d ^ (b & (c ^ d))) + 0x5A827999 + w[i]) & M
            b = ((b << 30) | (b >> 2)) & M
            d = (d + ((e << 5) | (e >> 27)) + (c ^ (a & (b ^ c))) + 0x5A827999 + w[i + 1]) & M
            a = ((a << 30) | (a >> 2)) & M
            c = (c + ((d << 5) | (d >> 27)) + (b ^ (e & (a ^ b))) + 0x5A827999 + w[i + 2]) & M
            e = ((e << 30) | (e >> 2)) & M
            b = (b + ((c << 5) | (c >> 27)) + (a ^ (d & (e ^ a))) + 0x5A827999 + w[i + 3]) & M
            d = ((d << 30) | (d >> 2)) & M
            a = (a + ((b << 5) | (b >> 27)) + (e ^ (c & (d ^ e))) + 0x5A827999 + w[i + 4]) & M
            c = ((c << 30) | (c >> 2)) & M
        for i in range(20, 40, 5):
            e = (e + ((a << 5) | (a >> 27)) + (b ^ c ^ d) + 0x6ED9EBA1 + w[i]) & M
            b = ((b << 30) | (b >> 2)) & M
            d = (d + ((e << 5) | (e >> 27)) + (a ^ b ^ c) + 0x6ED9EBA1 + w[i + 1]) & M
            a = ((a << 30) | (a >> 2)) & M
            c = (c + ((d << 5) | (d >> 27)) + (e ^ a ^ b) + 0x6ED9EBA1 + w[i + 2]) & M
            e = ((e << 30) | (e >> 2)) & M
            b = (b + ((c << 5) | (c >> 27)) + (d ^ e ^ a) + 0x6ED9EBA1 + w[i + 3]) & M
            d = ((d << 30) | (d >> 2)) & M
            a = (a + ((b << 5) | (b >> 27)) + (c ^ d ^ e) + 0x6ED9EBA1 + w[i + 4]) & M
            c = ((c << 30) | (c >> 2)) & M
        for i in range(40, 60, 5):
            e = (e + ((a << 5) | (a >> 27)) + ((b & c) | (d & (b | c))) + 0x8F1BBCDC + w[i]) & M
            b = ((b << 30) | (b >> 2)) & M
            d = (d + ((e << 5) | (e >> 27)) + ((a & b) | (c & (a | b))) + 0x8F1BBCDC + w[i + 1]) & M
            a = ((a << 30) | (a >> 2)) & M
            c = (c + ((d << 5) | (d >> 27)) + ((e & a) | (b & (e | a))) + 0x8F1BBCDC + w[i + 2]) & M
            e = ((e << 30) | (e >> 2)) & M
            b = (b + ((c << 5) | (c >> 27)) + ((d & e) | (a & (d | e))) + 0x8F1BBCDC + w[i + 3]) & M
            d = ((d << 30) | (d >> 2)) & M
            a = (a + ((b << 5) | (b >> 27)) + ((c & d) | (e & (c | d))) + 0x8F1BBCDC + w[i + 4]) & M
            c = ((c << 30) | (c >> 2)) & M
        for i in range(60, 80, 5):
            e = (e + ((a << 5) | (a >> 27)) + (b ^ c ^ d) + 0xCA62C1D6 + w[i]) & M
            b = ((b << 30) | (b >> 2)) & M
            d = (d + ((e << 5) | (e >> 27)) + (a ^ b ^ c) + 0xCA62C1D6 + w[i + 1]) & M
            a = ((a << 30) | (a >> 2)) & M
            c = (c + ((d << 5) | (d >> 27)) + (e ^ a ^ b) + 0xCA62C1D6 + w[i + 2]) & M
            e = ((e << 30) | (e >> 2)) & M
            b = (b + ((c << 5) | (c >> 27)) + (d ^ e ^ a) + 0xCA62C1D6 + w[i + 3]) & M
            d = ((d << 30) | (d >> 2)) & M
            a = (a + ((b << 5) | (b >> 27)) + (c ^ d ^ e) + 0xCA62C1D6 + w[i + 4]) & M
            c = ((c << 30) | (c >> 2)) & M
        h0 = (h0 + a) & M
        h1 = (h1 + b) & M
        h2 = (h2 + c) & M
        h3 = (h3 + d) & M
        h4 = (h4 + e) & M
    return (h0, h1, h2, h3, h4)


def _byte_view(data):
    """A zero-copy byte view of ``data``; refuses ``str`` (as hashlib does).

    MicroPython's memoryview has no ``cast``/``itemsize``: there, pass byte buffers
    (bytes, bytearray, memoryview of those), which is all a stream ever yields.
    """
    if isinstance(data, str):
        # MicroPython would hash a str's UTF-8 bytes silently; CPython's hashlib refuses.
        raise TypeError("Sha1.update: data must be bytes, bytearray or memoryview, not str")
    mv = memoryview(data)
    # CPython: a memoryview over e.g. array('I') counts items, not bytes.
    if getattr(mv, "itemsize", 1) != 1:
        mv = mv.cast("B")
    return mv


# Compiled at first use (see the module docstring). Arithmetic on machine words: on a
# 64-bit build the sums carry bits above 32, so ``a`` is cut to 32 bits through a ptr32
# store (st[5]) before it is rotated again; w[] and the state are 32-bit stores anyway.
# K[] holds the round constants: above 2**30 a literal would be an object, not a word.
_VIPER_SOURCE = """
import micropython


@micropython.viper
def compress(st: ptr32, w: ptr32, k: ptr32, data: ptr8, off: int, nblocks: int):
    for blk in range(nblocks):
        p = off + blk * 64
        for i in range(16):
            q = p + i * 4
            w[i] = (uint(data[q]) << 24) | (uint(data[q + 1]) << 16) \\
                | (uint(data[q + 2]) << 8) | uint(data[q + 3])
        for i in range(16, 80):
            x = uint(w[i - 3]) ^ uint(w[i - 8]) ^ uint(w[i - 14]) ^ uint(w[i - 16])
            w[i] = (x << 1) | (x >> 31)
        a = uint(st[0])
        b = uint(st[1])
        c = uint(st[2])
        d = uint(st[3])
        e = uint(st[4])
        for i in range(80):
            if i < 20:
                f = d ^ (b & (c ^ d))
                kk = uint(k[0])
            elif i < 40:
                f = b ^ c ^ d
                kk = uint(k[1])
            elif i < 60:
                f = (b & c) | (d & (b | c))
                kk = uint(k[2])
            else:
                f = b ^ c ^ d
                kk = uint(k[3])
            st[5] = ((a << 5) | (a >> 27)) + f + e + kk + uint(w[i])
            e = d
            d = c
            st[6] = (b << 30) | (b >> 2)
            c = uint(st[6])
            b = a
            a = uint(st[5])
        st[0] = uint(st[0]) + a
        st[1] = uint(st[1]) + b
        st[2] = uint(st[2]) + c
        st[3] = uint(st[3]) + d
        st[4] = uint(st[4]) + e
"""
_fast = None  # (compress, st, w, k) once compiled; False where the emitter is missing


def fast_compress():
    """The viper compressor's parts, or None where this runtime cannot compile it."""
    global _fast
    if _fast is None:
        _fast = False
        try:
            scope = {}
            exec(_VIPER_SOURCE, scope)
            k = bytearray(16)
            struct.pack_into("4I", k, 0, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)
            _fast = (scope["compress"], bytearray(28), bytearray(320), k)
        except Exception:  # CPython (no micropython module), or no viper emitter here
            pass
    return _fast or None


def _compress_fast(h, data, off, nblocks):
    """``_compress`` by the viper function: the state goes in and out of st[0..4]."""
    compress, st, w, k = _fast
    struct.pack_into("5I", st, 0, h[0], h[1], h[2], h[3], h[4])
    compress(st, w, k, data, off, nblocks)
    return struct.unpack_from("5I", st, 0)


class Sha1:
    """SHA1 with the ``hashlib`` object interface; ``digest()`` does not end the hash."""

    digest_size = 20
    block_size = 64
    name = "sha1"

    def __init__(self, data=b"", fast=True):
        # fast=False: the plain code even where viper exists (tests compare the two).
        self._compress = _compress_fast if fast and fast_compress() else _compress
        self._h = _H0
        self._buf = bytearray(64)  # the < 64-byte tail not yet compressed
        self._buflen = 0
        self._count = 0  # total bytes fed
        if data:
            self.update(data)

    def update(self, data):
        mv = _byte_view(data)
        n = len(mv)
        if not n:
            return
        self._count += n
        off = 0
        buflen = self._buflen
        if buflen:
            # Top up the tail; compress it only once it is a full block.
            take = 64 - buflen
            if take > n:
                take = n
            self._buf[buflen:buflen + take] = mv[:take]
            buflen += take
            off = take
            if buflen < 64:
                self._buflen = buflen
                return
            self._h = self._compress(self._h, self._buf, 0, 1)
            buflen = 0
        nblocks = (n - off) >> 6
        if nblocks:
            self._h = self._compress(self._h, mv, off, nblocks)
            off += nblocks << 6
        rest = n - off
        if rest:
            self._buf[:rest] = mv[off:]
        self._buflen = rest

    def digest(self):
        buflen = self._buflen
        bits = (self._count << 3) & 0xFFFFFFFFFFFFFFFF
        # Tail + 0x80 + zeros up to 56 mod 64 + 64-bit big-endian length: 1 or 2 blocks.
        padlen = 64 if buflen < 56 else 128
        block = bytearray(padlen)
        block[:buflen] = self._buf[:buflen]
        block[buflen] = 0x80
        struct.pack_into(">II", block, padlen - 8, bits >> 32, bits & _M)
        return struct.pack(">5I", *self._compress(self._h, block, 0, padlen >> 6))

    def hexdigest(self):
        import binascii

        return binascii.hexlify(self.digest()).decode()

    def copy(self):
        other = type(self)()
        other._compress = self._compress
        other._h = self._h  # a tuple: safe to share
        other._buf[:] = self._buf
        other._buflen = self._buflen
        other._count = self._count
        return other
