# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The fleet server's SigV4 verifier (edgecore_fleet.sigcheck, built on edgecore.sigv4)
against an independent implementation: it accepts exactly what botocore's signer
produces, for random paths, queries, headers, bodies and keys, and rejects any tampered
request; the rejections carry AWS's codes and wording. CPython only."""

import datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore_fleet import sigcheck
from edgecore_fleet.sigcheck import AuthError, KeyRecord

WHEN = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
NOW = int(WHEN.timestamp())
HOST = "fleet.example.com:8443"

segment = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                blacklist_characters="/?#"), min_size=1, max_size=12)
token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=10)
header_value = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                       max_size=20).map(lambda s: "  " + s.replace(" ", "  ") + " ")
secret = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                 min_size=20, max_size=40)


@st.composite
def requests_(draw):
    path = "/" + "/".join(quote(s, safe="-_.~") for s in draw(st.lists(segment, max_size=4)))
    pairs = draw(st.lists(st.tuples(token, st.text(max_size=8)), max_size=3))
    query = "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in pairs)
    headers = draw(st.dictionaries(token.map(lambda s: "x-test-" + s), header_value,
                                   max_size=3))
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        "raw_path": path + ("?" + query if query else ""),
        "headers": headers,
        "body": draw(st.binary(max_size=200)),
        "key": KeyRecord("AKID" + draw(token).upper(), draw(secret),
                         draw(st.one_of(st.none(), secret)), device="d"),
        "region": draw(st.sampled_from(["us-west-2", "eu-central-1", "local"])),
    }


def botocore_sign(req):
    """(header list as a client sends it) for `req`, signed by botocore at WHEN."""
    request = AWSRequest(req["method"], "https://%s%s" % (HOST, req["raw_path"]),
                         data=req["body"], headers=dict(req["headers"]))
    key = req["key"]
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        SigV4Auth(Credentials(key.access_key, key.secret_key, key.session_token),
                  "sagemaker", req["region"]).add_auth(request)
    return [("host", HOST)] + [(k, v) for k, v in request.headers.items()]


def verify(req, headers, raw_path=None, body=None, now=NOW, key=None):
    key = key or req["key"]
    return sigcheck.verify(req["method"], raw_path or req["raw_path"], headers,
                           req["body"] if body is None else body,
                           lambda akid: key if akid == key.access_key else None, now)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests_())
def test_accepts_what_botocore_signs(req):
    headers = botocore_sign(req)
    verified = verify(req, headers)
    assert verified.key is req["key"] and verified.region == req["region"]


def _replace(headers, name, value):
    return [(k, value if k.lower() == name else v) for k, v in headers]


TAMPERS = {
    "body": lambda req, h: (h, req["raw_path"], req["body"] + b"x"),
    "path": lambda req, h: (h, "/x" + req["raw_path"], None),
    "query": lambda req, h: (h, req["raw_path"] + ("&" if "?" in req["raw_path"] else "?")
                             + "extra=1", None),
    "signature": lambda req, h: (_replace(h, "authorization", sigcheck.header(
        h, "authorization")[:-1] + ("0" if sigcheck.header(h, "authorization")[-1] != "0"
                                    else "1")), req["raw_path"], None),
    "date": lambda req, h: (_replace(h, "x-amz-date", "20260304T050608Z"), req["raw_path"],
                            None),
    "host": lambda req, h: (_replace(h, "host", "other.example.com"), req["raw_path"], None),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests_(), st.sampled_from(sorted(TAMPERS)))
def test_rejects_any_tampered_request(req, how):
    headers, raw_path, body = TAMPERS[how](req, botocore_sign(req))
    with pytest.raises(AuthError) as info:
        verify(req, headers, raw_path, body)
    assert info.value.code == "InvalidSignatureException" and info.value.status == 403


@settings(max_examples=25, deadline=None)
@given(requests_(), secret)
def test_rejects_a_wrong_secret(req, other):
    headers = botocore_sign(req)
    k = req["key"]
    if other == k.secret_key:
        return
    with pytest.raises(AuthError) as info:
        verify(req, headers, key=KeyRecord(k.access_key, other, k.session_token))
    assert info.value.message.startswith(sigcheck.MSG_MISMATCH)
    assert other not in info.value.message and k.secret_key not in info.value.message


def _simple():
    req = {"method": "POST", "raw_path": "/GetDeployments", "headers": {},
           "body": b"{}", "key": KeyRecord("AKIDX", "s" * 40, None, device="d"),
           "region": "us-west-2"}
    return req, botocore_sign(req)


@pytest.mark.parametrize("offset, start", [
    (-901, "Signature not yet current: 20260304T050607Z is still later than "),
    (901, "Signature expired: 20260304T050607Z is now earlier than "),
])
def test_fifteen_minute_window(offset, start):
    req, headers = _simple()
    verify(req, headers, now=NOW + (offset // abs(offset)) * 900)  # the edge: accepted
    with pytest.raises(AuthError) as info:
        verify(req, headers, now=NOW + offset)
    # The agent's clock correction relies on this wording (edgecore.agent.is_skew_error).
    assert info.value.message.startswith(start) and "15 min.)" in info.value.message


def test_replayed_request_after_the_window_is_refused():
    req, headers = _simple()
    verify(req, headers)
    with pytest.raises(AuthError) as info:
        verify(req, headers, now=NOW + 3600)
    assert info.value.code == "InvalidSignatureException"
    assert "Signature expired" in info.value.message


def test_key_and_token_rejections():
    req, headers = _simple()
    with pytest.raises(AuthError) as info:
        sigcheck.verify("POST", "/GetDeployments", headers, b"{}", lambda akid: None, NOW)
    assert (info.value.status, info.value.code) == (403, "UnrecognizedClientException")
    expired = KeyRecord("AKIDX", "s" * 40, None, expiration=NOW - 1)
    with pytest.raises(AuthError) as info:
        verify(req, headers, key=expired)
    assert info.value.code == "ExpiredTokenException"
    with_token = KeyRecord("AKIDX", "s" * 40, "tok", device="d")
    with pytest.raises(AuthError) as info:  # the token is required, and must match
        verify(req, headers, key=with_token)
    assert info.value.code == "UnrecognizedClientException"
    with pytest.raises(AuthError) as info:
        verify(req, [h for h in headers if h[0].lower() != "authorization"])
    assert info.value.code == "MissingAuthenticationTokenException"
    with pytest.raises(AuthError) as info:
        verify(req, _replace(headers, "authorization", "AWS4-HMAC-SHA256 Credential=AKIDX/x"))
    assert info.value.code == "IncompleteSignatureException"


def test_a_session_token_never_appears_in_a_mismatch_message():
    # Found by test_rejects_a_wrong_secret: the echoed canonical request held the token.
    token = "FwoGZXIvYXdzEJr//////////wEaDH7tokenvalue"
    req = {"method": "POST", "raw_path": "/GetDeployments", "headers": {}, "body": b"{}",
           "key": KeyRecord("AKIDX", "s" * 40, token), "region": "us-west-2"}
    headers = botocore_sign(req)
    with pytest.raises(AuthError) as info:
        verify(req, headers, key=KeyRecord("AKIDX", "t" * 40, token))
    assert token not in info.value.message and token not in str(info.value)
    assert "x-amz-security-token:<redacted>" in info.value.message


def test_content_sha256_must_match_the_body():
    req = {"method": "POST", "raw_path": "/GetDeployments",
           "headers": {"X-Amz-Content-SHA256": "0" * 64}, "body": b"{}",
           "key": KeyRecord("AKIDX", "s" * 40), "region": "us-west-2"}
    with pytest.raises(AuthError) as info:
        verify(req, botocore_sign(req))
    assert info.value.code == "InvalidSignatureException"


def test_parse_amz_date():
    assert sigcheck.parse_amz_date("20260304T050607Z") == NOW
    for bad in ("2026030T050607Z", "20261304T050607Z", "20260304 050607Z", "２０260304T050607Z"):
        assert sigcheck.parse_amz_date(bad) is None
