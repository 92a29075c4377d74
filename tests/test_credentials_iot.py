"""The AWS IoT credentials provider against a real mutual-TLS endpoint on 127.0.0.1.

The PKI (a CA with a server certificate for 127.0.0.1 / localhost, device certificates;
EC P-256) and the TLS server (handshake per connection, the TLS alert delivered to a
refused client) are the local cloud's (``edgecore_tools.localcloud.iot``); the handler
here answers like the IoT credentials endpoint, with failure modes on demand. CPython only.
"""

import http.server
import json
import logging
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.errors import ClientError, EdgecoreError, ResponseParseError, TransportError
from edgecore_ports import credentials as ec
from edgecore_tools.localcloud.iot import Pki, TlsServer

THING = "edge-device-01"
ALIAS = "EdgeRoleAlias"
SECRET = "iotSeCrEtKeY/abc+123"
TOKEN = "iotSeSsIoNtOkEn//zz=="


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ours = Pki.create(d / "ours", name="edgecore test CA")
    rogue = Pki.create(d / "rogue", name="rogue CA")
    paths = {
        "pki": ours,
        "ca": ours.ca_path,
        "device": ours.device(THING),
        "rogue_ca": rogue.ca_path,
        "rogue": rogue.device(THING),  # same thing name, from a CA the server does not know
    }
    # The device certificate with a key that is not its own.
    paths["mismatched"] = (paths["device"][0], paths["rogue"][1])
    return paths


# --------------------------------------------------------------------------- server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        peer = self.connection.getpeercert()
        srv.seen.append(
            {
                "path": self.path,
                "thing": self.headers.get("x-amzn-iot-thingname"),
                "peer_cn": dict(x[0] for x in peer["subject"]).get("commonName") if peer else None,
            }
        )
        if not peer:
            return self.reply(403, {"message": "No client certificate"})
        if self.path != "/role-aliases/%s/credentials" % ALIAS:
            return self.reply(404, {"message": "Role alias does not exist"})
        if self.headers.get("x-amzn-iot-thingname") != THING:
            return self.reply(403, {"message": "Access Denied"}, {"x-amzn-ErrorType": "Forbidden"})
        mode = srv.modes.pop(0) if srv.modes else "ok"
        if mode == "ok":
            srv.issued += 1
            n = srv.issued
            expiration = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(time.time()) + srv.lifetime)
            )
            return self.reply(
                200,
                {
                    "credentials": {
                        "accessKeyId": "ASIAIOT%d" % n,
                        "secretAccessKey": "%s-%d" % (SECRET, n),
                        "sessionToken": "%s-%d" % (TOKEN, n),
                        "expiration": expiration,
                    }
                },
            )
        if mode == "500":
            return self.reply(500, {"message": "Internal failure"})
        if mode == "trickle":  # a head dribbled out a byte at a time, under any read timeout
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):
                if srv.stop_trickle.wait(0.2):
                    break
                try:
                    self.wfile.write(b"X")
                    self.wfile.flush()
                except OSError:
                    break
            srv.trickle_done.set()
            self.close_connection = True
            return None
        if isinstance(mode, bytes):
            return self.raw(200, mode)
        return self.reply(200, mode)  # a JSON document of the wrong shape

    def reply(self, status, doc, headers=None):
        self.raw(status, json.dumps(doc).encode(), headers)

    def raw(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class MtlsServer(TlsServer):
    """The local cloud's mTLS server with this module's Handler and test hooks."""

    def __init__(self, context):
        super().__init__(context, Handler, on_handshake_failure=self._handshake_failed)
        self.modes = []
        self.seen = []
        self.handshake_errors = []
        self.handshake_failed = threading.Event()
        self.issued = 0
        self.lifetime = 3600
        self.stop_trickle = threading.Event()
        self.trickle_done = threading.Event()

    def _handshake_failed(self, exc):
        self.handshake_errors.append(exc)
        self.handshake_failed.set()


@pytest.fixture()
def server(pki):
    srv = MtlsServer(pki["pki"].server_context()).start_background(poll_interval=0.02)
    try:
        yield srv
    finally:
        srv.stop()


def iot_config(pki, server, **overrides):
    conf = {
        "endpoint": "localhost",
        "port": server.server_address[1],
        "role_alias": ALIAS,
        "thing_name": THING,
        "cert": pki["device"][0],
        "key": pki["device"][1],
        "ca": pki["ca"],
        "timeout": [5, 5],
    }
    conf.update(overrides)
    return conf


def provider(pki, server, **overrides):
    return ec.provider_from_config({"iot": iot_config(pki, server, **overrides)}, environ={})


def assert_no_secrets(*texts):
    for text in texts:
        for secret in (SECRET, TOKEN, "PRIVATE KEY"):
            assert secret not in text, text


# --------------------------------------------------------------------------- tests


def test_success(pki, server):
    p = provider(pki, server)
    now = int(time.time())
    c = p.get(now)
    later = int(time.time())  # the server stamps its own time: slow (emulated) hosts lag
    assert c.access_key == "ASIAIOT1"
    assert c.secret_key == SECRET + "-1" and c.session_token == TOKEN + "-1"
    assert now + 3600 <= c.expiration <= later + 3600
    assert server.seen == [
        {"path": "/role-aliases/%s/credentials" % ALIAS, "thing": THING, "peer_cn": THING}
    ]
    assert p.get(now + 60) is c  # cached
    assert len(server.seen) == 1
    assert_no_secrets(repr(p), str(p))


def test_loopback_ip_endpoint_and_default_clock(pki, server):
    p = provider(pki, server, endpoint="127.0.0.1")
    assert p.get().access_key == "ASIAIOT1"


def test_refresh_after_expiry_returns_new_keys(pki, server):
    server.lifetime = 120
    p = provider(pki, server)
    now = int(time.time())
    first = p.get(now)
    assert first.access_key == "ASIAIOT1"
    # 120 s lifetime: refreshed at half-life at the latest, well before expiry.
    second = p.get(first.expiration - 55)
    assert second.access_key == "ASIAIOT2" and second.secret_key == SECRET + "-2"
    assert len(server.seen) == 2


def test_device_clock_hours_ahead_still_gets_fresh_credentials(pki, server):
    # Issue 11 item 6: a device 2 h ahead saw 1-hour credentials as already expired and
    # never sent a request (so never learnt its clock offset). Expiry is now judged on
    # the endpoint's clock (its Date header).
    p = provider(pki, server)
    ahead = int(time.time()) + 7200
    c = p.get(ahead)
    assert c.access_key == "ASIAIOT1" and c.expired(ahead)  # expired by the device clock...
    assert p.get(ahead + 60) is c  # ...yet fresh by the server's: cached, used
    assert p.refresh_state(ahead + 3600 - 991) is None  # advisory: 900 s + up to 10%
    assert p.refresh_state(ahead + 3600 - 600) == "mandatory"
    # A truly expired answer (by the endpoint's own clock) is still refused.
    server.modes = [{"credentials": {"accessKeyId": "A", "secretAccessKey": "S",
                                     "sessionToken": "T", "expiration": "2001-01-01T00:00:00Z"}}]
    p.invalidate()
    with pytest.raises(ec.IotResponseError) as info:
        p.get(ahead)
    assert info.value.field == "credentials.expiration" and "endpoint's Date" in str(info.value)


def test_a_trickled_answer_is_cut_at_the_deadline(pki, server):
    # Issue 11 item 5: per-read timeouts let a byte-a-second head hold the fetch for as
    # long as the peer likes; the whole exchange now has a wall-clock deadline.
    server.modes = ["trickle"]
    p = provider(pki, server, timeout=[1, 1])
    try:
        with pytest.raises(ec.IotTransportError) as info:
            p.get()
        assert "timed out" in str(info.value) and info.value.retryable
        assert not server.trickle_done.is_set()  # cut while the server was still sending
    finally:
        server.stop_trickle.set()


def test_invalidate_fetches_again(pki, server):
    p = provider(pki, server)
    now = int(time.time())
    assert p.get(now).access_key == "ASIAIOT1"
    p.invalidate()
    assert p.get(now).access_key == "ASIAIOT2"


def test_client_without_trusted_device_cert_is_rejected(pki, server):
    p = provider(pki, server, cert=pki["rogue"][0], key=pki["rogue"][1])
    with pytest.raises(ec.IotTransportError) as info:
        p.get()
    exc = info.value
    assert isinstance(exc, TransportError) and isinstance(exc, ec.CredentialsError)
    assert exc.endpoint == "localhost" and exc.role_alias == ALIAS
    # Refused by TLS: the same certificate would be refused again, so not retryable.
    assert exc.retryable is False and exc.tls_reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert "AssumeRoleWithCertificate" in str(exc)
    assert "tlsv1 alert unknown ca" in str(exc) and "not retried" in str(exc)
    assert pki["rogue"][0] in str(exc)  # which certificate was refused
    # The client may see the refusal before the server thread has recorded it.
    assert server.handshake_failed.wait(10)
    assert "certificate" in str(server.handshake_errors[0]) and not server.seen
    assert_no_secrets(str(exc))


def test_client_presenting_no_certificate_is_rejected(pki, server):
    # Built directly: provider_from_config insists on cert and key.
    p = ec.IotCredentialsProvider(
        "localhost", ALIAS, THING, None, None, ca=pki["ca"], port=server.server_address[1]
    )
    with pytest.raises(ec.IotTransportError) as info:
        p.get()
    assert info.value.retryable is False
    assert info.value.tls_reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "requires a device certificate" in str(info.value)
    assert server.handshake_failed.wait(10)
    assert "certificate" in str(server.handshake_errors[0]) and not server.seen


def test_key_not_matching_cert_is_typed(pki, server):
    p = provider(pki, server, cert=pki["mismatched"][0], key=pki["mismatched"][1])
    with pytest.raises(ec.IotTransportError) as info:
        p.get()
    assert_no_secrets(str(info.value))
    assert not server.seen
    assert info.value.retryable is False and info.value.tls_reason == "KEY_VALUES_MISMATCH"
    assert "private key does not belong to the device certificate" in str(info.value)


def test_certificate_rejections_are_recognised_by_reason_or_text():
    import ssl

    rejected = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    rejected.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    assert ec._cert_rejection(rejected) == "SSLV3_ALERT_BAD_CERTIFICATE"
    # A wrapper that kept only the text.
    text = OSError("TLS error: tlsv1 alert unknown ca")
    assert ec._cert_rejection(text) == "TLSV1_ALERT_UNKNOWN_CA"
    for other in (ConnectionResetError(104, "Connection reset by peer"), TimeoutError()):
        assert ec._cert_rejection(other) is None


def test_wrong_thing_name_is_403(pki, server):
    p = provider(pki, server, thing_name="someone-else")
    with pytest.raises(ec.IotEndpointError) as info:
        p.get()
    exc = info.value
    assert isinstance(exc, ClientError)
    assert (exc.status, exc.code, exc.message) == (403, "Forbidden", "Access Denied")
    assert not exc.retryable
    assert "Access Denied" in str(exc) and ALIAS in str(exc)
    assert server.seen[0]["thing"] == "someone-else"


def test_unknown_role_alias_is_404_without_error_type(pki, server):
    p = provider(pki, server, role_alias="Other/Alias")
    with pytest.raises(ec.IotEndpointError) as info:
        p.get()
    assert (info.value.status, info.value.code) == (404, "HTTP404")
    assert server.seen[0]["path"] == "/role-aliases/Other%2FAlias/credentials"


def test_server_error_is_retryable(pki, server):
    server.modes = ["500"]
    with pytest.raises(ec.IotEndpointError) as info:
        provider(pki, server).get()
    assert info.value.status == 500 and info.value.retryable


BAD_BODIES = [
    (b"not json", "<body>"),
    (b"\xff\xfe", "<body>"),
    ([1, 2], "<body>"),
    ({}, "credentials"),
    ({"credentials": "x"}, "credentials"),
    (
        {"credentials": {"secretAccessKey": SECRET, "sessionToken": TOKEN}},
        "credentials.accessKeyId",
    ),
    (
        {"credentials": {"accessKeyId": "A", "secretAccessKey": 7, "sessionToken": TOKEN}},
        "credentials.secretAccessKey",
    ),
    (
        {"credentials": {"accessKeyId": "A", "secretAccessKey": SECRET, "expiration": "x"}},
        "credentials.sessionToken",
    ),
    (
        {"credentials": {"accessKeyId": "A", "secretAccessKey": SECRET, "sessionToken": TOKEN}},
        "credentials.expiration",
    ),
    (
        {
            "credentials": {
                "accessKeyId": "A",
                "secretAccessKey": SECRET,
                "sessionToken": TOKEN,
                "expiration": "tomorrow",
            }
        },
        "credentials.expiration",
    ),
    (
        {
            "credentials": {
                "accessKeyId": "A",
                "secretAccessKey": SECRET,
                "sessionToken": TOKEN,
                "expiration": "2001-01-01T00:00:00Z",
            }
        },
        "credentials.expiration",
    ),
    (b"{" + b" " * (70 * 1024) + b"}", "<body>"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES)
def test_malformed_response_is_typed(pki, server, body, field, caplog):
    server.modes = [body]
    p = provider(pki, server)
    with caplog.at_level(logging.DEBUG), pytest.raises(ec.IotResponseError) as info:
        p.get()
    exc = info.value
    assert isinstance(exc, ResponseParseError) and isinstance(exc, EdgecoreError)
    assert exc.field == field and field in str(exc)
    assert_no_secrets(str(exc), repr(exc), repr(p), caplog.text)


def test_server_ca_mismatch_is_typed(pki, server):
    p = provider(pki, server, ca=pki["rogue_ca"])
    with pytest.raises(ec.IotTransportError) as info:
        p.get()
    assert "certificate verify failed" in str(info.value)
    assert not server.seen
    assert info.value.retryable is False
    assert info.value.tls_reason == "CERTIFICATE_VERIFY_FAILED"
    # Without a ca the system store is used, which does not know the test CA either.
    conf = iot_config(pki, server)
    del conf["ca"]
    with pytest.raises(ec.IotTransportError) as info:
        ec.provider_from_config({"iot": conf}, environ={}).get()
    assert info.value.retryable is False and "system store" in str(info.value)


def test_connection_refused_is_typed(pki, server):
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(ec.IotTransportError) as info:
        provider(pki, server, port=port).get()
    assert info.value.retryable and info.value.tls_reason is None


def test_refresh_failure_with_valid_cache_returns_cached(pki, server, caplog):
    p = provider(pki, server)
    now = int(time.time())
    first = p.get(now)
    server.modes = ["500"]
    # In the advisory window (15 min before expiry, as botocore) a failed refresh keeps
    # the cached credentials...
    with caplog.at_level(logging.WARNING, logger="edgecore.credentials"):
        again = p.get(first.expiration - 700)
    assert again is first
    assert "refresh" in caplog.text and "Internal failure" in caplog.text
    assert len(server.seen) == 2
    assert_no_secrets(caplog.text)
    # ...in the mandatory one (10 min) it is a typed error, not nearly stale keys.
    server.modes = ["500"]
    with pytest.raises(ec.CredentialsExpiredError) as info:
        p.get(first.expiration - 300)
    assert isinstance(info.value.cause, ec.IotEndpointError) and info.value.retryable
    assert_no_secrets(str(info.value))


def test_secrets_absent_from_every_error_path(pki, server, caplog):
    """Every failure mode above, with the logs captured at DEBUG, never shows a secret."""
    texts = []
    with caplog.at_level(logging.DEBUG):
        p = provider(pki, server)
        now = int(time.time())
        creds = p.get(now)
        texts += [repr(p), str(p), repr(creds), str(creds)]
        for mode in ["500", b"junk", {"credentials": {"accessKeyId": SECRET}}]:
            server.modes = [mode]
            p.invalidate()
            with pytest.raises(ec.CredentialsError) as info:
                p.get(now)
            texts += [str(info.value), repr(info.value)]
        p.get(now)
        server.modes = ["500", "500"]
        p.get(creds.expiration - 700)
        with pytest.raises(ec.CredentialsExpiredError) as info:
            p.get(creds.expiration + 10**6)
        texts += [str(info.value), repr(info.value), repr(p)]
    texts.append(caplog.text)
    assert "refresh" in caplog.text
    for text in texts:
        assert SECRET not in text and TOKEN not in text


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "override, field",
    [
        ({"endpoint": "https://x.example"}, "endpoint"),
        ({"endpoint": ""}, "endpoint"),
        ({"role_alias": None}, "role_alias"),
        ({"thing_name": "a b\r\nX-Evil: 1"}, "thing_name"),
        ({"cert": "/nonexistent/cert.pem"}, "cert"),
        ({"key": 5}, "key"),
        ({"ca": "/nonexistent/ca.pem"}, "ca"),
        ({"port": "443"}, "port"),
        ({"port": 70000}, "port"),
        ({"timeout": [1]}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"refresh_margin": -5}, "refresh_margin"),
        ({"certificate": "x"}, "certificate"),
    ],
)
def test_iot_config_invalid(pki, server, override, field):
    with pytest.raises(ec.CredentialsConfigError) as info:
        ec.provider_from_config({"iot": iot_config(pki, server, **override)}, environ={})
    assert info.value.field == field and field in str(info.value)


def test_iot_config_wins_over_environment_and_conflicts_with_credentials(pki, server):
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": SECRET}
    p = ec.provider_from_config({"iot": iot_config(pki, server)}, environ=env)
    assert isinstance(p, ec.IotCredentialsProvider)
    conf = {
        "iot": iot_config(pki, server),
        "credentials": {"access_key_id": "A", "secret_access_key": SECRET},
    }
    with pytest.raises(ec.CredentialsConfigError):
        ec.provider_from_config(conf, environ=env)


def test_url_default_port():
    p = ec.IotCredentialsProvider(
        "abc.credentials.iot.us-west-2.amazonaws.com", "A b", "t", "c", "k"
    )
    assert (
        p.url
        == "https://abc.credentials.iot.us-west-2.amazonaws.com/role-aliases/A%20b/credentials"
    )


# --------------------------------------------------------------------------- cache file


def test_cache_file_saved_0600_and_reused_by_next_run(pki, server, tmp_path):
    cache = tmp_path / "iot-creds.json"
    now = int(time.time())
    first = provider(pki, server, cache_file=str(cache)).get(now)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert json.loads(cache.read_text())["accessKeyId"] == first.access_key
    # A restarted agent: no request while the saved credentials are outside the margin.
    p = provider(pki, server, cache_file=str(cache))
    again = p.get(now + 10)
    assert again == first and again.expiration == first.expiration
    assert len(server.seen) == 1
    assert_no_secrets(repr(p))
    # Inside the margin it fetches, and saves the new ones.
    assert p.get(first.expiration - 100).access_key == "ASIAIOT2"
    assert json.loads(cache.read_text())["accessKeyId"] == "ASIAIOT2"


def test_cache_file_bridges_an_outage_after_restart(pki, server, tmp_path):
    cache = str(tmp_path / "c.json")
    now = int(time.time())
    first = provider(pki, server, cache_file=cache).get(now)
    server.modes = ["500"]
    p = provider(pki, server, cache_file=cache)
    assert p.get(first.expiration - 100) == first  # refresh failed, saved ones still valid


def test_cache_file_ignored_when_unsafe_foreign_or_broken(pki, server, tmp_path, caplog):
    cache = tmp_path / "c.json"
    now = int(time.time())
    provider(pki, server, cache_file=str(cache)).get(now)
    good = cache.read_text()
    cases = [
        ("readable by others", lambda: os.chmod(cache, 0o644)),
        ("another endpoint", lambda: cache.write_text(good.replace(THING, "other-thing"))),
        ("unreadable (body is not valid JSON)", lambda: cache.write_text(good[:-5])),
        (
            "malformed at credentials.sessionToken",
            lambda: cache.write_text(json.dumps(dict(json.loads(good), sessionToken=None))),
        ),
        (
            "expired at",
            lambda: cache.write_text(
                json.dumps(dict(json.loads(good), expiration="2001-01-01T00:00:00Z"))
            ),
        ),
    ]
    for n, (why, damage) in enumerate(cases, start=2):
        cache.write_text(good)
        os.chmod(cache, 0o600)
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgecore.credentials"):
            assert provider(pki, server, cache_file=str(cache)).get(now).access_key == (
                "ASIAIOT%d" % n
            )
        assert "ignoring credentials cache file" in caplog.text and why in caplog.text
        assert_no_secrets(caplog.text)


def test_cache_file_not_used_after_invalidate(pki, server, tmp_path):
    cache = str(tmp_path / "c.json")
    now = int(time.time())
    provider(pki, server, cache_file=cache).get(now)
    p = provider(pki, server, cache_file=cache)
    p.invalidate()  # e.g. the saved ones were just rejected
    assert p.get(now).access_key == "ASIAIOT2"


def test_cache_file_write_failure_is_a_warning(pki, server, tmp_path, caplog):
    d = tmp_path / "gone"
    d.mkdir()
    p = provider(pki, server, cache_file=str(d / "c.json"))
    d.rmdir()
    d.write_text("now a file, so nothing can be created under it")
    with caplog.at_level(logging.WARNING, logger="edgecore.credentials"):
        creds = p.get()
    assert creds.access_key == "ASIAIOT1"
    assert "cannot write credentials cache file" in caplog.text
    assert "NotADirectoryError" in caplog.text


# --------------------------------------------------------------------------- properties


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_STAMPS = {"2030-01-01T00:00:00Z": 1893456000, "2030-01-01T00:00:00.5+01:00": 1893452400}
_FIELDS = ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")


@st.composite
def _credentials_docs(draw):
    """A valid answer, then maybe one member replaced by any JSON (or a secret) or dropped."""
    inner = {
        "accessKeyId": draw(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1)
        ),
        "secretAccessKey": draw(st.sampled_from([SECRET, "x"])),
        "sessionToken": draw(st.sampled_from([TOKEN, "y"])),
        "expiration": draw(st.sampled_from(sorted(_STAMPS))),
    }
    field = draw(st.sampled_from((None,) + _FIELDS))
    if field is not None:
        replacement = draw(st.one_of(st.none(), _JSON, st.just(SECRET), st.just(TOKEN)))
        if replacement is None:
            del inner[field]
        else:
            inner[field] = replacement
    return draw(st.sampled_from([{"credentials": inner}, {"credentials": inner, "extra": 1}]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_JSON, st.fixed_dictionaries({"credentials": _JSON}), _credentials_docs()))
def test_parse_any_json_gives_credentials_or_typed_error(doc):
    p = ec.IotCredentialsProvider("iot.example", ALIAS, THING, "c", "k")
    try:
        creds = p._parse(json.dumps(doc).encode())
    except ec.IotResponseError as exc:
        assert exc.field == "<body>" or exc.field.startswith("credentials")
        assert_no_secrets(str(exc))
        return
    inner = doc["credentials"]
    assert (creds.access_key, creds.secret_key, creds.session_token) == (
        inner["accessKeyId"],
        inner["secretAccessKey"],
        inner["sessionToken"],
    )
    assert creds.expiration == _STAMPS[inner["expiration"]]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_parse_any_bytes_gives_typed_error_or_credentials(body):
    p = ec.IotCredentialsProvider("iot.example", ALIAS, THING, "c", "k")
    try:
        p._parse(body)
    except ec.IotResponseError:
        pass
