"""SigV4 verification of incoming requests, with edgecore's own signer (no botocore).

The server rebuilds the canonical request from what it received (method, raw path and
query, the headers named in ``SignedHeaders``, a SHA-256 of the body), derives the
signing key from the stored secret with ``edgecore.sigv4`` and compares signatures with
``hmac.compare_digest``. Rejections carry the codes, statuses and wording AWS uses; the
skew errors ("Signature expired: ... is now earlier than ...") are what edgecore's agent
recognises to correct its clock from the ``Date`` header. The test suite checks this
verifier against botocore's signer (tests/test_fleet_sigcheck.py) and can cross-check
every request of the end-to-end tests with botocore (``extra_check`` of the app).
"""

import hashlib
import hmac

from edgecore import amztime, sigv4

from .errors import ApiError

SERVICE = "sagemaker"
ALGORITHM = sigv4.ALGORITHM
MAX_SKEW = 900  # seconds either way, as AWS's SigV4 allows

MSG_MISSING = "Missing Authentication Token"
MSG_BAD_TOKEN = "The security token included in the request is invalid."
MSG_EXPIRED_TOKEN = "The security token included in the request is expired"
MSG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class AuthError(ApiError):
    """A rejected request: HTTP status, AWS error code and message."""


class KeyRecord:
    """What the verifier needs to know about an access key. role: "device" (scoped to
    ``device``) or "admin" (the control plane)."""

    def __init__(self, access_key, secret_key, session_token=None, expiration=None,
                 device=None, role="device"):
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.expiration = expiration  # epoch seconds or None
        self.device = device
        self.role = role
        self.device_row = None  # the device's stored row, when the store looked it up

    def __repr__(self):
        return "KeyRecord(%r, secret=<redacted>, device=%r, role=%r)" % (
            self.access_key, self.device, self.role)


class Verified:
    """A request that passed: the key that signed it, its scope and signature."""

    def __init__(self, key, region, amz_date, signature):
        self.key = key
        self.region = region
        self.amz_date = amz_date
        self.signature = signature


def parse_amz_date(value):
    """'20240102T030405Z' -> epoch seconds, or None when malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z" or not (
            value[:8] + value[9:15]).isdigit() or not value.isascii():
        return None
    try:
        return amztime.parse_iso8601("%s-%s-%sT%s:%s:%sZ" % (
            value[:4], value[4:6], value[6:8], value[9:11], value[11:13], value[13:15]))
    except ValueError:
        return None


def _parse_authorization(value):
    """'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...' -> dict."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(400, "IncompleteSignatureException",
                        "Unsupported AWS 'algorithm': '%s'" % algorithm[:64])
    fields = {}
    for part in rest.replace(",", " ").split():
        name, sep, val = part.partition("=")
        if sep:
            fields[name] = val
    missing = [n for n in ("Credential", "Signature", "SignedHeaders") if n not in fields]
    if missing:
        raise AuthError(400, "IncompleteSignatureException", " ".join(
            "Authorization header requires '%s' parameter." % n for n in missing))
    return fields


def header(headers, name):
    """All values of a header (case-insensitive), joined as HTTP allows, or None."""
    values = [v for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


def canonical_request(method, raw_path, headers, signed, body_sha256):
    """The canonical request of a received request (``edgecore.sigv4``'s pieces): the
    path is normalized and encoded once more, as for every service but S3; the signed
    headers are those the client listed, trimmed and joined as AWS does."""
    path, _, query = raw_path.partition("?")
    lines = [method.upper(), sigv4.canonical_uri(path, SERVICE), sigv4.canonical_query(query)]
    for name in signed:
        values = [" ".join(v.split()) for k, v in headers if k.lower() == name]
        lines.append(name + ":" + ",".join(values))
    lines += ["", ";".join(signed), body_sha256]
    return "\n".join(lines)


def verify(method, raw_path, headers, body, lookup_key, now, max_skew=MAX_SKEW):
    """Check one request's SigV4 signature; return Verified or raise AuthError.

    raw_path: the request target as received (path plus optional ?query), still
    percent-encoded. headers: list of (name, value) pairs as received. lookup_key:
    callable(access_key_id) -> KeyRecord or None. now: server epoch seconds.
    """
    auth = header(headers, "authorization")
    if auth is None:
        raise AuthError(403, "MissingAuthenticationTokenException", MSG_MISSING)
    fields = _parse_authorization(auth)
    amz_date = header(headers, "x-amz-date")
    if amz_date is None:
        raise AuthError(400, "IncompleteSignatureException",
                        "Authorization header requires existence of either a 'X-Amz-Date' or "
                        "a 'Date' header.")
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise AuthError(400, "IncompleteSignatureException",
                        "Date must be in ISO-8601 'basic format'. Got '%s'. See "
                        "http://en.wikipedia.org/wiki/ISO_8601" % amz_date[:40])
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthError(400, "IncompleteSignatureException",
                        "Credential should have at least 5 slash-separated parts and end in "
                        "'aws4_request', got '%s'." % "/".join(scope[1:])[:200])
    akid, scope_date, region, service = scope[0], scope[1], scope[2], scope[3]

    key = lookup_key(akid)
    if key is None:
        raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    sent_token = header(headers, "x-amz-security-token")
    if key.session_token is None:
        if sent_token is not None:
            raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    elif sent_token is None or not hmac.compare_digest(
            sent_token.encode("utf-8"), key.session_token.encode("utf-8")):
        raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    if key.expiration is not None and now >= key.expiration:
        raise AuthError(403, "ExpiredTokenException", MSG_EXPIRED_TOKEN)

    if service != SERVICE:
        raise AuthError(403, "InvalidSignatureException",
                        "Credential should be scoped to correct service: '%s'. " % SERVICE)
    if scope_date != amz_date[:8]:
        raise AuthError(403, "InvalidSignatureException",
                        "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                        "version of date from HTTP: '%s' != '%s', from '%s'."
                        % (scope_date[:16], amz_date[:8], amz_date))
    check_skew(request_time, now, max_skew)

    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed:
        raise AuthError(403, "InvalidSignatureException",
                        "'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                        "Authorization.")
    body_sha = hashlib.sha256(body).hexdigest()
    content_sha = header(headers, "x-amz-content-sha256")
    if content_sha is not None and not hmac.compare_digest(
            content_sha.encode("utf-8", "replace"), body_sha.encode("ascii")):
        raise AuthError(400, "InvalidSignatureException",
                        "The provided 'x-amz-content-sha256' header does not match what was "
                        "computed.")
    canonical = canonical_request(method, raw_path, headers, signed, body_sha)
    sts = sigv4.string_to_sign(canonical, amz_date, region, SERVICE)
    expected = sigv4.signature(sigv4.signing_key(key.secret_key, scope_date, region, SERVICE),
                               sts)
    sent = fields["Signature"]
    if not hmac.compare_digest(expected.encode("ascii"), sent.encode("utf-8", "replace")):
        # AWS echoes the canonical request; the session token in it is a secret.
        shown = "\n".join("x-amz-security-token:<redacted>"
                          if line.startswith("x-amz-security-token:") else line
                          for line in canonical.split("\n"))
        raise AuthError(403, "InvalidSignatureException",
                        "%s\n\nThe Canonical String for this request should have been\n'%s'\n\n"
                        "The String-to-Sign should have been\n'%s'\n"
                        % (MSG_MISMATCH, shown, sts))
    return Verified(key, region, amz_date, expected)


def check_skew(request_time, now, max_skew):
    now = int(now)
    minutes = max_skew // 60
    if request_time < now - max_skew:
        raise AuthError(403, "InvalidSignatureException",
                        "Signature expired: %s is now earlier than %s (%s - %d min.)" % (
                            amztime.amz_date(request_time), amztime.amz_date(now - max_skew),
                            amztime.amz_date(now), minutes))
    if request_time > now + max_skew:
        raise AuthError(403, "InvalidSignatureException",
                        "Signature not yet current: %s is still later than %s (%s + %d min.)" % (
                            amztime.amz_date(request_time), amztime.amz_date(now + max_skew),
                            amztime.amz_date(now), minutes))
