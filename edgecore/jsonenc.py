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


# The smallest normal float of this runtime: a double's, else (a port built with 32-bit
# floats, where that double is 0.0) a single's. Parsed at run time: frozen as a literal, a
# constant this small is "truncated to zero", an error under -Werror, in such firmware.
_MIN_NORMAL = float("2.2250738585072014e-308") or float("1.17549435e-38")


def dump_number(value):
    """An int or a finite float as ``json.dumps`` writes it (callers check finiteness).

    Floats come out as CPython's ``repr``: the shortest digits that read back as the same
    double. CPython's own ``repr`` is used there; other runtimes use ``float_repr``,
    because MicroPython's ``repr`` is not always shortest (``9.77215304`` prints as
    ``9.772153039999999``, ~5% of doubles differ).

    Single-precision ports (MicroPython built with 32-bit floats, e.g. some ESP8266 and
    STM32 boards) cannot be byte-identical: the value itself has already lost digits
    (~7 significant), so it is written as that float's shortest form, which reads back
    as a different double than CPython would have sent.
    """
    if isinstance(value, int):
        return "%d" % value
    return _repr_float(float(value))


def float_repr(value, exact=True):
    """CPython's ``repr(value)`` for a finite float, built portably.

    Fast path: the runtime's own ``repr`` when it has at most 15 significant digits and
    reads back (then it is the shortest). Otherwise searches 1..17 significant digits for
    the fewest with ``float(text) == value``, then lays the digits
    out as CPython's ``repr`` (format ``'r'``): exponent form when the decimal exponent is
    below -4 or at least 16 (``1e-05``, ``1e+16``, at least two exponent digits), ``.0``
    on integral values. With ``exact`` (and big ints, as MicroPython's usual builds have)
    the candidate digits are rounded half-even from the double's exact decimal expansion,
    as CPython does; ``%e`` rounding is used otherwise (on ports without big ints), and
    may differ from CPython in the last of 16-17 digits on exact ties (rare).
    """
    if value == 0.0:
        return "-0.0" if str(value)[0] == "-" else "0.0"
    sign = ""
    if value < 0:
        sign = "-"
        value = -value
    # Normal doubles only: among subnormals neighbouring doubles are far apart, so a
    # 15-digit string may read back while a shorter one also does (1e-320).
    found = _short_enough(value, repr(value)) if value >= _MIN_NORMAL else None
    if found is not None:
        return _layout(sign, found[0], found[1])
    exp_digits = _exact_digits(value) if exact else None
    if _is_power_of_two(value):
        # Below a power of two the doubles are twice as dense as above, so the nearest
        # p-digit string may miss while the next one up still reads back: try both (as
        # the shortest-digits algorithm behind CPython's repr does; 2**-24 is
        # 5.960464477539063e-08). Rare: a plain linear search.
        for p in range(1, 18):
            digits, point = _nearest(value, p, exp_digits)
            back = float("0." + digits + "e%d" % point)
            if back == value:
                break
            digits, point = _step(digits, point, 1 if back < value else -1)
            if float("0." + digits + "e%d" % point) == value:
                break
    else:
        # Elsewhere "the nearest p-digit string reads back" only turns true as p grows
        # (a nearer string cannot fail where a farther one passed), and 17 digits always
        # do: binary search, ~4 parses instead of up to 17 (it matters on a microcontroller).
        lo, hi = 1, 17
        while lo < hi:
            mid = (lo + hi) // 2
            digits, point = _nearest(value, mid, exp_digits)
            if float("0." + digits + "e%d" % point) == value:
                hi = mid
            else:
                lo = mid + 1
        digits, point = _nearest(value, lo, exp_digits)
    return _layout(sign, digits.rstrip("0") or "0", point)


def _short_enough(value, text):
    # Fast path: the runtime's own repr ``text`` of positive ``value``, as (DIGITS, point),
    # when it has at most 15 significant digits and reads back as ``value``. Such a string
    # is THE shortest one: two different strings of <= 15 digits differ by more than the
    # gap between neighbouring doubles, so no other (shorter or equal) one reads back.
    # None otherwise (e.g. MicroPython's 16-17 digit "9.772153039999999").
    j = text.find("e")
    mant = text if j < 0 else text[:j]
    try:
        exp = 0 if j < 0 else int(text[j + 1:])
    except ValueError:
        return None
    j = mant.find(".")
    whole = mant if j < 0 else mant[:j]
    digits = whole + ("" if j < 0 else mant[j + 1:])
    point = len(whole) + exp
    n = len(digits)
    digits = digits.lstrip("0")
    point -= n - len(digits)
    digits = digits.rstrip("0")
    if not digits or len(digits) > 15 or not digits.isdigit():
        return None
    if float("0." + digits + "e%d" % point) != value:
        return None
    return digits, point


def _layout(sign, digits, point):
    # CPython's repr layout of value = 0.DIGITS * 10**point (DIGITS without trailing zeros).
    n = len(digits)
    # value = 0.DIGITS * 10**point; CPython's repr switches to exponent form when the
    # exponent of the first digit (point - 1) is < -4 or >= 16.
    if point <= -4 or point > 16:
        e = point - 1
        body = digits[0] + ("." + digits[1:] if n > 1 else "")
        return "%s%se%s%02d" % (sign, body, "-" if e < 0 else "+", -e if e < 0 else e)
    if point <= 0:
        return sign + "0." + "0" * -point + digits
    if point >= n:
        return sign + digits + "0" * (point - n) + ".0"
    return sign + digits[:point] + "." + digits[point:]


def _nearest(value, p, exp_digits):
    # The p-significant-digit string nearest to value, as (DIGITS, point).
    if exp_digits is None:
        return _e_digits(value, p)
    return _round_digits(exp_digits[0], exp_digits[1], p)


def _e_digits(value, p):
    # (p significant digits, point) from "%.*e": value ~ 0.DIGITS * 10**point.
    mant, exp = ("%.*e" % (p - 1, value)).split("e")
    return mant.replace(".", ""), int(exp) + 1


def _exact_digits(value):
    # The double's exact decimal expansion (DIGITS, point), value = 0.DIGITS * 10**point,
    # from its integer mantissa and binary exponent: m * 2**e = m * 5**-e / 10**-e.
    # None on a runtime whose ints cannot hold it (no big ints).
    try:
        import math

        mant, e = math.frexp(value)
        m = int(mant * 9007199254740992.0)  # * 2**53: exact, an integer < 2**53
        e -= 53
        if e >= 0:
            digits = str(m << e)
            return digits, len(digits)
        digits = str(m * 5 ** -e)
        return digits, len(digits) + e
    except (ImportError, AttributeError, OverflowError, ValueError, MemoryError):
        return None


def _is_power_of_two(value):
    try:
        import math

        return math.frexp(value)[0] == 0.5
    except (ImportError, AttributeError):
        return True  # cannot tell: always try both neighbours (slower, same result)


def _step(digits, point, delta):
    # The p-digit neighbour one unit in the last place up (delta 1) or down (-1).
    p = len(digits)
    text = str(int(digits) + delta)
    if len(text) > p:  # 999 + 1 -> 100, one more digit before the point
        return text[:p], point + 1
    if len(text) < p or text[0] == "0":  # 100 - 1 -> 999 at the next lower decade
        return text.lstrip("0") + "9" * (p - len(text.lstrip("0"))), point - 1
    return text, point


def _round_digits(digits, point, p):
    # Round DIGITS to p significant digits, half to even (CPython's repr rounding).
    if len(digits) <= p:
        return digits, point
    head = digits[:p]
    rest = digits[p:]
    first = rest[0]
    if first > "5" or (first == "5" and (rest.rstrip("0") != "5" or head[-1] in "13579")):
        up = str(int(head) + 1)
        if len(up) > p:  # 99.9 -> 100: one more digit before the point
            return up[:p], point + 1
        return up, point
    return head, point


_IS_CPYTHON = False
try:
    import sys

    _IS_CPYTHON = sys.implementation.name == "cpython"
except (ImportError, AttributeError):
    pass
# CPython's repr is the reference and fast; elsewhere build it (chosen once, here).
_repr_float = repr if _IS_CPYTHON else float_repr


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

    # MicroPython parses the bytes themselves (no decoded copy of the body) when they
    # are ASCII: its parser does not check UTF-8, so anything else is decoded first.
    if _IS_CPYTHON or (len(data) and max(data) > 0x7F):
        try:
            data = data.decode("utf-8")
        except UnicodeError:
            raise ValueError("body is not valid UTF-8") from None
    try:
        return json.loads(data)
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
