# Runs under MicroPython too
"""Tests of edgecore.s3url (plain: pytest and MicroPython)."""

from edgecore import s3url


def test_parse():
    assert s3url.parse("s3://bucket/key") == ("bucket", "key")
    assert s3url.parse("s3://bucket/dir/sub/model.tar.gz") == ("bucket", "dir/sub/model.tar.gz")
    assert s3url.parse("s3://b.with.dots/k e y+ü") == ("b.with.dots", "k e y+ü")
    assert s3url.parse("s3://bucket//double") == ("bucket", "/double")


def test_parse_rejects():
    for bad in (
        "s3://bucket",
        "s3://bucket/",
        "s3:///key",
        "https://b/k",
        "",
        None,
        "s3://bu?cket/k",
        "s3://b/k\n",
        "s3://b/" + "k" * 1020,
    ):
        try:
            s3url.parse(bad)
        except ValueError as exc:
            assert str(exc).startswith("S3Url:")
        else:
            raise AssertionError("accepted %r" % (bad,))


def test_object_url_aws():
    assert (
        s3url.object_url("my-bucket", "a/b c.tar", "eu-west-1")
        == "https://my-bucket.s3.eu-west-1.amazonaws.com/a/b%20c.tar"
    )
    assert (
        s3url.object_url("my-bucket", "k", "eu-west-1", style="path")
        == "https://s3.eu-west-1.amazonaws.com/my-bucket/k"
    )
    # Dots or upper case: path style (the TLS wildcard would not match), also when
    # virtual-hosted style was asked for: botocore falls back the same way.
    for style in ("auto", "virtual"):
        assert (
            s3url.object_url("my.bucket", "k", "eu-west-1", style=style)
            == "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
        )
        assert (
            s3url.object_url("My_Bucket", "k", "eu-west-1", style=style)
            == "https://s3.eu-west-1.amazonaws.com/My_Bucket/k"
        )
    # us-east-1 is served by the global host (botocore's legacy default).
    assert s3url.object_url("b-1", "k", "us-east-1") == "https://b-1.s3.amazonaws.com/k"
    assert s3url.object_location("b-1", "k", "aws-global") == (
        "https://b-1.s3.amazonaws.com/k", "us-east-1")


def test_object_url_partitions_and_flags():
    assert s3url.object_url("b-1", "k", "cn-north-1") == "https://b-1.s3.cn-north-1.amazonaws.com.cn/k"
    assert (s3url.object_url("b-1", "k", "us-iso-east-1", style="path")
            == "https://s3.us-iso-east-1.c2s.ic.gov/b-1/k")
    assert (s3url.object_url("b-1", "k", "us-west-2", fips=True, dualstack=True)
            == "https://b-1.s3-fips.dualstack.us-west-2.amazonaws.com/k")
    assert s3url.object_location("b-1", "k", "us-west-2-fips") == (
        "https://b-1.s3-fips.us-west-2.amazonaws.com/k", "us-west-2")
    try:
        s3url.object_url("b-1", "k", "cn-north-1", fips=True)
    except ValueError as exc:
        assert "Partition does not support FIPS" in str(exc)
    else:
        raise AssertionError("FIPS in aws-cn")


def test_object_url_custom_endpoint():
    assert (
        s3url.object_url("b1", "m/x+y~z", "us-west-2", "http://127.0.0.1:5000")
        == "http://127.0.0.1:5000/b1/m/x%2By~z"
    )
    assert (
        s3url.object_url("bk1", "k", "r", "https://s3.local:9000/", style="virtual")
        == "https://bk1.s3.local:9000/k"
    )
    # Virtual-hosted style on an IP address is path style; a dotted bucket is virtual-hosted
    # over http only (botocore's rules); FIPS and dual-stack do not apply.
    assert (s3url.object_url("bk1", "k", "r", "http://127.0.0.1:9000", style="virtual", fips=True)
            == "http://127.0.0.1:9000/bk1/k")
    assert (s3url.object_url("b.k1", "k", "r", "http://s3.local", style="virtual")
            == "http://b.k1.s3.local/k")
    assert (s3url.object_url("b.k1", "k", "r", "https://s3.local", style="virtual")
            == "https://s3.local/b.k1/k")
    assert s3url.object_url("b1", "k", "r", "https://gw.example/s3") == "https://gw.example/s3/b1/k"
    assert s3url.object_url("b1", "ü%", "r", "http://h") == "http://h/b1/%C3%BC%25"
    for bad in ("ftp://h", "h:9000", "http://", "http://u@h"):
        try:
            s3url.object_url("b1", "k", "r", bad)
        except ValueError as exc:
            assert "s3_endpoint_url" in str(exc)
        else:
            raise AssertionError("accepted endpoint %r" % (bad,))
    try:
        s3url.object_url("b1", "k", "r", style="dual")
    except ValueError as exc:
        assert "s3_addressing_style" in str(exc)
    else:
        raise AssertionError("accepted style dual")


def test_parse_error():
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        b"<Message>The specified key does not exist.</Message><Key>m &amp; n</Key>"
        b"<RequestId>1</RequestId></Error>"
    )
    assert s3url.parse_error(body) == ("NoSuchKey", "The specified key does not exist.")
    assert s3url.parse_error("<Error><Code>A&lt;B</Code></Error>") == ("A<B", None)
    assert s3url.parse_error(b"") == (None, None)
    assert s3url.parse_error(b"<html>oops</html>") == (None, None)
    assert s3url.parse_error(None) == (None, None)
    assert s3url.parse_error(b"<Error><Code>Unterminated") == (None, None)
    # Bounded: a code past the first MAX_ERROR_BODY bytes is not looked for.
    assert s3url.parse_error(b" " * s3url.MAX_ERROR_BODY + b"<Error><Code>X</Code>") == (None, None)
    code, message = s3url.parse_error(
        b"<Error><Code>C</Code><Message>" + b"m" * 900 + b"</Message></Error>"
    )
    assert code == "C" and len(message) == 500


def test_object_url_refuses_dot_segments_clients_would_rewrite():
    for key in ("a/../b", "./x", "models/..", "a/./b", ".."):
        try:
            s3url.object_url("bucket", key, "us-west-2")
        except ValueError as exc:
            assert "'.' or '..' path segment" in str(exc), str(exc)
        else:
            raise AssertionError("accepted %r" % (key,))
    # Dots inside a segment are ordinary characters.
    url = s3url.object_url("bucket", "a/..b/c.", "us-west-2", "http://127.0.0.1:9000")
    assert url == "http://127.0.0.1:9000/bucket/a/..b/c."
