"""JSON pieces for the wire layer: an escaper/number writer that matches CPython's
``json.dumps`` byte for byte, and a bounded reader for untrusted response bodies.

Why not ``json.dumps``: MicroPython's ``json.dumps`` keeps neither dict order nor
CPython's escaping (it writes non-ASCII as-is), so request bodies are written piece by
piece by ``edgecore.wire`` with the helpers here, giving the same bytes on every runtime.

Why not plain ``json.loads``: CPython's parser recurses (deep nesting raises
``RecursionError``) and a microcontroller may exhaust its stack or heap, so the body's
size and nesting are checked first with a cheap scan. Known runtime differences,
kept harmless because only modelled, type-checked members are ever returned:
MicroPython's ``json.loads`` accepts some malformed documents CPython rejects (trailing
commas, missing colons, raw control characters) and does not join escaped UTF-16
surrogate pairs -- ``join_surrogates`` repairs that so strings come out the same.
"""

# json.dumps' two-character escapes; everything else outside ' '..'~' becomes \\uXXXX.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _needs_escape(s):
    return any(c < " " or c > "~" or c == '"' or c == "\\" for c in s)


def dump_str(s):
    """``s`` as a JSON string literal, exactly as ``json.dumps(s)`` (ensure_ascii) writes it."""
    if not _needs_escape(s):
        return '"' + s + '"'
    out = ['"']
    for c in s:
        if " " <= c <= "~" and c != '"' and c != "\\":
            out.append(c)
            continue
        esc = _SHORT_ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
            continue
        o = ord(c)
        if o >= 0x10000:
            # Astral characters go out as a UTF-16 surrogate pair, as json.dumps does.
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 | (o >> 10), 0xDC00 | (o & 0x3FF)))
        else:
            out.append("\\u%04x" % o)
    out.append('"')
    return "".join(out)


def dump_number(value):
    """An int or a finite float as ``json.dumps`` writes it (callers check finiteness).

    Floats use ``repr``: identical on CPython; on MicroPython ``repr`` can differ for
    rare values (subnormals such as 5e-324), and single-precision ports carry ~7 digits.
    """
    if isinstance(value, int):
        return "%d" % value
    return repr(float(value))


def _too_deep(data, limit):
    """True when ``data`` (bytes) nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count. Malformed input (unterminated strings,
    unbalanced brackets) is left for the JSON parser to reject.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot be deeper than the number of openers: skip the scan
    depth = 0
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x22:  # '"': jump to the closing quote (one not preceded by an odd run of '\')
            i += 1
            while True:
                j = data.find(b'"', i)
                if j < 0:
                    return False
                k = j - 1
                while k >= i and data[k] == 0x5C:
                    k -= 1
                i = j + 1
                if (j - 1 - k) % 2 == 0:
                    break
            continue
        if c == 0x5B or c == 0x7B:
            depth += 1
            if depth > limit:
                return True
        elif c == 0x5D or c == 0x7D:
            depth -= 1
        i += 1
    return False


def load_bounded(data, max_bytes, max_depth):
    """Parse JSON ``data`` (bytes) no larger than ``max_bytes`` and nested at most ``max_depth``.

    Raises ValueError with a readable reason on any failure (size, depth, UTF-8, syntax).
    """
    if len(data) > max_bytes:
        raise ValueError("body of %d bytes exceeds the %d byte limit" % (len(data), max_bytes))
    if _too_deep(data, max_depth):
        raise ValueError("JSON nested deeper than %d levels" % max_depth)
    import json

    try:
        text = data.decode("utf-8")
    except UnicodeError:
        raise ValueError("body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, UnicodeError):
        # CPython's message quotes the document; keep errors short and content-free.
        raise ValueError("body is not valid JSON") from None


def has_escaped_surrogates(data):
    """Cheap test (bytes): could the document contain escaped UTF-16 surrogates?"""
    return data.find(b"\\ud") >= 0 or data.find(b"\\uD") >= 0


def join_surrogates(s):
    """Join adjacent high+low surrogate code points into one character.

    A no-op on CPython (its json already joins them); repairs MicroPython's output.
    """
    n = len(s)
    out = None
    i = 0
    while i < n:
        o = ord(s[i])
        if 0xD800 <= o < 0xDC00 and i + 1 < n:
            lo = ord(s[i + 1])
            if 0xDC00 <= lo < 0xE000:
                if out is None:
                    out = [s[:i]]
                out.append(chr(0x10000 + ((o - 0xD800) << 10) + (lo - 0xDC00)))
                i += 2
                continue
        if out is not None:
            out.append(s[i])
        i += 1
    return s if out is None else "".join(out)
