"""Property tests of edgecore.s3url and edgecore.agentstate's parsers (CPython, hypothesis).

Cross-checks: the S3Uri pattern with Python's re, key encoding with urllib.parse.quote,
S3 error bodies built with xml.sax.saxutils.escape; garbage never raises anything but
the documented errors.
"""

import json
import re
import urllib.parse
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore import agent, agentstate, s3url

S3URI = re.compile(r"^s3://([^/]+)/?(.*)$", re.DOTALL)
bucket_st = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#%\\"),
    min_size=1,
    max_size=63,
)
key_st = st.text(
    st.characters(min_codepoint=32, blacklist_categories=("Cs",), blacklist_characters="\x7f"),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300)
@given(bucket_st, key_st)
def test_parse_agrees_with_the_model_pattern(bucket, key):
    url = "s3://%s/%s" % (bucket, key)
    m = S3URI.match(url)
    assert s3url.parse(url) == (m.group(1), m.group(2)) == (bucket, key)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_parse_garbage_raises_value_error_only(text):
    for candidate in (text, "s3://" + text):
        try:
            bucket, key = s3url.parse(candidate)
        except ValueError as exc:
            assert str(exc).startswith("S3Url:")
        else:
            assert bucket and key and candidate == "s3://%s/%s" % (bucket, key)


dns_bucket_st = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")


def has_dot_segment(key):
    return any(seg in (".", "..") for seg in key.split("/"))


# object_url refuses keys with '.'/'..' segments (HTTP clients rewrite them): they have
# their own property below.
fetchable_key_st = key_st.filter(lambda k: not has_dot_segment(k))
dot_key_st = st.lists(
    st.sampled_from([".", "..", "a", "b.", "..c"]), min_size=1, max_size=5
).map("/".join).filter(has_dot_segment)


@settings(max_examples=300)
@given(dns_bucket_st, fetchable_key_st, st.sampled_from(["auto", "path", "virtual"]))
def test_object_url_encodes_the_key_like_urllib(bucket, key, style):
    url = s3url.object_url(bucket, key, "eu-west-1", style=style)
    encoded = urllib.parse.quote(key, safe="/~")
    if style == "path":
        assert url == "https://s3.eu-west-1.amazonaws.com/%s/%s" % (bucket, encoded)
    else:
        assert url == "https://%s.s3.eu-west-1.amazonaws.com/%s" % (bucket, encoded)
    path = urllib.parse.urlsplit(url).path
    assert urllib.parse.unquote(path).endswith("/" + key)
    local = s3url.object_url(bucket, key, "r", "http://127.0.0.1:9000")
    assert local == "http://127.0.0.1:9000/%s/%s" % (bucket, encoded)


@settings(max_examples=200)
@given(dns_bucket_st, dot_key_st, st.sampled_from(["auto", "path", "virtual"]))
def test_object_url_refuses_every_key_with_a_dot_segment(bucket, key, style):
    for endpoint in (None, "http://127.0.0.1:9000"):
        try:
            s3url.object_url(bucket, key, "eu-west-1", endpoint, style=style)
        except ValueError as exc:
            assert "'.' or '..' path segment" in str(exc)
        else:
            raise AssertionError("accepted %r" % (key,))


text_st = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)


@settings(max_examples=300)
@given(text_st, text_st, st.booleans())
def test_parse_error_reads_what_xml_escape_wrote(code, message, prolog):
    body = "<Error><Code>%s</Code><Message>%s</Message><RequestId>x</RequestId></Error>" % (
        escape(code),
        escape(message),
    )
    if prolog:
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    got = s3url.parse_error(body.encode("utf-8"))
    assert got == (code.strip()[:100], message.strip()[:500])


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_parse_error_never_raises(data):
    code, message = s3url.parse_error(b"<Error><Code>" + data)
    assert code is None or isinstance(code, str)


json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(agentstate.new_state())), json_st, max_size=6))
def test_state_validation_raises_only_state_error(overrides):
    doc = agentstate.new_state()
    doc.update(overrides)
    try:
        state = agentstate.loads(json.dumps(doc).encode())
    except agentstate.StateError as exc:
        assert str(exc).startswith("load agent state: invalid ")
    else:
        assert agentstate.loads(agentstate.dumps(state)) == state
        # Whatever loads, the agent can work with it.
        agent.heartbeat_params(state, "1", "d", "f", [], 10)
        for _ in range(20):
            action = agent.next_action(state, 10)
            if action is None:
                break
            agent.apply(state, action, agent.failed("x"), 10)


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_state_loads_garbage(data):
    try:
        agentstate.loads(data)
    except agentstate.StateError:
        pass
