"""edgecore.endpoints (the generated table) against botocore, for every region and flag.

Three levels of cross-check:
- botocore's endpoint rule sets (``EndpointProvider``) for every region botocore lists,
  a synthetic region per partition and random region-like strings, every FIPS /
  dual-stack combination, for sagemaker-edge, S3 (both styles) and STS;
- botocore's ``aws.partition`` for random region-like strings;
- real boto3 clients (the URL and signing region of the request they would send) for one
  region of every partition and every flag, and S3 object URLs for buckets of every kind,
  addressing styles and custom endpoints.
A failure after a botocore upgrade means the table is stale: re-run
``scripts/gen_endpoints.py``.
"""

import os
import sys

import pytest
from botocore.endpoint_provider import RuleSetStandardLibrary
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore import endpoints, s3url

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
import gen_endpoints  # noqa: E402
from boto_capture import capture  # noqa: E402

COMBOS = gen_endpoints.COMBOS
SERVICES = gen_endpoints.SERVICES


@pytest.fixture(scope="module")
def boto():
    return gen_endpoints.Botocore()


def ours(service, region, fips, dual, bucket=gen_endpoints.BUCKET):
    try:
        return endpoints.resolve(service, region, fips, dual, bucket)
    except ValueError as exc:  # EndpointResolutionError, or a region botocore refuses too
        return None, str(exc)


def same(got, want):
    if want[0] is None:  # botocore has no endpoint: ours raises (with botocore's words)
        return got[0] is None and (want[1] in got[1] or "doesn't match a supported" in want[1])
    return got == want


def listed_regions(boto):
    out = []
    for p in boto.partitions["partitions"]:
        out.extend(sorted(p["regions"]))
        for prefix in gen_endpoints.region_prefixes(p["regionRegex"]):
            out.append(prefix + "-central-7")
    return out


def test_every_listed_region_service_and_flag_matches_botocore(boto):
    checked = 0
    for region in listed_regions(boto):
        for service in SERVICES:
            for fips, dual in COMBOS:
                want = boto.resolve(service, region, fips, dual)
                got = ours(service, region, fips, dual)
                assert same(got, want), (service, region, fips, dual, got, want)
                checked += 1
    assert checked > 4 * 4 * 50


region_st = st.from_regex(r"\A[a-z]{2,6}(-[a-z0-9]{1,8}){1,3}\Z") | st.from_regex(
    r"\A[a-zA-Z0-9][a-zA-Z0-9-]{0,20}[a-zA-Z0-9]\Z")


@settings(max_examples=150, deadline=None)
@given(region_st, st.sampled_from(SERVICES), st.sampled_from(COMBOS))
def test_any_region_matches_botocore(boto, region, service, combo):
    want = boto.resolve(service, region, combo[0], combo[1])
    assert same(ours(service, region, combo[0], combo[1]), want)


@settings(max_examples=500, deadline=None)
@given(region_st)
def test_partition_matches_botocore(boto, region):
    lib = RuleSetStandardLibrary(boto.partitions)
    assert endpoints.partition(region)[0] == lib.aws_partition(region)["name"]


def test_normalize_region_strips_fips_as_botocore():
    assert endpoints.normalize_region("us-west-2") == ("us-west-2", False)
    assert endpoints.normalize_region("fips-us-gov-west-1") == ("us-gov-west-1", True)
    assert endpoints.normalize_region("us-west-2-fips") == ("us-west-2", True)


def test_unknown_service_and_missing_bucket_are_value_errors():
    with pytest.raises(ValueError, match="unknown service"):
        endpoints.resolve("ec2", "us-west-2")
    with pytest.raises(ValueError, match="bucket required"):
        endpoints.resolve("s3", "us-west-2")


# -- real boto3 clients ---------------------------------------------------------------


def one_region_per_partition(boto):
    return [sorted(r for r in p["regions"] if not r.endswith("global"))[0]
            for p in boto.partitions["partitions"]] + ["aws-global", "us-east-1"]


def test_sagemaker_edge_urls_as_boto3_sends_them(boto):
    for region in one_region_per_partition(boto) + ["us-west-2-fips", "fips-us-gov-west-1"]:
        for fips, dual in COMBOS:
            sent = capture("sagemaker-edge", "GetDeployments",
                           {"DeviceName": "d", "DeviceFleetName": "f"}, region_name=region,
                           config={"use_fips_endpoint": fips, "use_dualstack_endpoint": dual})
            plain, pseudo = endpoints.normalize_region(region)
            got = ours("sagemaker-edge", plain, fips or pseudo, dual)
            if sent.error is not None:
                assert got[0] is None, (region, fips, dual, sent.error)
                continue
            assert got == (sent.url[:-len("/GetDeployments")], sent.signing_region), (
                region, fips, dual)


BUCKETS = ("my-bucket", "my.dotted.bucket", "UpperCase", "a_b", "192.168.1.10", "ab",
           "xn--bcher-kva", "b" * 63)


def test_s3_object_urls_as_boto3_sends_them(boto):
    key = "models/cam 1/ü+x~y.bin"
    cases = []
    for region in one_region_per_partition(boto) + ["us-west-2-fips"]:
        for fips, dual in COMBOS:
            for style in ("auto", "path", "virtual"):
                cases.append((region, fips, dual, style, None))
    for endpoint in ("http://127.0.0.1:9000", "https://s3.local:8443/base",
                     "http://localhost:9000/", "https://[::1]:9000"):
        for style in ("auto", "path", "virtual"):
            cases.append(("us-west-2", False, False, style, endpoint))
    for region, fips, dual, style, endpoint in cases:
        for bucket in BUCKETS:
            sent = capture("s3", "GetObject", {"Bucket": bucket, "Key": key},
                           region_name=region, endpoint_url=endpoint,
                           config={"use_fips_endpoint": fips, "use_dualstack_endpoint": dual,
                                   "s3": {"addressing_style": style}})
            where = (bucket, region, fips, dual, style, endpoint)
            try:
                got = s3url.object_location(bucket, key, region, endpoint, style, fips, dual)
            except endpoints.EndpointResolutionError as exc:
                assert sent.error is not None, (where, exc)
                continue
            assert sent.error is None, (where, sent.error)
            assert got == (sent.url, sent.signing_region), where
