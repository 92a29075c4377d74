# Runs under MicroPython too
"""edgecore.credsource: refresh decisions, server skew and the credential answer parsers
(plain: pytest and MicroPython, where a port's IoT provider will reuse them)."""

from edgecore import credsource as c

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//token=="
EXP = "2023-11-14T23:13:20Z"  # 1700003600


def _raises(func, *args):
    try:
        func(*args)
    except c.CredentialsParseError as exc:
        assert SECRET not in str(exc) and TOKEN not in str(exc)
        return exc
    raise AssertionError("no CredentialsParseError")


def test_refresh_windows_are_botocores_and_scale_down():
    assert (c.ADVISORY_REFRESH, c.MANDATORY_REFRESH) == (900, 600)
    assert c.refresh_windows(None) == (900, 600)
    assert c.refresh_windows(3600) == (900, 600)
    assert c.refresh_windows(900) == (450, 300)  # 15-minute IoT credentials
    assert c.refresh_windows(3600, advisory=300) == (300, 300)


def test_refresh_state():
    exp = 10000
    assert c.refresh_state(None, 0) is None
    assert c.refresh_state(exp, exp - 901, 3600) is None
    assert c.refresh_state(exp, exp - 900, 3600) == "advisory"
    assert c.refresh_state(exp, exp - 950, 3600, extra=60) == "advisory"
    assert c.refresh_state(exp, exp - 600, 3600) == "mandatory"
    assert c.refresh_state(exp, exp + 5, 3600) == "mandatory"


def test_server_skew():
    assert c.server_skew("Tue, 14 Nov 2023 22:13:20 GMT", 1700007200) == -7200
    assert c.server_skew(None, 5) == 0
    assert c.server_skew("not a date", 5) == 0


def test_iot_answer():
    body = ('{"credentials": {"accessKeyId": "ASIA1", "secretAccessKey": "%s", '
            '"sessionToken": "%s", "expiration": "%s"}}' % (SECRET, TOKEN, EXP)).encode()
    creds = c.parse_iot_credentials(body)
    assert (creds.access_key, creds.secret_key, creds.session_token, creds.expiration) == (
        "ASIA1", SECRET, TOKEN, 1700003600)
    exc = _raises(c.parse_iot_credentials, body.replace(b"ASIA1", b"AS IA"))
    assert exc.field == "credentials.accessKeyId"
    assert _raises(c.parse_iot_credentials, b"[]").field == "<body>"
    assert _raises(c.parse_iot_credentials, b'{"credentials": 1}').field == "credentials"


def test_container_answer():
    body = ('{"AccessKeyId": "ASIA2", "SecretAccessKey": "%s", "Token": "%s", '
            '"Expiration": "%s", "AccountId": "123"}' % (SECRET, TOKEN, EXP)).encode()
    creds = c.parse_container_credentials(body)
    assert (creds.access_key, creds.session_token, creds.expiration) == (
        "ASIA2", TOKEN, 1700003600)
    exc = _raises(c.parse_container_credentials, body.replace(b'"Token"', b'"Tok"'))
    assert exc.field == "Token" and "nothing" in str(exc)
    exc = _raises(c.parse_container_credentials, body.replace(EXP.encode(), SECRET.encode()))
    assert exc.field == "Expiration" and "40-character string" in str(exc)


def test_process_answer():
    body = '{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "%s"}' % SECRET
    creds = c.parse_process_credentials(body.encode())
    assert (creds.session_token, creds.expiration) == (None, None)
    assert _raises(c.parse_process_credentials, body.replace("1", "2").encode()).field == "Version"
    assert _raises(c.parse_process_credentials, b'{"Version": true}').field == "Version"


def test_sts_answer_and_error():
    xml = ("<AssumeRoleResponse xmlns='https://sts.amazonaws.com/doc/2011-06-15/'>"
           "<AssumeRoleResult><AssumedRoleUser><Arn>a</Arn></AssumedRoleUser><Credentials>"
           "<AccessKeyId>ASIA3</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
           "<SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>"
           "</AssumeRoleResult></AssumeRoleResponse>" % (SECRET, TOKEN, EXP))
    creds = c.parse_sts_credentials(xml.encode(), "AssumeRole")
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("ASIA3", SECRET, TOKEN)
    exc = _raises(c.parse_sts_credentials, xml.encode(), "AssumeRoleWithWebIdentity")
    assert exc.field == "AssumeRoleWithWebIdentityResult.Credentials"
    exc = _raises(c.parse_sts_credentials, xml.replace("ASIA3", "").encode(), "AssumeRole")
    assert exc.field == "Credentials.AccessKeyId"
    assert _raises(c.parse_sts_credentials, b"\xff\xfe", "AssumeRole").field == "<body>"
    err = (b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
           b"<Message>not &amp; allowed</Message></Error></ErrorResponse>")
    assert c.parse_sts_error(err) == ("AccessDenied", "not & allowed")
    assert c.parse_sts_error(b"<html/>") == (None, None)
