# Runs under MicroPython too
"""edgecore.endpoints on its own (plain: pytest and MicroPython); botocore cross-checks
are in test_endpoints.py."""

from edgecore import endpoints


def _raises(func, *args):
    try:
        func(*args)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no ValueError")


def test_partitions():
    for region, name in (("us-west-2", "aws"), ("aws-global", "aws"), ("cn-north-1", "aws-cn"),
                         ("us-gov-east-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"),
                         ("us-isob-east-1", "aws-iso-b"), ("eusc-de-east-1", "aws-eusc"),
                         ("us-west-2-2", "aws"), ("nowhere", "aws"), ("us-new-1", "aws")):
        assert endpoints.partition(region)[0] == name, region


def test_edge_hosts_by_partition_and_flag():
    assert endpoints.resolve("sagemaker-edge", "cn-north-1") == (
        "https://edge.sagemaker.cn-north-1.amazonaws.com.cn", "cn-north-1")
    assert endpoints.resolve("sagemaker-edge", "us-west-2", fips=True, dualstack=True) == (
        "https://edge.sagemaker-fips.us-west-2.api.aws", "us-west-2")
    assert endpoints.resolve("sagemaker-edge", "us-iso-east-1")[0] == (
        "https://edge.sagemaker.us-iso-east-1.c2s.ic.gov")
    msg = _raises(endpoints.resolve, "sagemaker-edge", "eu-isoe-west-1", False, True)
    assert "Endpoint does not exist for edge.sagemaker in region eu-isoe-west-1" in msg


def test_s3_and_sts():
    assert endpoints.resolve("s3", "us-east-1", bucket="b") == ("https://b.s3.amazonaws.com",
                                                               "us-east-1")
    assert endpoints.resolve("s3-path", "eu-west-1", dualstack=True, bucket="b") == (
        "https://s3.dualstack.eu-west-1.amazonaws.com/b", "eu-west-1")
    assert endpoints.resolve("sts", "us-gov-west-1", fips=True)[0] == (
        "https://sts.us-gov-west-1.amazonaws.com")
    assert "Partition does not support FIPS" in _raises(
        endpoints.resolve, "s3", "cn-north-1", True, False, "b")


def test_region_checks():
    for bad in ("", "-us", "us-", "12", "us_west", "a" * 64, None, "us.west"):
        assert "endpoints: region" in _raises(endpoints.resolve, "sts", bad)
    assert endpoints.valid_region("us-west-2") and endpoints.valid_region("x1")
    assert endpoints.normalize_region("fips-us-west-2") == ("us-west-2", True)
