# Runs under MicroPython too
"""edgecore.sigv4 against AWS's published vectors; runs under pytest and MicroPython.

Vectors: the aws-sig-v4-test-suite (tests/data/sigv4_vectors.py), the Amazon S3 SigV4
examples (examplebucket, AKIAIOSFODNN7EXAMPLE, 20130524) and RFC 4231 for HMAC-SHA256.
"""

import sys

from data import sigv4_vectors as V

from edgecore import sigv4

SUITE_HOST = "https://example.amazonaws.com"
IS_CPYTHON = sys.implementation.name == "cpython"
URL_CHARS = ":/?#[]@!$&'()*+,;=%"


def _raises(exc, func, *args, **kwargs):
    try:
        func(*args, **kwargs)
    except exc as e:
        return str(e)
    raise AssertionError("%s not raised" % exc.__name__)


def _suite_url(path):
    # The suite writes request lines unencoded. The path is given raw (the canonicalizer
    # encodes it, as the suite and botocore do); the query is put in its wire form,
    # because the canonical query string is the wire query, sorted.
    q = path.find("?")
    if q < 0:
        return SUITE_HOST + path
    return SUITE_HOST + path[: q + 1] + sigv4.quote(path[q + 1 :], URL_CHARS)


def _suite_headers(case):
    headers = {}
    for name, value in case["headers"]:
        if name in headers:
            prev = headers[name]
            headers[name] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            headers[name] = value
    if case["token"] and "X-Amz-Security-Token" not in headers:
        headers["X-Amz-Security-Token"] = case["token"]
    return headers


def _header_lines_ok(case):
    return all("\n" not in v for _, v in case["headers"])


def test_suite_has_the_expected_cases():
    names = [c["name"] for c in V.CASES]
    for expected in (
        "get-vanilla",
        "get-vanilla-query-order-key-case",
        "get-unreserved",
        "get-utf8",
        "normalize-path/get-space",
        "post-x-www-form-urlencoded",
        "normalize-path/get-relative-relative",
        "get-header-value-trim",
        "get-header-key-duplicate",
        "post-sts-token/post-sts-header-before",
        "get-vanilla-utf8-query",
        "get-vanilla-query-order-encoded",
    ):
        assert expected in names, expected
    assert len(V.CASES) == 34


def test_suite_canonical_request():
    for case in V.CASES:
        got = sigv4.canonical_request(
            case["method"],
            _suite_url(case["path"]),
            _suite_headers(case),
            sigv4.payload_sha256(case["body"]),
            V.SERVICE,
        )
        assert got == case["creq"], (case["name"], got)


def test_suite_string_to_sign():
    for case in V.CASES:
        got = sigv4.string_to_sign(case["creq"], V.AMZ_DATE, V.REGION, V.SERVICE)
        assert got == case["sts"], case["name"]


def test_suite_signature():
    key = sigv4.signing_key(V.SECRET_KEY, V.AMZ_DATE[:8], V.REGION, V.SERVICE)
    for case in V.CASES:
        sig = sigv4.signature(key, case["sts"])
        assert case["authz"].endswith("Signature=" + sig), case["name"]


def test_suite_sign_request_end_to_end():
    # The request line as the suite writes it (raw spaces, non-ASCII, raw query) goes
    # to sign(), which encodes it once and returns the URL to send with the headers.
    signed = 0
    for case in V.CASES:
        if not _header_lines_ok(case):
            continue
        headers = _suite_headers(case)
        url, out = sigv4.sign(
            case["method"],
            SUITE_HOST + case["path"],
            headers,
            case["body"],
            access_key=V.ACCESS_KEY,
            secret_key=V.SECRET_KEY,
            session_token=case["token"],
            region=V.REGION,
            service=V.SERVICE,
            timestamp=V.EPOCH,
        )
        assert out["Authorization"] == case["authz"], (case["name"], out["Authorization"])
        assert out["X-Amz-Date"] == V.AMZ_DATE
        assert out is not headers and "Authorization" not in headers
        assert url == _suite_url(case["path"]).replace("\u1234", "%E1%88%B4").replace(" ", "%20")
        assert url == sigv4.wire_url(SUITE_HOST + case["path"])
        assert out == sigv4.sign_request(
            case["method"], SUITE_HOST + case["path"], headers, case["body"],
            access_key=V.ACCESS_KEY, secret_key=V.SECRET_KEY, session_token=case["token"],
            region=V.REGION, service=V.SERVICE, timestamp=V.EPOCH)
        signed += 1
    assert signed == 33  # all but the folded (multi-line) header value


def test_suite_raw_cases_send_the_encoded_url():
    urls = {}
    for case in V.CASES:
        if case["name"] in ("get-utf8", "get-vanilla-utf8-query", "normalize-path/get-space"):
            urls[case["name"]] = sigv4.wire_url(SUITE_HOST + case["path"])
    assert urls == {
        "get-utf8": SUITE_HOST + "/%E1%88%B4",
        "get-vanilla-utf8-query": SUITE_HOST + "/?%E1%88%B4=bar",
        "normalize-path/get-space": SUITE_HOST + "/example%20space/",
    }


def test_get_vanilla_float_timestamp_is_floored():
    case = [c for c in V.CASES if c["name"] == "get-vanilla"][0]
    out = sigv4.sign_request(
        "GET",
        SUITE_HOST + "/",
        {},
        None,
        access_key=V.ACCESS_KEY,
        secret_key=V.SECRET_KEY,
        region=V.REGION,
        service=V.SERVICE,
        timestamp=V.EPOCH + 0.999,
    )
    if float("16777217") == float("16777216"):
        # 32-bit floats (the qemu Cortex-M3 port): V.EPOCH + 0.999 is another second
        # there (floats near 1.4e9 are 128 s apart); what holds is the flooring itself.
        floored = sigv4.sign_request("GET", SUITE_HOST + "/", {}, None, access_key=V.ACCESS_KEY,
                                     secret_key=V.SECRET_KEY, region=V.REGION,
                                     service=V.SERVICE, timestamp=int(V.EPOCH + 0.999))
        assert out == floored
    else:
        assert out["Authorization"] == case["authz"]
    assert out["Host"] == "example.amazonaws.com"


def test_signing_key_aws_docs_example():
    key = sigv4.signing_key(V.SECRET_KEY, "20150830", "us-east-1", "iam")
    assert sigv4._hex(key) == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_signing_key_cache_is_bounded_and_keyed_without_secret():
    sigv4._key_cache.clear()
    for day in range(20):
        sigv4.sign_request(
            "GET",
            SUITE_HOST + "/",
            {},
            b"",
            access_key="AK",
            secret_key="SECRET-VALUE",
            region="r",
            service="s",
            timestamp=1440938160 + 86400 * day,
        )
        # At most _CACHE_MAX entries: none on MicroPython, where nothing is cached.
        assert min(1, sigv4._CACHE_MAX) <= len(sigv4._key_cache) <= sigv4._CACHE_MAX
    for ck in sigv4._key_cache:
        assert "SECRET-VALUE" not in repr(ck)
    assert "SECRET-VALUE" not in repr(sigv4._key_cache)


# --- Amazon S3 examples (Authenticating Requests: AWS Signature Version 4, header-based)
S3_ACCESS = "AKIAIOSFODNN7EXAMPLE"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_EPOCH = 1369353600  # 2013-05-24T00:00:00Z
S3_HOST = "https://examplebucket.s3.amazonaws.com"


def _s3(method, path, headers, body=None, payload_hash=None):
    return sigv4.sign_request(
        method,
        S3_HOST + path,
        headers,
        body,
        access_key=S3_ACCESS,
        secret_key=S3_SECRET,
        region="us-east-1",
        service="s3",
        timestamp=S3_EPOCH,
        payload_hash=payload_hash,
    )


def _sig(out):
    return out["Authorization"].split("Signature=")[1]


def test_s3_get_object_example():
    out = _s3("GET", "/test.txt", {"Range": "bytes=0-9"})
    assert out["X-Amz-Content-Sha256"] == sigv4.EMPTY_SHA256
    assert out["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    del out["Authorization"]
    creq = sigv4.canonical_request("GET", S3_HOST + "/test.txt", out, sigv4.EMPTY_SHA256, "s3")
    assert creq == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:" + sigv4.EMPTY_SHA256 + "\nx-amz-date:20130524T000000Z\n\n"
        "host;range;x-amz-content-sha256;x-amz-date\n" + sigv4.EMPTY_SHA256
    )
    sts = sigv4.string_to_sign(creq, "20130524T000000Z", "us-east-1", "s3")
    assert sts.endswith("\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")


def test_s3_put_object_example_single_encoding():
    body = b"Welcome to Amazon S3."
    out = _s3(
        "PUT",
        "/" + sigv4.quote("test$file.text"),
        {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        body,
    )
    assert out["X-Amz-Content-Sha256"] == (
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    )
    assert (
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        in out["Authorization"]
    )
    assert _sig(out) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_s3_get_bucket_lifecycle_example():
    assert _sig(_s3("GET", "/?lifecycle", {})) == (
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    )


def test_s3_list_objects_example():
    assert _sig(_s3("GET", "/?max-keys=2&prefix=J", {})) == (
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


def test_s3_unsigned_payload():
    out = _s3(
        "GET", "/test.txt", {"x-amz-content-sha256": "junk"}, payload_hash=sigv4.UNSIGNED_PAYLOAD
    )
    assert out["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-amz-content-sha256" not in out
    del out["Authorization"]
    creq = sigv4.canonical_request("GET", S3_HOST + "/test.txt", out, "UNSIGNED-PAYLOAD", "s3")
    assert creq.endswith("\nUNSIGNED-PAYLOAD")


def test_non_s3_unsigned_payload_sets_header_like_botocore():
    out = sigv4.sign_request(
        "POST",
        SUITE_HOST + "/",
        {},
        b"x",
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
        payload_hash="UNSIGNED-PAYLOAD",
    )
    assert out["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-amz-content-sha256" in out["Authorization"]
    plain = sigv4.sign_request(
        "POST",
        SUITE_HOST + "/",
        {},
        b"x",
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
    )
    assert "X-Amz-Content-Sha256" not in plain


def test_precomputed_payload_hash_equals_hashing_the_body():
    body = b'{"DeviceName": "cam-1"}'
    a = sigv4.sign_request(
        "POST",
        SUITE_HOST + "/",
        {},
        body,
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
    )
    b = sigv4.sign_request(
        "POST",
        SUITE_HOST + "/",
        {},
        None,
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
        payload_hash=sigv4.payload_sha256(body),
    )
    assert a == b
    c = sigv4.sign_request(
        "POST",
        SUITE_HOST + "/",
        {},
        body.decode(),
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
    )
    assert a == c


# --- canonicalization details
def test_canonical_uri_double_encoding_except_s3():
    assert sigv4.canonical_uri("/%E1%88%B4", "service") == "/%25E1%2588%25B4"
    assert sigv4.canonical_uri("/%E1%88%B4", "s3") == "/%E1%88%B4"
    assert sigv4.canonical_uri("/a//b/./c/../d/", "sagemaker") == "/a/b/d/"
    assert sigv4.canonical_uri("/a//b/./c/../d/", "s3") == "/a//b/./c/../d/"
    assert sigv4.canonical_uri("", "s3") == "/"
    assert sigv4.canonical_uri("", "sagemaker") == "/"
    assert sigv4.canonical_uri("/..", "sagemaker") == "/"
    assert (
        sigv4.canonical_uri("/a:b@c!$'()*+,;=", "sagemaker")
        == "/a%3Ab%40c%21%24%27%28%29%2A%2B%2C%3B%3D"
    )


def test_canonical_query_rules():
    q = sigv4.canonical_query
    assert q("") == ""
    assert q("b=2&a=1") == "a=1&b=2"
    assert q("a=2&a=1&a=") == "a=&a=1&a=2"
    assert q("a&b=") == "a=&b="
    assert q("a+b=c+d") == "a+b=c+d"
    assert q("x=a=b") == "x=a=b"
    assert q("a=1&&b=2") == "=&a=1&b=2"  # botocore keeps the empty pair
    assert q("%E1%88%B4=1&Z=2&a=3") == "%E1%88%B4=1&Z=2&a=3"


def test_header_canonicalization():
    url = SUITE_HOST + "/"
    creq = sigv4.canonical_request(
        "GET",
        url,
        {
            "X-Multi": ["  a  b ", "c"],
            "x-multi": "d\t e",
            "User-Agent": "ua/1",
            "Expect": "100-continue",
            "x-amzn-trace-id": "t",
            "Content-Type": "x",
        },
        "h",
        "svc",
    )
    lines = creq.split("\n")
    assert lines[3:5] == ["content-type:x", "host:example.amazonaws.com"]
    # Names differing only in case are joined in the dict's order, which MicroPython
    # does not keep (the transport sends them in that same order).
    assert lines[5] in ("x-multi:a b ,c,d e", "x-multi:d e,a b ,c")
    assert lines[-2] == "content-type;host;x-multi"


def test_host_header_from_url():
    h = sigv4.host_header
    assert h("https", "Example.COM:443") == "example.com"
    assert h("http", "example.com:80") == "example.com"
    assert h("https", "example.com:80") == "example.com:80"
    assert h("http", "user:pw@example.com:8080") == "example.com:8080"
    assert h("http", "[::1]:5000") == "[::1]:5000"
    assert h("https", "[FE80::1]") == "[fe80::1]"
    assert h("http", "h:") == "h"
    for bad in ("", ":80", "h:8x", "h:70000", "[::1"):
        _raises(ValueError, h, "http", bad)


def test_split_url():
    assert sigv4.split_url("https://h/p/q?a=1&b#frag?x") == ("https", "h", "/p/q", "a=1&b")
    assert sigv4.split_url("HTTP://h?x=/y") == ("http", "h", "", "x=/y")
    assert sigv4.split_url("https://h#f") == ("https", "h", "", "")


def test_quote():
    assert sigv4.quote("a b/c~d") == "a%20b/c~d"
    assert sigv4.quote("a b/c", "") == "a%20b%2Fc"
    assert sigv4.quote("\u1234") == "%E1%88%B4"
    assert sigv4.quote(b"\xff%") == "%FF%25"
    assert sigv4.quote("-_.~AZaz09") == "-_.~AZaz09"
    assert sigv4.encode_query([("b c", "1+2"), ("a", None), ("k", "")]) == "b%20c=1%2B2&a&k="


def test_raw_url_characters_are_encoded_once():
    kw = dict(access_key="AK", secret_key="SK", region="r", timestamp=0)
    for raw, wire in (
        ("/a b", "/a%20b"),
        ("/?q=a b", "/?q=a%20b"),
        ("/a|b", "/a%7Cb"),
        ("/k[1]?x=[1]", "/k%5B1%5D?x=%5B1%5D"),
        ('/"<>\\^`{}', "/%22%3C%3E%5C%5E%60%7B%7D"),
        ("/\u00e9/%C3%A9", "/%C3%A9/%C3%A9"),  # raw and encoded: each encoded once
        ("/a#frag ment", "/a"),  # a fragment is never sent
    ):
        for service in ("s3", "svc"):
            url, headers = sigv4.sign("GET", SUITE_HOST + raw, {}, None, service=service, **kw)
            assert url == SUITE_HOST + wire, (raw, url)
            # S3 signs the URL as sent; so does every service once the URL is encoded.
            if service == "s3" or raw.startswith("/?"):
                assert headers == sigv4.sign_request("GET", url, {}, None, service=service, **kw)


# MicroPython strings are UTF-8 bytes underneath: a lone surrogate is just 3 bytes there
# (and not valid UTF-8: frozen firmware cannot even hold one, so it is built at run time).
LONE_SURROGATE = ((SUITE_HOST + "/" + chr(0xD800), "lone surrogate"),) if IS_CPYTHON else ()


def test_unsendable_url_characters_are_refused():
    kw = dict(access_key="AK", secret_key="SK", region="r", service="svc", timestamp=0)
    for url, words in (
        (SUITE_HOST + "/a\nb", "control character (code 10)"),
        (SUITE_HOST + "/a\x7f", "control character (code 127)"),
        (SUITE_HOST + "/a%2", "'%' not followed"),
        (SUITE_HOST + "/%zz", "'%' not followed"),
        (SUITE_HOST + "/a b/%zz", "index 34"),  # the index in the caller's url
        (SUITE_HOST + "/%41", "escapes an unreserved character"),
        ("example.com/", "absolute"),
    ) + LONE_SURROGATE:
        msg = _raises(ValueError, sigv4.sign, "GET", url, {}, None, **kw)
        assert msg.startswith("sign_request: url") and words in msg, msg
    msg = _raises(ValueError, sigv4.sign_request, "GET", SUITE_HOST + "/", {"X-A": "a\r\nb"},
                  None, **kw)
    assert "line break" in msg and "X-A" in msg, msg
    sigv4.sign_request("GET", SUITE_HOST + "/%E1%88%B4?a=%20", {}, None, **kw)


def test_bad_headers_are_refused_without_echoing_values():
    kw = dict(access_key="AK", secret_key="SK", region="r", service="svc", timestamp=0)
    for headers in (
        {"X-Bad": "s3cr3t\r\nInjected: 1"},
        {"X-Bad": "s3cr3t\u00e9"},
        {"X-Bad": 5},
        {"Bad Name": "v"},
        {"": "v"},
    ):
        msg = _raises(ValueError, sigv4.sign_request, "GET", SUITE_HOST + "/", headers, None, **kw)
        assert "header" in msg and "s3cr3t" not in msg, msg


def test_bad_arguments_name_the_field_and_hide_secrets():
    base = dict(
        access_key="AKID",
        secret_key="TOPSECRET",
        session_token="TOKENSECRET",
        region="r",
        service="svc",
        timestamp=0,
    )
    cases = (
        ("access_key", ""),
        ("secret_key", None),
        ("region", "a/b"),
        ("service", ""),
        ("timestamp", "now"),
        ("timestamp", -1),
        ("payload_hash", "ABC"),
        ("session_token", "TOKENSECRET\n"),
    )
    for field, value in cases:
        kw = dict(base)
        kw[field] = value
        msg = _raises(ValueError, sigv4.sign_request, "GET", SUITE_HOST + "/", {}, None, **kw)
        assert "TOPSECRET" not in msg and "TOKENSECRET" not in msg, msg
        assert field.split("_")[0] in msg or "epoch" in msg, (field, msg)
    msg = _raises(ValueError, sigv4.sign_request, "GET", SUITE_HOST + "/", {}, 123, **base)
    assert "body" in msg
    msg = _raises(ValueError, sigv4.sign_request, "", SUITE_HOST + "/", {}, None, **base)
    assert "method" in msg


def test_replaces_stale_auth_headers_case_insensitively():
    out = sigv4.sign_request(
        "GET",
        SUITE_HOST + "/",
        {
            "authorization": "old",
            "x-amz-date": "old",
            "x-amz-security-token": "old",
            "X-Custom": "v",
        },
        None,
        access_key="AK",
        secret_key="SK",
        session_token="TOK",
        region="r",
        service="svc",
        timestamp=0,
    )
    assert sorted(out) == [
        "Authorization",
        "Host",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Custom",
    ]
    assert out["X-Amz-Security-Token"] == "TOK"
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token;x-custom," in out["Authorization"]
    assert "SK" not in out["Authorization"].split("Signature=")[0]


def test_given_host_header_is_kept_and_signed():
    out = sigv4.sign_request(
        "GET",
        "http://127.0.0.1:8080/",
        {"host": "other:1"},
        None,
        access_key="AK",
        secret_key="SK",
        region="r",
        service="svc",
        timestamp=0,
    )
    assert out["host"] == "other:1" and "Host" not in out


# --- RFC 4231 HMAC-SHA256 test cases 1-4, 6, 7
def test_hmac_sha256_rfc4231():
    big = b"\xaa" * 131
    cases = (
        (
            b"\x0b" * 20,
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            b"\xaa" * 20,
            b"\xdd" * 50,
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            bytes(range(1, 26)),
            b"\xcd" * 50,
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            big,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            big,
            b"This is a test using a larger than block-size key and a larger than "
            b"block-size data. The key needs to be hashed before being used by the HMAC "
            b"algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    )
    for key, msg, expected in cases:
        assert sigv4._hex(sigv4.hmac_sha256(key, msg)) == expected, expected


def test_printable_check_same_on_both_paths():
    # CPython takes the str.isprintable shortcut; MicroPython the set path. Force both.
    samples = ("", "abc", "a b~", "a\tb", "a\nb", "\x7f", "\u00e9", "\u1234", "~" * 300, " ")
    saved = sigv4._HAS_ISPRINTABLE
    try:
        results = []
        for flag in (True, False):
            if flag and not hasattr("", "isprintable"):
                continue
            sigv4._HAS_ISPRINTABLE = flag
            results.append([sigv4._printable_ascii(v) for v in samples])
    finally:
        sigv4._HAS_ISPRINTABLE = saved
    expected = [True, True, True, False, False, False, False, False, True, True]
    for r in results:
        assert r == expected, r


def test_hmac_pads_same_on_both_paths():
    # CPython XORs with bytes.translate tables; MicroPython with a byte loop. Force both.
    keys = (b"", b"key", bytes(range(64)), b"\xff" * 64, b"\xaa" * 131)
    saved = sigv4._XOR_TABLES
    try:
        sigv4._XOR_TABLES = None
        by_int = [sigv4._hmac_pads(k) for k in keys]
    finally:
        sigv4._XOR_TABLES = saved
    assert by_int == [sigv4._hmac_pads(k) for k in keys]
    for k, (ipad, opad) in zip(keys, by_int):
        assert len(ipad) == len(opad) == 64
        if len(k) < 64:
            assert ipad[0] == (k[0] if k else 0) ^ 0x36 and opad[-1] == 0x5C


def _sign(url, headers=None, service="s3", secret="SK"):
    return sigv4.sign_request("GET", url, headers or {}, b"", access_key="AK", secret_key=secret,
                              region="us-east-1", service=service, timestamp=1700000000)


def test_url_that_a_client_would_rewrite_is_refused():
    # urllib3 upper-cases escapes and unescapes unreserved ones; requests (and proxies)
    # resolve dot segments: the signature would not match.
    for url in ("http://h/bucket/%c3%a9", "http://h/a%5b", "http://h/a?b=%7e"):
        msg = _raises(ValueError, _sign, url)
        assert msg.startswith("sign_request: url"), msg
    for path in ("/bucket/models/../m.tar", "/bucket/./k", "/bucket/k/..", "/.."):
        msg = _raises(ValueError, _sign, "http://h" + path)
        assert "segment" in msg and "S3" in msg, msg
        # Other services normalize dot segments server side as in the signature: allowed.
        assert "Authorization" in _sign("http://h" + path, service="sagemaker")
    # Still fine: upper-case escapes, dots inside names, IPv6 literals in the host.
    for url in ("http://h/bucket/%C3%A9", "http://h/bucket/a..b/.x/x.", "http://[::1]:8080/b/k",
                "https://[FE80::1]/b"):
        assert "Authorization" in _sign(url)


def test_url_userinfo_is_refused_without_echo():
    for url in ("https://AKID:s3cr3tpw@h/bucket/k", "http://s3cr3tpw@[::1]:80/x"):
        msg = _raises(ValueError, _sign, url)
        assert "userinfo" in msg and "s3cr3tpw" not in msg, msg
    msg = _raises(ValueError, _sign, "AKID:s3cr3tpw@h/bucket")  # not absolute
    assert "s3cr3tpw" not in msg, msg


def test_lone_surrogate_secret_names_the_field_only():
    # chr(): a lone surrogate literal cannot be frozen into firmware (not UTF-8).
    secret = "wJalrXUtnFEMI" + chr(0xDC80) + "EXAMPLEKEY"
    try:
        secret.encode()
        return  # MicroPython's str encodes any code point: nothing to refuse
    except UnicodeError:
        pass
    for func in (_sign, sigv4.signing_key):
        try:
            if func is _sign:
                _sign("https://h/b", secret=secret)
            else:
                sigv4.signing_key(secret, "20231114", "us-east-1", "s3")
        except ValueError as exc:
            assert "secret_key" in str(exc)
            for e in (exc, exc.__cause__, exc.__context__):
                assert "wJalrXUtnFEMI" not in repr(e) and "EXAMPLEKEY" not in str(e)
            assert exc.__cause__ is None and exc.__context__ is None
        else:
            raise AssertionError("unencodable secret accepted")


def test_case_variants_are_merged_into_one_sent_header():
    out = _sign("http://h/p", {"X-Meta": " 1  a ", "x-meta": "2", "Other": "o"})
    names = [k for k in out if k.lower() == "x-meta"]
    assert len(names) == 1 and out[names[0]] in ("1 a,2", "2,1 a"), out
    import sys

    if sys.implementation.name == "cpython":  # insertion order: first spelling, botocore's join
        assert names == ["X-Meta"] and out["X-Meta"] == "1 a,2"
    # The value sent is the one signed: recompute the canonical request from `out`.
    creq = sigv4.canonical_request(
        "GET", "http://h/p", {k: v for k, v in out.items() if k != "Authorization"},
        out["X-Amz-Content-Sha256"], "s3")
    assert "x-meta:" + out[names[0]] in creq.split("\n")
    sig = _sign("http://h/p", {names[0]: out[names[0]], "Other": "o"})["Authorization"]
    assert sig == out["Authorization"]
    # Unsigned names too: one User-Agent goes out.
    out = _sign("http://h/p", {"User-Agent": "a", "user-agent": "b"})
    assert len([k for k in out if k.lower() == "user-agent"]) == 1


def test_secret_digest_memo_never_shows_the_secret():
    _sign("https://h/b", secret="memo-secret-value")
    assert "memo-secret-value" not in repr(sigv4._secret_memo)
    assert sigv4._secret_memo.last[0] == "memo-secret-value"
    # The memo changes nothing: a second secret signs differently, the first as before.
    a = _sign("https://h/b", secret="memo-secret-value")["Authorization"]
    b = _sign("https://h/b", secret="other-secret")["Authorization"]
    assert a != b and _sign("https://h/b", secret="memo-secret-value")["Authorization"] == a
    key = sigv4.signing_key("memo-secret-value", "20231114", "us-east-1", "s3")
    assert a.endswith("Signature=" + sigv4.signature(
        key, sigv4.string_to_sign(sigv4.canonical_request(
            "GET", "https://h/b", {k: v for k, v in _sign("https://h/b", secret="x").items()
                                   if k != "Authorization"},
            sigv4.EMPTY_SHA256, "s3"), "20231114T221320Z", "us-east-1", "s3")))


def test_no_big_int_constants_or_frozensets():
    # Ports without long ints must import the module: no 512-bit pad integers.
    assert not hasattr(sigv4, "_IPAD") and not hasattr(sigv4, "_OPAD")
    # The character classes: plain sets on CPython, bytes on MicroPython (no heap set).
    for name in ("_URL_OK", "_NETLOC_OK", "_TOKEN_OK", "_PRINTABLE_OK", "_VALUE_OK"):
        assert type(getattr(sigv4, name)) in (set, bytes), name
