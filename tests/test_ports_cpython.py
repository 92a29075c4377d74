"""The CPython port's requests transport against real servers on 127.0.0.1: streaming,
bounded bodies, Range, timeouts, connection reuse, no redirect following, TLS
verification against a self-signed server, proxies, and exception mapping. CPython only."""

import datetime
import hashlib
import http.server
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time

import requests
import urllib3.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ports_micropython import FakeSocket, transport_for

from edgecore.errors import TransportError
from edgecore_ports import HttpProtocolError, cpython, linux

SECRET = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, Signature=f00dfacesecret"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.server.log.append((self.command, self.path, self.client_address[1]))
        self._send(200, b"", [("X-Size", str(len(PAYLOAD)))])

    def do_GET(self):
        self.server.log.append((self.command, self.path, self.client_address[1]))
        path = self.path
        if path == "/echo" or path.startswith("http://"):  # absolute form: via proxy
            body = json.dumps({"path": path, "headers": dict(self.headers)}).encode()
            self._send(200, body, [("Content-Type", "application/json")])
        elif path == "/payload":
            rng = self.headers.get("Range")
            if rng:
                start, end = rng.split("=")[1].split("-")
                self._send(
                    206,
                    PAYLOAD[int(start) : int(end) + 1],
                    [("Content-Range", "bytes %s-%s/%d" % (start, end, len(PAYLOAD)))],
                )
            else:
                self._send(200, PAYLOAD)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, 100000, 10000):
                piece = PAYLOAD[i : i + 10000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip":
            import gzip

            self._send(200, gzip.compress(b"x" * 1000), [("Content-Encoding", "gzip")])
        elif path == "/redirect":
            self._send(302, b"", [("Location", "/echo")])
        elif path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only this")
            self.close_connection = True
        elif path == "/chunked-short":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"100\r\n" + b"a" * 20)
            self.close_connection = True
        elif path == "/slow-body":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"12345")
            self.wfile.flush()
            self.server.release.wait(10)
        elif path == "/slow":
            self.server.release.wait(10)
            self._send(200, b"late")
        elif path == "/bighead":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
            self.close_connection = True
        else:
            self._send(404, b"not found")

    def do_POST(self):
        self.server.log.append((self.command, self.path, self.client_address[1]))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(
            200, json.dumps({"len": len(body), "sha1": hashlib.sha1(body).hexdigest()}).encode()
        )


class Server:
    """A threaded HTTP(S) server on 127.0.0.1:<free port>, stopped by close()."""

    def __init__(self, tls=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.log = []
        self.httpd.release = threading.Event()
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def log(self):
        return self.httpd.log

    def close(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def raises(exc_type, func, *args, **kwargs):
    try:
        func(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("expected %s" % exc_type.__name__)


def self_signed_cert(d):
    """(cert.pem, key.pem) paths in directory ``d`` for CN/SAN 127.0.0.1 (cryptography)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def test_transport_whole_body_headers_and_request_headers():
    srv = Server()
    try:
        t = cpython.make_transport()
        status, headers, body = t.transport(
            "GET", srv.url + "/echo", {"Authorization": SECRET, "X-Amz-Date": "x"}
        )
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert all(k == k.lower() for k in headers)
        sent = json.loads(body)["headers"]
        assert sent["Authorization"] == SECRET and sent["X-Amz-Date"] == "x"
        assert sent["Accept-Encoding"] == "identity"
        assert sent["User-Agent"] == cpython.USER_AGENT
        status, _, body = t.transport("POST", srv.url + "/post", {}, b"abc" * 1000)
        assert json.loads(body) == {"len": 3000, "sha1": hashlib.sha1(b"abc" * 1000).hexdigest()}
    finally:
        srv.close()


def test_connection_reused_across_requests():
    srv = Server()
    try:
        t = cpython.make_transport()
        for _ in range(3):
            t.transport("GET", srv.url + "/echo", {})
        with t.open("GET", srv.url + "/payload", {}) as resp:
            resp.read()
        t.transport("HEAD", srv.url + "/payload", {})
        assert len({port for _, _, port in srv.log}) == 1, srv.log
        # A half-read stream is dropped, not returned to the pool.
        resp = t.open("GET", srv.url + "/payload", {})
        resp.read(10)
        resp.close()
        t.transport("GET", srv.url + "/echo", {})
        assert len({port for _, _, port in srv.log}) == 2, srv.log
    finally:
        srv.close()


def test_open_streams_with_readinto():
    srv = Server()
    try:
        t = cpython.make_transport()
        for path in ("/payload", "/chunked"):
            digest = hashlib.sha1()
            buf = bytearray(65536)
            with t.open("GET", srv.url + path, {}) as resp:
                assert resp.status == 200
                while True:
                    n = resp.readinto(buf)
                    if not n:
                        break
                    digest.update(memoryview(buf)[:n])
                assert resp.readinto(buf) == 0 and resp.read() == b""
            want = PAYLOAD if path == "/payload" else PAYLOAD[:100000]
            assert digest.hexdigest() == hashlib.sha1(want).hexdigest()
    finally:
        srv.close()


def test_range_request_is_a_header():
    srv = Server()
    try:
        resp = cpython.make_transport().open("GET", srv.url + "/payload", {"Range": "bytes=10-19"})
        assert resp.status == 206
        assert resp.headers["content-range"] == "bytes 10-19/%d" % len(PAYLOAD)
        assert resp.read(4) == PAYLOAD[10:14]
        assert resp.read() == PAYLOAD[14:20]
        resp.close()
    finally:
        srv.close()


def test_content_encoding_is_not_decoded():
    srv = Server()
    try:
        import gzip

        _, headers, body = cpython.make_transport().transport("GET", srv.url + "/gzip", {})
        assert headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == b"x" * 1000  # the stored bytes, as hashed
    finally:
        srv.close()


def test_body_bound():
    srv = Server()
    try:
        t = cpython.make_transport(max_body=1000)
        exc = raises(TransportError, t.transport, "GET", srv.url + "/payload", {})
        assert "1048576 bytes exceeds the 1000 byte bound" in str(exc)
        exc = raises(TransportError, t.transport, "GET", srv.url + "/chunked", {})
        assert "exceeds the 1000 byte bound" in str(exc)
        assert (
            cpython.make_transport(max_body=100000).transport("GET", srv.url + "/chunked", {})[2]
            == PAYLOAD[:100000]
        )
    finally:
        srv.close()


def test_short_body_is_transport_error():
    srv = Server()
    try:
        exc = raises(
            TransportError,
            cpython.make_transport().transport,
            "GET",
            srv.url + "/short",
            {"Authorization": SECRET},
        )
        assert srv.url in str(exc) and "broken" in str(exc)
        assert "f00dfacesecret" not in str(exc)
        resp = cpython.make_transport().open("GET", srv.url + "/short", {})
        assert resp.read(9) == b"only this"
        exc = raises(TransportError, resp.read, 100)
        assert "991 bytes of its Content-Length missing" in str(exc)
        exc = raises(
            TransportError,
            cpython.make_transport().transport,
            "GET",
            srv.url + "/chunked-short",
            {},
        )
        assert exc.kind == "connection broken mid-response", exc
        resp = cpython.make_transport(timeout=(5, 0.3)).open("GET", srv.url + "/slow-body", {})
        assert resp.read(5) == b"12345"
        exc = raises(TransportError, resp.read, 5)
        assert exc.kind == "timed out"
    finally:
        srv.close()


def test_redirects_are_not_followed():
    srv = Server()
    try:
        status, headers, _ = cpython.make_transport().transport(
            "GET", srv.url + "/redirect", {"Authorization": SECRET}
        )
        assert status == 302 and headers["location"] == "/echo"
        assert [p for _, p, _ in srv.log] == ["/redirect"]
    finally:
        srv.close()


def test_read_timeout():
    srv = Server()
    try:
        t = cpython.make_transport(timeout=(5, 0.3))
        exc = raises(
            TransportError, t.transport, "GET", srv.url + "/slow", {"Authorization": SECRET}
        )
        assert "timed out" in str(exc) and srv.url in str(exc)
        assert "f00dfacesecret" not in str(exc)
        # A per-call timeout overrides the transport's.
        exc = raises(
            TransportError,
            cpython.make_transport().transport,
            "GET",
            srv.url + "/slow",
            {},
            timeout=0.3,
        )
        assert exc.kind == "timed out"
    finally:
        srv.close()


def test_connection_refused_names_host_not_secret():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    exc = raises(
        TransportError,
        cpython.make_transport().transport,
        "POST",
        "http://127.0.0.1:%d/SendHeartbeat?x=secretquery" % port,
        {"Authorization": SECRET, "X-Amz-Security-Token": "tok-secret"},
        b"{}",
    )
    text = str(exc)
    assert text.startswith("POST http://127.0.0.1:%d: connection failed" % port), text
    assert "refused" in text.lower()
    for secret in ("f00dfacesecret", "tok-secret", "secretquery"):
        assert secret not in text


def test_oversize_header_is_protocol_error():
    srv = Server()
    try:
        exc = raises(
            HttpProtocolError, cpython.make_transport().transport, "GET", srv.url + "/bighead", {}
        )
        assert "malformed HTTP response" in str(exc) and "LineTooLong" in str(exc)
    finally:
        srv.close()


def test_tls_verification_on_by_default_and_ca_bundle(tmp_path):
    cert, key = self_signed_cert(str(tmp_path))
    srv = Server(tls=(cert, key))
    try:
        exc = raises(
            TransportError,
            cpython.make_transport().transport,
            "GET",
            srv.url + "/echo",
            {"Authorization": SECRET},
        )
        assert exc.kind == "TLS failure"
        assert "CERTIFICATE_VERIFY_FAILED" in str(exc) and srv.url in str(exc)
        assert "f00dfacesecret" not in str(exc)
        status, _, body = cpython.make_transport(ca_bundle=cert).transport(
            "GET", srv.url + "/echo", {}
        )
        assert status == 200 and json.loads(body)["path"] == "/echo"
    finally:
        srv.close()


def test_verify_false_works_and_warns_loudly_once(tmp_path):
    cert, key = self_signed_cert(str(tmp_path))
    srv = Server(tls=(cert, key))
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("edgecore")
    logger.addHandler(handler)
    cpython._warned_insecure = False
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            t = cpython.make_transport(verify=False)
            assert t.transport("GET", srv.url + "/echo", {})[0] == 200
            cpython.make_transport(verify=False)
        assert len(records) == 1
        assert records[0].levelno == logging.WARNING
        assert "VERIFICATION IS DISABLED" in records[0].getMessage()
        cpython.make_transport()
        assert len(records) == 1
    finally:
        logger.removeHandler(handler)
        srv.close()


def test_explicit_proxy_and_no_environment_proxy():
    srv = Server()  # plays the proxy: gets the absolute-form request line
    try:
        target = "http://device-api.invalid/echo"
        _, _, body = cpython.make_transport(proxy=srv.url).transport("GET", target, {})
        assert json.loads(body)["path"] == target
        old = os.environ.get("HTTP_PROXY")
        os.environ["HTTP_PROXY"] = srv.url
        try:
            _, _, body = cpython.make_transport().transport("GET", target, {})
            assert json.loads(body)["path"] == target
            exc = raises(
                TransportError, cpython.make_transport(proxy=False).transport, "GET", target, {}
            )
            assert "device-api.invalid" in str(exc)
        finally:
            if old is None:
                del os.environ["HTTP_PROXY"]
            else:
                os.environ["HTTP_PROXY"] = old
    finally:
        srv.close()


def test_exception_mapping():
    url = "https://user:pw@bucket.s3.amazonaws.com/key?X-Amz-Signature=abc"
    cases = [
        (
            requests.exceptions.ConnectionError(ConnectionRefusedError(111, "refused")),
            "connection failed",
        ),
        (requests.exceptions.ConnectTimeout("t"), "timed out"),
        (requests.exceptions.ReadTimeout("t"), "timed out"),
        (requests.exceptions.SSLError(ssl.SSLError("bad")), "TLS failure"),
        (requests.exceptions.ChunkedEncodingError("x"), "connection broken mid-response"),
        (
            urllib3.exceptions.ProtocolError("Connection broken", ConnectionResetError(104)),
            "connection broken mid-response",
        ),
        (urllib3.exceptions.ReadTimeoutError(None, url, "Read timed out."), "timed out"),
        (requests.exceptions.ProxyError("http://u:p@proxy:1 refused"), "proxy failure"),
        (requests.exceptions.InvalidURL("bad"), "invalid URL"),
    ]
    for exc, kind in cases:
        mapped = cpython._map_error(exc, "GET", url)
        assert isinstance(mapped, TransportError)
        assert mapped.kind == kind, (exc, mapped)
        text = str(mapped)
        assert text.startswith("GET https://bucket.s3.amazonaws.com: " + kind), text
        assert "pw" not in text and "X-Amz-Signature" not in text and "u:p@" not in text


def test_module_level_functions_and_configure():
    srv = Server()
    try:
        assert cpython.transport("GET", srv.url + "/echo", {})[0] == 200
        with cpython.open("GET", srv.url + "/payload", {"Range": "bytes=0-9"}) as resp:
            assert resp.read() == PAYLOAD[:10]
        first = cpython.default_transport()
        second = cpython.configure(max_body=10)
        assert cpython.default_transport() is second is not first
        raises(TransportError, cpython.transport, "GET", srv.url + "/echo", {})
        cpython.configure()
    finally:
        srv.close()


def test_clock_monotonic_and_files():
    import time

    now = cpython.clock()
    assert isinstance(now, int) and abs(now - time.time()) < 5
    a = cpython.monotonic()
    assert cpython.monotonic() >= a
    assert cpython.atomic_write is linux.atomic_write
    assert cpython.free_space is linux.free_space
    assert cpython.fsync_dir is linux.fsync_dir


def test_micropython_port_default_socket_layer_on_cpython(tmp_path):
    """The MicroPython port's own socket + ssl layer, run here against real servers."""
    from edgecore_ports import micropython as mp

    srv = Server()
    try:
        t = mp.make_transport(keep_alive=True)
        for _ in range(2):
            status, headers, body = t.transport("GET", srv.url + "/echo", {"X-A": "1"})
            assert status == 200 and json.loads(body)["headers"]["X-A"] == "1"
        with t.open("GET", srv.url + "/chunked", {}) as resp:
            assert (
                hashlib.sha1(resp.read()).hexdigest() == hashlib.sha1(PAYLOAD[:100000]).hexdigest()
            )
        assert len({port for _, _, port in srv.log}) == 1, srv.log
        exc = raises(
            TransportError, mp.make_transport(timeout=0.3).transport, "GET", srv.url + "/slow", {}
        )
        assert "timed out" in str(exc)
    finally:
        srv.close()
    cert, key = self_signed_cert(str(tmp_path))
    srv = Server(tls=(cert, key))
    try:
        exc = raises(
            TransportError,
            mp.make_transport().transport,
            "GET",
            srv.url + "/echo",
            {"Authorization": SECRET},
        )
        # A refused certificate is final (TlsError, not retried), named, secret-free.
        assert "certificate refused (self-signed certificate)" in str(exc), str(exc)
        assert isinstance(exc, mp.TlsError) and exc.retryable is False
        assert "f00dfacesecret" not in str(exc)
        status, _, body = mp.make_transport(ca_bundle=cert).transport("GET", srv.url + "/echo", {})
        assert status == 200 and json.loads(body)["path"] == "/echo"
    finally:
        srv.close()


# -- the MicroPython port's HTTP parser, property-tested here (hypothesis is CPython-only) --



@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8),
       step=st.integers(1, 700), bufsize=st.integers(1, 500), chunked=st.booleans())
def test_mp_parser_round_trips_any_framing(body, cuts, step, bufsize, chunked):
    if chunked:
        bounds = sorted({0, len(body), *[c for c in cuts if c <= len(body)]})
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for a, b in zip(bounds, bounds[1:]):
            raw += b"%x\r\n%s\r\n" % (b - a, body[a:b])
        raw += b"0\r\n\r\n"
    else:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    t, _ = transport_for(FakeSocket(raw, step=step))
    got = bytearray()
    buf = bytearray(bufsize)
    with t.open("GET", "http://h/", {}) as resp:
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            got += buf[:n]
    assert bytes(got) == body


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(
    st.binary(max_size=400),
    st.builds(lambda head, tail: b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n" + tail,
              st.binary(max_size=200), st.binary(max_size=200)),
), step=st.integers(1, 64))
def test_mp_parser_fails_only_with_transport_errors(raw, step):
    t, _ = transport_for(FakeSocket(raw, step=step))
    try:
        t.transport("GET", "http://h/", {})
    except TransportError:
        pass


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Records the raw request line and header lines exactly as received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _record(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.got.append((self.command, self.path, list(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = _record


def _verify_like_the_service(method, host, path, header_lines, body, service):
    # Recompute the signature from what arrived, as AWS does: the path from the request
    # line, the headers named in SignedHeaders (repeated lines joined with ","), the body.
    from edgecore import sigv4

    auth = [v for k, v in header_lines if k.lower() == "authorization"]
    assert len(auth) == 1, header_lines
    signed = auth[0].split("SignedHeaders=")[1].split(",")[0].split(";")
    received = {}
    for name, value in header_lines:
        lname = name.lower()
        if lname in signed:
            received[lname] = received[lname] + "," + value if lname in received else value
    assert sorted(received) == sorted(signed), (signed, header_lines)
    payload = received.get("x-amz-content-sha256") or sigv4.payload_sha256(body)
    creq = sigv4.canonical_request(method, "http://" + host + path, received, payload, service)
    amzdate = received["x-amz-date"]
    sts = sigv4.string_to_sign(creq, amzdate, "us-east-1", service)
    key = sigv4.signing_key("SK", amzdate[:8], "us-east-1", service)
    return auth[0].endswith("Signature=" + sigv4.signature(key, sts))


def test_server_receives_exactly_the_signed_request():
    from edgecore import sigv4

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    httpd.daemon_threads = True
    httpd.got = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host = "127.0.0.1:%d" % httpd.server_address[1]
    cases = [
        ("s3", "GET", "/bucket/a%20b/%C3%A9/x!$&'()*+,;=:@~", {}),
        ("s3", "PUT", "/bucket//double//slash/a..b/.hidden", {"X-Meta": "1", "x-meta": " 2 "}),
        ("s3", "GET", "/bucket/k?b=2&a=1&a=%2F&list-type=2", {"Range": "bytes=0-9"}),
        ("sagemaker", "POST", "/a/./b/../GetDeployments", {"Content-Type": "application/json"}),
        ("sagemaker", "POST", "/GetDeployments", {"X-Custom": "a", "x-custom": "b",
                                                   "X-CUSTOM": ["c", "d"]}),
    ]
    try:
        t = cpython.make_transport()
        for service, method, path, headers in cases:
            url = "http://" + host + path
            body = b'{"a": 1}' if method != "GET" else b""
            signed = sigv4.sign_request(method, url, headers, body, access_key="AK",
                                        secret_key="SK", region="us-east-1", service=service,
                                        timestamp=1700000000)
            status, _, _ = t.transport(method, url, signed, body)
            assert status == 200
            got_method, got_path, got_headers, got_body = httpd.got[-1]
            # The request line carries the signed path and query byte for byte ...
            assert (got_method, got_path, got_body) == (method, path, body)
            # ... every header signed arrives once, with the value signed ...
            for name, value in signed.items():
                lines = [v for k, v in got_headers if k.lower() == name.lower()]
                assert lines == [value], (name, lines, got_headers)
            # ... and the service's own check of the signature passes.
            assert _verify_like_the_service(method, host, got_path, got_headers, got_body,
                                             service), (path, got_headers)
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- deadlines: the whole exchange ends by `deadline`, whatever a hostile peer does ----------


class Hostile:
    """A raw TCP server on 127.0.0.1 running ``script(conn, stop)`` per connection, in a
    thread; ``stop`` (an Event) is set by close() so a trickling script ends."""

    def __init__(self, script, tls=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.sent = [0]
        self.tls = tls
        scheme = "https" if tls else "http"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.sock.getsockname()[1])
        self.threads = []
        self.thread = threading.Thread(target=self._loop, args=(script,), daemon=True)
        self.thread.start()

    def _loop(self, script):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(script, conn), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, script, conn):
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request (small, one read)
            script(conn, self)
        except OSError:
            pass  # the client hung up: what a deadline does
        finally:
            conn.close()

    def trickle(self, conn, data, pause):
        for i in range(len(data)):
            if self.stop.wait(pause):
                return
            conn.sendall(data[i:i + 1])
            self.sent[0] += 1

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


def timed(func, *args, **kwargs):
    start = time.monotonic()
    try:
        func(*args, **kwargs)
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def test_deadline_ends_a_head_trickled_byte_by_byte():
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10000 + b"\r\n\r\n"
    srv = Hostile(lambda conn, srv: srv.trickle(conn, head, 0.05))
    try:
        t = cpython.make_transport(timeout=(5, 5))  # each byte comes well within 5 s
        exc, took = timed(t.transport, "GET", srv.url + "/", {}, deadline=time.monotonic() + 1)
        assert isinstance(exc, TransportError), exc
        assert "deadline passed" in str(exc) and exc.kind == "deadline passed"
        assert took < 3, took
        assert srv.sent[0] < 60  # ~20 bytes a second for a second, not the whole head
        # The same with open(): the head is read before open() returns.
        exc, took = timed(t.open, "GET", srv.url + "/", {}, deadline=time.monotonic() + 0.5)
        assert isinstance(exc, TransportError) and "deadline" in str(exc) and took < 3
    finally:
        srv.close()


def test_deadline_ends_an_endless_chunked_trailer():
    def script(conn, srv):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
        while not srv.stop.wait(0.05):
            conn.sendall(b"X-Trailer: more\r\n")
            srv.sent[0] += 1

    srv = Hostile(script)
    try:
        t = cpython.make_transport(timeout=(5, 5))
        exc, took = timed(t.transport, "GET", srv.url + "/", {}, deadline=time.monotonic() + 1)
        assert isinstance(exc, TransportError) and "deadline passed" in str(exc), exc
        assert took < 3, took
    finally:
        srv.close()


def test_chunked_trailer_is_bounded_in_lines():
    many = b"".join(b"X-T%d: x\r\n" % i for i in range(cpython.MAX_TRAILER_LINES + 1))
    few = b"X-A: 1\r\nX-B: 2\r\n"
    for trailer, ok in ((many, False), (few, True)):
        srv = Hostile(lambda conn, srv, trailer=trailer: conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
            + trailer + b"\r\n"))
        try:
            t = cpython.make_transport(timeout=(5, 5))
            if ok:
                assert t.transport("GET", srv.url + "/", {})[2] == b"hello"
            else:
                exc = raises(HttpProtocolError, t.transport, "GET", srv.url + "/", {})
                assert "more than %d chunked trailer lines" % cpython.MAX_TRAILER_LINES in str(exc)
        finally:
            srv.close()


def test_deadline_ends_a_trickled_body_and_can_be_moved():
    body = b"x" * 1000

    def script(conn, srv):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        srv.trickle(conn, body, 0.005)

    srv = Hostile(script)
    try:
        t = cpython.make_transport(timeout=(5, 5))
        exc, took = timed(t.transport, "GET", srv.url + "/", {}, deadline=time.monotonic() + 0.5)
        assert isinstance(exc, TransportError) and "deadline passed" in str(exc), exc
        assert took < 2.5, took
        # A download moves its deadline once the head is in: the body may take longer.
        resp = t.open("GET", srv.url + "/", {}, deadline=time.monotonic() + 0.3)
        assert resp.deadline is not None
        resp.deadline = None  # no deadline any more: the whole body arrives
        buf = bytearray(100)
        got = 0
        start = time.monotonic()
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            got += n
            if got > 100 and resp.deadline is None:
                resp.deadline = time.monotonic() + 0.3  # and back: ends ~0.3 s later
        raise AssertionError("read %d bytes past the deadline" % got)
    except TransportError as exc:
        assert "deadline passed" in str(exc)
        assert 100 < got < 1000 and time.monotonic() - start > 0.3
    finally:
        srv.close()


def test_deadline_ends_a_trickled_tls_handshake(tmp_path):
    cert, key = self_signed_cert(str(tmp_path))
    # A TLS record header announcing 16 KiB of handshake, then a byte every 50 ms.
    srv = Hostile(lambda conn, srv: srv.trickle(conn, b"\x16\x03\x03\x40\x00" + b"\x00" * 400,
                                                  0.05))
    try:
        t = cpython.make_transport(ca_bundle=cert, timeout=(5, 5))
        url = srv.url.replace("http://", "https://")
        exc, took = timed(t.transport, "GET", url + "/", {}, deadline=time.monotonic() + 1)
        assert isinstance(exc, TransportError) and "deadline passed" in str(exc), exc
        assert took < 3, took
    finally:
        srv.close()


def test_a_deadline_already_past_sends_nothing():
    srv = Server()
    try:
        t = cpython.make_transport()
        exc = raises(TransportError, t.transport, "GET", srv.url + "/echo", {},
                     deadline=time.monotonic() - 1)
        assert "deadline passed" in str(exc)
        assert srv.log == []
        # Met in time: the connection goes back to the pool and serves the next request,
        # and the finished exchange's timer does not cut it later.
        for _ in range(3):
            status, _, _ = t.transport("GET", srv.url + "/echo", {},
                                       deadline=time.monotonic() + 0.2)
            assert status == 200
        time.sleep(0.3)
        assert t.transport("GET", srv.url + "/echo", {})[0] == 200
        assert len({port for _, _, port in srv.log}) == 1, srv.log
    finally:
        srv.close()
