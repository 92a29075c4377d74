"""Streamed verification of artifacts against a deployment's ``Checksum {Type, Sum}``.

``Verifier`` is the one implementation: feed it chunks (``update``) or a whole
readable source (``consume``), then ``finish()`` raises ``ChecksumMismatch`` if
the digest differs. ``verify_stream`` is ``Verifier(...).consume(source)`` plus
``finish()``. A downloader that writes to a file can hash each chunk as it
writes it, and a resumed download can first ``consume`` the partial file, then
``update`` with the rest.

Memory stays constant whatever the artifact size: sources with ``readinto``
are read into ONE reused buffer; ``read(n)`` sources allocate one chunk at a
time (that is their interface). The hash comes from ``new_hasher``:
``hashlib.sha1`` where it exists, else the pure-Python ``edgecore.sha1.Sha1``.

The expected sum is checked before anything is read: the service model's
``ChecksumString`` (``^[a-z0-9](-*[a-z0-9])*$``, 1..63 chars) and, for SHA1,
exactly 40 hex digits. Upper-case hex is accepted and lower-cased (the model's
pattern is lower-case; tools often print upper-case). No I/O here: callers pass
the file objects.
"""

from edgecore.errors import ChecksumMismatch, ParamValidationError, StreamTooLong, short_repr
from edgecore.shapes import check_checksum

SUPPORTED_TYPES = ("SHA1",)
_HEX_LENGTH = {"SHA1": 40}  # ChecksumType -> length of its hex digest


def _default_chunk_size():
    import sys

    # A microcontroller heap can spare a few KiB; on CPython 64 KiB keeps the
    # per-chunk Python overhead under 3% of hashlib's time (benchmarks/RESULTS-checksum.md).
    return 4096 if sys.implementation.name == "micropython" else 65536


DEFAULT_CHUNK_SIZE = _default_chunk_size()


def new_hasher(checksum_type, operation="new_hasher"):
    """A fresh hash object for ``checksum_type``: hashlib's when present, else pure Python.

    Raises ``ParamValidationError`` (field ``Checksum.Type``, rule ``enum``) for
    an unsupported type.
    """
    if checksum_type == "SHA1":
        try:
            import hashlib

            return hashlib.sha1()
        except (ImportError, AttributeError):  # e.g. MicroPython ports without sha1
            from edgecore.sha1 import Sha1

            return Sha1()
    raise ParamValidationError(
        operation, "Checksum.Type", "enum",
        "expected one of %s, got %s" % (", ".join(SUPPORTED_TYPES), short_repr(checksum_type)),
    )


def check_expected(checksum_type, expected_hex, operation="check_expected"):
    """Validate ``expected_hex`` for ``checksum_type``; return it lower-cased.

    Raises ``ParamValidationError`` naming ``Checksum.Type`` or ``Checksum.Sum``.
    """
    if checksum_type not in SUPPORTED_TYPES:  # a tuple: unhashable input is no TypeError
        new_hasher(checksum_type, operation)  # raises the enum error
    if not isinstance(expected_hex, str):
        raise ParamValidationError(
            operation, "Checksum.Sum", "type",
            "expected a string of hex digits, got %s" % type(expected_hex).__name__,
        )
    s = expected_hex.lower()
    if not 1 <= len(s) <= 63 or not check_checksum(s):
        raise ParamValidationError(
            operation, "Checksum.Sum", "pattern",
            "expected 1..63 chars matching ^[a-z0-9](-*[a-z0-9])*$, got %s"
            % short_repr(expected_hex),
        )
    want = _HEX_LENGTH[checksum_type]
    if len(s) != want or not all(ch in "0123456789abcdef" for ch in s):
        raise ParamValidationError(
            operation, "Checksum.Sum", "pattern",
            "expected %d hex digits for %s, got %s"
            % (want, checksum_type, short_repr(expected_hex)),
        )
    return s


class Verifier:
    """Incremental verification: ``update(chunk)`` / ``consume(source)``, then ``finish()``.

    ``limit`` (optional) is the declared size: feeding more raises ``StreamTooLong``
    before the extra bytes are hashed. ``hexdigest()`` and ``finish()`` end the hash
    (MicroPython's hashlib objects can neither be copied nor fed after ``digest()``),
    so ``update()`` afterwards raises ``ValueError``; both may be called again.
    """

    def __init__(self, checksum_type, expected_hex, limit=None, operation="Verifier"):
        self.operation = operation
        self.algorithm = checksum_type
        self.expected = check_expected(checksum_type, expected_hex, operation)
        self.limit = limit
        self.bytes_seen = 0
        self._hash = new_hasher(checksum_type, operation)
        self._hex = None  # set once the hash is finalised

    def update(self, chunk):
        if self._hex is not None:
            raise ValueError("%s.update: called after hexdigest()/finish()" % self.operation)
        n = len(chunk)
        seen = self.bytes_seen + n
        if self.limit is not None and seen > self.limit:
            raise StreamTooLong(self.operation, self.limit, seen)
        self._hash.update(chunk)
        self.bytes_seen = seen

    def consume(self, source, chunk_size=DEFAULT_CHUNK_SIZE, buffer=None):
        """Feed everything ``source`` yields until EOF; return the bytes read from it.

        ``source``: an object with ``readinto(buf)`` (preferred: one reused buffer,
        ``buffer`` if given -- its length is then the chunk size -- else
        ``memoryview(bytearray(chunk_size))``), or with ``read(n)``, or a callable
        ``read(n)``. EOF is ``0`` from readinto or an empty result from read.

        Raises ``ValueError`` (naming the operation) when ``readinto`` returns None
        (a non-blocking stream), a negative count or more than the buffer's length,
        or ``read`` returns None.
        """
        start = self.bytes_seen
        update = self.update
        readinto = getattr(source, "readinto", None)
        if readinto is not None:
            buf = memoryview(buffer if buffer is not None else bytearray(chunk_size))
            size = len(buf)
            if not size:
                raise ValueError("%s: buffer/chunk_size must be at least 1 byte" % self.operation)
            while True:
                n = readinto(buf)
                if not n:
                    if n is None:
                        # A non-blocking stream with no data yet: treating it as EOF
                        # would turn a slow network into a checksum mismatch.
                        raise ValueError(
                            "%s: source.readinto returned None (non-blocking, no data);"
                            " expected a blocking stream" % self.operation
                        )
                    break
                if n < 0 or n > size:
                    # A negative count would slice from the end (hashing the wrong bytes);
                    # more than the buffer is a broken source. Either way: refuse.
                    raise ValueError(
                        "%s: source.readinto returned %d; expected 0..%d (the buffer size)"
                        % (self.operation, n, size)
                    )
                update(buf[:n] if n < size else buf)
        else:
            read = getattr(source, "read", None)
            if read is None:
                if not callable(source):
                    raise TypeError(
                        "%s: source must have readinto(buf) or read(n), or be a callable"
                        " read(n); got %s" % (self.operation, type(source).__name__)
                    )
                read = source
            if chunk_size < 1:
                raise ValueError("%s: chunk_size must be at least 1 byte" % self.operation)
            while True:
                data = read(chunk_size)
                if not data:
                    if data is None:
                        raise ValueError(
                            "%s: source.read returned None (non-blocking, no data);"
                            " expected a blocking stream" % self.operation
                        )
                    break
                update(data)
        return self.bytes_seen - start

    def hexdigest(self):
        """The digest of everything fed, as lower-case hex; ends the hash."""
        if self._hex is None:
            import binascii

            self._hex = binascii.hexlify(self._hash.digest()).decode()
            self._hash = None
        return self._hex

    def finish(self):
        """Return the bytes seen, or raise ``ChecksumMismatch`` if the digest differs."""
        actual = self.hexdigest()
        if actual != self.expected:
            raise ChecksumMismatch(self.algorithm, self.expected, actual, self.bytes_seen)
        return self.bytes_seen


def verify_stream(source, checksum_type, expected_hex, chunk_size=DEFAULT_CHUNK_SIZE,
                  buffer=None, limit=None):
    """Read ``source`` to EOF in fixed chunks, hashing as it goes; return the bytes read.

    Raises ``ParamValidationError`` (bad type or sum, before reading),
    ``StreamTooLong`` (more than ``limit`` bytes), ``ChecksumMismatch`` (at the end).
    See ``Verifier.consume`` for the accepted sources.
    """
    verifier = Verifier(checksum_type, expected_hex, limit=limit, operation="verify_stream")
    verifier.consume(source, chunk_size, buffer)
    return verifier.finish()
