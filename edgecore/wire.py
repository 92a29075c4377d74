"""rest-json framing for the device API: params -> request bytes, response bytes -> dict/error.

Sans-I/O: ``build_request`` validates parameters against ``edgecore.shapes`` and writes
the body itself, members in the model's order, byte-identical to botocore's
``json.dumps`` output for params given in model order (separators ``", "``/``": "``,
non-ASCII escaped). ``parse_response`` bounds and parses a response into the dict boto3
returns, or raises ``ClientError`` for a service error.

Inputs boto3 accepts are accepted: doubles as int, float or ``Decimal`` (converted to
float, as botocore does); timestamps as epoch seconds (int, float, ``Decimal``),
``datetime`` objects, numeric strings (``"1700000000.5"``, read with ``float()`` as
botocore does) and ISO 8601 strings (``2023-11-14T22:13:20Z``, ``2023-11-14``, a
``+02:00`` offset, naive = UTC; see ``parse_timestamp_text``). ``Decimal`` and
``datetime`` are duck-typed: the core imports neither module.

Deliberate differences from botocore (stricter, so bad input fails before it is sent):
every model constraint is checked (botocore checks only ``required``/``min``/types):
max lengths, patterns (see shapes.py for their semantics), enums; NaN/Infinity doubles
are rejected (botocore sends them as strings); timestamp strings must be numeric or ISO
8601 (botocore also hands other forms, e.g. RFC 822 dates, to dateutil's guesser); a
2xx body that is not a JSON object is an error (botocore silently returns {}); wrong
member types in a response are errors; an error's message is always a string and only
string-typed modelled members reach ``ClientError.response``.

Runtimes: the same params give the same bytes on CPython and MicroPython: floats are
written as CPython's ``repr`` on both (``jsonenc.float_repr`` where the runtime's own
repr is not shortest-round-trip). Microcontroller ports with single-precision floats
cannot match: a metric value there carries only ~7 significant digits (documented,
never an error).
"""

from edgecore import jsonenc
from edgecore.amztime import days_from_civil, days_in_month
from edgecore.errors import (
    ClientError,
    ParamValidationError,
    ResponseParseError,
    TransportError,
    short_repr,
)
from edgecore.shapes import (
    DOUBLE,
    ERRORS,
    LIST,
    OPERATIONS,
    PATTERNS,
    SHAPES,
    STRING,
    STRUCTURE,
)

# Limits for untrusted response bodies (override per call).
MAX_BODY = 1024 * 1024
MAX_DEPTH = 32

CONTENT_TYPE = "application/json"

# Epoch seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range botocore
# can convert (through datetime) and so the range a timestamp may take.
MIN_TIMESTAMP = -62135596800
MAX_TIMESTAMP = 253402300799

# botocore's standard retry mode: throttling codes, transient codes and statuses.
THROTTLING_CODES = (
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
)
TRANSIENT_CODES = ("RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete")
TRANSIENT_STATUSES = (500, 502, 503, 504)

# Reason phrases botocore (http.client.responses) uses as the message of a bare 5xx.
_REASONS = {
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}

_INF = float("inf")


def _operation(operation):
    spec = OPERATIONS.get(operation) if isinstance(operation, str) else None
    if spec is None:
        raise ParamValidationError(
            operation,
            "",
            "unknown",
            "unknown operation; expected one of %s" % ", ".join(sorted(OPERATIONS)),
        )
    return spec


# ---- paths: (parent, segment) pairs, formatted only when an error is raised ----------


def _path(path):
    parts = []
    while path is not None:
        path, seg = path
        parts.append(seg)
    out = ""
    for seg in reversed(parts):
        if isinstance(seg, int):
            out += "[%d]" % seg
        elif out:
            out += "." + seg
        else:
            out = seg
    return out


def _type_name(value):
    return type(value).__name__


# ---- requests --------------------------------------------------------------------------


def build_request(operation, params, into=None):
    """Validate ``params`` (a dict) and frame the request.

    Returns ``(method, path, headers, body)``: ``"POST"``, ``"/<Operation>"``,
    ``{"Content-Type": "application/json"}`` and the JSON body as bytes.
    Raises ParamValidationError (nothing is built) when ``params`` break the model.

    ``into``: a writable buffer (bytearray, or a memoryview of one) the body is written
    in as it is validated; the body is then a memoryview of its start, valid until the
    buffer is reused. A board's heap needs this: no list of the body's pieces, no joined
    copy of it, no encoded copy of that. A body longer than ``into`` is measured, then
    written into a bytearray of its size (still no pieces, join or copy).
    """
    method, uri, input_shape, _ = _operation(operation)
    headers = {"Content-Type": CONTENT_TYPE}
    if into is None:
        out = []
        _write(operation, input_shape, params, None, out)
        return method, uri, headers, "".join(out).encode("utf-8")
    out = _Into(into)
    try:
        _write(operation, input_shape, params, None, out)
        return method, uri, headers, memoryview(into)[:out.n]
    except OverflowError:  # longer than `into` (only _Into raises it)
        pass
    out = _Into(None)
    _write(operation, input_shape, params, None, out)
    body = bytearray(out.n)
    _write(operation, input_shape, params, None, _Into(body))
    return method, uri, headers, body


try:
    memoryview("")
    utf8_buffer = memoryview  # MicroPython: a str is a buffer of its UTF-8 bytes (no copy)
except TypeError:

    def utf8_buffer(text):
        """The UTF-8 bytes of ``text`` as a buffer (a view of the str itself where the
        runtime allows it: MicroPython; an encoded copy elsewhere)."""
        return text.encode("utf-8")


class _Into:
    """``build_request``'s ``out`` writing into a buffer (None: counting only): each
    piece is copied in as it comes (the pieces are ASCII: json.dumps escapes the rest)."""

    def __init__(self, buf):
        self.buf = buf
        self.n = 0

    def append(self, piece):
        end = self.n + len(piece)
        if self.buf is not None:
            if end > len(self.buf):
                raise OverflowError("request body longer than the buffer")
            self.buf[self.n:end] = utf8_buffer(piece)
        self.n = end


def validate(operation, params):
    """Raise ParamValidationError when ``params`` break the model; return None otherwise."""
    build_request(operation, params)


def _write(op, shape_name, value, path, out):
    """Check ``value`` against ``shape_name`` and append its JSON to ``out``.

    Recursion follows the model's shapes, not the data, so its depth is the model's
    (at most 7 shapes deep), whatever the caller passes.
    """
    spec = SHAPES[shape_name]
    kind = spec[0]
    if kind == STRING:
        _check_string(op, spec, value, path)
        out.append(jsonenc.dump_str(value))
    elif kind == STRUCTURE:
        _write_structure(op, spec, value, path, out)
    elif kind == LIST:
        if not isinstance(value, (list, tuple)):
            raise ParamValidationError(
                op, _path(path), "type", "expected a list, got %s" % _type_name(value)
            )
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _write(op, spec[1], item, (path, i), out)
        out.append("]")
    elif kind == DOUBLE:
        out.append(jsonenc.dump_number(_check_double(op, value, path)))
    else:
        out.append(jsonenc.dump_number(to_epoch_seconds(op, value, _path(path) if path else "")))


def _write_structure(op, spec, value, path, out):
    if not isinstance(value, dict):
        raise ParamValidationError(
            op, _path(path), "type", "expected a dict (structure), got %s" % _type_name(value)
        )
    members = spec[1]
    unknown = None  # allocated only on error: this runs for every structure sent
    for key in value:
        for m in members:
            if m[0] == key:
                break
        else:
            if unknown is None:
                unknown = []
            unknown.append(key if isinstance(key, str) else short_repr(key))
    if unknown is not None:
        unknown.sort()  # deterministic on every runtime (dicts are unordered on MicroPython)
        raise ParamValidationError(
            op,
            _path((path, unknown[0])),
            "unknown",
            "unknown parameter; expected one of %s" % ", ".join(m[0] for m in members),
        )
    for name in spec[2]:
        if name not in value:
            raise ParamValidationError(
                op, _path((path, name)), "required", "missing required parameter"
            )
    out.append("{")
    first = True
    for name, member_shape in members:
        if name in value:
            if first:
                first = False
            else:
                out.append(", ")
            # Member names are plain ASCII identifiers: no escaping, no new string.
            out.append('"')
            out.append(name)
            out.append('": ')
            _write(op, member_shape, value[name], (path, name), out)
    out.append("}")


def _check_string(op, spec, value, path):
    if not isinstance(value, str):
        raise ParamValidationError(
            op, _path(path), "type", "expected a string, got %s" % _type_name(value)
        )
    lo, hi, pattern, enum = spec[1], spec[2], spec[3], spec[4]
    if enum is not None and value not in enum:
        raise ParamValidationError(
            op, _path(path), "enum", "%s is not one of %s" % (short_repr(value), ", ".join(enum))
        )
    n = len(value)  # code points, as AWS counts
    if lo is not None and n < lo:
        raise ParamValidationError(
            op, _path(path), "min", "length %d is below the minimum of %d characters" % (n, lo)
        )
    if hi is not None and n > hi:
        raise ParamValidationError(
            op, _path(path), "max", "length %d is above the maximum of %d characters" % (n, hi)
        )
    if pattern is not None and not PATTERNS[pattern](value):
        raise ParamValidationError(
            op, _path(path), "pattern", "%s does not match %s" % (short_repr(value), pattern)
        )


def _is_decimal(value):
    # decimal.Decimal without importing decimal (MicroPython has none).
    return hasattr(value, "as_tuple") and hasattr(value, "is_finite")


def _check_double(op, value, path):
    if _is_decimal(value) and not isinstance(value, (int, float)):
        try:
            value = float(value)  # botocore's conversion; huge values become inf (refused)
        except (TypeError, ValueError, OverflowError):
            raise ParamValidationError(
                op, _path(path), "type", "expected a number, got an unconvertible Decimal"
            ) from None
    # bool is an int subclass: a True/False metric value is almost surely a bug.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamValidationError(
            op, _path(path), "type", "expected a number, got %s" % _type_name(value)
        )
    if isinstance(value, int):
        try:
            as_float = float(value)
        except OverflowError:  # CPython; MicroPython gives inf instead
            as_float = _INF
        if as_float == _INF or as_float == -_INF:
            raise ParamValidationError(op, _path(path), "finite", "integer too large for a double")
    elif value != value or value == _INF or value == -_INF:
        raise ParamValidationError(
            op, _path(path), "finite", "%r cannot be sent: JSON has no NaN or Infinity" % value
        )
    return value


def to_epoch_seconds(operation, value, field=""):
    """Timestamp ``value`` as the epoch seconds botocore puts on the rest-json wire.

    An int when the time falls on a whole second, else a float carrying microseconds,
    as botocore (>= 1.44, default precision) sends it: ``(seconds * 10**6 + us) / 10**6``.
    Accepts int, float (split exactly as ``datetime.fromtimestamp`` does: microseconds
    rounded half-even), ``Decimal`` (as its float, as botocore does), datetime-like
    objects (naive ones are UTC, as in botocore; duck-typed on ``utcoffset``/``year``/...)
    and strings: numeric (``float()``, as botocore) or ISO 8601 (``parse_timestamp_text``).
    """
    if isinstance(value, bool):
        raise ParamValidationError(
            operation, field, "type", "expected epoch seconds or a datetime, got bool"
        )
    if isinstance(value, str):
        micros = parse_timestamp_text(value)
        if micros is None:
            raise ParamValidationError(
                operation, field, "type",
                "expected epoch seconds, a datetime or an ISO 8601 / numeric string, got %s"
                % short_repr(value))
    elif isinstance(value, int):
        micros = value * 1000000
    elif isinstance(value, float) or _is_decimal(value):
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            value = _INF
        if value != value or value == _INF or value == -_INF:
            raise ParamValidationError(
                operation, field, "finite", "timestamp %s is not finite" % short_repr(value)
            )
        micros = _float_micros(value)
    elif hasattr(value, "utcoffset") and hasattr(value, "hour") and hasattr(value, "year"):
        micros = _datetime_micros(value)
    else:
        raise ParamValidationError(
            operation,
            field,
            "type",
            "expected epoch seconds (int/float) or a datetime, got %s" % _type_name(value),
        )
    seconds = micros // 1000000
    if seconds < MIN_TIMESTAMP or seconds > MAX_TIMESTAMP:
        raise ParamValidationError(
            operation,
            field,
            "range",
            "timestamp %s is outside years 1..9999 (epoch seconds %d..%d)"
            % (short_repr(value), MIN_TIMESTAMP, MAX_TIMESTAMP),
        )
    if micros % 1000000 == 0:
        return seconds
    # Both operands are exact (|micros| < 2**53), so the quotient is rounded once, the
    # same on every IEEE-754 double runtime.
    return micros / 1000000


def parse_timestamp_text(text):
    """Epoch microseconds of a timestamp string as botocore reads it, or None.

    First as a number (``float(text)``: ``"1700000000"``, ``" 1.5e9 "``), as botocore
    does; else ISO 8601: ``YYYY-MM-DD``, optionally followed by ``T`` (or a space) and
    ``HH:MM[:SS[.fraction]]`` (``.`` or ``,``; truncated to microseconds), optionally
    ``Z`` or an offset ``+HH:MM`` / ``+HHMM`` / ``+HH``; no zone means UTC. Letters in
    either case. Years 1..9999.
    """
    try:
        number = float(text)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if number != number or number == _INF or number == -_INF:
            return None
        return _float_micros(number)
    return _iso8601_micros(text.strip(" \t\r\n"))


def _digits(text):
    return bool(text) and all("0" <= c <= "9" for c in text)


def _iso8601_micros(t):
    if len(t) < 10 or t[4] != "-" or t[7] != "-" or not (
            _digits(t[:4]) and _digits(t[5:7]) and _digits(t[8:10])):
        return None
    y, mo, d = int(t[:4]), int(t[5:7]), int(t[8:10])
    if not (y >= 1 and 1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo)):
        return None
    hh = mi = ss = us = offset = 0
    rest = t[10:]
    if rest:
        if rest[0] not in "Tt ":
            return None
        rest = rest[1:]
        zone = len(rest)
        for i in range(len(rest)):
            if rest[i] in "Zz+-":
                zone = i
                break
        clock, tz = rest[:zone], rest[zone:]
        frac = ""
        dot = clock.find(".")
        if dot < 0:
            dot = clock.find(",")  # ISO 8601 allows a decimal comma
        if dot >= 0:
            clock, frac = clock[:dot], clock[dot + 1:]
            if not _digits(frac):
                return None
        parts = clock.split(":")
        if not 2 <= len(parts) <= 3 or (frac and len(parts) != 3):
            return None
        for part in parts:
            if len(part) != 2 or not _digits(part):
                return None
        hh, mi = int(parts[0]), int(parts[1])
        ss = int(parts[2]) if len(parts) == 3 else 0
        if hh > 23 or mi > 59 or ss > 59:
            return None
        us = int((frac + "000000")[:6]) if frac else 0
        if tz:
            offset = _offset_seconds(tz)
            if offset is None:
                return None
    days = days_from_civil(y, mo, d)
    return ((days * 86400 + hh * 3600 + mi * 60 + ss - offset) * 1000000) + us


def _offset_seconds(tz):
    if tz in ("Z", "z"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    hm = tz[1:]
    if len(hm) == 5 and hm[2] == ":":
        hm = hm[:2] + hm[3:]
    if len(hm) not in (2, 4) or not _digits(hm):
        return None
    h, m = int(hm[:2]), int(hm[2:] or "0")
    if h > 23 or m > 59:
        return None
    return sign * (h * 3600 + m * 60)


def _float_micros(value):
    # CPython's datetime.fromtimestamp: split into whole and fraction (both exact), round
    # the fraction to microseconds half-even, carry.
    whole = int(value)
    return whole * 1000000 + round((value - whole) * 1e6)


def _datetime_micros(dt):
    us = (
        days_from_civil(dt.year, dt.month, dt.day) * 86400
        + dt.hour * 3600
        + dt.minute * 60
        + dt.second
    ) * 1000000 + dt.microsecond
    off = dt.utcoffset()
    if off is not None:
        us -= (off.days * 86400 + off.seconds) * 1000000 + off.microseconds
    return us


# ---- responses -------------------------------------------------------------------------


def parse_response(
    operation, status, headers, body, retry_attempts=0, max_body=MAX_BODY, max_depth=MAX_DEPTH
):
    """Turn a transport's ``(status, headers, body)`` into the dict boto3 returns.

    2xx: the output shape's modelled members (unknown members ignored; JSON null members
    dropped and null list items kept as None, as botocore does) plus ``ResponseMetadata``
    (``RequestId`` when the service sent one, ``HTTPStatusCode``, ``HTTPHeaders`` with
    lower-cased names, ``RetryAttempts``). Other statuses raise ClientError.
    A 2xx body nested deeper than ``max_depth``, not a JSON object, or with a modelled
    member of the wrong type, and a body of any status over ``max_body`` bytes, raise
    ResponseParseError (its ``status`` set, so retry_kind can classify a 5xx).
    """
    _, _, _, output_shape = _operation(operation)
    status, lowered, body = _check_transport_values(operation, status, headers, body, max_body)
    if not 200 <= status < 300:
        raise _parse_error(operation, status, lowered, body, max_body, max_depth)
    if not _blank(body):
        try:
            doc = jsonenc.load_bounded(body, max_body, max_depth)
        except ValueError as exc:
            raise ResponseParseError(operation, "", str(exc), status) from None
        if not isinstance(doc, dict):
            raise ResponseParseError(
                operation, "", "expected a JSON object, got %s" % _json_type(doc), status
            )
    else:
        doc = {}
    if output_shape is None:
        result = {}
    else:
        fix = jsonenc.join_surrogates if jsonenc.has_escaped_surrogates(body) else None
        result = _read(operation, status, output_shape, doc, None, fix)
    result["ResponseMetadata"] = response_metadata(status, lowered, retry_attempts)
    return result


def _blank(body):
    """``not body.strip()`` without the stripped copy."""
    return all(c in b" \t\n\r\x0b\x0c" for c in body)


def response_metadata(status, lowered_headers, retry_attempts=0):
    """``ResponseMetadata`` as botocore's rest-json parser and client build it."""
    meta = {}
    if "x-amzn-requestid" in lowered_headers:
        meta["RequestId"] = lowered_headers["x-amzn-requestid"]
    elif "x-amz-request-id" in lowered_headers:
        meta["RequestId"] = lowered_headers["x-amz-request-id"]
        meta["HostId"] = lowered_headers.get("x-amz-id-2", "")
    meta["HTTPStatusCode"] = status
    meta["HTTPHeaders"] = lowered_headers
    meta["RetryAttempts"] = retry_attempts
    return meta


def _check_transport_values(op, status, headers, body, max_body):
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ResponseParseError(
            op, "status", "expected an HTTP status code 100..599, got %s" % short_repr(status)
        )
    if body is None:
        body = b""
    elif isinstance(body, memoryview):
        body = bytes(body)
    elif not isinstance(body, (bytes, bytearray)):  # a bytearray is used as it is: no copy
        raise ResponseParseError(op, "body", "expected bytes, got %s" % _type_name(body), status)
    if len(body) > max_body:
        # Checked before any other work on the body, whatever the status.
        raise ResponseParseError(
            op, "", "body of %d bytes exceeds the %d byte limit" % (len(body), max_body), status
        )
    lowered = {}
    if headers is not None:
        # A dict, or any mapping with items() (e.g. a case-insensitive header dict).
        try:
            items = list(headers.items())
            for name, value in items:
                if not isinstance(name, str) or not isinstance(value, str):
                    raise TypeError
                lowered[name.lower()] = value
        except (AttributeError, TypeError, ValueError):
            raise ResponseParseError(
                op, "headers", "expected a mapping of str names to str values", status
            ) from None
    return status, lowered, body


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _read(op, status, shape_name, value, path, fix):
    """Shape JSON ``value`` by the model; recursion follows shapes (bounded by the model)."""
    spec = SHAPES[shape_name]
    kind = spec[0]
    if kind == STRUCTURE:
        if not isinstance(value, dict):
            raise ResponseParseError(
                op, _path(path), "expected an object, got %s" % _json_type(value), status
            )
        result = {}
        for name, member_shape in spec[1]:
            raw = value.get(name)
            if raw is not None:
                result[name] = _read(op, status, member_shape, raw, (path, name), fix)
        return result
    if kind == LIST:
        if not isinstance(value, list):
            raise ResponseParseError(
                op, _path(path), "expected an array, got %s" % _json_type(value), status
            )
        items = []
        for i, item in enumerate(value):
            items.append(None if item is None else _read(op, status, spec[1], item, (path, i), fix))
        return items
    if kind == STRING:
        # Enums, lengths and patterns are not checked on output: the service may add values.
        if not isinstance(value, str):
            raise ResponseParseError(
                op, _path(path), "expected a string, got %s" % _json_type(value), status
            )
        return fix(value) if fix is not None else value
    if kind == DOUBLE:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value)
        raise ResponseParseError(
            op, _path(path), "expected a number, got %s" % _json_type(value), status
        )
    # TIMESTAMP (no output shape of this model has one): epoch seconds, returned as sent.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise ResponseParseError(
        op, _path(path), "expected epoch seconds, got %s" % _json_type(value), status
    )


def parse_error(operation, status, headers, body, max_body=MAX_BODY, max_depth=MAX_DEPTH):
    """The ClientError (returned, not raised) for an error response, coded as botocore does.

    Header names are case-insensitive. Code: the ``x-amzn-errortype`` header, else
    the body's ``code``/``Code``, else its ``__type``, else the status as a string; the
    part after ':' and before the last '#' is dropped. Message: ``message``/``Message``
    (edgecore also reads ``errorMessage``). A non-JSON body becomes the message; a 5xx
    with an empty or HTML body gets the status as code and its reason phrase as message.
    """
    _operation(operation)
    status, lowered, body = _check_transport_values(operation, status, headers, body, max_body)
    return _parse_error(operation, status, lowered, body, max_body, max_depth)


def _parse_error(operation, status, headers, body, max_body, max_depth):
    request_id = headers.get("x-amzn-requestid") or headers.get("x-amz-request-id")
    stripped = body.strip()
    if status >= 500 and (not stripped or stripped.startswith(b"<html>")):
        return ClientError(operation, str(status), _REASONS.get(status, ""), status, request_id,
                           _error_metadata(status, headers, False))
    doc = {}
    if body:  # as botocore: only an empty body means "no JSON"; whitespace is not JSON
        try:
            doc = jsonenc.load_bounded(body, max_body, max_depth)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = {"message": _text(body[:max_body])}
    message = doc.get("message", doc.get("Message", doc.get("errorMessage", "")))
    if message is None:
        message = ""
    elif not isinstance(message, str):
        message = str(message)
    code = headers.get("x-amzn-errortype")
    if code is None:
        code = _str_or_none(doc.get("code", doc.get("Code")))
    if code is None:
        code = _str_or_none(doc.get("__type"))
    if code is None:
        code = str(status)
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    return ClientError(operation, code, message, status, request_id,
                       _error_metadata(status, headers, True), _modeled_members(code, doc))


def _error_metadata(status, headers, parsed):
    # botocore's JSON error parser reads only x-amzn-requestid, and a bare 5xx (empty or
    # HTML body) gets no RequestId at all.
    meta = {}
    if parsed and "x-amzn-requestid" in headers:
        meta["RequestId"] = headers["x-amzn-requestid"]
    meta["HTTPStatusCode"] = status
    meta["HTTPHeaders"] = headers
    meta["RetryAttempts"] = 0
    return meta


def _modeled_members(code, doc):
    # botocore puts a modelled error's members at the top of ClientError.response.
    if code not in ERRORS or not isinstance(doc, dict):
        return None
    out = {}
    for name, _ in SHAPES[code][1]:
        if isinstance(doc.get(name), str):
            out[name] = doc[name]
    return out


def _str_or_none(value):
    return value if isinstance(value, str) else None


def _text(data):
    try:
        return data.decode("utf-8")
    except UnicodeError:
        return ""


def retry_kind(error):
    """``"throttling"``, ``"transient"`` or None, as botocore's standard retry mode decides.

    Throttling: a throttling error code, or HTTP 429 when the code is not one the
    operation's model declares (a 429 carrying a modelled, non-retryable error such as
    ``InternalServiceException`` is not retried at all). Transient: a transient code,
    HTTP 500/502/503/504 (also for a malformed response carrying such a status), or a
    TransportError. Anything else (validation, auth, other 4xx, 501) is not worth
    retrying. No error of this model is marked retryable, so no modelled error adds one.
    """
    if isinstance(error, TransportError):
        return "transient"
    if isinstance(error, ClientError):
        if error.code in THROTTLING_CODES:
            return "throttling"
        modeled = error.operation in OPERATIONS and error.code in ERRORS
        if error.status == 429 and not modeled:
            return "throttling"
        if error.code in TRANSIENT_CODES or error.status in TRANSIENT_STATUSES:
            return "transient"
    elif isinstance(error, ResponseParseError):
        # No error code could be read: botocore judges by the status alone.
        if error.status == 429:
            return "throttling"
        if error.status in TRANSIENT_STATUSES:
            return "transient"
    return None


def is_retryable(error):
    """True when a retry (with backoff) may succeed; see retry_kind."""
    return retry_kind(error) is not None
