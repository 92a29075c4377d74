"""A local stand-in for the AWS IoT credentials provider, and a tiny PKI (CPython only).

``IotCredentialsEndpoint`` serves ``GET /role-aliases/<alias>/credentials`` over HTTPS
with mutual TLS on 127.0.0.1:<free port>, as the AWS IoT credentials provider does
(``AssumeRoleWithCertificate``):

- the TLS handshake requires a client certificate issued by the endpoint's CA; any
  other certificate (or none) fails the handshake, as an unregistered certificate does
  at AWS (recorded in ``handshake_failures``);
- the certificate must be *attached* to the thing named by the ``x-amzn-iot-thingname``
  header (``attach``/``provision``; kept in the cloud's SQLite DB, so the admin CLI's
  ``provision-thing`` works while ``serve --iot`` runs), else 403; an unknown role
  alias is 404;
- the thing maps to an Edge Manager device of the LocalCloud; the answer is a fresh
  temporary key of that cloud (an STS session from moto's IAM when the cloud has an S3
  stand-in, so the same key signs both APIs), valid ``duration`` seconds by the cloud's
  clock (``cloud.server.clock``: a shifted or fake cloud clock is followed), returned as
  ``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``.

The edge endpoint enforces the expiry (ExpiredTokenException); moto's S3 checks the
session token but not its expiry. ``expire(access_key_id)`` ends a key now (the cloud
revoking it early), to drive a device into the ExpiredToken -> refresh path.

``Pki`` writes a CA, a server certificate (127.0.0.1 / localhost) and device
certificates (EC P-256, ``cryptography``) into a directory (``Pki.load`` reopens it);
``make_key``/``make_cert``/``write_pem`` are the building blocks, usable by tests that
need odd certificates. ``TlsServer`` is the mutual-TLS HTTP server (also for tests with
their own handler).
Error bodies are ``{"message": ...}`` with the code in ``x-amzn-ErrorType``; the exact
wording AWS uses is not documented, so the messages here are descriptive stand-ins.
"""

import datetime
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgecore_fleet.errors import ApiError
from edgecore_fleet.iot import ALIAS as _ALIAS
from edgecore_fleet.iot import (
    DEFAULT_DURATION,
    DEFAULT_ROLE_ALIAS,
    authorize,
    fingerprint,
)
from edgecore_fleet.iot import THING as _THING

from . import admin

log = logging.getLogger("edgecore_tools.localcloud.iot")

HANDSHAKE_TIMEOUT = 10


# --------------------------------------------------------------------------- PKI


def make_key():
    """A new EC P-256 private key (fast to make, accepted by OpenSSL everywhere)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def make_cert(common_name, key, issuer_cert=None, issuer_key=None, ca=False, hosts=(),
              client=False, days=30):
    """An X.509 certificate for `key`, self-signed unless `issuer_cert`/`issuer_key`.

    ca=True: a CA (may sign certificates). hosts: DNS names / IP addresses for the
    subjectAltName (a server certificate). client=True: extendedKeyUsage clientAuth
    (a device certificate). Valid from a day ago for `days` days.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def write_pem(path, obj):
    """Write a certificate or a private key (PKCS#8, unencrypted, mode 0600) as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if isinstance(obj, x509.Certificate):
        data, mode = obj.public_bytes(serialization.Encoding.PEM), 0o644
    else:
        data = obj.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        mode = 0o600
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return str(path)


def cert_fingerprint(cert_path):
    """SHA-256 of a PEM certificate's DER bytes (hex), as AWS IoT names certificates."""
    with open(cert_path, "rb") as f:
        der = ssl.PEM_cert_to_DER_cert(f.read().decode("ascii"))
    return fingerprint(der)


class Pki:
    """A CA with a server certificate, in `directory`; issues device certificates.

    Files: ca.pem, ca.key, server.pem, server.key, <thing>.pem/.key per device.
    Attributes: directory, ca_path, server_cert, server_key.
    """

    def __init__(self, directory, ca_cert, ca_key):
        self.directory = str(directory)
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self.ca_path = os.path.join(self.directory, "ca.pem")
        self.server_cert = os.path.join(self.directory, "server.pem")
        self.server_key = os.path.join(self.directory, "server.key")

    @classmethod
    def create(cls, directory, name="edgecore local CA", hosts=("127.0.0.1", "localhost"),
               days=30):
        """Generate the CA and a server certificate for `hosts` into `directory`."""
        os.makedirs(str(directory), exist_ok=True)
        ca_key = make_key()
        ca_cert = make_cert(name, ca_key, ca=True, days=days)
        pki = cls(directory, ca_cert, ca_key)
        write_pem(pki.ca_path, ca_cert)
        write_pem(os.path.join(pki.directory, "ca.key"), ca_key)
        server_key = make_key()
        write_pem(pki.server_key, server_key)
        write_pem(
            pki.server_cert,
            make_cert(hosts[0], server_key, ca_cert, ca_key, hosts=hosts, days=days),
        )
        return pki

    @classmethod
    def load(cls, directory):
        """The PKI that `create` wrote into `directory` (to issue more certificates)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        directory = str(directory)
        with open(os.path.join(directory, "ca.pem"), "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(directory, "ca.key"), "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
        return cls(directory, ca_cert, ca_key)

    @classmethod
    def open(cls, directory, **create_kwargs):
        """load(directory) if it holds a PKI, else create(directory, **create_kwargs)."""
        if os.path.exists(os.path.join(str(directory), "ca.key")):
            return cls.load(directory)
        return cls.create(directory, **create_kwargs)

    def device(self, thing_name, days=30):
        """Issue a client certificate (CN = thing_name); returns (cert_path, key_path)."""
        if not _THING.fullmatch(thing_name):
            raise ValueError("thing name %r: expected 1-128 of [a-zA-Z0-9:_-]" % (thing_name,))
        key = make_key()
        cert = make_cert(thing_name, key, self._ca_cert, self._ca_key, client=True, days=days)
        base = os.path.join(self.directory, thing_name.replace(":", "_"))
        return write_pem(base + ".pem", cert), write_pem(base + ".key", key)

    def server_context(self):
        """An SSLContext serving the server certificate and requiring a client
        certificate issued by this CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.ca_path)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


# --------------------------------------------------------------------------- endpoint


class JsonReplies:
    """Replies of an AWS JSON endpoint (mixed into a BaseHTTPRequestHandler): every one
    with ``x-amzn-RequestId``; errors as ``{"message": ...}`` + ``x-amzn-ErrorType``."""

    def _error(self, status, code, message, request_id):
        payload = json.dumps({"message": message}).encode("utf-8")
        self._respond(status, payload, request_id, {"x-amzn-ErrorType": code})

    def _respond(self, status, payload, request_id, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", request_id)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Handler(JsonReplies, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle kept-alive connection does not hold its thread forever

    def version_string(self):
        return "edgecore-localcloud-iot"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        endpoint = self.server.endpoint
        request_id = str(uuid.uuid4())
        der = self.connection.getpeercert(binary_form=True)
        thing = self.headers.get("x-amzn-iot-thingname")
        entry = {"path": self.path, "thing": thing, "status": None, "access_key_id": None,
                 "request_id": request_id}
        error = None  # (status, code, message)
        try:
            if self.headers.get("Content-Length") not in (None, "0"):
                raise ApiError(400, "InvalidRequestException", "A GET has no body")
            creds = endpoint.handle(self.path, thing, der)
            entry["access_key_id"] = creds["accessKeyId"]
            entry["status"] = 200
        except ApiError as e:
            error = (e.status, e.code, e.message)
        except Exception:  # an internal failure: answered as AWS would, cause logged
            log.exception("iot credentials endpoint: internal error")
            error = (500, "InternalFailureException", "Internal failure")
        if error is not None:
            entry["status"] = error[0]
        # Recorded before the reply: a client that has its answer finds its request there.
        endpoint.record(entry)
        if error is not None:
            self._error(error[0], error[1], error[2], request_id)
        else:
            self._respond(200, json.dumps({"credentials": creds}).encode("utf-8"), request_id)

    def do_POST(self):
        self.close_connection = True  # the body, if any, is left unread
        self._error(405, "MethodNotAllowedException", "Method not allowed", str(uuid.uuid4()))

    do_PUT = do_DELETE = do_PATCH = do_POST


class TlsServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer over TLS (mutual TLS with ``Pki.server_context()``).

    The per-connection thread does the handshake first, so a slow or failing client
    never blocks accept(). A failed handshake goes to ``on_handshake_failure(exc)`` and
    the connection is closed so that the client reads the TLS alert (``_drain_and_close``).
    Also the server of tests that need their own handler on an mTLS endpoint.
    """

    daemon_threads = True

    def __init__(self, context, handler, host="127.0.0.1", port=0, on_handshake_failure=None):
        ThreadingHTTPServer.__init__(self, (host, port), handler)
        self.context = context
        self.on_handshake_failure = on_handshake_failure
        self._thread = None

    def finish_request(self, request, client_address):
        request.settimeout(HANDSHAKE_TIMEOUT)
        tls = self.context.wrap_socket(request, server_side=True,
                                       do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            if self.on_handshake_failure is not None:
                self.on_handshake_failure(exc)
            _drain_and_close(tls)
            return
        tls.settimeout(None)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            # socketserver closes `request`, which the SSLSocket detached: close this one.
            tls.close()

    @property
    def url(self):
        return "https://%s:%d" % self.server_address[:2]

    def start_background(self, name="tls-server", poll_interval=0.05):
        """Serve in a daemon thread; stop() waits up to one `poll_interval`."""
        self._thread = threading.Thread(target=self.serve_forever,
                                        kwargs={"poll_interval": poll_interval}, name=name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)


def _drain_and_close(tls):
    """Close a connection whose handshake failed so that the client reads the TLS alert
    (e.g. "unknown ca"): closing with unread client bytes would reset the connection
    and the client would only see an EOF. SSLSocket.shutdown drops to the raw socket."""
    try:
        tls.shutdown(socket.SHUT_WR)
        tls.settimeout(1)
        while tls.recv(4096):
            pass
    except OSError:
        pass
    finally:
        tls.close()


class IotCredentialsEndpoint:
    """The local AWS IoT credentials provider for one LocalCloud. See the module docstring.

    Attributes: host, port, url, pki, role_aliases ({alias: duration seconds}),
    minted ([{access_key_id, thing, device, expiration}], no secrets), requests
    ([{path, thing, status, access_key_id, request_id}]), handshake_failures
    ([str]), handshake_event (set on each handshake failure).
    """

    def __init__(self, cloud, pki, role_alias=DEFAULT_ROLE_ALIAS, duration=DEFAULT_DURATION,
                 clock=None, s3_keys=True, host="127.0.0.1", port=0):
        if not _ALIAS.fullmatch(role_alias):
            raise ValueError("role alias %r: expected 1-128 of [\\w=,@-]" % (role_alias,))
        self.cloud = cloud
        self.pki = pki
        self.role_alias = role_alias
        self.role_aliases = {role_alias: int(duration)}
        # The cloud's clock by default, looked up per call so set_clock_offset is followed.
        self.clock = clock or (lambda: cloud.server.clock())
        self.s3_keys = s3_keys and getattr(cloud, "s3", None) is not None
        self.minted = []
        self.requests = []
        self.handshake_failures = []
        self.handshake_event = threading.Event()
        self._lock = threading.Lock()
        self._server = TlsServer(pki.server_context(), _Handler, host, port,
                                 self.handshake_failed)
        self._server.endpoint = self  # what _Handler serves

    @classmethod
    def start(cls, cloud, directory=None, pki=None, **kwargs):
        """Start serving (a thread). Without `pki`, a new one is made in `directory`
        (default <cloud.workdir>/iot-pki). kwargs: see __init__."""
        if pki is None:
            pki = Pki.create(directory or os.path.join(cloud.workdir, "iot-pki"))
        endpoint = cls(cloud, pki, **kwargs)
        endpoint._server.start_background("iot-credentials-endpoint")
        return endpoint

    # ---------------------------------------------------------------- registry
    @property
    def host(self):
        return self._server.server_address[0]

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return self._server.url

    def add_role_alias(self, alias, duration=DEFAULT_DURATION):
        if not _ALIAS.fullmatch(alias):
            raise ValueError("role alias %r: expected 1-128 of [\\w=,@-]" % (alias,))
        with self._lock:
            self.role_aliases[alias] = int(duration)

    def attach(self, thing_name, cert_path, device=None):
        """Register `thing_name` (mapped to Edge Manager `device`, default the cloud's
        device) and attach the certificate at `cert_path` to it."""
        if not _THING.fullmatch(thing_name):
            raise ValueError("thing name %r: expected 1-128 of [a-zA-Z0-9:_-]" % (thing_name,))
        fingerprint = cert_fingerprint(cert_path)
        # Kept in the cloud's DB: the admin CLI can provision while `serve --iot` runs.
        self.cloud.db.attach_certificate(
            thing_name, fingerprint, device or self.cloud.device_name
        )
        return fingerprint

    def detach(self, thing_name, cert_path):
        """Detach a certificate: it then gets 403 for that thing."""
        self.cloud.db.detach_certificate(thing_name, cert_fingerprint(cert_path))

    def provision(self, thing_name, device=None):
        """Issue a device certificate for `thing_name` from the PKI and attach it;
        returns (cert_path, key_path)."""
        cert, key = self.pki.device(thing_name)
        self.attach(thing_name, cert, device)
        return cert, key

    def iot_config(self, thing_name, cert, key, **extra):
        """The agent config's "iot" member for this endpoint."""
        conf = {
            "endpoint": self.host,
            "port": self.port,
            "role_alias": self.role_alias,
            "thing_name": thing_name,
            "cert": str(cert),
            "key": str(key),
            "ca": self.pki.ca_path,
        }
        conf.update(extra)
        return conf

    def agent_config(self, model_dir, state_dir, thing_name, cert, key, iot_extra=None,
                     **extra):
        """cloud.agent_config(...) with credentials from this endpoint instead of a key."""
        config = self.cloud.agent_config(model_dir, state_dir, **extra)
        del config["credentials"]
        config["iot"] = self.iot_config(thing_name, cert, key, **(iot_extra or {}))
        return config

    def expire(self, access_key_id):
        """End a minted key now (by the cloud's clock): the edge endpoint then answers
        ExpiredTokenException although the device still believes it valid."""
        db = self.cloud.db
        record = db.lookup_key(access_key_id)
        if record is None:
            raise KeyError("no such access key: %s" % access_key_id)
        db.add_key(record.access_key, record.secret_key, record.session_token,
                   self.clock(), record.device)

    # ---------------------------------------------------------------- serving
    def handle(self, path, thing_name, peer_der):
        """Authorize one request and mint its credentials (the wire dict); raises
        ApiError with AWS's statuses. The rules are the fleet server's
        (``edgecore_fleet.iot.authorize``); the key is minted by ``admin.create_key``."""
        with self._lock:
            aliases = dict(self.role_aliases)
        wire, info = authorize(self.cloud.db, path, thing_name, peer_der, aliases,
                               self.clock(), self._mint)
        with self._lock:
            self.minted.append(info)
        return wire

    def _mint(self, store, device, expiration):
        return admin.create_key(
            store, self.cloud.s3 if self.s3_keys else None, device=device, temporary=True,
            capture_bucket=getattr(self.cloud, "bucket", None),
            # create_key dates the expiry by the wall clock: convert from the cloud clock.
            expires_in=expiration - time.time(),
        )

    def record(self, entry):
        with self._lock:
            self.requests.append(entry)

    def handshake_failed(self, exc):
        # The ssl reason (e.g. CERTIFICATE_VERIFY_FAILED) only: no key material in it.
        with self._lock:
            self.handshake_failures.append("%s: %s" % (type(exc).__name__, exc))
        self.handshake_event.set()
        log.info("iot credentials endpoint: TLS handshake failed: %s", exc)

    # ---------------------------------------------------------------- lifecycle
    def stop(self):
        self._server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
