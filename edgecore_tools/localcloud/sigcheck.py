"""SigV4 verification for the local Edge Manager endpoint, done with botocore's signer.

The point of the local cloud is to check edgecore's signer against an implementation
other than edgecore's, so every request is re-signed here with ``botocore.auth.SigV4Auth``
at the request's own ``X-Amz-Date`` and the two signatures are compared in constant time.
Rejections use the codes, statuses and wording AWS uses, so a client sees the same
errors it would see from the real service.
"""

import calendar
import hashlib
import hmac
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

SERVICE = "sagemaker"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 300  # seconds; AWS allows 5 minutes either way for this service

MSG_MISSING = "Missing Authentication Token"
MSG_BAD_TOKEN = "The security token included in the request is invalid."
MSG_EXPIRED_TOKEN = "The security token included in the request is expired"
MSG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class AuthError(Exception):
    """A rejected request: HTTP status, AWS error code and message."""

    def __init__(self, status, code, message):
        Exception.__init__(self, "%s: %s" % (code, message))
        self.status = status
        self.code = code
        self.message = message


class KeyRecord:
    """What the verifier needs to know about an access key."""

    def __init__(self, access_key, secret_key, session_token=None, expiration=None, device=None):
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.expiration = expiration  # epoch seconds or None
        self.device = device

    def __repr__(self):
        return "KeyRecord(%r, secret=<redacted>, device=%r)" % (self.access_key, self.device)


class Verified:
    """A request that passed: the key that signed it and the scope it used."""

    def __init__(self, key, region, amz_date):
        self.key = key
        self.region = region
        self.amz_date = amz_date


class _SignAtRequestTime(SigV4Auth):
    """botocore's SigV4 signer, pinned to the request's time and its exact header list.

    ``add_auth`` stamps ``context['timestamp']`` with the current clock before calling
    ``_modify_request_before_signing``; re-stamping it there makes every later step
    (scope, signing key, string to sign) use the request's X-Amz-Date. ``headers_to_sign``
    drops botocore's client-side blacklist (user-agent etc.): the request we rebuild holds
    only the headers the client listed in SignedHeaders, and all of them must count.
    """

    def __init__(self, credentials, region, amz_date):
        SigV4Auth.__init__(self, credentials, SERVICE, region)
        self._amz_date = amz_date

    def _modify_request_before_signing(self, request):
        request.context["timestamp"] = self._amz_date
        SigV4Auth._modify_request_before_signing(self, request)

    def headers_to_sign(self, request):
        header_map = HTTPHeaders()
        for name, value in request.headers.items():
            header_map[name.lower()] = value
        return header_map


def format_amz_date(epoch):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def parse_amz_date(value):
    """'20240102T030405Z' -> epoch seconds, or None when malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def _parse_authorization(value):
    """'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...' -> dict."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(
            400, "IncompleteSignatureException", "Unsupported AWS 'algorithm': '%s'" % algorithm
        )
    fields = {}
    for part in rest.replace(",", " ").split():
        name, sep, val = part.partition("=")
        if sep:
            fields[name] = val
    missing = [n for n in ("Credential", "Signature", "SignedHeaders") if n not in fields]
    if missing:
        raise AuthError(
            400,
            "IncompleteSignatureException",
            " ".join("Authorization header requires '%s' parameter." % n for n in missing),
        )
    return fields


def _header(headers, name):
    """All values of a header (case-insensitive), joined as HTTP allows, or None."""
    values = [v for k, v in headers if k.lower() == name]
    return ",".join(values) if values else None


def verify(method, raw_path, headers, body, lookup_key, now=None, max_skew=MAX_SKEW):
    """Check one request's SigV4 signature; return Verified or raise AuthError.

    raw_path: the request target as received (path plus optional ?query), still
    percent-encoded. headers: list of (name, value) pairs as received. lookup_key:
    callable(access_key_id) -> KeyRecord or None. now: server epoch seconds.
    """
    now = time.time() if now is None else now
    auth = _header(headers, "authorization")
    if auth is None:
        raise AuthError(403, "MissingAuthenticationTokenException", MSG_MISSING)
    fields = _parse_authorization(auth)
    amz_date = _header(headers, "x-amz-date")
    if amz_date is None:
        raise AuthError(
            400,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            "header.",
        )
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise AuthError(
            400,
            "IncompleteSignatureException",
            "Date must be in ISO-8601 'basic format'. Got '%s'. See "
            "http://en.wikipedia.org/wiki/ISO_8601" % amz_date,
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthError(
            400,
            "IncompleteSignatureException",
            "Credential should have at least 5 slash-separated parts and end in "
            "'aws4_request', got '%s'." % "/".join(scope[1:]),
        )
    akid, scope_date, region, service = scope[0], scope[1], scope[2], scope[3]

    key = lookup_key(akid)
    if key is None:
        raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    sent_token = _header(headers, "x-amz-security-token")
    if key.session_token is None:
        if sent_token is not None:
            raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    elif sent_token is None or not hmac.compare_digest(
        sent_token.encode("utf-8"), key.session_token.encode("utf-8")
    ):
        raise AuthError(403, "UnrecognizedClientException", MSG_BAD_TOKEN)
    if key.expiration is not None and now >= key.expiration:
        raise AuthError(403, "ExpiredTokenException", MSG_EXPIRED_TOKEN)

    if service != SERVICE:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "Credential should be scoped to correct service: '%s'. " % SERVICE,
        )
    if scope_date != amz_date[:8]:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            "from HTTP: '%s' != '%s', from '%s'." % (scope_date, amz_date[:8], amz_date),
        )
    _check_skew(request_time, now, max_skew)

    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    content_sha = _header(headers, "x-amz-content-sha256")
    if content_sha is not None and not hmac.compare_digest(
        content_sha.encode("utf-8"), hashlib.sha256(body).hexdigest().encode("ascii")
    ):
        # botocore trusts this header in place of hashing the body; the server must not.
        raise AuthError(
            400,
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )

    expected, canonical, string_to_sign = _botocore_signature(
        method, raw_path, headers, body, signed, key, region, amz_date
    )
    sent = fields["Signature"].encode("ascii", "replace")
    if not hmac.compare_digest(expected.encode("ascii"), sent):
        raise AuthError(
            403,
            "InvalidSignatureException",
            "%s\n\nThe Canonical String for this request should have been\n'%s'\n\n"
            "The String-to-Sign should have been\n'%s'\n"
            % (MSG_MISMATCH, canonical, string_to_sign),
        )
    return Verified(key, region, amz_date)


def _check_skew(request_time, now, max_skew):
    now = int(now)
    if request_time < now - max_skew:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "Signature expired: %s is now earlier than %s (%s - %d min.)"
            % (
                format_amz_date(request_time),
                format_amz_date(now - max_skew),
                format_amz_date(now),
                max_skew // 60,
            ),
        )
    if request_time > now + max_skew:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "Signature not yet current: %s is still later than %s (%s + %d min.)"
            % (
                format_amz_date(request_time),
                format_amz_date(now + max_skew),
                format_amz_date(now),
                max_skew // 60,
            ),
        )


def _botocore_signature(method, raw_path, headers, body, signed, key, region, amz_date):
    """Rebuild the request from what was received and let botocore sign it."""
    host = _header(headers, "host") or "localhost"
    request = AWSRequest(method=method, url="http://%s%s" % (host, raw_path), data=body)
    for name, value in headers:
        if name.lower() in signed:
            request.headers[name] = value
    token = key.session_token if "x-amz-security-token" in signed else None
    credentials = Credentials(key.access_key, key.secret_key, token)
    signer = _SignAtRequestTime(credentials, region, amz_date)
    signer.add_auth(request)
    got = request.headers["Authorization"].rpartition("Signature=")[2]
    # Recompute the intermediates (for the error message) without the header just added.
    del request.headers["Authorization"]
    canonical = signer.canonical_request(request)
    return got, canonical, signer.string_to_sign(request, canonical)
