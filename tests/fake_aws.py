"""Local stand-ins for the credential endpoints, real HTTP servers on 127.0.0.1 (tests only).

- ``FakeSts``: STS ``AssumeRole`` (the SigV4 signature checked with botocore's signer,
  an implementation other than edgecore's, against the secrets it knows) and
  ``AssumeRoleWithWebIdentity`` (the token checked). Answers STS's XML; the minted keys
  depend only on the role (so botocore and edgecore, given the same configuration, must
  end up with the same keys). ``calls`` records each request's action and parameters.
- ``FakeContainerEndpoint``: the container credentials endpoint -- ECS's, and the token
  exchange service (TES) AWS IoT Greengrass v2 runs for its components: ``GET`` with
  ``Authorization: <token>`` answers ``{AccessKeyId, SecretAccessKey, Token,
  Expiration}`` (``keys``, else those of ``minted(label)``; ``issued`` counts them); a wrong or
  missing token gets 403 as the TES answers.

Both: ``start()`` / ``stop()``, ``url``, ``date_offset`` (seconds added to the ``Date``
header, to play a server whose clock differs from the device's), ``lifetime`` of the
credentials minted, ``fail`` (a list of statuses to answer before succeeding).
"""

import hashlib
import json
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def minted(label):
    """Deterministic role credentials for ``label`` (e.g. a role ARN)."""
    digest = hashlib.sha256(label.encode()).hexdigest().upper()
    return ("ASIA" + digest[:16], "secret/" + digest[16:48] + "+x", "token+" + digest[:40] + "==")


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class _Server:
    handler = None

    def __init__(self):
        self.calls = []
        self.fail = []
        self.lifetime = 3600
        self.date_offset = 0
        self._httpd = None

    def start(self):
        owner = self

        class Handler(self.handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._httpd.server_address[1]

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner = None

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        return formatdate(time.time() + self.server_owner.date_offset, usegmt=True)

    def answer(self, status, body, content_type):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _StsHandler(_Handler):
    def do_POST(self):
        owner = self.server_owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        action = params.get("Action")
        owner.calls.append(dict(params, _signed_by=self._signer(body)))
        if owner.fail:
            return self.error(owner.fail.pop(0), "InternalFailure", "try again")
        if action == "AssumeRole":
            if owner.calls[-1]["_signed_by"] is None:
                return self.error(403, "SignatureDoesNotMatch", "bad signature")
        elif action == "AssumeRoleWithWebIdentity":
            if params.get("WebIdentityToken") != owner.web_token:
                return self.error(400, "InvalidIdentityToken", "token refused")
        else:
            return self.error(400, "InvalidAction", "unknown action")
        key, secret, token = minted(params["RoleArn"])
        xml = (
            '<%sResponse xmlns="%s"><%sResult><Credentials><AccessKeyId>%s</AccessKeyId>'
            "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>"
            "<Expiration>%s</Expiration></Credentials><AssumedRoleUser><Arn>%s</Arn>"
            "<AssumedRoleId>AROA:%s</AssumedRoleId></AssumedRoleUser></%sResult>"
            "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></%sResponse>"
            % (action, STS_NS, action, key, secret, token,
               _iso(time.time() + owner.date_offset + owner.lifetime), params["RoleArn"],
               params.get("RoleSessionName"), action, action))
        self.answer(200, xml, "text/xml")

    def _signer(self, body):
        # Which known access key signed this request, checked with botocore's signer.
        auth = self.headers.get("Authorization") or ""
        if "Credential=" not in auth:
            return None
        access_key, date, region, service = auth.split("Credential=")[1].split(",")[0].split(
            "/")[:4]
        secret, token = self.server_owner.secrets.get(access_key, (None, None))
        if secret is None:
            return None
        # A server checks the headers the client says it signed (HTTP clients add others).
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        headers = {k: v for k, v in self.headers.items() if k.lower() in signed}
        request = AWSRequest("POST", "%s%s" % (self.server_owner.url, self.path), headers, body)
        request.context["timestamp"] = self.headers.get("X-Amz-Date")
        signer = botocore.auth.SigV4Auth(BotoCredentials(access_key, secret, token), service,
                                         region)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        return access_key if auth.endswith("Signature=" + expected) else None

    def error(self, status, code, message):
        xml = ('<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code>'
               "<Message>%s</Message></Error><RequestId>r-2</RequestId></ErrorResponse>"
               % (STS_NS, code, message))
        self.answer(status, xml, "text/xml")


class FakeSts(_Server):
    handler = _StsHandler

    def __init__(self, secrets=None, web_token="web-identity-token"):
        super().__init__()
        self.secrets = dict(secrets or {})  # access key -> (secret, session token or None)
        self.web_token = web_token


class _ContainerHandler(_Handler):
    def do_GET(self):
        owner = self.server_owner
        auth = self.headers.get("Authorization")
        owner.calls.append({"path": self.path, "authorization": auth})
        if owner.fail:
            return self.answer(owner.fail.pop(0), json.dumps({"message": "try again"}),
                               "application/json")
        if owner.token is not None and auth != owner.token:
            return self.answer(403, json.dumps({"message": "Invalid authorization token"}),
                               "application/json")
        owner.issued += 1
        key, secret, token = owner.keys or minted(owner.label)
        doc = {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
               "Expiration": _iso(time.time() + owner.date_offset + owner.lifetime)}
        self.answer(200, json.dumps(doc), "application/json")


class FakeContainerEndpoint(_Server):
    handler = _ContainerHandler
    path = "/2016-11-01/credentialprovider/"  # the Greengrass token exchange service's

    def __init__(self, token="tes-auth-token", label="container", keys=None):
        super().__init__()
        self.token = token
        self.label = label  # the keys handed out: ``keys`` (a 3-tuple) or minted(label)
        self.keys = keys
        self.issued = 0

    @property
    def credentials_url(self):
        return self.url + self.path
