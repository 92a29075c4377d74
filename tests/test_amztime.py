# Runs under MicroPython too
"""edgecore.amztime: known dates, leap years, range ends, round trips, bad input.

Plain test functions: runs under pytest and under MicroPython.
"""

from edgecore import amztime as T


def _raises(func, *args):
    try:
        func(*args)
    except ValueError as e:
        return str(e)
    raise AssertionError("ValueError not raised for %r" % (args,))


KNOWN = (
    (0, "19700101T000000Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
    (784111777, "19941106T084937Z", "Sun, 06 Nov 1994 08:49:37 GMT"),
    (951782400, "20000229T000000Z", "Tue, 29 Feb 2000 00:00:00 GMT"),
    (1369353600, "20130524T000000Z", "Fri, 24 May 2013 00:00:00 GMT"),
    (1440938160, "20150830T123600Z", "Sun, 30 Aug 2015 12:36:00 GMT"),
    (2147483647, "20380119T031407Z", "Tue, 19 Jan 2038 03:14:07 GMT"),
    (2147483648, "20380119T031408Z", "Tue, 19 Jan 2038 03:14:08 GMT"),
    (4107542400, "21000301T000000Z", "Mon, 01 Mar 2100 00:00:00 GMT"),
    (253402300799, "99991231T235959Z", "Fri, 31 Dec 9999 23:59:59 GMT"),
)


def test_known_dates():
    for epoch, amz, http in KNOWN:
        assert T.amz_date(epoch) == amz, epoch
        assert T.date_stamp(epoch) == amz[:8]
        assert T.http_date(epoch) == http, epoch
        assert T.parse_http_date(http) == epoch
        iso = "%s-%s-%sT%s:%s:%sZ" % (
            amz[0:4],
            amz[4:6],
            amz[6:8],
            amz[9:11],
            amz[11:13],
            amz[13:15],
        )
        assert T.iso8601(epoch) == iso
        assert T.parse_iso8601(iso) == epoch


def test_float_is_floored():
    assert T.amz_date(1440938160.999) == "20150830T123600Z"
    assert T.amz_date(0.5) == "19700101T000000Z"


def test_leap_years():
    assert T.days_in_month(2000, 2) == 29
    assert T.days_in_month(1900, 2) == 28
    assert T.days_in_month(2024, 2) == 29
    assert T.days_in_month(2023, 2) == 28
    assert T.days_in_month(2100, 2) == 28
    assert (
        T.parse_iso8601("2024-02-29T00:00:00Z") - T.parse_iso8601("2024-02-28T00:00:00Z") == 86400
    )
    _raises(T.parse_iso8601, "2023-02-29T00:00:00Z")
    _raises(T.parse_iso8601, "2100-02-29T00:00:00Z")
    _raises(T.parse_http_date, "Mon, 29 Feb 2100 00:00:00 GMT")


def test_civil_round_trip_every_day_sampled():
    # Every 37th day across the whole range, and both ends.
    for z in list(range(0, 2932897, 37)) + [2932896]:
        y, m, d = T.civil_from_days(z)
        assert 1 <= m <= 12 and 1 <= d <= T.days_in_month(y, m)
        assert T.days_from_civil(y, m, d) == z


def test_http_date_forms():
    e = 784111777
    assert T.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == e
    assert T.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == e
    assert T.parse_http_date("Sun Nov  6 08:49:37 1994") == e
    assert T.parse_http_date("  Sun, 06 Nov 1994 08:49:37 UTC ") == e
    assert T.parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0
    assert T.parse_http_date("Saturday, 01-Jan-68 00:00:00 GMT") == T.parse_iso8601(
        "2068-01-01T00:00:00Z"
    )


def test_iso8601_forms():
    base = 1704067200  # 2024-01-01T00:00:00Z
    assert T.parse_iso8601("2024-01-01T00:00:00Z") == base
    assert T.parse_iso8601("2024-01-01T00:00:00.999999Z") == base
    assert T.parse_iso8601("2024-01-01t00:00:00z") == base
    assert T.parse_iso8601("2024-01-01 00:00:00+00:00") == base
    assert T.parse_iso8601("2024-01-01T01:30:00+01:30") == base
    assert T.parse_iso8601("2023-12-31T22:00:00-0200") == base


def test_bad_epochs():
    for bad in (-1, -0.5, 253402300800, float("inf"), float("nan"), "0", None, True):
        msg = _raises(T.amz_date, bad)
        assert "amz_date" in msg and "epoch" in msg, msg


def test_bad_http_dates():
    for bad in (
        "",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 EST",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nob 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:60 GMT",
        "Sun, 06 Nov 1969 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov  6 08:49 1994",
        "Sun, +6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        5,
    ):
        msg = _raises(T.parse_http_date, bad)
        assert "parse_http_date" in msg and "Date" in msg, msg


def test_bad_iso8601():
    for bad in (
        "",
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-13-01T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+2400",
        "2024-01-01T00:00:00+01:3",
        "2024-01-01T00:00:00 Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",
        "10000-01-01T00:00:00Z",
        "2024/01/01T00:00:00Z",
        "2024-01-01T00:00:00+01-30",
        "x" * 200,
        None,
    ):
        msg = _raises(T.parse_iso8601, bad)
        assert "parse_iso8601" in msg, msg
        assert len(msg) < 300


def test_http_date_whitespace_is_the_same_on_every_runtime():
    # Fields are separated by SP only; str.split() without arguments would also split on
    # Unicode spaces on CPython (not on MicroPython), so such text parsed on one runtime only.
    good = 784111777
    assert T.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == good
    assert T.parse_http_date("\tSun,  06 Nov 1994 08:49:37 GMT ") == good
    assert T.parse_http_date("Sun Nov  6 08:49:37 1994") == good
    for sep in ("\u2003", "\u00a0", "\x1c", "\x0b", "\n", "\t"):
        for text in ("Sun," + sep + "06 Nov 1994 08:49:37 GMT",
                     "Sun Nov 6 08:49:37" + sep + "1994"):
            try:
                T.parse_http_date(text)
            except ValueError as exc:
                assert "parse_http_date" in str(exc)
            else:
                raise AssertionError("accepted %r" % text)
