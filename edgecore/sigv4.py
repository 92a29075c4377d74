"""AWS Signature Version 4 request signing, pure Python, for CPython and MicroPython.

One entry point, ``sign_request``, with explicit inputs (the caller supplies the time),
plus the intermediates (``canonical_request``, ``string_to_sign``, ``signing_key``,
``signature``) so each step can be checked against AWS's test-suite vectors.

Canonicalization follows botocore's ``SigV4Auth`` / ``S3SigV4Auth`` exactly:

* ``url``'s path is canonicalized per segment: for ``s3`` the path as sent is used as it
  is (S3 encodes once, no normalization); for every other service dot segments and
  empty segments are removed and the path is URI-encoded once more (AWS's "double
  encoding"). Build paths from raw text with ``quote(segment_or_path)``, or leave raw
  characters to ``sign`` (below).
* The query string is split on ``&`` and ``=`` and sorted by key, then value, as the
  pairs appear in the URL (no re-encoding, ``+`` kept as ``+``; ``a`` signs as ``a=``).
  Build it with ``encode_query(pairs)``.
* Every header is signed except botocore's list (``user-agent``, ``expect``,
  ``transfer-encoding``, ``x-amzn-trace-id`` and the hop-by-hop headers); names are
  lower-cased, values trimmed with inner whitespace runs collapsed, names that differ
  only in case and list values are joined with ``,``. ``sign_request`` returns such
  names merged into ONE header under the first spelling met, its value the joined,
  trimmed values: an HTTP client would otherwise send only one of them (requests keeps
  the last) or separate lines, and the server would not see what was signed. They are
  joined in the order the ``headers`` dict iterates: insertion order on CPython, as
  botocore does; MicroPython's dicts have their own (fixed) order, and as the merged
  value is what is sent, the signature always matches the request.

``sign(method, url, ...) -> (url, headers)`` takes a URL as text: raw spaces, non-ASCII
characters and the other characters an HTTP client would escape (``"<>\\^`{|}``, and
``[`` ``]`` outside an IPv6 host) are percent-encoded once (UTF-8, upper-case hex) in
the path and query; the result is the URL to send -- exactly the one that was signed --
and what is already encoded stays as it is. For ``s3`` the canonical path is that URL's
path; for other services it is the path as given, URI-encoded once more (botocore's and
the AWS test suite's rule: ``get-utf8``, ``normalize-path/get-space`` and
``get-vanilla-utf8-query`` sign as the suite says). ``sign_request`` is the same
signature with the headers alone (the caller then sends ``wire_url(url)``).

Both refuse what cannot be sent as signed: a control character in the URL, a broken
``%`` escape, a lower-case one (``%c3``: urllib3 re-cases it to ``%C3``) or an escaped
unreserved character (``%41``: clients unescape it) raise ValueError naming the field;
for ``s3`` so does a ``.`` or ``..`` path segment (S3 signs the path as is, but HTTP
clients and proxies resolve dot segments before sending). A header name that is not an
HTTP token, or a value with a line break, another control or a non-ASCII character, is
refused too. The transport must send the URL verbatim (the CPython port does). A
``url`` with userinfo (``user:pass@host``) is refused without echoing it: it is not
signed, may hold a password, and would leak into logs. The intermediates apply no such
checks (they canonicalize whatever they get, like botocore, which is what the AWS test
suite's raw request lines need).

Deviations from botocore, on purpose: an empty path signs as ``/`` for S3 too (the
request line carries ``/``); a caller's ``Date`` header is signed as given and
``X-Amz-Date`` is always set (botocore would rewrite ``Date`` and drop ``X-Amz-Date``).

HMAC-SHA256 is built on ``hashlib.sha256`` alone (no ``hmac`` module, no ``copy()``),
and with no big-integer arithmetic (ports without long ints import and run it).
Derived signing keys are cached per (secret, day, region, service) in a small
module-private dict keyed by a SHA-256 of the secret, never by the secret itself; the
last secret's digest is memoised (in an object whose repr never shows it) so the same
credentials are not re-hashed on every call. The checked, encoded and canonicalized
form of recently signed URLs is kept in a second bounded dict. On MicroPython neither
cache is kept: entries made during an agent's cycle would stay among its short-lived
allocations and split a board's small heap; a request there derives its key (five
HMACs) and checks its URL again. Secrets never appear in exception messages, nor in the
exceptions they chain.
"""

import binascii
import hashlib
import sys

from edgecore.amztime import amz_date
from edgecore.wire import utf8_buffer

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# botocore.auth.SIGNED_HEADERS_BLACKLIST (botocore 1.43): sent, but never signed.
UNSIGNED_HEADERS = (
    "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
)

# Entries per cache (signing keys per secret/day/region/service; URLs); none on
# MicroPython (see the module doc: the 4-cycle agent scenario then completes in a 52 KiB
# heap instead of 55, benchmarks/RESULTS.md).
_CACHE_MAX = 8 if sys.implementation.name != "micropython" else 0
_key_cache = {}
_url_cache = {}
_last_date = (None, None)
_last_names = None

_sha256 = hashlib.sha256
_XOR_TABLES = None
if hasattr(b"", "translate"):
    _XOR_TABLES = (bytes([b ^ 0x36 for b in range(256)]), bytes([b ^ 0x5C for b in range(256)]))
_HEX = "0123456789ABCDEF"  # upper case only: urllib3 re-cases "%c3" to "%C3" before sending
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
# What may appear in a wire URL's path and query unchanged: RFC 3986 unreserved +
# reserved + "%", less "[" and "]" (urllib3 percent-encodes them in a path or query; they
# are allowed in the host, for IPv6 literals). An HTTP client (requests, urllib3) would
# percent-encode anything else before sending it: so does wire_url, once.
_URL_CHARS = _UNRESERVED + ":/?#@!$&'()*+,;=%"
_TOKEN_CHARS = _UNRESERVED + "!#$%&'*+^`|"
_NETLOC_CHARS = _UNRESERVED + ":[]!$&'()*+,;=%"
_PRINTABLE_CHARS = "".join([chr(i) for i in range(32, 127)])
_VALUE_CHARS = _PRINTABLE_CHARS + "\t"
# CPython: one 256-entry table per `safe` for quote (cached), and the character classes as
# sets, so a whole string is checked with one C-level set(s) <= ALLOWED (plain sets:
# some ports lack frozenset; never mutated). MicroPython: neither (a table holds 256
# heap strings, ~7 KB, and a set of characters ~400 bytes, of a board's 64 KiB heap): the
# classes are bytes, checked byte by byte over a view of the str (_only).
_TABLES = sys.implementation.name != "micropython"
_CLASS = set if _TABLES else (lambda chars: chars.encode())
_URL_OK = _CLASS(_URL_CHARS)
_NETLOC_OK = _CLASS(_NETLOC_CHARS)
_TOKEN_OK = _CLASS(_TOKEN_CHARS)
_PRINTABLE_OK = _CLASS(_PRINTABLE_CHARS)
_VALUE_OK = _CLASS(_VALUE_CHARS)
_HAS_ISPRINTABLE = hasattr("", "isprintable")  # CPython yes, MicroPython no
_quote_tables = {}


def _only(value, allowed):
    """Whether every character of str ``value`` is in the class ``allowed`` (one of the
    ``_*_OK`` above). On MicroPython the str's UTF-8 bytes are read through a view:
    iterating a str there interns every character it yields, for good."""
    if _TABLES:
        return set(value) <= allowed
    return all(b in allowed for b in utf8_buffer(value))


def _hmac_pads(key):
    # (key XOR ipad, key XOR opad) blocks of the zero-padded key. Where bytes.translate
    # exists (CPython) a 256-entry table does the XOR at C speed; elsewhere (MicroPython)
    # a byte loop over a bytearray (no big ints needed; runs once per derived key, cached).
    if len(key) > 64:
        key = _sha256(key).digest()
    key = bytes(key) + bytes(64 - len(key))
    if _XOR_TABLES is not None:
        return key.translate(_XOR_TABLES[0]), key.translate(_XOR_TABLES[1])
    inner = bytearray(64)
    outer = bytearray(64)
    for i in range(64):
        b = key[i]
        inner[i] = b ^ 0x36
        outer[i] = b ^ 0x5C
    return bytes(inner), bytes(outer)


def _hmac_with_pads(pads, msg):
    inner = _sha256(pads[0])
    inner.update(msg)
    outer = _sha256(pads[1])
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) of bytes ``msg`` under bytes ``key``, from hashlib.sha256 only."""
    return _hmac_with_pads(_hmac_pads(key), msg)


def _hex(digest):
    # MicroPython hashlib has no hexdigest() and bytes.hex() is optional on its ports.
    return binascii.hexlify(digest).decode()


_PCT = "".join(["%%%02X" % b for b in range(256)]) if _TABLES else None


def _quote_table(safe):
    table = _quote_tables.get(safe)
    if table is None:
        keep = _UNRESERVED + safe
        table = [chr(b) if b < 128 and chr(b) in keep else _PCT[3 * b : 3 * b + 3]
                 for b in range(256)]
        if len(_quote_tables) < 8:
            _quote_tables[safe] = table
    return table


def quote(s, safe="/~"):
    """Percent-encode str (as UTF-8) or bytes the way AWS wants (uppercase hex).

    RFC 3986 unreserved characters (A-Z a-z 0-9 - _ . ~) and those in ``safe`` are kept;
    everything else, ``%`` included, is encoded. ``quote(key)`` keeps ``/`` (an S3 object
    path); ``quote(value, safe="")`` encodes a query key or value or a path segment.
    Same result as ``urllib.parse.quote(s, safe)`` for those inputs.
    """
    if _TABLES:
        data = s.encode() if isinstance(s, str) else bytes(s)
        table = _quote_table(safe)
        return "".join([table[b] for b in data])
    keep = (_UNRESERVED + safe).encode()
    data = utf8_buffer(s) if isinstance(s, str) else memoryview(s)  # not copied (MicroPython)
    for b in data:
        if b not in keep:
            break
    else:  # nothing to encode (an S3 key, an API path): no list of its characters
        return s if isinstance(s, str) else str(s, "ascii")
    out = []
    for b in data:
        out.append(chr(b) if b in keep else "%%%02X" % b)
    return "".join(out)


def encode_query(pairs):
    """``k=v&k2=v2`` from (key, value) pairs, each quoted with only unreserved kept.

    The order is kept (the signature sorts on its own); a value of None gives a bare key.
    """
    out = []
    for k, v in pairs:
        k = quote(k, "")
        out.append(k if v is None else k + "=" + quote(v, ""))
    return "&".join(out)


def payload_sha256(body):
    """Hex SHA-256 of a body: bytes-like, str (UTF-8) or None (empty)."""
    if body is None:
        return EMPTY_SHA256
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError("sign_request: body must be bytes, bytearray, memoryview, str or None, "
                         "got %s" % type(body).__name__)
    if not len(body):
        return EMPTY_SHA256
    return _hex(_sha256(body).digest())


def split_url(url):
    """(scheme, netloc, path, query) of an absolute URL, as urllib.parse.urlsplit cuts it."""
    i = url.find("://")
    if i <= 0:
        # Echo only what cannot be a password (no "@": maybe user:pass@host).
        raise ValueError("sign_request: url must be absolute, like https://host/path, got %s"
                         % ("a str with '@'" if "@" in url else repr(url[:80])))
    scheme = url[:i].lower()
    rest = url[i + 3:]
    end = len(rest)
    for c in "/?#":
        j = rest.find(c)
        if 0 <= j < end:
            end = j
    netloc = rest[:end]
    rest = rest[end:]
    j = rest.find("#")
    if j >= 0:
        rest = rest[:j]
    j = rest.find("?")
    if j >= 0:
        return scheme, netloc, rest[:j], rest[j + 1:]
    return scheme, netloc, rest, ""


def host_header(scheme, netloc):
    """The Host value botocore derives: lower-cased, no userinfo, default port dropped."""
    hostinfo = netloc[netloc.rfind("@") + 1:]
    if hostinfo.startswith("["):
        j = hostinfo.find("]")
        if j < 0:
            raise ValueError("sign_request: url host: unterminated IPv6 literal in %r" % hostinfo)
        host = hostinfo[:j + 1].lower()
        port = hostinfo[j + 1:]
        if port and port[0] != ":":
            raise ValueError("sign_request: url host: expected [IPv6]:port, got %r" % hostinfo)
        port = port[1:]
    else:
        j = hostinfo.find(":")
        host = (hostinfo if j < 0 else hostinfo[:j]).lower()
        port = "" if j < 0 else hostinfo[j + 1:]
    if not host or host == "[]":
        raise ValueError("sign_request: url must name a host, got %r" % hostinfo)
    if port:
        for c in port:
            if c not in "0123456789":
                raise ValueError("sign_request: url port must be digits 0-65535, got %r" % port)
        n = int(port)
        if n > 65535:
            raise ValueError("sign_request: url port must be digits 0-65535, got %r" % port)
        if not ((scheme == "https" and n == 443) or (scheme == "http" and n == 80)):
            host = "%s:%d" % (host, n)
    return host


def _remove_dot_segments(path):
    # RFC 3986 5.2.4 plus AWS's collapsing of empty segments (botocore's remove_dot_segments).
    out = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if out:
                    out.pop()
            else:
                out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_uri(path, service):
    """The CanonicalURI line: S3 uses the wire path as is; others normalize and encode it."""
    if not path:
        return "/"
    if service == "s3":
        return path
    return quote(_remove_dot_segments(path), "/~")


def canonical_query(query):
    """The CanonicalQueryString line from the URL's query (botocore's rules, see module doc)."""
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        j = pair.find("=")
        pairs.append((pair, "") if j < 0 else (pair[:j], pair[j + 1:]))
    pairs.sort()
    return "&".join([k + "=" + v for k, v in pairs])


def _trimall(value):
    # "Trimall": strip, and collapse runs of whitespace to one space.
    return " ".join(value.split())


def _add(groups, lname, value):
    # Values of names differing only in case are separate header lines on the wire; the
    # server joins them with "," after trimming each (list values were joined before).
    v = _trimall(value)
    prev = groups.get(lname)
    groups[lname] = v if prev is None else prev + "," + v


def _header_groups(headers):
    # lower-cased signed name -> canonical value, joined in the dict's iteration order.
    groups = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname not in UNSIGNED_HEADERS:
            _add(groups, lname, ",".join(value) if isinstance(value, (list, tuple)) else value)
    return groups


def _canonical(method, uri, cquery, groups, payload_hash):
    # -> (canonical request, signed headers)
    names = sorted(groups)
    lines = [method.upper(), uri, cquery]
    for name in names:
        lines.append(name + ":" + groups[name])
    signed = ";".join(names)
    lines.append("")
    lines.append(signed)
    lines.append(payload_hash)
    return "\n".join(lines), signed


def canonical_request(method, url, headers, payload_hash, service):
    """The canonical request string for ``headers`` exactly as they will be signed.

    ``headers`` must already hold X-Amz-Date (and the token and content hash if any);
    Host is derived from ``url`` when absent. ``payload_hash`` is the hex SHA-256 of the
    body or ``UNSIGNED-PAYLOAD``. No input checks (see the module doc).
    """
    scheme, netloc, path, query = split_url(url)
    groups = _header_groups(headers)
    if "host" not in groups:
        groups["host"] = host_header(scheme, netloc)
    return _canonical(method, canonical_uri(path, service), canonical_query(query), groups,
                      payload_hash)[0]


def credential_scope(datestamp, region, service):
    return datestamp + "/" + region + "/" + service + "/aws4_request"


def string_to_sign(canonical, amzdate, region, service):
    """The StringToSign for a canonical request signed at ``amzdate`` (YYYYMMDDTHHMMSSZ)."""
    return "%s\n%s\n%s\n%s" % (
        ALGORITHM, amzdate, credential_scope(amzdate[:8], region, service),
        _hex(_sha256(canonical.encode()).digest()))


def signing_key(secret_key, datestamp, region, service):
    """The derived key kSigning (bytes) for one day, region and service; not cached."""
    k = b"AWS4" + _secret_bytes(secret_key)
    for msg in (datestamp, region, service, "aws4_request"):
        k = _hmac_with_pads(_hmac_pads(k), msg.encode())
    return k


def _secret_bytes(secret_key):
    # UTF-8 of the secret. A lone surrogate cannot be encoded, and the UnicodeEncodeError
    # quotes the whole string: raise a plain ValueError OUTSIDE the except block, so the
    # secret is neither in the message nor in __cause__/__context__.
    data = None
    try:
        data = secret_key.encode("utf-8")
    except UnicodeError:
        pass
    if data is None:
        raise ValueError("sign_request: secret_key must be text encodable as UTF-8 "
                         "(it holds a lone surrogate or similar)")
    return data


class _SecretMemo:
    """The last secret and its SHA-256, as one tuple rebound at once (so concurrent
    signers never see a torn pair). Its repr never shows the secret."""

    def __init__(self):
        self.last = (None, None)

    def __repr__(self):
        return "<sigv4 secret digest memo (redacted)>"


_secret_memo = _SecretMemo()


def _secret_digest(secret_key):
    last = _secret_memo.last
    if last[0] == secret_key:  # the same credentials as last time: identity, then value
        return last[1]
    digest = _sha256(_secret_bytes(secret_key)).digest()
    _secret_memo.last = (secret_key, digest)
    return digest


def _cached_signing_pads(secret_key, datestamp, region, service):
    # Keyed by a digest of the secret so the dict never holds the secret itself; holds
    # the HMAC pad blocks of the signing key, so a signature costs two SHA-256 only.
    ck = (_secret_digest(secret_key), datestamp, region, service)
    pads = _key_cache.get(ck)
    if pads is None:
        pads = _hmac_pads(signing_key(secret_key, datestamp, region, service))
        if len(_key_cache) >= _CACHE_MAX:
            _key_cache.clear()  # bounded; dicts are unordered on MicroPython, so no LRU
        if _CACHE_MAX:
            _key_cache[ck] = pads
    return pads


def _url_info(url, service):
    # (wire URL, Host, CanonicalURI, CanonicalQueryString) of a checked URL. Cached: an
    # agent signs the same few URLs again and again, and checking + encoding is most of
    # the work.
    if not isinstance(url, str):
        raise ValueError("sign_request: url must be str, got %s" % type(url).__name__)
    ck = (url, service)
    info = _url_cache.get(ck)
    if info is None:
        wire = _wire(url, service)
        scheme, netloc, path, query = split_url(wire)
        if service != "s3" and wire != url:
            path = split_url(url)[2]  # raw characters are encoded once only (see above)
        info = (wire, host_header(scheme, netloc), canonical_uri(path, service),
                canonical_query(query))
        if len(_url_cache) >= _CACHE_MAX:
            _url_cache.clear()
        if _CACHE_MAX:
            _url_cache[ck] = info
    return info


def _amz_date(timestamp):
    # One-entry memo: signing several requests in the same second formats once. One
    # tuple, rebound at once, so threads signing concurrently never see a torn pair.
    global _last_date
    last = _last_date
    if last[0] != timestamp or type(last[0]) is not type(timestamp):
        last = (timestamp, amz_date(timestamp))
        _last_date = last
    return last[1]


def signature(key, sts):
    """Hex signature of a string to sign under a derived signing key."""
    return _hex(hmac_sha256(key, sts.encode()))


def _first_bad(value, allowed):
    # Only on the error path: the fast check is _only(value, allowed).
    for i in range(len(value)):
        if not _only(value[i], allowed):
            return i
    return -1


def wire_url(url, service=None):
    """The URL to send for ``url`` given as text: see the module doc (``sign``).

    Raw characters an HTTP client would escape are percent-encoded once in the path and
    query; the fragment is dropped (clients never send it). Raises ValueError naming
    the field for what cannot be sent as signed.
    """
    if not isinstance(url, str):
        raise ValueError("sign_request: url must be str, got %s" % type(url).__name__)
    return _wire(url, service)


def _wire(url, service):
    scheme, netloc, path, query = split_url(url)
    if "@" in netloc:
        # Not echoed: user:password@ is a secret, and it is not signed anyway.
        raise ValueError("sign_request: url must not carry userinfo (user:password@host); "
                         "authenticate with the signature instead")
    if not _only(netloc, _NETLOC_OK):
        i = _first_bad(netloc, _NETLOC_OK)
        raise ValueError("sign_request: url host must be ASCII letters, digits, '-', '.', "
                         "':' or an [IPv6] literal; found %r at index %d"
                         % (netloc[i], len(scheme) + 3 + i))
    start = len(scheme) + 3 + len(netloc)  # the path and query follow the host
    rest = url[start:]
    j = rest.find("#")
    if j >= 0:
        rest = rest[:j]
    _check_escapes(rest, start)
    if not _only(rest, _URL_OK):
        rest = _encode_raw(rest, start)
    if service == "s3" and "." in path:
        for seg in path.split("/"):
            if seg == "." or seg == "..":
                raise ValueError(
                    "sign_request: url path has a %r segment; S3 signs the path as is but "
                    "HTTP clients and proxies resolve dot segments before sending, so the "
                    "signature would not match (name the object without them)" % seg)
    return url[:start] + rest


def _encode_raw(text, offset):
    # Percent-encode, once, what a client would: space, non-ASCII, "<>\^`{|}[]" -- but
    # refuse control characters (a CR/LF would split the request line).
    out = []
    for i in range(len(text)):
        c = text[i]
        if _only(c, _URL_OK):
            out.append(c)
        elif c < " " or c == "\x7f":
            raise ValueError("sign_request: url has a control character (code %d) at index %d"
                             % (ord(c), offset + i))
        else:
            try:
                out.append(quote(c, ""))
            except UnicodeError:  # a lone surrogate: no UTF-8 for it
                raise ValueError("sign_request: url has a character that is not text (a lone "
                                 "surrogate) at index %d" % (offset + i)) from None
    return "".join(out)


def _check_escapes(rest, offset):
    # The caller's own escapes, before raw characters are encoded (which adds only
    # well-formed ones): indexes are those of the caller's url.
    i = rest.find("%")
    while i >= 0:
        esc = rest[i + 1:i + 3]
        if len(esc) != 2 or esc[0] not in _HEX or esc[1] not in _HEX:
            raise ValueError("sign_request: url has a '%%' not followed by two upper-case hex "
                             "digits at index %d (HTTP clients re-case '%%c3' to '%%C3'); "
                             "encode a literal '%%' as %%25" % (offset + i))
        if chr(int(esc, 16)) in _UNRESERVED:
            # HTTP clients unescape these before sending, which would change the signature.
            raise ValueError("sign_request: url escapes an unreserved character (%%%s at index "
                             "%d); write it unescaped" % (esc, offset + i))
        i = rest.find("%", i + 3)


def _printable_ascii(value):
    # Every character in " ".."~"? str.isprintable (C speed, CPython only) is a shortcut:
    # ASCII and printable means exactly that range. Same answer on every runtime.
    if _HAS_ISPRINTABLE:
        return len(value.encode()) == len(value) and value.isprintable()
    return _only(value, _PRINTABLE_OK)


def _check_value(field, value):
    # Header values: visible ASCII, space and tab. Others are either header injection
    # (CR, LF) or bytes an HTTP client encodes differently from how they are signed.
    # Values may be tokens or credentials: never echo them.
    if not isinstance(value, str):
        raise ValueError("sign_request: %s must be str, got %s" % (field, type(value).__name__))
    if not (_printable_ascii(value) or _only(value, _VALUE_OK)):
        i = _first_bad(value, _VALUE_OK)
        if value[i] in "\r\n":
            raise ValueError("sign_request: %s cannot hold a line break (CR or LF at index %d): "
                             "HTTP has no multi-line header values" % (field, i))
        raise ValueError("sign_request: %s must be printable ASCII, space or tab (bad character "
                         "at index %d)" % (field, i))


def _check_name(field, value):
    if (not isinstance(value, str) or not value or not _printable_ascii(value)
            or " " in value or "/" in value):
        raise ValueError("sign_request: %s must be a non-empty str of printable ASCII without "
                         "'/' or spaces" % field)


# Headers sign_request sets itself; a caller's copy (any spelling) is replaced.
_REPLACED = ("authorization", "x-amz-date")


def sign_request(method, url, headers, body, access_key=None, secret_key=None,
                 session_token=None, region=None, service=None, timestamp=None,
                 payload_hash=None):
    """Sign one request; return a NEW dict of headers to send (``sign(...)[1]``).

    Send it to ``wire_url(url)`` (the same as ``url`` when that was already encoded).
    """
    return sign(method, url, headers, body, access_key, secret_key, session_token, region,
                service, timestamp, payload_hash)[1]


def sign(method, url, headers, body, access_key=None, secret_key=None, session_token=None,
         region=None, service=None, timestamp=None, payload_hash=None):
    """Sign one request; return ``(url, headers)``: the URL to send and a NEW header dict.

    The result holds the given headers plus ``Host`` (unless given), ``X-Amz-Date``,
    ``X-Amz-Security-Token`` (with a session token), ``Authorization``, and for
    ``service == "s3"`` ``X-Amz-Content-Sha256``. ``timestamp`` is epoch seconds.
    ``payload_hash`` overrides hashing ``body``: a precomputed lowercase hex SHA-256 or
    ``UNSIGNED-PAYLOAD`` (which also sets X-Amz-Content-Sha256, as botocore does).
    Without it, a caller's X-Amz-Content-Sha256 header is the signed payload hash for
    services other than S3 (botocore's rule). List or tuple header values are sent and
    signed as one ``,``-joined value. The URL is ``url`` with raw characters encoded once
    (see the module doc). Raises ValueError naming the field on bad input.
    """
    global _last_names
    names = (method, access_key, region, service)
    if names != _last_names:  # the same four on every call of an agent: check once
        _check_name("method", method)
        _check_name("access_key", access_key)
        _check_name("region", region)
        _check_name("service", service)
        _last_names = names
    if not isinstance(secret_key, str) or not secret_key:
        raise ValueError("sign_request: secret_key must be a non-empty str")
    wire, host, uri, cquery = _url_info(url, service)
    if session_token:
        _check_value("session_token", session_token)
    if payload_hash is not None:
        _check_payload_hash(payload_hash)
    amzdate = _amz_date(timestamp)
    if headers is None:
        headers = {}
    elif not isinstance(headers, dict):
        raise ValueError("sign_request: headers must be a dict or None, got %s"
                         % type(headers).__name__)

    # One pass: check, copy (joining list values), drop what is replaced, and build the
    # canonical header values (all but X-Amz-Content-Sha256, settled below).
    out = {}
    groups = {}
    spelled = {}  # lower-cased name -> the spelling it is sent under (the first met)
    sha_name = None
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not _only(name, _TOKEN_OK):
            raise ValueError("sign_request: header name %r must be an HTTP token" % (name,))
        if isinstance(value, (list, tuple)):
            for v in value:
                _check_value("header " + name, v)
            value = ",".join(value)
        else:
            _check_value("header " + name, value)
        lname = name.lower()
        if lname in _REPLACED or (session_token and lname == "x-amz-security-token"):
            continue
        if lname == "x-amz-content-sha256":
            if sha_name is not None:  # two spellings: keep one, the last
                del out[sha_name]
            sha_name = name
            out[name] = value
            continue
        signed_name = lname not in UNSIGNED_HEADERS
        if signed_name:
            _add(groups, lname, value)
        first = spelled.get(lname)
        if first is None:
            spelled[lname] = name
            out[name] = value
        else:
            # Another spelling of a name already met: send ONE header carrying exactly
            # the signed (trimmed, ","-joined) value -- see the module doc.
            out[first] = groups[lname] if signed_name else (
                _trimall(out[first]) + "," + _trimall(value))
    out["X-Amz-Date"] = groups["x-amz-date"] = amzdate
    if session_token:
        out["X-Amz-Security-Token"] = groups["x-amz-security-token"] = session_token
    if payload_hash is None:
        if service != "s3" and sha_name is not None:
            payload_hash = out[sha_name]
        else:
            payload_hash = payload_sha256(body)
    if service == "s3" or sha_name is not None or payload_hash == UNSIGNED_PAYLOAD:
        if sha_name is not None:
            del out[sha_name]
        out["X-Amz-Content-Sha256"] = payload_hash
        groups["x-amz-content-sha256"] = _trimall(payload_hash)
    if "host" not in groups:
        out["Host"] = groups["host"] = host

    canonical, signed = _canonical(method, uri, cquery, groups, payload_hash)
    datestamp = amzdate[:8]
    pads = _cached_signing_pads(secret_key, datestamp, region, service)
    sig = _hex(_hmac_with_pads(pads, string_to_sign(canonical, amzdate, region, service).encode()))
    out["Authorization"] = "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, access_key, credential_scope(datestamp, region, service), signed, sig)
    return wire, out


def _check_payload_hash(value):
    if value in (UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_PAYLOAD_TRAILER):
        return
    if isinstance(value, str) and len(value) == 64:
        for c in value:
            if c not in "0123456789abcdef":
                break
        else:
            return
    raise ValueError("sign_request: payload_hash must be 64 lowercase hex digits or %r"
                     % UNSIGNED_PAYLOAD)
