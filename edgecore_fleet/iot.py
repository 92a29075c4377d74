"""An AWS IoT-compatible credentials provider for the fleet's devices.

``GET /role-aliases/<alias>/credentials`` over mutual TLS, as AWS IoT's
``AssumeRoleWithCertificate`` answers it: the client certificate (checked against the
device CA in the TLS handshake) must be attached to the thing named by the
``x-amzn-iot-thingname`` header (or, without the header, to exactly one thing); the thing
maps to a device; the answer is a fresh temporary key scoped to that device,
``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``,
valid for the role alias's duration. Things and their certificates (SHA-256 fingerprints
of the DER) live in the store (``edgecore-fleet iot-attach``).

``authorize`` is the one implementation of those rules: ``IotApp`` serves it under
gunicorn (``edgecore-fleet serve-iot``: the peer certificate comes from the TLS socket),
and the local cloud's test endpoint (``edgecore_tools.localcloud.iot``) uses it with a
minter that also makes the key valid for its S3 stand-in. The default minter makes keys
for the fleet server only; the device then needs S3 credentials of its own (its store
must accept the same key, e.g. an imported one) to read artifacts.
"""

import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from urllib.parse import unquote

from .errors import ApiError

log = logging.getLogger("edgecore_fleet.iot")

DEFAULT_ROLE_ALIAS = "edgecore-device-role-alias"
DEFAULT_DURATION = 3600  # AWS's default credentialDurationSeconds
ALIAS = re.compile(r"[\w=,@-]{1,128}")  # CreateRoleAlias's roleAlias pattern
THING = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # CreateThing's thingName pattern
PATH = re.compile(r"/role-aliases/([^/?]+)/credentials")


def iso8601_z(epoch):
    """'2024-01-02T03:04:05Z', the form of the IoT credentials' expiration."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def fingerprint(der):
    """SHA-256 of a certificate's DER bytes (hex), as AWS IoT names certificates."""
    return hashlib.sha256(der).hexdigest()


def fleet_key_minter(store, device, expiration):
    """A temporary key for the fleet server only, scoped to `device`."""
    akid = "ASIA" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)[:40]
    token = secrets.token_urlsafe(48)
    store.add_key(akid, secret, token, expiration, device)
    return {"access_key_id": akid, "secret_access_key": secret, "session_token": token}


def authorize(store, path, thing_name, peer_der, role_aliases, now, minter):
    """Check one credentials request and mint its key.

    Returns (wire credentials dict, {"access_key_id", "thing", "device", "expiration"});
    raises ApiError with AWS IoT's statuses (404 unknown path or alias, 403 certificate
    not attached, 401 no certificate)."""
    match = PATH.fullmatch(path.partition("?")[0])
    if match is None:
        raise ApiError(404, "ResourceNotFoundException",
                       "No such resource: %s" % path.partition("?")[0][:200])
    if peer_der is None:  # CERT_REQUIRED makes this unreachable; kept as a guard
        raise ApiError(401, "UnauthorizedException", "No client certificate")
    duration = role_aliases.get(unquote(match.group(1)))
    if duration is None:
        raise ApiError(404, "ResourceNotFoundException", "Role alias does not exist")
    fp = fingerprint(peer_der)
    if thing_name is None:
        # Without the header AWS cannot check an attachment: only a certificate attached
        # to exactly one thing is usable.
        owners = store.things_with_certificate(fp)
        thing_name = owners[0] if len(owners) == 1 else None
    thing = store.iot_thing(thing_name) if thing_name else None
    if thing is None or fp not in thing["certs"] or thing["device"] is None:
        raise ApiError(403, "ForbiddenException",
                       "Access Denied: the certificate is not attached to the thing")
    expiration = int(now) + int(duration)
    key = minter(store, thing["device"], expiration)
    wire = {"accessKeyId": key["access_key_id"], "secretAccessKey": key["secret_access_key"],
            "sessionToken": key["session_token"], "expiration": iso8601_z(expiration)}
    return wire, {"access_key_id": key["access_key_id"], "thing": thing_name,
                  "device": thing["device"], "expiration": expiration}


class IotApp:
    """The credentials provider as a WSGI app (behind a mutual-TLS server)."""

    def __init__(self, store, role_aliases=None, clock=None, minter=fleet_key_minter):
        self.store = store
        self.role_aliases = dict(role_aliases or {DEFAULT_ROLE_ALIAS: DEFAULT_DURATION})
        for alias in self.role_aliases:
            if not ALIAS.fullmatch(alias):
                raise ValueError("role alias %r: expected 1-128 of [\\w=,@-]" % (alias,))
        self.clock = clock or time.time
        self.minter = minter

    def __call__(self, environ, start_response):
        request_id = str(uuid.uuid4())
        try:
            if environ["REQUEST_METHOD"] != "GET":
                raise ApiError(405, "MethodNotAllowedException", "Method not allowed")
            if environ.get("CONTENT_LENGTH") not in (None, "", "0"):
                raise ApiError(400, "InvalidRequestException", "A GET has no body")
            sock = environ.get("gunicorn.socket")
            der = sock.getpeercert(binary_form=True) if hasattr(sock, "getpeercert") else None
            with self.store.request():
                wire, info = authorize(self.store, environ.get("PATH_INFO") or "/",
                                       environ.get("HTTP_X_AMZN_IOT_THINGNAME"), der,
                                       self.role_aliases, self.clock(), self.minter)
            log.info("credentials", extra={"fields": dict(info, request_id=request_id)})
            status, body, extra = 200, {"credentials": wire}, []
        except ApiError as e:
            status, body = e.status, {"message": e.message}
            extra = [("x-amzn-ErrorType", e.code)]
        except Exception:  # answered as AWS would; the cause is logged, never sent
            log.exception("iot credentials: internal error")
            status, body = 500, {"message": "Internal failure"}
            extra = [("x-amzn-ErrorType", "InternalFailureException")]
        payload = json.dumps(body).encode("utf-8")
        start_response("%d %s" % (status, "OK" if status == 200 else "Error"), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", request_id)] + extra)
        return [payload]
