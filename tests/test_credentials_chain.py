"""The credential chain (edgecore_ports.credentials.default_provider) against botocore's.

Each scenario writes a config file and a shared credentials file, sets an environment,
and asks both botocore (``Session(profile=...).get_credentials()``) and edgecore for
credentials: the keys must be the same, or both must find none. STS and the container
endpoint are local stand-ins (tests/fake_aws.py, real HTTP on 127.0.0.1) that both
reach through ``AWS_ENDPOINT_URL_STS`` / ``AWS_CONTAINER_CREDENTIALS_FULL_URI``; the
stand-in STS checks AssumeRole signatures with botocore's signer.
"""

import json
import os
import sys
from unittest import mock

import botocore.session
import pytest
from botocore.exceptions import BotoCoreError
from fake_aws import FakeContainerEndpoint, FakeSts, minted

from edgecore_ports import credentials as ec

BASE = ("AKIDBASE", "base/secret+key", None)
OTHER = ("AKIDOTHER", "other/secret", "other-token")
ENV = ("AKIDENV", "env/secret", "env-token")
ROLE1 = "arn:aws:iam::123456789012:role/first"
ROLE2 = "arn:aws:iam::123456789012:role/second"
WEB_ROLE = "arn:aws:iam::123456789012:role/web"


@pytest.fixture(scope="module")
def sts():
    known = {BASE[0]: BASE[1:], OTHER[0]: OTHER[1:], ENV[0]: ENV[1:]}
    key, secret, token = minted(ROLE1)
    known[key] = (secret, token)  # a role's credentials may assume the next role
    server = FakeSts(known).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def container():
    server = FakeContainerEndpoint().start()
    yield server
    server.stop()


def static(keys):
    lines = "aws_access_key_id = %s\naws_secret_access_key = %s\n" % keys[:2]
    return lines + ("aws_session_token = %s\n" % keys[2] if keys[2] else "")


class Scenario:
    def __init__(self, tmp_path, sts, container, config="", credentials="", env=None,
                 files=None):
        self.home = tmp_path
        aws = tmp_path / ".aws"
        aws.mkdir(exist_ok=True)
        (aws / "config").write_text(config)
        (aws / "credentials").write_text(credentials)
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        self.env = {"HOME": str(tmp_path), "AWS_ENDPOINT_URL_STS": sts.url,
                    "AWS_DEFAULT_REGION": "us-west-2"}
        self.env.update(env or {})
        self.container = container

    def botocore(self, profile=None):
        # botocore also asks instance metadata last: not on a device, switched off.
        env = dict(self.env, AWS_EC2_METADATA_DISABLED="true")
        with mock.patch.dict(os.environ, env, clear=True):
            creds = botocore.session.Session(profile=profile).get_credentials()
            if creds is None:
                return None
            frozen = creds.get_frozen_credentials()
        return (frozen.access_key, frozen.secret_key, frozen.token)

    def edgecore(self, profile=None):
        try:
            provider = ec.default_provider(environ=self.env, profile=profile)
        except ec.NoCredentialsError:
            return None
        c = provider.get()
        return (c.access_key, c.secret_key, c.session_token)

    def check(self, profile=None, expected=None):
        theirs = self.botocore(profile)
        ours = self.edgecore(profile)
        assert ours == theirs
        if expected is not None:
            assert ours == tuple(expected)
        return ours


def test_environment_keys_win(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container, credentials="[default]\n" + static(BASE),
                 env={"AWS_ACCESS_KEY_ID": ENV[0], "AWS_SECRET_ACCESS_KEY": ENV[1],
                      "AWS_SESSION_TOKEN": ENV[2], "AWS_PROFILE": "default"})
    s.check(expected=ENV)
    # An explicit profile skips the environment keys.
    s.check(profile="default", expected=BASE)


def test_profile_variables_precedence(tmp_path, sts, container):
    creds = "[a]\n" + static(BASE) + "[b]\n" + static(OTHER)
    s = Scenario(tmp_path, sts, container, credentials=creds,
                 env={"AWS_DEFAULT_PROFILE": "a", "AWS_PROFILE": "b"})
    s.check(expected=BASE)  # botocore reads AWS_DEFAULT_PROFILE first
    del s.env["AWS_DEFAULT_PROFILE"]
    s.check(expected=OTHER)


def test_config_file_static_keys(tmp_path, sts, container):
    config = "[default]\n" + static(BASE) + "[profile dev]\n" + static(OTHER)
    s = Scenario(tmp_path, sts, container, config=config)
    s.check(expected=BASE)
    s.check(profile="dev", expected=OTHER)
    s.env["AWS_PROFILE"] = "dev"
    s.check(expected=OTHER)


def test_config_file_at_aws_config_file(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container, files={"elsewhere.ini": "[default]\n" + static(OTHER)},
                 env={})
    s.env["AWS_CONFIG_FILE"] = str(tmp_path / "elsewhere.ini")
    s.check(expected=OTHER)


def test_credentials_file_beats_config_file(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container, config="[default]\n" + static(OTHER),
                 credentials="[default]\n" + static(BASE))
    s.check(expected=BASE)


def _process(tmp_path, keys, expiration=None):
    doc = {"Version": 1, "AccessKeyId": keys[0], "SecretAccessKey": keys[1]}
    if keys[2]:
        doc["SessionToken"] = keys[2]
    if expiration:
        doc["Expiration"] = expiration
    script = tmp_path / "creds_process.py"
    script.write_text("import json\nprint(json.dumps(%r))\n" % (doc,))
    return "%s %s" % (sys.executable, script)


def test_credential_process(tmp_path, sts, container):
    command = _process(tmp_path, OTHER, "2999-01-01T00:00:00Z")
    s = Scenario(tmp_path, sts, container, config="[default]\ncredential_process = %s\n" % command)
    s.check(expected=OTHER)


def test_credential_process_between_the_files(tmp_path, sts, container):
    command = _process(tmp_path, OTHER)
    # The process beats the config file's static keys...
    s = Scenario(tmp_path, sts, container,
                 config="[default]\ncredential_process = %s\n%s" % (command, static(ENV)))
    s.check(expected=OTHER)
    # ...and the shared credentials file beats the process.
    s = Scenario(tmp_path, sts, container,
                 config="[default]\ncredential_process = %s\n" % command,
                 credentials="[default]\n" + static(BASE))
    s.check(expected=BASE)


def test_assume_role_with_source_profile(tmp_path, sts, container):
    config = ("[profile role]\nrole_arn = %s\nsource_profile = base\n"
              "role_session_name = device-1\nexternal_id = ext-7\n" % ROLE1)
    s = Scenario(tmp_path, sts, container, config=config,
                 credentials="[base]\n" + static(BASE),
                 env={"AWS_PROFILE": "role", "AWS_DEFAULT_REGION": "eu-west-1"})
    before = len(sts.calls)
    s.check(expected=minted(ROLE1))
    ours, theirs = sts.calls[before + 1], sts.calls[before]
    assert ours == theirs  # the same AssumeRole call, signed by the base keys
    assert ours["_signed_by"] == BASE[0] and ours["ExternalId"] == "ext-7"
    assert ours["RoleSessionName"] == "device-1"


def test_assume_role_chain_and_self_source(tmp_path, sts, container):
    config = ("[profile second]\nrole_arn = %s\nsource_profile = first\n"
              "[profile first]\nrole_arn = %s\nsource_profile = base\n"
              "[profile selfie]\nrole_arn = %s\nsource_profile = selfie\n%s"
              % (ROLE2, ROLE1, ROLE1, static(OTHER)))
    s = Scenario(tmp_path, sts, container, config=config,
                 credentials="[base]\n" + static(BASE))
    before = len(sts.calls)
    s.check(profile="second", expected=minted(ROLE2))
    signers = [c["_signed_by"] for c in sts.calls[before:]]
    assert signers == [BASE[0], minted(ROLE1)[0]] * 2  # botocore's, then ours
    s.check(profile="selfie", expected=minted(ROLE1))


def test_assume_role_with_credential_source(tmp_path, sts, container):
    config = ("[profile env-role]\nrole_arn = %s\ncredential_source = Environment\n"
              "[profile ecs-role]\nrole_arn = %s\ncredential_source = EcsContainer\n"
              % (ROLE1, ROLE2))
    s = Scenario(tmp_path, sts, container, config=config,
                 env={"AWS_ACCESS_KEY_ID": ENV[0], "AWS_SECRET_ACCESS_KEY": ENV[1],
                      "AWS_SESSION_TOKEN": ENV[2],
                      "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.credentials_url,
                      "AWS_CONTAINER_AUTHORIZATION_TOKEN": container.token})
    s.check(profile="env-role", expected=minted(ROLE1))
    assert sts.calls[-1]["_signed_by"] == ENV[0]
    sts.secrets[minted(container.label)[0]] = minted(container.label)[1:]
    s.check(profile="ecs-role", expected=minted(ROLE2))


def test_web_identity_from_environment_and_profile(tmp_path, sts, container):
    token = tmp_path / "token.jwt"
    token.write_text(sts.web_token)
    s = Scenario(tmp_path, sts, container,
                 env={"AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_ARN": WEB_ROLE,
                      "AWS_ROLE_SESSION_NAME": "cam-1"})
    before = len(sts.calls)
    s.check(expected=minted(WEB_ROLE))
    assert [c["RoleSessionName"] for c in sts.calls[before:]] == ["cam-1", "cam-1"]
    assert all(c["_signed_by"] is None for c in sts.calls[before:])  # unsigned, as AWS wants
    s = Scenario(tmp_path, sts, container,
                 config="[default]\nweb_identity_token_file = %s\nrole_arn = %s\n"
                 % (token, WEB_ROLE))
    s.check(expected=minted(WEB_ROLE))


def test_container_provider_with_token_or_token_file(tmp_path, sts, container):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": container.credentials_url,
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": container.token}
    s = Scenario(tmp_path, sts, container, env=env)
    s.check(expected=minted(container.label))
    assert container.calls[-1]["authorization"] == container.token
    token_file = tmp_path / "tes-token"
    token_file.write_text(container.token)
    s.env.pop("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    s.env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file)
    assert s.botocore() is not None and s.edgecore() is not None
    assert container.calls[-1]["authorization"] == container.token
    # Later in the chain than the files.
    s = Scenario(tmp_path, sts, container, credentials="[default]\n" + static(BASE), env=env)
    s.check(expected=BASE)


def test_nothing_anywhere(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container)
    assert s.check() is None


# -- what botocore refuses, edgecore refuses (typed) -------------------------------------


def test_missing_profile_and_bad_role_configs_are_refused_by_both(tmp_path, sts, container):
    config = ("[profile both]\nrole_arn = %s\nsource_profile = base\n"
              "credential_source = Environment\n"
              "[profile nosource]\nrole_arn = %s\n"
              "[profile loop-a]\nrole_arn = %s\nsource_profile = loop-b\n"
              "[profile loop-b]\nrole_arn = %s\nsource_profile = loop-a\n"
              "[profile ghost]\nrole_arn = %s\nsource_profile = nobody\n"
              % (ROLE1, ROLE1, ROLE1, ROLE2, ROLE1))
    s = Scenario(tmp_path, sts, container, config=config,
                 credentials="[base]\n" + static(BASE))
    for profile in ("missing", "both", "nosource", "loop-a", "ghost"):
        with pytest.raises(BotoCoreError):
            s.botocore(profile)
        with pytest.raises(ec.CredentialsConfigError) as info:
            s.edgecore(profile)
        assert BASE[1] not in str(info.value)


def test_container_full_uri_must_be_local_or_https(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container,
                 env={"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://198.51.100.7/creds"})
    with pytest.raises((BotoCoreError, ValueError)):
        s.botocore()
    with pytest.raises(ec.CredentialsConfigError) as info:
        s.edgecore()
    assert info.value.field == "AWS_CONTAINER_CREDENTIALS_FULL_URI"


def test_sso_profiles_are_refused_clearly(tmp_path, sts, container):
    s = Scenario(tmp_path, sts, container,
                 config="[default]\nsso_start_url = https://x.awsapps.com/start\n"
                        "sso_region = us-east-1\nsso_account_id = 1\nsso_role_name = r\n")
    with pytest.raises(ec.CredentialsConfigError) as info:
        s.edgecore()
    assert "SSO" in str(info.value)


def test_provider_from_config_uses_the_chain_with_the_agents_profile(tmp_path, sts, container):
    config = "[profile role]\nrole_arn = %s\nsource_profile = base\n" % ROLE1
    s = Scenario(tmp_path, sts, container, config=config,
                 credentials="[base]\n" + static(BASE),
                 env={"AWS_ACCESS_KEY_ID": ENV[0], "AWS_SECRET_ACCESS_KEY": ENV[1]})
    p = ec.provider_from_config({"profile": "role", "region": "us-west-2"}, environ=s.env)
    assert p.get().access_key == minted(ROLE1)[0]
    assert ec.provider_from_config({}, environ=s.env).get().access_key == ENV[0]
    assert json.dumps(repr(p))  # reprs stay printable and secret-free
    assert BASE[1] not in repr(p)
