# Runs under MicroPython too
"""edgecore_ports.mp_iot (the AWS IoT credentials provider on a board) against a fake
port and transport: the request, the refresh windows (advisory, mandatory, jitter, retry
interval, invalidate), expiry on the endpoint's clock, error classes, config checks.
The real exchange (mutual TLS on the real binary, the local IoT endpoint):
tests/test_mp_iot_device.py."""

from edgecore.amztime import http_date, iso8601
from edgecore.errors import TransportError
from edgecore_ports import ConfigError, mp_iot

NOW = 1700000000
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEtoken"
HERE = __file__


def answer(key="ASIAONE", expiration=NOW + 3600, date=NOW, status=200, body=None,
           headers=None):
    if body is None:
        body = ('{"credentials": {"accessKeyId": "%s", "secretAccessKey": "%s", '
                '"sessionToken": "%s", "expiration": "%s"}}'
                % (key, SECRET, TOKEN, iso8601(expiration))).encode()
    out = {"content-type": "application/json"}
    if date is not None:
        out["date"] = http_date(date)
    out.update(headers or {})
    return status, out, body


class Http:
    """Answers from ``script`` in order (a tuple, or an exception to raise); records
    each request."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []

    def transport(self, method, url, headers, body=b"", timeout=None, deadline=None):
        self.requests.append((method, url, dict(headers), deadline))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


class Port:
    def __init__(self, http):
        self.http = http
        self.made = []

    def make_transport(self, **kwargs):
        self.made.append(kwargs)
        return self.http

    def monotonic(self):
        return 50.0

    def clock(self):
        return NOW


def config(**iot):
    conf = {"endpoint": "abc.credentials.iot.us-west-2.amazonaws.com",
            "role_alias": "edge-role-alias", "thing_name": "cam-1", "cert": HERE,
            "key": HERE, "ca": HERE}
    conf.update(iot)
    return {"device_name": "cam-1", "iot": conf}


def provider(*script, **iot):
    http = Http(script)
    logs = []
    p = mp_iot.provider_from_config(config(**iot), Port(http),
                                    log=lambda level, event, **f: logs.append((event, f)),
                                    rand=lambda: 0.0)
    p.logs = logs
    return p, http


def raises(func, *args):
    try:
        func(*args)
    except mp_iot.IotCredentialsError as exc:
        assert SECRET not in str(exc) and TOKEN not in str(exc)
        return exc
    raise AssertionError("no IotCredentialsError")


def test_fetches_with_the_thing_header_under_a_deadline():
    p, http = provider(answer())
    creds = p.get(NOW)
    assert (creds.access_key, creds.secret_key, creds.session_token, creds.expiration) == (
        "ASIAONE", SECRET, TOKEN, NOW + 3600)
    ((method, url, headers, deadline),) = http.requests
    assert method == "GET" and url == ("https://abc.credentials.iot.us-west-2.amazonaws.com"
                                       "/role-aliases/edge-role-alias/credentials")
    assert headers == {"x-amzn-iot-thingname": "cam-1"}
    assert deadline == 50.0 + 5 + 15  # the port's monotonic() + connect + read timeouts
    (made,) = p.port.made
    assert made["client_cert"] == HERE and made["client_key"] == HERE
    assert made["ca_bundle"] == HERE and made["max_body"] == mp_iot.MAX_BODY
    assert SECRET not in repr(p) and TOKEN not in repr(p)
    assert p.logs[0][0] == "credentials.fetched" and SECRET not in repr(p.logs)


def test_port_and_alias_escaping_in_the_url():
    p, http = provider(answer(), port=8443, role_alias="a=b,c@d", timeout=[2, 3])
    p.get(NOW)
    assert http.requests[0][1] == \
        "https://abc.credentials.iot.us-west-2.amazonaws.com:8443/role-aliases/a%3Db%2Cc%40d/credentials"
    assert http.requests[0][3] == 50.0 + 5


def test_cached_until_the_advisory_window_then_refreshed():
    p, http = provider(answer("ASIAONE"), answer("ASIATWO", expiration=NOW + 7200, date=NOW + 2701))
    first = p.get(NOW)
    assert p.get(NOW + 2699) is first and len(http.requests) == 1  # 901 s left
    second = p.get(NOW + 2701)  # 899 s left: inside the 15-minute advisory window
    assert second.access_key == "ASIATWO" and len(http.requests) == 2


def test_advisory_failure_keeps_the_credentials_and_retries_later():
    cut = TransportError("GET https://abc: network error (errno 104)")
    p, http = provider(answer("ASIAONE"), cut, cut, answer("ASIATWO", NOW + 7200, NOW + 2800))
    first = p.get(NOW)
    assert p.get(NOW + 2750) is first  # advisory: the failure is logged, not raised
    assert p.logs[-1][0] == "credentials.refresh_failed"
    assert "network error" in p.logs[-1][1]["reason"]
    assert p.get(NOW + 2779) is first and len(http.requests) == 2  # within retry_interval
    assert p.get(NOW + 2780) is first and len(http.requests) == 3  # tried again, failed
    assert p.get(NOW + 2810).access_key == "ASIATWO"


def test_mandatory_failure_raises_with_the_cause_retryability():
    p, http = provider(answer("ASIAONE"), TransportError("GET https://abc: timed out"),
                       answer(status=403, body=b'{"message": "not attached"}',
                              headers={"x-amzn-errortype": "ForbiddenException:abc"}))
    p.get(NOW)
    exc = raises(p.get, NOW + 3001)  # 599 s left: mandatory
    assert exc.retryable is True and "expire within 599 s" in str(exc)
    assert "timed out" in str(exc)
    exc = raises(p.get, NOW + 3002)
    assert exc.retryable is False and exc.status == 403 and exc.code == "ForbiddenException"


def test_short_lived_credentials_scale_the_windows_and_jitter_moves_the_advisory_one():
    # 900 s of life: advisory at half (450 s before expiry), mandatory at a third (300).
    p, http = provider(answer("ASIAONE", NOW + 900), answer("ASIATWO", NOW + 1800, NOW + 451))
    p.get(NOW)
    assert p.get(NOW + 449).access_key == "ASIAONE"
    assert p.get(NOW + 451).access_key == "ASIATWO"
    http = Http([answer("ASIAONE", NOW + 3600)])
    p = mp_iot.provider_from_config(config(), Port(http), rand=lambda: 0.5)
    first = p.get(NOW)
    # Jitter: half of a tenth of the 900 s window earlier: 945 s before expiry.
    assert p.get(NOW + 3600 - 946) is first and len(http.requests) == 1
    http.script.append(answer("ASIATWO", NOW + 7200, NOW + 2656))
    assert p.get(NOW + 3600 - 944).access_key == "ASIATWO"


def test_expiry_is_judged_on_the_endpoints_clock():
    # The device clock is 2 h ahead: by it, fresh credentials look expired already.
    ahead = NOW + 7200
    p, http = provider(answer("ASIAONE", NOW + 3600, date=NOW),
                       answer("ASIATWO", NOW + 7200, date=NOW + 2701))
    first = p.get(ahead)
    assert first.access_key == "ASIAONE" and p.get(ahead + 2699) is first
    assert p.get(ahead + 2701).access_key == "ASIATWO"  # advisory, by the endpoint's clock
    # Without a Date the device clock is all there is: expired on arrival is refused.
    p, http = provider(answer(date=None))
    exc = raises(p.get, ahead)
    assert exc.retryable is False and "device clock" in str(exc)
    p, http = provider(answer(expiration=NOW - 10, date=NOW))
    exc = raises(p.get, NOW)
    assert "expired 10 s ago by the endpoint's Date" in str(exc)


def test_invalidate_fetches_anew_and_a_failure_then_raises():
    p, http = provider(answer("ASIAONE"), answer("ASIATWO"),
                       TransportError("GET https://abc: network error (errno 111)"))
    first = p.get(NOW)
    p.invalidate()
    assert p.get(NOW + 10).access_key == "ASIATWO"
    p.invalidate()
    exc = raises(p.get, NOW + 20)  # not the cached (rejected) ones
    assert exc.retryable is True and first.access_key != "x"


def test_error_answers_are_classified_and_named():
    for status, retryable in ((403, False), (404, False), (429, True), (500, True),
                              (503, True)):
        p, http = provider(answer(status=status, body=b'{"message": "nope\\u0007"}',
                                  headers={"x-amzn-errortype": "SomeError"}))
        exc = raises(p.get, NOW)
        assert exc.retryable is retryable and exc.status == status, (status, exc)
        assert "HTTP %d SomeError: nope?" % status in str(exc)
        assert "abc.credentials.iot.us-west-2.amazonaws.com" in str(exc)
        assert "edge-role-alias" in str(exc)
    p, http = provider(answer(status=502, body=b"<html>bad gateway</html>"))
    assert "no JSON message" in str(raises(p.get, NOW))
    p, http = provider(answer(body=b'{"credentials": {"accessKeyId": "A"}}'))
    exc = raises(p.get, NOW)
    assert exc.retryable is False and "credentials.secretAccessKey" in str(exc)
    p, http = provider(answer(body=b"[" * 5000))
    assert raises(p.get, NOW).retryable is False


def test_transport_errors_keep_their_retryability():
    class Refused(TransportError):
        retryable = False

    p, http = provider(Refused("GET https://abc: certificate refused (expired)"))
    exc = raises(p.get, NOW)
    assert exc.retryable is False and "certificate refused" in str(exc)
    p, http = provider(TransportError("GET https://abc: deadline exceeded"))
    exc = raises(p.get, NOW)
    assert exc.retryable is True and "deadline exceeded" in str(exc)


def test_config_errors_name_the_key():
    port = Port(Http([]))
    for iot, field in (({"endpoint": ""}, "iot.endpoint"),
                       ({"endpoint": "https://abc"}, "iot.endpoint"),
                       ({"endpoint": "abc:443"}, "iot.endpoint"),
                       ({"role_alias": "a/b"}, "iot.role_alias"),
                       ({"thing_name": "cam 1"}, "iot.thing_name"),
                       ({"thing_name": None}, "iot.thing_name"),
                       ({"cert": HERE + ".missing"}, "iot.cert"),
                       ({"key": 5}, "iot.key"),
                       ({"ca": None}, "iot.ca"),
                       ({"port": 0}, "iot.port"),
                       ({"port": True}, "iot.port"),
                       ({"timeout": [1]}, "iot.timeout"),
                       ({"timeout": -1}, "iot.timeout"),
                       ({"refresh_margin": -5}, "iot.refresh_margin"),
                       ({"proxy": "http://p:3128"}, "iot.proxy"),
                       ({"cache_file": "/c.json"}, "iot.cache_file"),
                       ({"thingname": "cam-1"}, "iot.thingname")):
        try:
            mp_iot.provider_from_config(config(**iot), port)
        except ConfigError as exc:
            assert exc.field == field, (iot, exc.field)
        else:
            raise AssertionError("accepted %r" % (iot,))
    for bad in (None, "x", []):
        try:
            mp_iot.provider_from_config({"iot": bad}, port)
        except ConfigError as exc:
            assert exc.field == "iot"
        else:
            raise AssertionError("accepted %r" % (bad,))
    p = mp_iot.provider_from_config(config(refresh_margin=60, timeout=7), port)
    assert p.advisory == 60 and p.timeout == 7
