# Runs under MicroPython too (tests/micropython/run.mjs).
"""Tests of edgecore_ports.agentconfig: one table of keys, everything validated at load."""

import sys

from edgecore_ports import ConfigError
from edgecore_ports.agentconfig import closest_key, keys, load_config

BASE = {"device_name": "cam-1", "fleet_name": "fleet_a", "region": "us-west-2",
        "model_dir": "/var/lib/edgecore/models", "state_dir": "/var/lib/edgecore/state",
        "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t"}}


def refused(doc, micropython=False, environ=None):
    try:
        load_config(doc, environ or {}, micropython)
    except ConfigError as exc:
        return exc
    raise AssertionError("accepted %r" % (doc,))


def test_defaults_fill_every_key_and_differ_on_a_board():
    linux = load_config(dict(BASE), {}, False)
    board = load_config(dict(BASE), {}, True)
    assert sorted(linux) == sorted(k[0] for k in keys()) == sorted(board)
    assert linux["unpack_archives"] is True  # application serving's keys are in the table
    assert linux["heartbeat_interval"] == 60 and linux["verify_tls"] is True
    assert linux["max_retries"] == 5 and board["max_retries"] == 3
    assert linux["free_space_reserve_bytes"] == 16 * 1024 * 1024
    assert board["free_space_reserve_bytes"] == 16 * 1024
    assert linux["request_timeout"] == 120 and linux["min_download_rate"] == 1024
    ok = load_config(dict(BASE, request_timeout=2.5, min_download_rate=0), {}, False)
    assert ok["request_timeout"] == 2.5 and ok["min_download_rate"] == 0  # 0: no minimum
    # The defaults are copies: a caller changing one config does not change the next.
    linux["timeout"].append(1)
    assert load_config(dict(BASE), {}, False)["timeout"] == [5, 30]


def test_a_typo_names_the_closest_valid_key():
    exc = refused(dict(BASE, heartbeat_intervall=30))
    assert exc.field == "heartbeat_intervall"
    assert "unknown key; the closest valid key is heartbeat_interval" in str(exc)
    assert closest_key("s3_endpoint") == "s3_endpoint_url"
    assert closest_key("verify_ssl") == "verify_tls"
    assert closest_key("regoin") == "region"
    assert closest_key("capture_s3_url") == "capture_s3_uri"
    # Keys starting with "_" are comments (the shipped template has "_comment").
    assert load_config(dict(BASE, _comment="replace the <...> values"), {}, False)


def test_region_must_look_like_a_region():
    exc = refused(dict(BASE, region="us west 2"))
    assert exc.field == "region" and "such as us-west-2" in str(exc)
    for bad in ("", "-us-west-2", "us-west-2-", "123", "us_west_2", "<aws-region>", 7,
                "a" * 64):
        assert refused(dict(BASE, region=bad)).field == "region", bad
    for good in ("us-west-2", "eu-central-1", "us-gov-west-1", "cn-north-1", "local"):
        assert load_config(dict(BASE, region=good), {}, False)["region"] == good


def test_directories_must_be_absolute_and_apart():
    for key in ("model_dir", "state_dir"):
        exc = refused(dict(BASE, **{key: "models"}))
        assert exc.field == key and "absolute path" in str(exc)
    exc = refused(dict(BASE, state_dir="/var/lib/edgecore/models/state"))
    assert exc.field == "state_dir" and "outside model_dir" in str(exc)
    assert refused(dict(BASE, model_dir="/var/lib/edgecore/state/")).field == "state_dir"
    assert load_config(dict(BASE, model_dir="/m", state_dir="/m2"), {}, False)


def test_every_key_is_type_and_range_checked():
    cases = [
        ("device_name", "bad name"), ("device_name", "-x"), ("fleet_name", "a" * 64),
        ("endpoint_url", "ftp://x"), ("endpoint_url", "http"), ("s3_endpoint_url", "h:80"),
        ("s3_addressing_style", "dual"), ("heartbeat_interval", 0),
        ("heartbeat_interval", True), ("heartbeat_interval", "60"), ("board", "pdp11"),
        ("ca_bundle", ""), ("ca_bundle", 5), ("verify_tls", "no"), ("verify_tls", 0),
        ("timeout", 0), ("timeout", [5]), ("timeout", [5, "30"]), ("request_timeout", -1),
        ("min_download_rate", -1), ("min_download_rate", "1k"), ("min_download_rate", False),
        ("free_space_reserve_bytes", 1.5), ("free_space_reserve_bytes", -1),
        ("max_retries", -1), ("max_retries", True), ("retry_time_budget", 0),
        ("reload_command", "restart.sh"), ("reload_command", []), ("reload_command", [1]),
        ("reload_timeout", 0), ("require_artifact_signature", "yes"),
        ("credentials", {}), ("credentials", {"access_key_id": "A"}),
        ("credentials", {"access_key_id": "A", "secret_access_key": "S", "x": 1}),
        ("credentials", "AKID:secret"), ("iot", []), ("profile", 3), ("proxy", "socks"),
        ("unpack_archives", "yes"), ("capture_batch_size", 0), ("api_socket", "relative"),
    ]
    for key, bad in cases:
        exc = refused(dict(BASE, **{key: bad}))
        assert exc.field == key, (key, bad, exc.field)
        assert str(exc).startswith("agent config: invalid " + key + ": expected") or \
            key == "credentials", (key, str(exc))
    # The secret never appears in an error about the credentials.
    exc = refused(dict(BASE, credentials={"access_key_id": "A", "secret_access_key": 5}))
    assert "s3cr3t" not in str(exc)


def test_required_keys_and_null():
    for key in ("device_name", "fleet_name", "region", "model_dir", "state_dir"):
        doc = dict(BASE)
        del doc[key]
        exc = refused(doc)
        assert exc.field == key and "required" in str(exc)
        assert refused(dict(BASE, **{key: None})).field == key
    # null means "not set" only where the default is "not set".
    assert load_config(dict(BASE, endpoint_url=None), {}, False)["endpoint_url"] is None
    assert refused(dict(BASE, min_download_rate=None)).field == "min_download_rate"
    assert refused([BASE]).field == "document"


def test_a_board_refuses_what_only_cpython_can_do():
    for key, value in (("reload_command", ["systemctl", "restart", "app"]),
                       ("profile", "edge-device"), ("proxy", "http://proxy:3128")):
        exc = refused(dict(BASE, **{key: value}), micropython=True)
        assert exc.field == key and "MicroPython" in str(exc)
        if key != "profile":  # on CPython the profile must exist in ~/.aws (below)
            assert load_config(dict(BASE, **{key: value}), {}, False)[key] == value
    if sys.implementation.name != "micropython":  # no ~/.aws to look in on a board
        exc = refused(dict(BASE, profile="edge-device"),
                      environ={"AWS_CONFIG_FILE": "/nonexistent/config",
                               "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"})
        assert exc.field == "profile" and "edge-device" in str(exc)
    doc = dict(BASE)
    del doc["credentials"]
    assert refused(doc, micropython=True).field == "credentials"
    # The board's AWS IoT provider (edgecore_ports.mp_iot) checks its keys at load too.
    exc = refused(dict(doc, iot={"endpoint": "x.example", "role_alias": "r",
                                 "thing_name": "t", "cert": "/nonexistent/cert.pem",
                                 "key": "/k", "ca": "/c"}), micropython=True)
    assert exc.field.startswith("iot"), exc.field
    exc = refused(dict(doc, iot={"endpoint": "x", "cache_file": "/f"}), micropython=True)
    assert exc.field == "iot.cache_file"
    assert load_config(doc, {}, False)["credentials"] is None  # the SDK chain finds them


def test_signature_keys_need_a_runtime_that_can_verify():
    # CPython: the key file must be a readable PEM key; a board: refused outright.
    exc = refused(dict(BASE, artifact_signing_key="/nonexistent/pub.pem"))
    assert exc.field == "artifact_signing_key"
    exc = refused(dict(BASE, require_artifact_signature=True))
    assert exc.field == "require_artifact_signature"


def test_endpoints_from_the_environment_unless_the_config_names_them():
    env = {"AWS_ENDPOINT_URL_SAGEMAKER_EDGE": "http://127.0.0.1:1",
           "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2", "AWS_USE_FIPS_ENDPOINT": "true",
           "AWS_CONFIG_FILE": "/nonexistent/config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"}
    # A board has no environment to read: the config alone.
    assert load_config(dict(BASE), env, True)["endpoint_url"] is None
    if sys.implementation.name == "micropython":  # ... whatever the rules asked for
        assert load_config(dict(BASE), env, False)["endpoint_url"] is None
        return
    config = load_config(dict(BASE), env, False)
    assert config["endpoint_url"] == "http://127.0.0.1:1"
    assert config["s3_endpoint_url"] == "http://127.0.0.1:2"
    assert config["use_fips_endpoint"] is True
    # The config wins, as an explicit client argument does in the AWS SDKs.
    config = load_config(dict(BASE, endpoint_url="https://edge.example", use_fips_endpoint=False),
                         env, False)
    assert config["endpoint_url"] == "https://edge.example"
    assert config["s3_endpoint_url"] == "http://127.0.0.1:2"
    assert config["use_fips_endpoint"] is False
    exc = refused(dict(BASE), environ={"AWS_ENDPOINT_URL_S3": "s3.local"})
    assert exc.field == "s3_endpoint_url" and "environment" in str(exc)
