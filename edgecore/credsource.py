"""The pure parts of refreshable AWS credentials: when to refresh, and reading the answers.

Every runtime shares these (the HTTP exchanges, files and environment are the ports'
business; a MicroPython port's IoT provider can reuse all of this). Kept apart from
``edgecore.credentials`` so ``import edgecore`` stays small on a microcontroller.

- ``refresh_state(expiration, now, lifetime)``: botocore's refresh windows -- an
  *advisory* refresh 15 minutes before expiry (a failure keeps the credentials) and a
  *mandatory* one 10 minutes before (a failure is an error) -- scaled down for
  credentials that live less than 30 minutes (at most half and a third of their
  lifetime), so short-lived ones are not fetched again on every call;
- ``server_skew(date_header, now)``: how far the device clock is from the server's (the
  ``Date`` of the answer that minted the credentials), so expiry is judged on the
  server's clock and a device whose clock runs hours ahead still uses fresh credentials;
- parsers of the answers of the AWS IoT credentials provider, the container credentials
  endpoint (ECS, EKS, the AWS IoT Greengrass token exchange service), a
  ``credential_process`` and STS (``AssumeRole``, ``AssumeRoleWithWebIdentity``). They
  raise ``CredentialsParseError`` naming the field and the expected form, never the
  value (it may be a secret).
"""

from edgecore.amztime import parse_http_date, parse_iso8601
from edgecore.credentials import Credentials
from edgecore.errors import EdgecoreError
from edgecore.jsonenc import load_bounded
from edgecore.xmltext import between, unescape

ADVISORY_REFRESH = 15 * 60  # botocore's _DEFAULT_ADVISORY_REFRESH_TIMEOUT
MANDATORY_REFRESH = 10 * 60  # botocore's _DEFAULT_MANDATORY_REFRESH_TIMEOUT
MAX_BODY = 64 * 1024  # any credentials answer is well under 4 KiB
_JSON_DEPTH = 32


class CredentialsParseError(EdgecoreError):
    """A credentials answer is not in its documented form; ``field`` names where."""

    def __init__(self, source, field, detail):
        self.source = source
        self.field = field
        self.detail = detail
        super().__init__("%s: malformed credentials at %s: %s" % (source, field, detail))


# ---- refresh decisions ----------------------------------------------------------------


def refresh_windows(lifetime, advisory=ADVISORY_REFRESH, mandatory=MANDATORY_REFRESH):
    """(advisory, mandatory) seconds before expiry for credentials that lived
    ``lifetime`` seconds when fetched (None: unknown): the given windows (mandatory at
    most advisory), capped at half and a third of the lifetime; see the module doc."""
    mandatory = min(mandatory, advisory)
    if lifetime is not None:
        lifetime = max(lifetime, 0)
        advisory = min(advisory, lifetime / 2)
        mandatory = min(mandatory, lifetime / 3)
    return advisory, mandatory


def refresh_state(expiration, now, lifetime=None, advisory=ADVISORY_REFRESH,
                  mandatory=MANDATORY_REFRESH, extra=0):
    """None (use them), ``"advisory"`` (refresh; keep them if that fails) or
    ``"mandatory"`` (refresh; fail if that fails) for credentials expiring at
    ``expiration`` (None: never) seen at ``now`` (both on one clock). ``extra`` seconds
    widen the advisory window (a random jitter against fleet-wide refresh storms)."""
    if expiration is None:
        return None
    advisory, mandatory = refresh_windows(lifetime, advisory, mandatory)
    remaining = expiration - now
    if remaining <= mandatory:
        return "mandatory"
    if remaining <= advisory + extra:
        return "advisory"
    return None


def server_skew(date_header, now):
    """Seconds to add to ``now`` to get the server's time, from an HTTP ``Date`` value;
    0 when there is none or it cannot be read."""
    if not date_header:
        return 0
    try:
        return parse_http_date(date_header) - int(now)
    except ValueError:
        return 0


# ---- parsers ---------------------------------------------------------------------------


def is_word(value):
    """One word of printable ASCII: what keys and tokens are (a wrapped line or a pasted
    quote would only surface later as a signature mismatch)."""
    return all("!" <= c <= "~" for c in value)


def _load_json(source, body):
    try:
        doc = load_bounded(body, MAX_BODY, _JSON_DEPTH)
    except ValueError as exc:  # the reason names size/depth/UTF-8/syntax, never content
        raise CredentialsParseError(source, "<body>", str(exc)) from None
    if not isinstance(doc, dict):
        raise CredentialsParseError(source, "<body>",
                                    "expected a JSON object, got %s" % _json_type(doc))
    return doc


def _json_type(value):
    if value is None:
        return "nothing"
    return type(value).__name__


def _strings(source, doc, prefix, names, optional=()):
    values = {}
    for name in names:
        value = doc.get(name)
        if value is None and name in optional:
            values[name] = None
            continue
        if not isinstance(value, str) or not value:
            # Only the type is named: the value may be a secret.
            raise CredentialsParseError(source, prefix + name,
                                        "expected a non-empty string, got %s" % _json_type(value))
        values[name] = value
    return values


def _expiration(source, field, stamp):
    try:
        return parse_iso8601(stamp)
    except ValueError:
        # Echo the value only when it cannot be a key that landed in the wrong member.
        shown = (repr(stamp[:40]) if all(c in "0123456789-:.+TZtz " for c in stamp)
                 else "a %d-character string" % len(stamp))
        raise CredentialsParseError(
            source, field,
            "expected an ISO 8601 UTC time like 2024-01-01T00:00:00Z, got %s" % shown) from None


def _build(source, prefix, key, secret, token, expiration, names):
    for name, value in zip(names, (key, secret, token)):
        if value is not None and not is_word(value):
            raise CredentialsParseError(source, prefix + name,
                                        "expected one word of printable ASCII")
    return Credentials(key, secret, token, expiration)


def parse_iot_credentials(body, source="AWS IoT credentials provider"):
    """``{"credentials": {accessKeyId, secretAccessKey, sessionToken, expiration}}``."""
    doc = _load_json(source, body)
    inner = doc.get("credentials")
    if not isinstance(inner, dict):
        raise CredentialsParseError(source, "credentials",
                                    "expected an object, got %s" % _json_type(inner))
    names = ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")
    v = _strings(source, inner, "credentials.", names)
    expiration = _expiration(source, "credentials.expiration", v["expiration"])
    return _build(source, "credentials.", v["accessKeyId"], v["secretAccessKey"],
                  v["sessionToken"], expiration, names)


def parse_container_credentials(body, source="container credentials endpoint"):
    """``{AccessKeyId, SecretAccessKey, Token, Expiration}`` (ECS, EKS, Greengrass TES),
    all required as botocore requires them."""
    doc = _load_json(source, body)
    names = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
    v = _strings(source, doc, "", names)
    expiration = _expiration(source, "Expiration", v["Expiration"])
    return _build(source, "", v["AccessKeyId"], v["SecretAccessKey"], v["Token"], expiration,
                  names)


def parse_process_credentials(stdout, source="credential_process"):
    """A ``credential_process``'s JSON: ``Version`` 1, ``AccessKeyId``,
    ``SecretAccessKey``, optional ``SessionToken`` and ``Expiration`` (without it the
    credentials never expire, as botocore reads it)."""
    doc = _load_json(source, stdout)
    version = doc.get("Version")
    if version != 1 or isinstance(version, bool):
        raise CredentialsParseError(source, "Version", "expected 1 (the only version defined)")
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    v = _strings(source, doc, "", names, optional=("SessionToken", "Expiration"))
    expiration = None
    if v["Expiration"] is not None:
        expiration = _expiration(source, "Expiration", v["Expiration"])
    return _build(source, "", v["AccessKeyId"], v["SecretAccessKey"], v["SessionToken"],
                  expiration, names)


def _text(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        if len(body) > MAX_BODY:
            return None
        try:
            return bytes(body).decode("utf-8")
        except UnicodeError:
            return None
    return body if isinstance(body, str) and len(body) <= MAX_BODY else None


def parse_sts_credentials(body, action, source="STS"):
    """The ``<Credentials>`` of an STS ``<action>Response`` (XML, Query protocol)."""
    text = _text(body)
    if text is None:
        raise CredentialsParseError(source, "<body>",
                                    "expected UTF-8 XML of at most %d bytes" % MAX_BODY)
    limit = len(text)
    start = text.find("<%sResult>" % action)
    block = None if start < 0 else between(text, "<Credentials>", "</Credentials>", limit, start)
    if block is None:
        raise CredentialsParseError(source, action + "Result.Credentials", "missing")
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    v = {}
    for name in names:
        value = between(block, "<%s>" % name, "</%s>" % name, len(block))
        value = unescape(value.strip()) if value is not None else ""
        if not value:
            raise CredentialsParseError(source, "Credentials." + name,
                                        "expected a non-empty element")
        v[name] = value
    expiration = _expiration(source, "Credentials.Expiration", v["Expiration"])
    return _build(source, "Credentials.", v["AccessKeyId"], v["SecretAccessKey"],
                  v["SessionToken"], expiration, names)


def parse_sts_error(body):
    """(code, message) of an STS ``<ErrorResponse>``; (None, None) when it has none."""
    text = _text(body)
    if text is None:
        return None, None
    limit = len(text)
    start = text.find("<Error>")
    if start < 0:
        return None, None
    code = between(text, "<Code>", "</Code>", limit, start)
    message = between(text, "<Message>", "</Message>", limit, start)
    return (None if code is None else unescape(code.strip())[:100],
            None if message is None else unescape(message.strip())[:500])
