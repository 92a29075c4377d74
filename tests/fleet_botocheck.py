"""Test-only: a second SigV4 check with botocore's signer, independent of edgecore's.

``verify(method, raw_path, headers, body, key, region)`` re-signs the received request
with ``botocore.auth.SigV4Auth`` at its own ``X-Amz-Date`` over exactly the headers it
listed in ``SignedHeaders``, and raises the fleet server's AuthError when botocore's
signature differs. The local cloud of the test suite runs with it as ``cross_check``
(conftest.py), so every end-to-end request is verified by two implementations; the
server itself never imports botocore.
"""

import hmac

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from edgecore_fleet.sigcheck import MSG_MISMATCH, SERVICE, AuthError, header


class _SignAtRequestTime(SigV4Auth):
    """botocore's signer pinned to the request's X-Amz-Date and its exact header list
    (botocore's client-side blacklist of headers dropped: all listed ones count)."""

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


def botocore_signature(method, raw_path, headers, body, key, region):
    auth = header(headers, "authorization")
    signed = auth.partition("SignedHeaders=")[2].partition(",")[0].strip().split(";")
    amz_date = header(headers, "x-amz-date")
    host = header(headers, "host") or "localhost"
    request = AWSRequest(method=method, url="http://%s%s" % (host, raw_path), data=body)
    for name, value in headers:
        if name.lower() in signed:
            request.headers[name] = value
    token = key.session_token if "x-amz-security-token" in signed else None
    signer = _SignAtRequestTime(Credentials(key.access_key, key.secret_key, token), region,
                                amz_date)
    signer.add_auth(request)
    return request.headers["Authorization"].rpartition("Signature=")[2]


def verify(method, raw_path, headers, body, key, region):
    expected = botocore_signature(method, raw_path, headers, body, key, region)
    sent = (header(headers, "authorization") or "").rpartition("Signature=")[2].strip()
    if not hmac.compare_digest(expected.encode("ascii"), sent.encode("utf-8", "replace")):
        raise AuthError(403, "InvalidSignatureException",
                        MSG_MISMATCH + " (botocore cross-check)")
