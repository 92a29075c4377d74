"""The S3 stand-in (moto server) really checks SigV4 signatures. CPython only."""

import hashlib
import os
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from edgecore_tools.localcloud import MotoS3


def error_of(call):
    with pytest.raises(ClientError) as info:
        call()
    resp = info.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def bucket(moto_s3):
    name = "s3-tests-" + hashlib.sha1(os.urandom(8)).hexdigest()[:10]
    moto_s3.ensure_bucket(name)
    return name


def test_the_auth_setting_stays_in_the_server_process(moto_s3):
    assert "INITIAL_NO_AUTH_ACTION_COUNT" not in os.environ
    assert moto_s3.alive()


def test_upload_and_download_with_the_right_credentials(moto_s3, bucket):
    data = os.urandom(100_000)
    admin = moto_s3.client("s3")
    admin.put_object(Bucket=bucket, Key="models/a.bin", Body=data)
    assert admin.get_object(Bucket=bucket, Key="models/a.bin")["Body"].read() == data
    akid, secret = moto_s3.create_device_key()
    device = moto_s3.client("s3", akid, secret)
    got = device.get_object(Bucket=bucket, Key="models/a.bin")
    assert got["Body"].read() == data
    assert device.head_object(Bucket=bucket, Key="models/a.bin")["ContentLength"] == len(data)
    ranged = device.get_object(Bucket=bucket, Key="models/a.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]


def test_wrong_secret_is_signature_does_not_match(moto_s3, bucket):
    moto_s3.client("s3").put_object(Bucket=bucket, Key="k", Body=b"v")
    akid, secret = moto_s3.create_device_key()
    wrong = moto_s3.client("s3", akid, secret[:-4] + "abcd")
    assert error_of(lambda: wrong.get_object(Bucket=bucket, Key="k")) == (
        "SignatureDoesNotMatch",
        403,
    )
    admin_wrong = moto_s3.client("s3", moto_s3.admin_access_key, "0" * 40)
    assert error_of(lambda: admin_wrong.put_object(Bucket=bucket, Key="k2", Body=b"x")) == (
        "SignatureDoesNotMatch",
        403,
    )
    # The same key with its right secret still works: the rejection was the signature.
    assert (
        moto_s3.client("s3", akid, secret).get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    )


def test_unknown_key_and_unsigned_requests_are_rejected(moto_s3, bucket):
    unknown = moto_s3.client("s3", "AKIAIOSFODNN7EXAMPLE", "x" * 40)
    code, status = error_of(lambda: unknown.get_object(Bucket=bucket, Key="k"))
    assert (code, status) == ("InvalidAccessKeyId", 403)
    moto_s3.client("s3").put_object(Bucket=bucket, Key="anon", Body=b"v")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen("%s/%s/anon" % (moto_s3.endpoint_url, bucket), timeout=10)
    assert info.value.code == 403
    info.value.close()


def test_device_key_is_read_only_and_missing_objects_are_404(moto_s3, bucket):
    akid, secret = moto_s3.create_device_key()
    device = moto_s3.client("s3", akid, secret)
    assert error_of(lambda: device.put_object(Bucket=bucket, Key="x", Body=b"1")) == (
        "AccessDenied",
        403,
    )
    assert error_of(lambda: device.get_object(Bucket=bucket, Key="no/such/key")) == (
        "NoSuchKey",
        404,
    )


def test_temporary_credentials_need_their_token(moto_s3, bucket):
    moto_s3.client("s3").put_object(Bucket=bucket, Key="t", Body=b"temp")
    akid, secret, token, expiration = moto_s3.create_temporary_key()
    assert expiration > 0
    good = moto_s3.client("s3", akid, secret, token)
    assert good.get_object(Bucket=bucket, Key="t")["Body"].read() == b"temp"
    bad = moto_s3.client("s3", akid, secret, token[:-3] + "xyz")
    assert error_of(lambda: bad.get_object(Bucket=bucket, Key="t"))[1] in (400, 403)
    wrong_secret = moto_s3.client("s3", akid, "1" * 40, token)
    assert error_of(lambda: wrong_secret.get_object(Bucket=bucket, Key="t")) == (
        "SignatureDoesNotMatch",
        403,
    )


def test_start_and_stop_a_private_server():
    s3 = MotoS3.start(region="eu-central-1")
    try:
        s3.ensure_bucket("private-bucket")
        s3.client("s3").put_object(Bucket="private-bucket", Key="k", Body=b"v")
        wrong = s3.client("s3", s3.admin_access_key, "f" * 40)
        assert error_of(lambda: wrong.get_object(Bucket="private-bucket", Key="k")) == (
            "SignatureDoesNotMatch",
            403,
        )
    finally:
        s3.stop()
    assert not s3.alive()


def test_device_keys_may_write_captures_and_nothing_else(local_cloud):
    from botocore.exceptions import ClientError

    s3 = local_cloud.s3_client()
    bucket, _, prefix = local_cloud.capture_s3_uri[len("s3://"):].partition("/")
    assert prefix == "captures/"
    s3.put_object(Bucket=bucket, Key=prefix + "f/d/m/batch-1.jsonl", Body=b"{}\n")
    assert s3.get_object(Bucket=bucket, Key=prefix + "f/d/m/batch-1.jsonl")["Body"].read() \
        == b"{}\n"
    for key in ("models/evil.bin", "capturesX/a", "other/captures/a"):
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", key
        else:
            raise AssertionError("a device key wrote %s" % key)
