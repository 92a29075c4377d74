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
    # Dots or upper case: path style (the TLS wildcard would not match).
    assert (
        s3url.object_url("my.bucket", "k", "us-east-1")
        == "https://s3.us-east-1.amazonaws.com/my.bucket/k"
    )
    assert (
        s3url.object_url("My_Bucket", "k", "us-east-1")
        == "https://s3.us-east-1.amazonaws.com/My_Bucket/k"
    )
    try:
        s3url.object_url("my.bucket", "k", "us-east-1", style="virtual")
    except ValueError as exc:
        assert "virtual-hosted" in str(exc)
    else:
        raise AssertionError("virtual style for a dotted bucket")


def test_object_url_custom_endpoint():
    assert (
        s3url.object_url("b1", "m/x+y~z", "us-west-2", "http://127.0.0.1:5000")
        == "http://127.0.0.1:5000/b1/m/x%2By~z"
    )
    assert (
        s3url.object_url("bk1", "k", "r", "https://s3.local:9000/", style="virtual")
        == "https://bk1.s3.local:9000/k"
    )
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
