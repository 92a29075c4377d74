"""Tests of edgecore_ports.credentials: static, environment and shared-file sources,
their precedence, the typed errors, and the refresh/caching logic on an injected clock.

CPython only (the module is a CPython port). The IoT provider is in test_credentials_iot.py.
"""

import logging
import os
import random
import tempfile
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.credentials import Credentials
from edgecore.errors import EdgecoreError
from edgecore_ports import credentials as ec

SECRET = "sEcReT/+kEy%ZZtop"  # has '%' (no INI interpolation) and '/' '+' like real keys
TOKEN = "T0kEn//SeSSion=="
SECRETS = (SECRET, TOKEN)


def write_file(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def no_secret(*texts):
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def creds_file(tmp_path, text):
    return {"AWS_SHARED_CREDENTIALS_FILE": write_file(tmp_path / "aws" / "credentials", text)}


# --------------------------------------------------------------------------- static


def test_config_credentials():
    p = ec.provider_from_config(
        {"credentials": {"access_key_id": "AKIDCONF", "secret_access_key": SECRET}}, environ={}
    )
    c = p.get(0)
    assert (c.access_key, c.secret_key, c.session_token, c.expiration) == (
        "AKIDCONF",
        SECRET,
        None,
        None,
    )
    p.invalidate()
    assert p.get(10**10) is c
    no_secret(repr(p), str(p), repr(c))
    assert "AKIDCONF" in repr(p)


def test_config_credentials_with_token():
    p = ec.provider_from_config(
        {
            "credentials": {
                "access_key_id": "AKID",
                "secret_access_key": SECRET,
                "session_token": TOKEN,
            }
        },
        environ={},
    )
    assert p.get().session_token == TOKEN


@pytest.mark.parametrize(
    "conf, field",
    [
        ({"access_key_id": "AKID"}, "secret_access_key"),
        ({"secret_access_key": SECRET}, "access_key_id"),
        ({"access_key_id": "AKID", "secret_access_key": ""}, "secret_access_key"),
        ({"access_key_id": 5, "secret_access_key": SECRET}, "access_key_id"),
        (
            {"access_key_id": "AKID", "secret_access_key": SECRET, "session_token": 1},
            "session_token",
        ),
        ({"access_key_id": "AKID", "secret_key": SECRET}, "secret_key"),
        ("AKID:" + SECRET, "credentials"),
    ],
)
def test_config_credentials_invalid(conf, field):
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config({"credentials": conf}, environ={})
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, EdgecoreError)
    no_secret(str(info.value))


def test_only_one_explicit_source():
    conf = {
        "credentials": {"access_key_id": "A", "secret_access_key": SECRET},
        "profile": "dev",
    }
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config(conf, environ={})
    assert "only one of" in str(info.value)
    no_secret(str(info.value))


# --------------------------------------------------------------------------- environment


def test_environment():
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
    }
    p = ec.provider_from_config({}, environ=env)
    assert p.get() == Credentials("AKIDENV", SECRET, TOKEN)
    assert p.source == "environment"
    no_secret(repr(p))


def test_environment_legacy_security_token():
    env = {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SECURITY_TOKEN": TOKEN}
    assert ec.provider_from_config(None, environ=env).get().session_token == TOKEN


@pytest.mark.parametrize(
    "env, missing",
    [
        ({"AWS_ACCESS_KEY_ID": "AKID"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "  "}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_environment_partial(env, missing):
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config({}, environ=env)
    assert info.value.field == missing and info.value.source == "environment"
    no_secret(str(info.value))


# --------------------------------------------------------------------------- shared file

FILE = """
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = %s

[dev]
aws_access_key_id=AKIDDEV
aws_secret_access_key=%s
aws_session_token=%s

[legacy]
aws_access_key_id = AKIDLEGACY
aws_secret_access_key = %s
aws_security_token = %s

[nokeys]
region = us-west-2
""" % (SECRET, SECRET, TOKEN, SECRET, TOKEN)


def test_shared_file_default_profile(tmp_path):
    p = ec.provider_from_config({}, environ=creds_file(tmp_path, FILE))
    assert p.get() == Credentials("AKIDDEFAULT", SECRET)
    assert p.profile == "default"
    no_secret(repr(p))


def test_shared_file_profile_from_env(tmp_path):
    env = dict(creds_file(tmp_path, FILE), AWS_PROFILE="dev")
    assert ec.provider_from_config({}, environ=env).get() == Credentials("AKIDDEV", SECRET, TOKEN)


def test_shared_file_profile_from_config(tmp_path):
    env = dict(creds_file(tmp_path, FILE), AWS_PROFILE="dev")
    p = ec.provider_from_config({"profile": "legacy"}, environ=env)
    assert p.get() == Credentials("AKIDLEGACY", SECRET, TOKEN)


def test_shared_file_under_home(tmp_path):
    write_file(tmp_path / ".aws" / "credentials", FILE)
    p = ec.provider_from_config({}, environ={"HOME": str(tmp_path)})
    assert p.path == str(tmp_path / ".aws" / "credentials")
    assert p.get().access_key == "AKIDDEFAULT"


def test_shared_file_env_path_with_tilde(tmp_path):
    write_file(tmp_path / "creds.ini", FILE)
    env = {"HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": "~/creds.ini"}
    assert ec.provider_from_config({}, environ=env).get().access_key == "AKIDDEFAULT"


def test_shared_file_explicit_profile_missing_names_profiles(tmp_path):
    env = creds_file(tmp_path, FILE)
    for conf, e in (({"profile": "prod"}, env), ({}, dict(env, AWS_PROFILE="prod"))):
        with pytest.raises(ec.CredentialsConfigError) as info:
            ec.provider_from_config(conf, environ=e)
        msg = str(info.value)
        assert "[prod] not found" in msg and "default, dev, legacy, nokeys" in msg
        no_secret(msg)


def test_shared_file_profile_without_keys_is_no_credentials(tmp_path):
    env = dict(creds_file(tmp_path, FILE), AWS_PROFILE="nokeys")
    with pytest.raises(ec.NoCredentialsError) as info:
        ec.provider_from_config({}, environ=env)
    assert "profile [nokeys] has no aws_access_key_id" in str(info.value)


def test_shared_file_partial_profile(tmp_path):
    env = creds_file(tmp_path, "[default]\naws_access_key_id = AKID\n")
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config({}, environ=env)
    assert info.value.field == "aws_secret_access_key"


def test_shared_file_malformed_never_quotes_lines(tmp_path):
    bad = [
        "aws_secret_access_key = %s\n" % SECRET,  # no section header
        "[default]\naws_access_key_id = A\naws_secret_access_key %s\n" % SECRET,  # no '='
        "[default]\naws_secret_access_key = %s\n[default]\nx = %s\n" % (SECRET, TOKEN),  # dup
        "[default]\naws_secret_access_key = %s\naws_secret_access_key = %s\n" % (SECRET, TOKEN),
    ]
    for text in bad:
        with pytest.raises(ec.CredentialsConfigError) as info:
            ec.provider_from_config({}, environ=creds_file(tmp_path, text))
        assert info.value.__context__ is None and info.value.__cause__ is None
        no_secret(str(info.value))
        assert "INI" in str(info.value)


def test_shared_file_not_utf8(tmp_path):
    path = tmp_path / "c"
    path.write_bytes(b"[default]\naws_access_key_id = \xff\xfe\n")
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config({}, environ={"AWS_SHARED_CREDENTIALS_FILE": str(path)})
    assert "cannot read" in str(info.value)


def test_shared_file_reread_after_invalidate(tmp_path):
    env = creds_file(tmp_path, FILE)
    path = env["AWS_SHARED_CREDENTIALS_FILE"]
    p = ec.provider_from_config({}, environ=env)
    first = p.get(0)
    write_file(tmp_path / "aws" / "credentials", FILE.replace("AKIDDEFAULT", "AKIDROTATED"))
    assert p.get(10**9) is first  # no expiry: never reloaded on its own
    p.invalidate()
    assert p.get(10**9).access_key == "AKIDROTATED"
    os.remove(path)
    p.invalidate()
    with pytest.raises(ec.NoCredentialsError) as info:
        p.get(10**9)
    assert "(not found)" in str(info.value)


# --------------------------------------------------------------------------- precedence


def test_precedence(tmp_path):
    env = dict(
        creds_file(tmp_path, FILE),
        AWS_ACCESS_KEY_ID="AKIDENV",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_PROFILE="dev",
    )
    static = {"credentials": {"access_key_id": "AKIDCONF", "secret_access_key": SECRET}}
    assert ec.provider_from_config(static, environ=env).get().access_key == "AKIDCONF"
    # Environment keys beat AWS_PROFILE, as in botocore...
    assert ec.provider_from_config({}, environ=env).get().access_key == "AKIDENV"
    # ...but an explicitly configured profile skips the environment.
    assert ec.provider_from_config({"profile": "dev"}, environ=env).get().access_key == "AKIDDEV"
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    assert ec.provider_from_config({}, environ=env).get().access_key == "AKIDDEV"


def test_nothing_found_names_every_place(tmp_path):
    env = {"HOME": str(tmp_path)}
    with pytest.raises(ec.NoCredentialsError) as info:
        ec.provider_from_config({}, environ=env)
    msg = str(info.value)
    assert "AWS_ACCESS_KEY_ID" in msg
    assert str(tmp_path / ".aws" / "credentials") + " (not found)" in msg
    assert str(tmp_path / ".aws" / "config") + " (not found)" in msg
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in msg
    assert 'config["iot"]' in msg
    assert len(info.value.looked) == 5
    env = creds_file(tmp_path, "[other]\naws_access_key_id=A\naws_secret_access_key=B\n")
    with pytest.raises(ec.NoCredentialsError) as info:
        ec.provider_from_config({}, environ=env)
    assert "no [default] profile" in str(info.value)


def test_default_environ_is_os_environ(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert ec.provider_from_config({}).get().access_key == "AKIDOS"


# --------------------------------------------------------------------------- refresh logic


class Scripted(ec.RefreshingProvider):
    """A RefreshingProvider whose loads are a script of Credentials or exceptions."""

    source = "scripted"

    def __init__(self, script, **kwargs):
        super().__init__(**kwargs)
        self.script = list(script)
        self.loads = []

    def _load(self, now):
        self.loads.append(now)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class MaxRng:
    def uniform(self, a, b):
        return b


class MinRng:
    def uniform(self, a, b):
        return a


def creds(n, expiration):
    return Credentials("AKID%d" % n, SECRET + str(n), TOKEN, expiration)


def failure():
    return ec.IotTransportError("iot.example", "alias", "ConnectionError: refused")


def test_refresh_windows_are_botocores_with_jitter_on_the_advisory_one():
    t0 = 1_000_000
    p = Scripted([creds(1, t0 + 3600), creds(2, t0 + 7200)], rng=MaxRng())
    assert p.get(t0).access_key == "AKID1"
    # advisory 15 min + at most 10% jitter: still cached 991 s before expiry...
    assert p.get(t0 + 3600 - 991).access_key == "AKID1"
    # ...and reloaded inside the jittered advisory window.
    assert p.get(t0 + 3600 - 989).access_key == "AKID2"
    assert p.loads == [t0, t0 + 3600 - 989]


def test_refresh_without_jitter_exactly_at_the_advisory_window():
    t0 = 1_000_000
    p = Scripted([creds(1, t0 + 3600), creds(2, t0 + 7200)], rng=MinRng())
    assert p.get(t0).access_key == "AKID1"
    assert p.get(t0 + 3600 - 901).access_key == "AKID1"
    assert p.get(t0 + 3600 - 900).access_key == "AKID2"


def test_jitter_stays_within_bounds():
    t0 = 1_000_000
    for seed in range(50):
        p = Scripted([creds(1, t0 + 3600)], rng=random.Random(seed))
        p.get(t0)
        assert p.refresh_state(t0 + 3600 - 991) is None
        assert p.refresh_state(t0 + 3600 - 900) == "advisory"
        assert p.refresh_state(t0 + 3600 - 600) == "mandatory"


def test_short_lived_credentials_scale_the_windows_down():
    # 100 s credentials (botocore would refresh them on every call): advisory at half
    # the lifetime, mandatory at a third.
    t0 = 1_000_000
    p = Scripted([creds(1, t0 + 100), creds(2, t0 + 200)], rng=MinRng())
    assert p.get(t0).access_key == "AKID1"
    assert p.get(t0 + 49).access_key == "AKID1"  # not reloaded on every call
    assert p.refresh_state(t0 + 50) == "advisory"
    assert p.refresh_state(t0 + 67) == "mandatory"
    assert p.get(t0 + 50).access_key == "AKID2"


def test_refresh_windows_match_botocores_refreshable_credentials():
    # botocore.credentials.RefreshableCredentials: advisory 900 s, mandatory 600 s.
    from botocore import credentials as bc

    assert (bc._DEFAULT_ADVISORY_REFRESH_TIMEOUT, bc._DEFAULT_MANDATORY_REFRESH_TIMEOUT) == (
        ec.ADVISORY_REFRESH, ec.MANDATORY_REFRESH)


def test_invalidate_forces_reload():
    t0 = 1_000_000
    p = Scripted([creds(1, t0 + 3600), creds(2, t0 + 3600)])
    first = p.get(t0)
    assert p.get(t0 + 1) is first
    p.invalidate()
    assert p.get(t0 + 2).access_key == "AKID2"
    assert len(p.loads) == 2


def test_failed_advisory_refresh_keeps_valid_cache_and_warns(caplog):
    t0 = 1_000_000
    p = Scripted([creds(1, t0 + 3600), failure(), creds(2, t0 + 7200)], rng=MinRng())
    p.get(t0)
    with caplog.at_level(logging.WARNING, logger="edgecore.credentials"):
        assert p.get(t0 + 2800).access_key == "AKID1"
    assert "refresh from scripted failed" in caplog.text and "refused" in caplog.text
    # the next attempt waits retry_interval (30 s) instead of hammering the endpoint
    assert p.get(t0 + 2829).access_key == "AKID1"
    assert len(p.loads) == 2
    assert p.get(t0 + 2830).access_key == "AKID2"
    no_secret(caplog.text)


def test_failed_mandatory_refresh_raises_typed():
    # As botocore: 10 minutes before expiry a refresh must succeed.
    t0 = 1_000_000
    cause = failure()
    p = Scripted([creds(1, t0 + 3600), cause])
    p.get(t0)
    with pytest.raises(ec.CredentialsExpiredError) as info:
        p.get(t0 + 3600 - 599)
    assert info.value.cause is cause and info.value.__cause__ is cause
    assert info.value.retryable is True
    assert "expire(d) at 1970-01-12T14:46:40Z" in str(info.value)
    no_secret(str(info.value))


def test_expiry_is_judged_on_the_servers_clock():
    # The answer's Date says the server is 2 h behind the device: credentials valid for
    # 1 h by the server's clock are fresh, though the device clock is past their expiry.
    t0 = 1_000_000

    class Skewed(Scripted):
        def _load(self, now):
            self.fetch_skew = -7200
            return super()._load(now)

    p = Skewed([creds(1, t0 - 7200 + 3600), creds(2, t0)], rng=MinRng())
    first = p.get(t0)
    assert p.get(t0 + 3600 - 901) is first and p.refresh_state(t0) is None
    assert p.get(t0 + 3600 - 900).access_key == "AKID2"


def test_failed_refresh_after_invalidate_raises():
    t0 = 1_000_000
    cause = failure()
    p = Scripted([creds(1, t0 + 3600), cause, creds(2, t0 + 3600)])
    p.get(t0)
    p.invalidate()
    with pytest.raises(ec.IotTransportError) as info:
        p.get(t0 + 1)
    assert info.value is cause
    assert p.get(t0 + 2).access_key == "AKID2"  # still invalidated: next call retries


def test_first_load_failure_raises_it():
    cause = failure()
    p = Scripted([cause])
    with pytest.raises(ec.IotTransportError):
        p.get(0)


def test_clock_used_without_now():
    now = [1_000_000]
    p = Scripted([creds(1, now[0] + 100), creds(2, now[0] + 1000)], clock=lambda: now[0])
    assert p.get().access_key == "AKID1"
    now[0] += 60
    assert p.get().access_key == "AKID2"
    assert p.loads == [1_000_000, 1_000_060]


def test_concurrent_get_loads_once():
    class Slow(Scripted):
        def _load(self, now):
            time.sleep(0.05)  # widen the window a missing lock would race in
            return super()._load(now)

    p = Slow([creds(1, 10**10)] * 20)
    results = []
    threads = [threading.Thread(target=lambda: results.append(p.get(0))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(p.loads) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


# --------------------------------------------------------------------------- properties

_INI_LINES = st.one_of(
    st.sampled_from(
        [
            "[default]",
            "[dev]",
            "[ default ]",
            "[",
            "aws_access_key_id = AKIDPROP",
            "aws_secret_access_key = " + SECRET,
            "aws_secret_access_key " + SECRET,
            "aws_session_token = " + TOKEN,
            "  continuation " + TOKEN,
            "; comment",
            "# comment " + SECRET,
            "",
            "=",
            "[DEFAULT]",
            "%(x)s = " + SECRET,
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
)


@st.composite
def _ini_files(draw):
    """A valid file for the profile, with up to 4 arbitrary lines inserted anywhere."""
    profile = draw(st.sampled_from(["default", "dev"]))
    lines = [
        "[%s]" % profile,
        "aws_access_key_id = AKIDPROP",
        "aws_secret_access_key = " + SECRET,
        "aws_session_token = " + TOKEN,
    ]
    for _ in range(draw(st.integers(0, 4))):
        lines.insert(draw(st.integers(0, len(lines))), draw(_INI_LINES))
    return lines, profile


@settings(max_examples=200, deadline=None)
@given(_ini_files())
def test_shared_file_any_text_gives_credentials_or_typed_error(file):
    lines, profile = file
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "credentials")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write("\n".join(lines))
        p = ec.SharedFileProvider(path, profile)
        try:
            creds, why = p.read()
        except ec.CredentialsConfigError as exc:
            no_secret(str(exc))
            assert exc.__context__ is None
            return
    if creds is None:
        assert "profile" in why
        no_secret(why)
    else:
        assert creds.access_key and creds.secret_key
        no_secret(repr(creds))
