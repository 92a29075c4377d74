# Not under emulated ARM: drives the real MicroPython binary (an x86 build, tested natively)
"""The MicroPython port's sockets and TLS on the real 32-bit unix binary (mbedtls),
against local servers this test starts: CA as PEM and as DER, the bare ``tls`` module
fallback, client certificates (mTLS), and refused certificates (unknown CA, wrong host
name, expired) reported as non-retryable ``TlsError`` naming the reason; a TLS
handshake, or a plain response body, trickled byte by byte is cut at the deadline; a
kept-alive plain connection carries several requests (small answers included) with
TCP_NODELAY set.

The binary comes from ``firmware/micropython/build.sh unix`` (.ci/run builds it first);
without it these tests skip, unless ``CI`` is set (then they fail).
"""

import datetime
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mpdevice import BINARY, require_binary, serve

require_binary()

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, hosts=(), days=(-1, 30)):
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW + datetime.timedelta(days=days[0]))
         .not_valid_after(NOW + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if hosts:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("edgecore test CA", ca_key, "edgecore test CA", ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("another CA", other_key, "another CA", other_key, ca=True)
    files = {}

    def write(name, data):
        path = d / name
        path.write_bytes(data)
        files[name] = str(path)

    pem = serialization.Encoding.PEM
    der = serialization.Encoding.DER
    # A bundle of two PEM certificates: the device must load every block.
    write("ca.pem", other.public_bytes(pem) + ca.public_bytes(pem))
    write("ca.der", ca.public_bytes(der))
    write("other.der", other.public_bytes(der))
    for name, hosts, days in (("good", ("localhost",), (-1, 30)),
                              ("wronghost", ("elsewhere.example",), (-1, 30)),
                              ("expired", ("localhost",), (-30, -1))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, "edgecore test CA", ca_key, hosts=hosts, days=days)
        write(name + ".crt", cert.public_bytes(pem))
        write(name + ".key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("device-1", client_key, "edgecore test CA", ca_key)
    write("client.pem", client.public_bytes(pem))
    write("client.key.pem", client_key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    write("client.der", client.public_bytes(der))
    write("client.key.der", client_key.private_bytes(
        der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


class TlsServer:
    """Answers each connection with one HTTP response (the client certificate's CN when
    one was presented), over TLS with the given certificate."""

    def __init__(self, files, name, require_client=False, trickle=False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(files[name + ".crt"], files[name + ".key"])
        if require_client:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(cadata=_pem_of(files["ca.der"]))
        self.trickle = trickle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        serve(self.sock, self._one)

    def _one(self, conn):
        try:
            if self.trickle:  # a server hello one byte per 0.2 s: never a whole handshake
                conn.recv(4096)
                for b in b"\x16\x03\x03\x00\x40" + b"\x02" * 64:
                    conn.sendall(bytes([b]))
                    time.sleep(0.2)
                return
            tls = self.ctx.wrap_socket(conn, server_side=True)
            tls.recv(4096)
            peer = tls.getpeercert()
            who = dict(x[0] for x in peer["subject"])["commonName"] if peer else "anonymous"
            body = who.encode()
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                        % (len(body), body))
            tls.close()
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


class PlainServer:
    """HTTP/1.1 without TLS. ``trickle``: each connection gets a head announcing 100 bytes,
    then the body one byte per 0.2 s. Else keep-alive: every request is answered "ok"
    (Content-Length: 2) on its connection; ``bodies`` and ``clients`` (peer ports) record
    what came."""

    def __init__(self, trickle=False):
        import http.server

        bodies, clients = self.bodies, self.clients = [], []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                clients.append(self.client_address[1])
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

            def do_GET(self):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(100 if trickle else 0):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the device hanging up on a trickle is the point, not an error

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _pem_of(der_path):
    with open(der_path, "rb") as f:
        return ssl.DER_cert_to_PEM_cert(f.read())


# Runs on the device: a GET (or POSTs of the "post" body sizes, in order, on one
# transport), the outcome as one JSON line: the last answer, every answer, the count of
# connections opened, and whether a fresh socket took TCP_NODELAY.
SCRIPT = """
import json, socket, sys
from edgecore_ports import micropython as mp
args = json.loads(sys.argv[1])
if args.pop("bare_tls", False):
    import tls
    mp._tls_module = lambda: tls
deadline = args.pop("deadline", None)
url = args.pop("url")
sizes = args.pop("post", None)
t = mp.make_transport(timeout=(5, 5), **args)
opened = []
connect = t._connect
t._connect = lambda *a: opened.append(a) or connect(*a)
try:
    if deadline is not None:
        deadline += mp.monotonic()
    answers = []
    for n in sizes or [None]:
        body = b"" if n is None else b"x" * n
        status, headers, body = t.transport("GET" if n is None else "POST", url, {}, body,
                                            deadline=deadline)
        answers.append([status, body.decode()])
    s = socket.socket()
    print(json.dumps({"status": status, "body": answers[-1][1], "answers": answers,
                      "connections": len(opened), "nodelay": mp._no_delay(socket, s)}))
    s.close()
except Exception as exc:
    print(json.dumps({"error": exc.__class__.__name__, "message": str(exc),
                      "retryable": getattr(exc, "retryable", True)}))
"""


def device(**args):
    env = dict(os.environ, MICROPYPATH=".frozen")
    t0 = time.monotonic()
    proc = subprocess.run([BINARY, "-X", "heapsize=64k", "-c", SCRIPT, json.dumps(args)],
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.monotonic() - t0
    return out


@pytest.fixture(scope="module")
def servers(pki):
    made = {"good": TlsServer(pki, "good"), "wronghost": TlsServer(pki, "wronghost"),
            "expired": TlsServer(pki, "expired"),
            "mtls": TlsServer(pki, "good", require_client=True),
            "trickle": TlsServer(pki, "good", trickle=True)}
    yield made
    for s in made.values():
        s.close()


def url(server):
    return "https://localhost:%d/" % server.port


@pytest.mark.parametrize("ca", ["ca.pem", "ca.der"])
@pytest.mark.parametrize("bare_tls", [False, True])
def test_ca_as_pem_or_der_with_ssl_or_the_bare_tls_module(pki, servers, ca, bare_tls):
    out = device(url=url(servers["good"]), ca_bundle=pki[ca], bare_tls=bare_tls)
    assert out.get("status") == 200 and out["body"] == "anonymous", out


@pytest.mark.parametrize("server, reason", [
    ("good", "not correctly signed by the trusted CA"),  # with another CA only
    ("wronghost", "Common Name (CN) does not match"),
    ("expired", "validity has expired"),
])
def test_refused_certificates_are_non_retryable_and_named(pki, servers, server, reason):
    ca = pki["other.der"] if server == "good" else pki["ca.der"]
    out = device(url=url(servers[server]), ca_bundle=ca)
    assert out.get("error") == "TlsError", out
    assert out["retryable"] is False
    assert "certificate refused" in out["message"] and reason in out["message"], out
    assert "GET https://localhost:%d" % servers[server].port in out["message"]


@pytest.mark.parametrize("cert, key", [("client.pem", "client.key.pem"),
                                       ("client.der", "client.key.der")])
def test_client_certificate_mtls(pki, servers, cert, key):
    out = device(url=url(servers["mtls"]), ca_bundle=pki["ca.pem"], client_cert=pki[cert],
                 client_key=pki[key])
    assert out.get("status") == 200 and out["body"] == "device-1", out
    # Without one the server refuses the handshake: a TLS failure, not a crash.
    out = device(url=url(servers["mtls"]), ca_bundle=pki["ca.pem"])
    assert "error" in out, out
    assert "TLS failure" in out["message"] or "network error" in out["message"], out


def test_unusable_ca_file_is_a_non_retryable_error(pki, servers, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    out = device(url=url(servers["good"]), ca_bundle=str(bad))
    assert out.get("error") == "TlsError" and out["retryable"] is False, out
    assert "ca_bundle" in out["message"], out
    out = device(url=url(servers["good"]), ca_bundle=str(tmp_path / "missing.pem"))
    assert out.get("error") == "TlsError" and "cannot read" in out["message"], out


def test_a_trickled_handshake_is_cut_at_the_deadline(pki, servers):
    # Each byte comes well within the 5 s socket timeout: only the deadline ends it. (The
    # socket's own readinto waited for the whole TLS record: cut only when the peer
    # stopped, ~14 s.)
    out = device(url=url(servers["trickle"]), ca_bundle=pki["ca.der"], deadline=2)
    assert out.get("error") == "DeadlineExceeded" and "deadline exceeded" in out["message"], out
    assert out["seconds"] < 8, out


def test_a_trickled_plain_body_is_cut_at_the_deadline():
    server = PlainServer(trickle=True)
    try:
        # A byte every 0.2 s, each well within the 5 s timeout: only the deadline ends it.
        # (Before the guard: the socket's readinto waited for its whole 2 KiB buffer, ~20 s.)
        out = device(url="http://127.0.0.1:%d/" % server.port, deadline=2)
    finally:
        server.close()
    assert out.get("error") == "DeadlineExceeded" and "deadline exceeded" in out["message"], out
    assert out["seconds"] < 8, out


def test_keep_alive_carries_small_and_large_requests_with_nodelay():
    from edgecore_ports import micropython as mp

    server = PlainServer()
    sizes = [1024, mp.SEND_WHOLE + 100, 2]
    try:
        out = device(url="http://127.0.0.1:%d/SendHeartbeat" % server.port, post=sizes,
                     keep_alive=True)
    finally:
        server.close()
    assert out.get("answers") == [[200, "ok"]] * 3, out
    assert server.bodies == [b"x" * n for n in sizes]
    # One connection for the three: a 2-byte answer does not wait for a full buffer.
    assert out["connections"] == 1 and len(set(server.clients)) == 1, (out, server.clients)
    assert out["nodelay"] is True  # the unix port's socket takes Linux's numbers
    assert out["seconds"] < 8, out
