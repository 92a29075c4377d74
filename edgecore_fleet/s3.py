"""Artifacts in any S3-compatible store (AWS S3, MinIO, Ceph, moto), signed with
edgecore's own SigV4 signer over ``requests`` (one pooled session per client).

The server reads an artifact once, when it is registered, to compute its SHA1 (streamed,
constant memory); admin helpers upload artifacts with the metadata the agent reports
(``x-amz-meta-model-name`` / ``-version``).
"""

import hashlib
import threading
import time

import requests

from edgecore import s3url, sigv4

CHUNK = 1 << 20


class S3Error(Exception):
    """An S3 request failed: status, S3 error code and message."""

    def __init__(self, status, code, message):
        Exception.__init__(self, "S3 %s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message


class S3Client:
    """Signed S3 requests with one set of credentials. endpoint_url None means AWS."""

    def __init__(self, region, access_key, secret_key, session_token=None, endpoint_url=None,
                 style="auto", timeout=60, verify=True):
        self.region = region
        self.endpoint_url = endpoint_url
        self.style = style
        self.timeout = timeout
        self.verify = verify
        self._creds = (access_key, secret_key, session_token)
        self._local = threading.local()

    def __repr__(self):
        return "S3Client(%r, endpoint_url=%r, access_key=%r, secret=<redacted>)" % (
            self.region, self.endpoint_url, self._creds[0])

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _request(self, method, bucket, key, body=b"", headers=None, stream=False):
        url = s3url.object_url(bucket, key, self.region, self.endpoint_url, self.style)
        headers = dict(headers or {})
        headers["X-Amz-Content-Sha256"] = sigv4.payload_sha256(body)
        signed = sigv4.sign_request(
            method, url, headers, body, access_key=self._creds[0], secret_key=self._creds[1],
            session_token=self._creds[2], region=self.region, service="s3",
            timestamp=int(time.time()))
        resp = self._session().request(method, url, headers=signed, data=body or None,
                                       stream=stream, timeout=self.timeout, verify=self.verify)
        if resp.status_code >= 300:
            text = resp.content[:s3url.MAX_ERROR_BODY].decode("utf-8", "replace")
            code, message = s3url.parse_error(text)
            resp.close()
            raise S3Error(resp.status_code, code or str(resp.status_code), message or "")
        return resp

    def sha1(self, s3_url):
        """(hex SHA1, size) of the object at ``s3://bucket/key``, streamed."""
        bucket, key = s3url.parse(s3_url)
        resp = self._request("GET", bucket, key, stream=True)
        h, size = hashlib.sha1(), 0
        try:
            for chunk in resp.iter_content(CHUNK):
                h.update(chunk)
                size += len(chunk)
        finally:
            resp.close()
        return h.hexdigest(), size

    def put(self, bucket, key, data, metadata=None):
        headers = dict(("x-amz-meta-%s" % k, v) for k, v in (metadata or {}).items())
        self._request("PUT", bucket, key, body=data, headers=headers).close()

    def delete(self, bucket, key):
        self._request("DELETE", bucket, key).close()
