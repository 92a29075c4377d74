"""CPython-only cross-checks: edgecore.sigv4 vs botocore's signers, amztime vs the stdlib.

Hypothesis generates methods, paths with unicode and reserved characters (percent-encoded
as on the wire, plus raw sub-delims and dot segments), query strings with duplicate keys,
bare keys and empty values, header sets (mixed case, whitespace runs, names differing only
in case, list values, blacklisted names), bodies and session tokens. For "sagemaker" the
reference is botocore's SigV4Auth, for "s3" S3SigV4Auth; botocore's clock is patched so
both sign at the same instant, and both must give the same Authorization header.
"""

import calendar
import datetime
import email.utils
import time
import urllib.parse
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore import amztime, sigv4

ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-west-2"

HOSTS = [
    "https://edge.sagemaker.us-west-2.amazonaws.com",
    "https://Edge.SageMaker.us-west-2.amazonaws.com:443",
    "http://127.0.0.1:8080",
    "http://localhost:80",
    "https://bucket.s3.us-west-2.amazonaws.com:8443",
    "http://[::1]:5000",
    "https://[FE80::1]",
]
# sign_request refuses userinfo; host_header (an intermediate) still drops it as botocore does.
HOST_FORMS = HOSTS + ["http://user@[::1]:5000"]
SUB_DELIMS = "!$&'()*+,;=:@"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)

# A path segment as it appears on the wire: quoted unicode, raw sub-delims, escapes, dots.
raw_segment = st.text(st.sampled_from(UNRESERVED + SUB_DELIMS), max_size=8)
escape = st.integers(0, 255).filter(lambda b: chr(b) not in UNRESERVED).map(lambda b: "%%%02X" % b)
segment = st.one_of(
    unicode_text.map(lambda s: sigv4.quote(s, "")),
    raw_segment,
    st.lists(st.one_of(raw_segment, escape), max_size=4).map("".join),
    st.sampled_from(["", ".", "..", "%2F", "a.b", "~user"]),
)
path = st.lists(segment, max_size=6).map(lambda segs: "/" + "/".join(segs))
# sign_request refuses "." and ".." segments for S3 (clients resolve them before sending).
s3_path = st.lists(segment.filter(lambda seg: seg not in (".", "..")), max_size=6).map(
    lambda segs: "/" + "/".join(segs)
)

# Query keys and values: quoted unicode or raw characters that may stand in a query.
query_raw = st.text(st.sampled_from(UNRESERVED + "!$'()*+,;:@/?"), max_size=6)
query_part = st.one_of(unicode_text.map(lambda s: sigv4.quote(s, "")), query_raw)
query_pair = st.one_of(
    st.tuples(query_part, query_part).map(lambda kv: kv[0] + "=" + kv[1]),
    query_part,  # bare key
    query_part.map(lambda k: k + "="),  # empty value
    st.just(""),  # a&&b
)
query = (
    st.lists(query_pair, max_size=6)
    .flatmap(
        lambda pairs: (
            st.lists(st.sampled_from(pairs), max_size=3).map(lambda dup: pairs + dup)
            if pairs
            else st.just(pairs)
        )
    )
    .map("&".join)
)

header_names = st.sampled_from(
    [
        "Content-Type",
        "X-Amz-Target",
        "X-Custom",
        "x-custom",
        "X-CUSTOM",
        "Accept",
        "Content-MD5",
        "User-Agent",
        "Expect",
        "Transfer-Encoding",
        "X-Amzn-Trace-Id",
        "amz-sdk-invocation-id",
        "Range",
        "If-None-Match",
        "X-Amz-Meta-Tag",
        "Host",
        "Content-Length",
        "X-Amz-Content-SHA256",
    ]
)
value_text = st.text(st.sampled_from(UNRESERVED + SUB_DELIMS + '"/ \t#%<>?[]{}|^`\\'), max_size=20)
header_value = st.one_of(value_text, st.lists(value_text, min_size=1, max_size=3))
headers = st.dictionaries(header_names, header_value, max_size=6)
token = st.one_of(
    st.none(), st.just(""), st.text(st.sampled_from(UNRESERVED + "+/="), min_size=1, max_size=60)
)
body = st.one_of(st.none(), st.binary(max_size=64), unicode_text)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "get", "post"])
timestamps = st.integers(0, amztime.MAX_EPOCH)


def botocore_sign(auth_cls, service, method, url, hdrs, data, session_token, epoch):
    creds = Credentials(ACCESS, SECRET, session_token)
    auth = auth_cls(creds, service, REGION)
    joined = {k: ",".join(v) if isinstance(v, list) else v for k, v in hdrs.items()}
    req = AWSRequest(method=method, url=url, headers=joined, data=data)
    now = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=epoch)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: now):
        auth.add_auth(req)
    return req.headers


def check_same(service, auth_cls, method, host, p, q, hdrs, data, session_token, epoch):
    url = host + p + ("?" + q if q else "")
    ours = sigv4.sign_request(
        method,
        url,
        hdrs,
        data,
        access_key=ACCESS,
        secret_key=SECRET,
        session_token=session_token,
        region=REGION,
        service=service,
        timestamp=epoch,
    )
    theirs = botocore_sign(auth_cls, service, method, url, hdrs, data, session_token, epoch)
    assert ours["Authorization"] == theirs["Authorization"], url
    # What is sent is what is signed: no two spellings of one name (a client would send
    # only one of them), and botocore signing the headers AS RETURNED agrees.
    lowered = [k.lower() for k in ours]
    assert len(set(lowered)) == len(lowered), list(ours)
    sent = {k: v for k, v in ours.items() if k != "Authorization"}
    again = botocore_sign(auth_cls, service, method, url, sent, data, session_token, epoch)
    assert again["Authorization"] == ours["Authorization"], sent
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    if session_token:
        assert ours["X-Amz-Security-Token"] == theirs["X-Amz-Security-Token"] == session_token
    if service == "s3":
        assert ours["X-Amz-Content-Sha256"] == theirs["X-Amz-Content-SHA256"]


COMMON = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(methods, st.sampled_from(HOSTS), path, query, headers, body, token, timestamps)
def test_sagemaker_matches_botocore_sigv4auth(method, host, p, q, hdrs, data, tok, epoch):
    check_same("sagemaker", botocore.auth.SigV4Auth, method, host, p, q, hdrs, data, tok, epoch)


@COMMON
@given(methods, st.sampled_from(HOSTS), s3_path, query, headers, body, token, timestamps)
def test_s3_matches_botocore_s3sigv4auth(method, host, p, q, hdrs, data, tok, epoch):
    check_same("s3", botocore.auth.S3SigV4Auth, method, host, p, q, hdrs, data, tok, epoch)


@settings(max_examples=150, deadline=None)
@given(path)
def test_canonical_uri_matches_botocore(p):
    auth = botocore.auth.SigV4Auth(Credentials(ACCESS, SECRET), "sagemaker", REGION)
    s3 = botocore.auth.S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", REGION)
    assert sigv4.canonical_uri(p, "sagemaker") == auth._normalize_url_path(p)
    assert sigv4.canonical_uri(p, "s3") == s3._normalize_url_path(p)


@settings(max_examples=200, deadline=None)
@given(query)
def test_canonical_query_matches_botocore(q):
    auth = botocore.auth.SigV4Auth(Credentials(ACCESS, SECRET), "sagemaker", REGION)
    parts = botocore.auth.urlsplit("https://h/?" + q)
    assert sigv4.canonical_query(q) == auth._canonical_query_string_url(parts)


@settings(max_examples=200, deadline=None)
@given(st.one_of(unicode_text, st.binary(max_size=32)), st.sampled_from(["", "/", "/~", "=&"]))
@pytest.mark.parametrize("tables", [True, False], ids=["tables", "micropython-path"])
def test_quote_matches_urllib(tables, s, safe):
    import urllib.parse

    saved = sigv4._TABLES
    sigv4._TABLES = tables  # False: the table-free path MicroPython takes
    try:
        assert sigv4.quote(s, safe) == urllib.parse.quote(s, safe=safe)
    finally:
        sigv4._TABLES = saved


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(HOST_FORMS))
def test_host_header_matches_botocore(host):
    scheme, netloc, _, _ = sigv4.split_url(host + "/")
    assert sigv4.host_header(scheme, netloc) == botocore.auth._host_from_url(host + "/")


# --- S3 GET as boto3 really sends it: capture the prepared request, re-sign it ourselves.
class _Captured(Exception):
    pass


@pytest.fixture(scope="module")
def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        region_name=REGION,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        aws_session_token="TOKEN/+=",
        endpoint_url="http://127.0.0.1:9",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
    )


def boto3_get_object(s3_client, **params):
    """(url, headers sent, headers given to the signer, epoch) of boto3's GetObject."""
    captured = {}

    def grab(request, **kwargs):
        captured["url"] = request.url
        captured["headers"] = dict(request.headers.items())
        raise _Captured()

    s3_client.meta.events.register("before-send.s3.GetObject", grab)
    try:
        with pytest.raises(_Captured):
            s3_client.get_object(Bucket="examplebucket", **params)
    finally:
        s3_client.meta.events.unregister("before-send.s3.GetObject", grab)
    sent = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in captured["headers"].items()}
    epoch = calendar.timegm(time.strptime(sent["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    # botocore adds amz-sdk-invocation-id / amz-sdk-request after signing: sent, unsigned.
    given_headers = {
        k: v
        for k, v in sent.items()
        if k.lower() != "authorization" and not k.lower().startswith("amz-sdk-")
    }
    return captured["url"], sent, given_headers, epoch


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    byte_range=st.one_of(st.none(), st.just("bytes=0-9")),
)
def test_s3_get_object_matches_boto3_on_the_wire(s3_client, key, byte_range):
    params = {"Key": key}
    if byte_range:
        params["Range"] = byte_range
    url, sent, given_headers, epoch = boto3_get_object(s3_client, **params)
    # The agent builds the same URL from the raw key with sigv4.quote.
    assert url == "http://127.0.0.1:9/examplebucket/" + sigv4.quote(key)
    ours = sigv4.sign_request(
        "GET",
        url,
        given_headers,
        None,
        access_key=ACCESS,
        secret_key=SECRET,
        session_token="TOKEN/+=",
        region=REGION,
        service="s3",
        timestamp=epoch,
    )
    assert ours["Authorization"] == sent["Authorization"]


# --- raw URLs (item 7): sign() encodes once and signs as botocore does on the same input.
# Raw text: what a URL cannot carry as is (space, non-ASCII, "<>\"^`{|}[]\\") plus
# unreserved characters; "%", "?", "#" and sub-delims would be URL syntax, not text.
raw_chars = st.characters(blacklist_categories=("Cs", "Cc"),
                          blacklist_characters="%?#/" + SUB_DELIMS)
raw_segment_text = st.text(raw_chars, min_size=1, max_size=8).filter(lambda t: t not in (".", ".."))
raw_path = st.lists(raw_segment_text, min_size=1, max_size=4).map(lambda segs: "/" + "/".join(segs))


@COMMON
@given(st.sampled_from(HOSTS), raw_path, timestamps)
def test_raw_path_signs_as_botocore_for_other_services(host, p, epoch):
    url, ours = sigv4.sign("GET", host + p, {}, None, access_key=ACCESS, secret_key=SECRET,
                           region=REGION, service="sagemaker", timestamp=epoch)
    # botocore signs the raw URL (its canonical path encodes the text once); urllib3 then
    # sends the raw characters encoded once: the URL sign() returns.
    theirs = botocore_sign(botocore.auth.SigV4Auth, "sagemaker", "GET", host + p, {}, None,
                           None, epoch)
    assert ours["Authorization"] == theirs["Authorization"]
    assert url == host + sigv4.quote(p, "/~")


@COMMON
@given(st.dictionaries(st.text(raw_chars, min_size=1, max_size=6),
                       st.text(raw_chars, max_size=6), min_size=1, max_size=4), timestamps)
def test_raw_query_signs_as_botocore_params(params, epoch):
    host = HOSTS[0]
    raw = "&".join(k + "=" + v for k, v in params.items())
    url, ours = sigv4.sign("GET", host + "/?" + raw, {}, None, access_key=ACCESS,
                           secret_key=SECRET, region=REGION, service="sagemaker",
                           timestamp=epoch)
    creds = Credentials(ACCESS, SECRET)
    req = AWSRequest(method="GET", url=host + "/", params=params)
    now = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=epoch)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: now):
        botocore.auth.SigV4Auth(creds, "sagemaker", REGION).add_auth(req)
    assert ours["Authorization"] == req.headers["Authorization"]
    # The URL sent carries those params, each encoded once (botocore itself would send a
    # space as "+" though it signed "%20"; sign() sends what it signed).
    query = urllib.parse.urlsplit(url).query
    assert dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) == params
    assert "+" not in query and " " not in query


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=raw_path.map(lambda p: p[1:]))
def test_raw_s3_key_url_and_signature_match_boto3_on_the_wire(s3_client, key):
    wire, sent, given_headers, epoch = boto3_get_object(s3_client, Key=key)
    url, ours = sigv4.sign("GET", "http://127.0.0.1:9/examplebucket/" + key, given_headers, None,
                           access_key=ACCESS, secret_key=SECRET, session_token="TOKEN/+=",
                           region=REGION, service="s3", timestamp=epoch)
    assert url == wire
    assert ours["Authorization"] == sent["Authorization"]


# --- amztime against the standard library
def _gmtime_max():
    # 32-bit time_t (armhf, 32-bit Raspberry Pi OS): the stdlib stops at 2038, amztime not.
    try:
        time.gmtime(2**31)
    except (OverflowError, OSError, ValueError):
        return 2**31 - 1
    return amztime.MAX_EPOCH


GMTIME_MAX = _gmtime_max()


def test_amz_date_past_2038_without_the_stdlib():
    assert amztime.amz_date(2**31) == "20380119T031408Z"
    assert amztime.parse_iso8601("2038-01-19T03:14:08Z") == 2**31


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.integers(0, GMTIME_MAX), st.floats(0, GMTIME_MAX, allow_nan=False))
)
def test_amz_date_matches_gmtime(epoch):
    t = time.gmtime(int(epoch))
    assert amztime.amz_date(epoch) == "%04d%02d%02dT%02d%02d%02dZ" % t[:6]
    assert amztime.date_stamp(epoch) == "%04d%02d%02d" % t[:3]
    assert amztime.parse_iso8601(amztime.iso8601(epoch)) == int(epoch)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, GMTIME_MAX))
def test_http_date_matches_email_utils(epoch):
    formatted = email.utils.formatdate(epoch, usegmt=True)
    assert amztime.http_date(epoch) == formatted
    assert amztime.parse_http_date(formatted) == epoch
    parsed = email.utils.parsedate_to_datetime(formatted)
    assert amztime.parse_http_date(formatted) == int(parsed.timestamp())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, min(2**31 * 2, GMTIME_MAX)))
def test_rfc850_and_asctime_match_email_utils(epoch):
    t = time.gmtime(epoch)
    if not 1969 < t.tm_year < 2069:
        return  # two-digit years cover 1969..2068
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    rfc850 = time.strftime("%%s, %d-%b-%y %H:%M:%S GMT", t) % days[t.tm_wday]
    asctime = time.strftime("%a %b ", t) + ("%2d" % t.tm_mday) + time.strftime(" %H:%M:%S %Y", t)
    for text in (rfc850, asctime):
        assert amztime.parse_http_date(text) == epoch, text
        assert (
            int(
                email.utils.parsedate_to_datetime(text)
                .replace(tzinfo=datetime.timezone.utc)
                .timestamp()
            )
            == epoch
        )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parsers_raise_only_valueerror(text):
    for func in (amztime.parse_http_date, amztime.parse_iso8601):
        try:
            value = func(text)
        except ValueError:
            continue
        assert 0 <= value <= amztime.MAX_EPOCH


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9999, 12, 30)
    ),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_parse_iso8601_matches_fromisoformat(dt, offset_minutes):
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    aware = dt.replace(tzinfo=tz)
    expected = calendar.timegm(aware.utctimetuple())
    text = aware.isoformat()
    if not 0 <= expected <= amztime.MAX_EPOCH:
        return
    assert amztime.parse_iso8601(text) == expected, text
