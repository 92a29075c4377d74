"""edgecore.Client() / edgecore_ports.awsconfig against boto3 on the same environment.

For random environments and ~/.aws/config files (regions of several partitions and FIPS
pseudo regions, AWS_PROFILE / AWS_DEFAULT_PROFILE, AWS_ENDPOINT_URL[_SAGEMAKER_EDGE],
AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, services sections, profile endpoint_url,
AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT and their config keys), a request from
``edgecore.Client()`` and one from ``boto3.client("sagemaker-edge")`` must go to the same
URL signed for the same region -- or both clients must refuse. Explicit arguments win
over all of it, on both sides.
"""

import os
import sys
from unittest import mock

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgecore
from edgecore_ports import awsconfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from boto_capture import capture  # noqa: E402

KEYS = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env/secret"}
REGIONS = ["us-west-2", "cn-north-1", "us-gov-west-1", "eu-isoe-west-1", "us-west-2-fips",
           "eusc-de-east-1"]
URLS = ["http://127.0.0.1:8080", "https://edge.example.test", "http://localhost:9/base"]
BOOLS = ["true", "false", "TRUE", "1", ""]


def _sent_by_edgecore():
    sent = {}

    def transport(method, url, headers, body):
        sent["url"] = url
        sent["region"] = headers["Authorization"].split("Credential=")[1].split("/")[2]
        return 200, {}, b"{}"

    client = edgecore.Client(transport=transport, clock=lambda: 1700000000)
    client.get_deployments(DeviceName="d", DeviceFleetName="f")
    return sent["url"], sent["region"]


def _sent_by_boto3():
    session = botocore.session.Session()
    sent = capture("sagemaker-edge", "GetDeployments", {"DeviceName": "d", "DeviceFleetName": "f"},
                   response=(200, {}, b"{}"), region_name=None, botocore_session=session,
                   aws_access_key_id=None, aws_secret_access_key=None)
    if sent.url is None:
        raise sent.error
    return sent.url, sent.signing_region


def both(env, tmp_path, config_text):
    config = tmp_path / "config"
    config.write_text(config_text)
    env = dict(env, HOME=str(tmp_path), AWS_CONFIG_FILE=str(config),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    out = []
    with mock.patch.dict(os.environ, env, clear=True):
        for func in (_sent_by_edgecore, _sent_by_boto3):
            try:
                out.append(func())
            except Exception as exc:  # which one refused, and why, is the observation
                out.append(("refused", type(exc).__name__))
    return out


def _profile_section(draw, name):
    lines = []
    for key, values in (("region", REGIONS), ("endpoint_url", URLS),
                        ("use_fips_endpoint", BOOLS), ("use_dualstack_endpoint", BOOLS),
                        ("ignore_configured_endpoint_urls", BOOLS)):
        if draw(st.booleans()):
            lines.append("%s = %s" % (key, draw(st.sampled_from(values))))
    if draw(st.booleans()):
        lines.append("services = local")
    return "[%s]\n%s\n" % (name, "\n".join(lines))


@st.composite
def scenarios(draw):
    env = dict(KEYS)
    for name, values in (("AWS_DEFAULT_REGION", REGIONS), ("AWS_ENDPOINT_URL", URLS),
                         ("AWS_ENDPOINT_URL_SAGEMAKER_EDGE", URLS),
                         ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", BOOLS),
                         ("AWS_USE_FIPS_ENDPOINT", BOOLS), ("AWS_USE_DUALSTACK_ENDPOINT", BOOLS),
                         ("AWS_PROFILE", ["dev"]), ("AWS_DEFAULT_PROFILE", ["dev", "default"])):
        if draw(st.integers(0, 3)) == 0:
            env[name] = draw(st.sampled_from(values))
    config = _profile_section(draw, "default") + _profile_section(draw, "profile dev")
    config += "[services local]\nsagemaker_edge =\n  endpoint_url = %s\n" % draw(
        st.sampled_from(URLS))
    return env, config


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_client_resolves_as_boto3(tmp_path, scenario):
    env, config = scenario
    ours, theirs = both(env, tmp_path, config)
    if theirs == ("refused", "EndpointVariantError") and ours[0] != "refused":
        # A deliberate difference: botocore refuses a configured endpoint URL when
        # dual-stack/FIPS is on for a partition its legacy data gives no such variant;
        # edgecore lets the URL win (the flags never apply to a custom endpoint, in
        # botocore's rule sets too).
        assert "amazonaws" not in ours[0] and "api." not in ours[0], ours
    elif theirs[0] == "refused" or ours[0] == "refused":
        assert ours[0] == theirs[0] == "refused", (ours, theirs)
    else:
        assert ours == (theirs[0], theirs[1]), (env, config)


def test_explicit_arguments_win(tmp_path):
    env = dict(KEYS, AWS_DEFAULT_REGION="cn-north-1", AWS_ENDPOINT_URL_SAGEMAKER_EDGE=URLS[0],
               AWS_USE_FIPS_ENDPOINT="true", HOME=str(tmp_path))
    sent = {}

    def transport(method, url, headers, body):
        sent["url"] = url
        return 200, {}, b"{}"

    with mock.patch.dict(os.environ, env, clear=True):
        c = edgecore.Client(region="eu-west-1", endpoint_url="https://mine.example",
                            transport=transport, clock=lambda: 0)
        assert (c.region, c.endpoint_url) == ("eu-west-1", "https://mine.example")
        c = edgecore.Client(region="eu-west-1", use_fips_endpoint=False, transport=transport,
                            clock=lambda: 0)
        assert c.endpoint_url == URLS[0]  # the env's endpoint is not an explicit argument
        os.environ.pop("AWS_ENDPOINT_URL_SAGEMAKER_EDGE")
        c = edgecore.Client(region="eu-west-1", use_fips_endpoint=False, transport=transport,
                            clock=lambda: 0)
        assert c.endpoint_url == "https://edge.sagemaker.eu-west-1.amazonaws.com"
        creds = edgecore.Credentials("AKIDARG", "arg-secret")
        c = edgecore.Client(credentials=creds, transport=transport, clock=lambda: 0)
        assert c._credentials is creds and c.region == "cn-north-1"
        assert c.endpoint_url == "https://edge.sagemaker-fips.cn-north-1.amazonaws.com.cn"


def test_aws_region_is_read_after_aws_default_region(tmp_path):
    # botocore reads only AWS_DEFAULT_REGION; other SDKs, Lambda and Greengrass set
    # AWS_REGION, which edgecore reads next (before the config file).
    (tmp_path / "config").write_text("[default]\nregion = eu-west-3\n")
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "HOME": str(tmp_path)}
    assert awsconfig.SharedConfig(env).region() == "eu-west-3"
    assert awsconfig.SharedConfig(dict(env, AWS_REGION="ap-south-1")).region() == "ap-south-1"
    assert awsconfig.SharedConfig(dict(env, AWS_REGION="ap-south-1",
                                       AWS_DEFAULT_REGION="sa-east-1")).region() == "sa-east-1"


def test_config_file_errors_are_typed_and_quote_nothing(tmp_path):
    secret = "wJalrXUtnFEMI/K7MDENG"
    (tmp_path / "config").write_text("aws_secret_access_key = %s\n" % secret)
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "HOME": str(tmp_path)}
    with pytest.raises(awsconfig.AwsConfigError) as info:
        awsconfig.SharedConfig(env)
    assert secret not in str(info.value) and "line 1" in str(info.value)
    (tmp_path / "config").write_text("[default]\nservices = nowhere\n")
    with pytest.raises(awsconfig.AwsConfigError) as info:
        awsconfig.SharedConfig(env).endpoint_url("sagemaker-edge")
    assert "[services nowhere]" in str(info.value)
    with pytest.raises(awsconfig.ProfileNotFound):
        awsconfig.SharedConfig(dict(env, AWS_PROFILE="ghost")).region()


def test_agent_endpoints_config_wins_then_the_sdk_rules(tmp_path):
    (tmp_path / "config").write_text(
        "[profile edge]\nendpoint_url = http://profile.example\nuse_fips_endpoint = true\n"
        "[default]\n")
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "HOME": str(tmp_path),
           "AWS_ENDPOINT_URL_SAGEMAKER_EDGE": "http://env-edge", "AWS_ENDPOINT_URL": "http://env"}
    got = awsconfig.agent_endpoints({"region": "us-west-2"}, env)
    assert (got["endpoint_url"], got["s3_endpoint_url"]) == ("http://env-edge", "http://env")
    got = awsconfig.agent_endpoints({"region": "us-west-2", "endpoint_url": "http://mine"}, env)
    assert got["endpoint_url"] == "http://mine"  # the agent's config beats the environment
    got = awsconfig.agent_endpoints({"region": "us-west-2", "profile": "edge"},
                                    {"AWS_CONFIG_FILE": env["AWS_CONFIG_FILE"]})
    assert got == {"endpoint_url": "http://profile.example",
                   "s3_endpoint_url": "http://profile.example", "use_fips_endpoint": True,
                   "use_dualstack_endpoint": False, "s3_use_dualstack_endpoint": False}
    env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
    got = awsconfig.agent_endpoints({"region": "us-west-2", "s3_endpoint_url": "http://s3"}, env)
    assert (got["endpoint_url"], got["s3_endpoint_url"]) == (None, "http://s3")
