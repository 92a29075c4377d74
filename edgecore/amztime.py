"""UTC time arithmetic for signing and credential expiry, without datetime.

Time in the core is epoch seconds. This module turns them into the strings AWS wants
(``amz_date`` = ``20150830T123600Z``, ``date_stamp`` = ``20150830``, ``http_date`` =
IMF-fixdate) and parses the strings servers and credential providers send back
(``parse_http_date`` for a ``Date`` header, ``parse_iso8601`` for expiry times).

Dates are proleptic Gregorian UTC, valid from 1970-01-01T00:00:00Z to
9999-12-31T23:59:59Z; anything else raises ValueError naming the function, the field
and the expected form. Day arithmetic uses H. Hinnant's civil-from-days algorithm,
integer only, so MicroPython ports with single-precision floats get exact results.
"""

MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DIGITS = "0123456789"


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of the day ``z`` days after 1970-01-01."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if m <= 2 else 0), m, d)


def days_in_month(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _seconds(func, epoch):
    # bool is an int subclass; a True timestamp is a bug, not 1970-01-01T00:00:01Z.
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
        raise ValueError("%s: epoch must be int or float seconds, got %s"
                         % (func, type(epoch).__name__))
    if epoch != epoch or epoch < 0 or epoch >= MAX_EPOCH + 1:  # NaN, out of range
        raise ValueError("%s: epoch must be within 1970-01-01..9999-12-31 (0..%d), got %r"
                         % (func, MAX_EPOCH, epoch))
    return int(epoch)  # floor: non-negative here


def _fields(func, epoch):
    s = _seconds(func, epoch)
    days = s // 86400
    rem = s - days * 86400
    y, m, d = civil_from_days(days)
    return days, y, m, d, rem // 3600, (rem // 60) % 60, rem % 60


def amz_date(epoch):
    """``YYYYMMDDTHHMMSSZ`` (the X-Amz-Date form) of epoch seconds, floored."""
    _, y, m, d, hh, mm, ss = _fields("amz_date", epoch)
    return "%04d%02d%02dT%02d%02d%02dZ" % (y, m, d, hh, mm, ss)


def date_stamp(epoch):
    """``YYYYMMDD`` (the credential scope date) of epoch seconds."""
    _, y, m, d, _, _, _ = _fields("date_stamp", epoch)
    return "%04d%02d%02d" % (y, m, d)


def iso8601(epoch):
    """``YYYY-MM-DDTHH:MM:SSZ`` of epoch seconds."""
    _, y, m, d, hh, mm, ss = _fields("iso8601", epoch)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, hh, mm, ss)


def http_date(epoch):
    """RFC 7231 IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) of epoch seconds."""
    days, y, m, d, hh, mm, ss = _fields("http_date", epoch)
    # 1970-01-01 was a Thursday (index 3 with Monday = 0).
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[(days + 3) % 7], d, _MONTHS[m - 1], y, hh, mm, ss)


def _fail(func, field, expected, s):
    text = s if len(s) <= 64 else s[:64] + "..."
    raise ValueError("%s: %s: expected %s, got %r" % (func, field, expected, text))


def _num(func, field, expected, s, lo, hi, text):
    # Hand-written digit check: int() would also accept " 7", "+7", "7_0" and non-ASCII digits.
    if not text:
        _fail(func, field, expected, s)
    for c in text:
        if c not in _DIGITS:
            _fail(func, field, expected, s)
    v = int(text)
    if not lo <= v <= hi:
        _fail(func, field, expected, s)
    return v


def _epoch(func, field, expected, s, y, mo, d, hh, mi, ss, offset):
    if d > days_in_month(y, mo):
        _fail(func, field, expected, s)
    e = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    if not 0 <= e <= MAX_EPOCH:
        _fail(func, field, "a time within 1970..9999 UTC", s)
    return e


def _hms(func, field, expected, s, text):
    if len(text) != 8 or text[2] != ":" or text[5] != ":":
        _fail(func, field, expected, s)
    return (_num(func, field, expected, s, 0, 23, text[0:2]),
            _num(func, field, expected, s, 0, 59, text[3:5]),
            _num(func, field, expected, s, 0, 59, text[6:8]))


def _month(func, field, expected, s, name):
    for i in range(12):
        if _MONTHS[i] == name:
            return i + 1
    _fail(func, field, expected, s)


_HTTP_FORMS = "an HTTP date (IMF-fixdate 'Sun, 06 Nov 1994 08:49:37 GMT', RFC 850 or asctime)"


def parse_http_date(s):
    """Epoch seconds of an HTTP ``Date`` value in any of RFC 7231's three forms.

    IMF-fixdate ``Sun, 06 Nov 1994 08:49:37 GMT``, RFC 850 ``Sunday, 06-Nov-94 08:49:37 GMT``
    and asctime ``Sun Nov  6 08:49:37 1994``. The weekday must be a valid name but is
    not checked against the date (as email.utils does). A two-digit RFC 850 year is
    19xx when above 68, else 20xx (the email.utils / POSIX rule; the core has no clock
    to apply RFC 7231's "50 years" rule). ``GMT`` or ``UTC`` only.
    """
    func, field = "parse_http_date", "Date"
    if not isinstance(s, str):
        raise ValueError("%s: %s: expected str, got %s" % (func, field, type(s).__name__))
    # Only SP separates the fields (HTAB around the value is optional whitespace). No
    # str.strip()/split() without arguments: what they count as whitespace differs between
    # CPython (Unicode) and MicroPython (ASCII), so the same text could parse on one only.
    text = s.strip(" \t")
    for c in text:
        if c < " " or c > "~":
            _fail(func, field, _HTTP_FORMS, s)
    parts = [p for p in text.split(" ") if p]
    comma = text.find(",")
    if comma > 0:
        wday = text[:comma]
        if len(parts) == 6 and wday in _DAYS:  # IMF-fixdate
            d = _num(func, field, _HTTP_FORMS, s, 1, 31, parts[1])
            if len(parts[1]) != 2 or len(parts[3]) != 4:
                _fail(func, field, _HTTP_FORMS, s)
            mo = _month(func, field, _HTTP_FORMS, s, parts[2])
            y = _num(func, field, _HTTP_FORMS, s, 1970, 9999, parts[3])
            clock, zone = parts[4], parts[5]
        elif len(parts) == 4 and wday in _LONG_DAYS:  # RFC 850
            dmy = parts[1].split("-")
            if len(dmy) != 3 or len(dmy[0]) != 2 or len(dmy[2]) != 2:
                _fail(func, field, _HTTP_FORMS, s)
            d = _num(func, field, _HTTP_FORMS, s, 1, 31, dmy[0])
            mo = _month(func, field, _HTTP_FORMS, s, dmy[1])
            y = _num(func, field, _HTTP_FORMS, s, 0, 99, dmy[2])
            y += 1900 if y > 68 else 2000
            clock, zone = parts[2], parts[3]
        else:
            _fail(func, field, _HTTP_FORMS, s)
        if zone not in ("GMT", "UTC"):
            _fail(func, field, _HTTP_FORMS, s)
    elif len(parts) == 5 and parts[0] in _DAYS:  # asctime
        mo = _month(func, field, _HTTP_FORMS, s, parts[1])
        d = _num(func, field, _HTTP_FORMS, s, 1, 31, parts[2])
        if len(parts[2]) > 2 or len(parts[4]) != 4:
            _fail(func, field, _HTTP_FORMS, s)
        clock = parts[3]
        y = _num(func, field, _HTTP_FORMS, s, 1970, 9999, parts[4])
    else:
        _fail(func, field, _HTTP_FORMS, s)
    hh, mi, ss = _hms(func, field, _HTTP_FORMS, s, clock)
    return _epoch(func, field, _HTTP_FORMS, s, y, mo, d, hh, mi, ss, 0)


_ISO_FORM = "an ISO 8601 UTC time like '2024-01-01T00:00:00Z' (fraction and +HH:MM offset allowed)"


def parse_iso8601(s):
    """Epoch seconds (int, fraction floored) of ``YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)``.

    This is the form of credential expiry times (STS, IMDS, ECS, the IoT credentials
    provider). A time zone is required: a naive time is ambiguous for an expiry check.
    """
    func, field = "parse_iso8601", "timestamp"
    if not isinstance(s, str):
        raise ValueError("%s: %s: expected str, got %s" % (func, field, type(s).__name__))
    text = s.strip(" \t\r\n")  # explicit: bare strip() differs between runtimes
    if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt ":
        _fail(func, field, _ISO_FORM, s)
    y = _num(func, field, _ISO_FORM, s, 1, 9999, text[0:4])
    mo = _num(func, field, _ISO_FORM, s, 1, 12, text[5:7])
    d = _num(func, field, _ISO_FORM, s, 1, 31, text[8:10])
    hh, mi, ss = _hms(func, field, _ISO_FORM, s, text[11:19])
    i = 19
    if text[i] in ".,":  # fraction: digits, floored away
        i += 1
        start = i
        while i < len(text) and text[i] in _DIGITS:
            i += 1
        if i == start:
            _fail(func, field, _ISO_FORM, s)
    zone = text[i:]
    if zone in ("Z", "z"):
        offset = 0
    elif len(zone) in (5, 6) and zone[0] in "+-":
        hm = zone[1:]
        if len(hm) == 5:  # +HH:MM, else +HHMM
            if hm[2] != ":":
                _fail(func, field, _ISO_FORM, s)
            hm = hm[:2] + hm[3:]
        offset = (_num(func, field, _ISO_FORM, s, 0, 23, hm[:2]) * 3600
                  + _num(func, field, _ISO_FORM, s, 0, 59, hm[2:]) * 60)
        if zone[0] == "-":
            offset = -offset
    else:
        _fail(func, field, _ISO_FORM, s)
    return _epoch(func, field, _ISO_FORM, s, y, mo, d, hh, mi, ss, offset)
