"""Property tests of the credential answer parsers, the shared-config reader and the
timestamp-string reader: any input gives a value or the documented typed error, never
another exception and never a secret in a message (CPython, hypothesis)."""

import datetime
import json
import os
import tempfile
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore import credsource as c
from edgecore import wire
from edgecore_ports import awsconfig

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
word = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
# Credential expiry times are 1970..9999 (amztime's range).
stamp = st.datetimes(min_value=datetime.datetime(1970, 1, 2)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                     st.integers(), max_size=2))


def _checked(func, *args):
    try:
        return func(*args)
    except c.CredentialsParseError as exc:
        assert SECRET not in str(exc)
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_typed(data):
    for func in (c.parse_iot_credentials, c.parse_container_credentials,
                 c.parse_process_credentials):
        _checked(func, data)
    _checked(c.parse_sts_credentials, data, "AssumeRole")
    code, message = c.parse_sts_error(data)
    assert code is None or isinstance(code, str)


@settings(max_examples=300, deadline=None)
@given(word, word, st.none() | word, stamp,
       st.dictionaries(st.sampled_from(["AccessKeyId", "Token", "Expiration", "x"]), junk,
                       max_size=2))
def test_container_documents_round_trip_or_name_the_field(key, secret, token, exp, mutation):
    doc = {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token, "Expiration": exp}
    doc.update(mutation)
    creds = _checked(c.parse_container_credentials, json.dumps(doc).encode())
    if creds is not None:
        assert (creds.access_key, creds.secret_key, creds.session_token) == (
            doc["AccessKeyId"], secret, doc["Token"])


@settings(max_examples=300, deadline=None)
@given(word, word, word, stamp, st.sampled_from(["AssumeRole", "AssumeRoleWithWebIdentity"]))
def test_sts_xml_round_trips(key, secret, token, exp, action):
    xml = ("<%sResponse><%sResult><Credentials><AccessKeyId>%s</AccessKeyId>"
           "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>"
           "<Expiration>%s</Expiration></Credentials></%sResult></%sResponse>"
           % (action, action, escape(key), escape(secret), escape(token), exp, action, action))
    creds = _checked(c.parse_sts_credentials, xml.encode(), action)
    if "<" not in key + secret + token:  # an element's text never holds a raw "<"
        assert (creds.access_key, creds.secret_key, creds.session_token) == (key, secret, token)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_timestamp_text_is_micros_or_none(text):
    got = wire.parse_timestamp_text(text)
    assert got is None or isinstance(got, int)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["[default]", "[profile dev]", "[services s]", "region = us-west-2",
                     "aws_secret_access_key = " + SECRET, "sagemaker_edge =",
                     "  endpoint_url = http://h", "  bad line " + SECRET, "=", "["]),
    st.text(max_size=20)), max_size=8))
def test_read_ini_gives_a_dict_or_a_typed_error(lines):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write("\n".join(lines))
        try:
            ini = awsconfig.read_ini(path)
        except awsconfig.AwsConfigError as exc:
            assert SECRET not in str(exc) and exc.__context__ is None
            return
        assert isinstance(ini, dict)
        shared = awsconfig.SharedConfig({"AWS_CONFIG_FILE": path, "HOME": d})
        try:
            shared.region()
            shared.endpoint_url("sagemaker-edge")
        except awsconfig.AwsConfigError as exc:
            assert SECRET not in str(exc)
