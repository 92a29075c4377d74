"""S3 locations: parse ``s3://bucket/key``, build object URLs, read S3 XML error bodies.

- ``parse(url) -> (bucket, key)`` follows the model's S3Uri pattern ``^s3://([^/]+)/?(.*)$``
  (max 1024 characters) and additionally requires a non-empty key (a model is an object).
- ``object_location(bucket, key, region, endpoint_url=None, style="auto", fips=False,
  dualstack=False) -> (url, signing_region)`` builds the percent-encoded URL to GET as
  botocore's S3 endpoint rules do (``edgecore.endpoints``): every partition's host
  (``amazonaws.com.cn``, the ISO partitions ...), FIPS and dual-stack hosts, the global
  ``s3.amazonaws.com`` for ``us-east-1``, FIPS pseudo regions (``us-west-2-fips``).
  ``auto`` and ``virtual`` are virtual-hosted (``https://<bucket>.s3.<region>...``) when
  the bucket is a lower-case DNS label without dots, else path style (a dotted bucket
  would break the wildcard TLS certificate): botocore falls back the same way. With a
  custom ``endpoint_url`` (``s3_endpoint_url``, e.g. a local S3 stand-in) its scheme,
  host, port and path are used, path style unless ``style="virtual"`` (then as
  botocore: virtual-hosted unless the host is an IP address; dotted buckets only over
  http), and the FIPS / dual-stack flags are ignored (botocore ignores them too).
  ``object_url(...)`` is the URL alone.
- ``parse_error(body) -> (code, message)`` reads ``<Error><Code>..</Code><Message>..</Message>``
  with bounded string search (MicroPython has no xml module).
"""

from edgecore import endpoints, sigv4
from edgecore.errors import short_repr
from edgecore.xmltext import between, unescape

MAX_URL = 1024
MAX_ERROR_BODY = 16384
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"


def parse(url):
    """``s3://bucket/key`` -> (bucket, key). Raises ValueError naming the expected form."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(
            "S3Url: expected s3://bucket/key, got %r"
            % (url if isinstance(url, str) and len(url) <= 80 else type(url).__name__,)
        )
    if len(url) > MAX_URL:
        raise ValueError("S3Url: longer than %d characters" % MAX_URL)
    rest = url[5:]
    i = rest.find("/")
    bucket = rest if i < 0 else rest[:i]
    key = "" if i < 0 else rest[i + 1 :]
    if not bucket:
        raise ValueError("S3Url: expected s3://bucket/key, the bucket is empty in %r" % (url,))
    if not key:
        raise ValueError("S3Url: expected s3://bucket/key, the object key is empty in %r" % (url,))
    for c in bucket:
        if ord(c) < 33 or ord(c) > 126 or c in "?#%\\":
            raise ValueError(
                "S3Url: bucket %r has a character not allowed in a bucket name" % (bucket,)
            )
    for c in key:
        if ord(c) < 32 or ord(c) == 127:
            raise ValueError("S3Url: the object key has a control character")
    return bucket, key


def dns_compatible(bucket, allow_dots=False):
    """True for a bucket botocore would put in a host name: 3-63 characters, lower-case
    letters, digits and inner hyphens per label, not an IPv4 address; dots (several
    labels) only with ``allow_dots`` (botocore's ``isVirtualHostableS3Bucket``)."""
    if not 3 <= len(bucket) <= 63 or _is_ipv4(bucket):
        return False
    for label in bucket.split(".") if allow_dots else (bucket,):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        for c in label:
            if c not in _LOWER and c not in _DIGITS and c != "-":
                return False
    return True


def _is_ipv4(host):
    # botocore's IPV4_PAT: four dot-separated runs of 1-3 digits.
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not 1 <= len(part) <= 3:
            return False
        for c in part:
            if c not in _DIGITS:
                return False
    return True


def _is_ip(authority):
    if authority.startswith("["):
        return True
    i = authority.rfind(":")
    return _is_ipv4(authority if i < 0 else authority[:i])


def _split_endpoint(endpoint_url):
    if not isinstance(endpoint_url, str) or "://" not in endpoint_url:
        raise ValueError(
            "s3_endpoint_url: expected http(s)://host[:port], got %r" % (endpoint_url,)
        )
    scheme, rest = endpoint_url.split("://", 1)
    if scheme not in ("http", "https"):
        raise ValueError("s3_endpoint_url: expected an http or https URL, got %r" % (endpoint_url,))
    rest = rest.rstrip("/")
    i = rest.find("/")
    base = ""
    if i >= 0:
        base = rest[i:]
        rest = rest[:i]
    if not rest or "?" in rest or "#" in rest or "@" in rest:
        raise ValueError(
            "s3_endpoint_url: expected http(s)://host[:port], got %r" % (endpoint_url,)
        )
    return scheme, rest, base


def _check_key(key):
    for segment in key.split("/"):
        if segment in (".", ".."):
            # HTTP clients resolve dot segments before sending, so the request would reach
            # another key than the one signed (and checked): refuse rather than mis-fetch.
            raise ValueError(
                "S3Url: object key %s has a '.' or '..' path segment, which HTTP clients "
                "rewrite; it cannot be fetched with a signed URL" % short_repr(key)
            )


def object_location(bucket, key, region, endpoint_url=None, style="auto", fips=False,
                    dualstack=False):
    """``(url, signing_region)`` of an object, key percent-encoded (``/`` kept); see above.

    Raises ValueError naming the field (``s3_addressing_style``, ``s3_endpoint_url``,
    ``region``, ``S3Url``) and ``endpoints.EndpointResolutionError`` where botocore has
    no endpoint (FIPS in ``aws-cn``).
    """
    if style not in ("auto", "path", "virtual"):
        raise ValueError("s3_addressing_style: expected auto, path or virtual, got %r" % (style,))
    _check_key(key)
    path = "/" + sigv4.quote(key, "/~")
    if endpoint_url:
        scheme, host, base = _split_endpoint(endpoint_url)
        if style == "virtual" and (
            not _is_ip(host) if dns_compatible(bucket)
            else scheme == "http" and dns_compatible(bucket, allow_dots=True)
        ):
            return "%s://%s.%s%s%s" % (scheme, bucket, host, base, path), region
        return "%s://%s%s/%s%s" % (scheme, host, base, sigv4.quote(bucket, ""), path), region
    if not region:
        raise ValueError("region: required to build an S3 URL without s3_endpoint_url")
    region, pseudo_fips = endpoints.normalize_region(region)
    if style != "path" and dns_compatible(bucket):
        url, signing = endpoints.resolve("s3", region, fips or pseudo_fips, dualstack, bucket)
    else:
        url, signing = endpoints.resolve(
            "s3-path", region, fips or pseudo_fips, dualstack, sigv4.quote(bucket, ""))
    return url + path, signing


def object_url(bucket, key, region, endpoint_url=None, style="auto", fips=False,
               dualstack=False):
    """The URL of ``object_location`` alone."""
    return object_location(bucket, key, region, endpoint_url, style, fips, dualstack)[0]


def parse_error(body):
    """(code, message) from an S3 XML error body; (None, None) when it has none.

    Only the first MAX_ERROR_BODY bytes are looked at; the message is cut to 500 chars.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body[:MAX_ERROR_BODY]).decode("utf-8", "replace")
    elif not isinstance(body, str):
        return None, None
    body = body[:MAX_ERROR_BODY]
    limit = len(body)
    i = body.find("<Error>")
    if i < 0:
        return None, None
    body = body[i:]
    limit = len(body)
    code = between(body, "<Code>", "</Code>", limit)
    message = between(body, "<Message>", "</Message>", limit)
    if code is not None:
        code = unescape(code.strip())[:100]
    if message is not None:
        message = unescape(message.strip())[:500]
    return code, message
