"""edgecore_ports.credentials_http: the deadline-bounded fetch, the container provider,
the STS providers' errors, and credential_process failures (CPython, local servers)."""

import socket
import sys
import threading
import time

import pytest
from fake_aws import FakeContainerEndpoint, FakeSts, minted

from edgecore_ports import credentials as ec
from edgecore_ports import credentials_http as ch

SECRET = "process/secret+key"


class RawServer:
    """A TCP server that answers every connection with ``script(conn)``."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.finished = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.sock.getsockname()[1]

    def _serve(self):
        conn, _ = self.sock.accept()
        conn.recv(65536)
        try:
            self.script(conn, self.stop)
            self.finished.set()
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def endless_trailer(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
    for _ in range(200):  # trailer lines, forever (bounded here)
        if stop.wait(0.05):
            return
        conn.sendall(b"X-Trailer: more\r\n")


def test_fetch_deadline_covers_an_endless_chunked_trailer():
    server = RawServer(endless_trailer)
    try:
        with pytest.raises(ch.FetchError) as info:
            ch.fetch("GET", server.url, deadline=1.0)
        assert info.value.timed_out and "deadline" in str(info.value)
        assert not server.finished.is_set()
    finally:
        server.close()


def test_fetch_bounds_the_body_and_lowercases_headers():
    def big(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Id: 7\r\n\r\n" + b"a" * 100)

    server = RawServer(big)
    try:
        with pytest.raises(ch.FetchTooLarge):
            ch.fetch("GET", server.url, max_bytes=99)
    finally:
        server.close()
    server = RawServer(big)
    try:
        status, headers, body = ch.fetch("GET", server.url, max_bytes=100)
        assert (status, headers["x-id"], body) == (200, "7", b"a" * 100)
    finally:
        server.close()


def test_fetch_connection_refused_is_a_transport_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ch.FetchError) as info:
        ch.fetch("GET", "http://127.0.0.1:%d/" % port, deadline=2)
    assert not info.value.timed_out and isinstance(info.value, ec.TransportError)


# -- container provider ---------------------------------------------------------------


@pytest.fixture
def tes():
    server = FakeContainerEndpoint().start()
    yield server
    server.stop()


def test_container_url_rules_as_botocore():
    ok = ["https://example.com/creds", "http://127.0.0.1:1/x", "http://127.9.9.9/x",
          "http://[::1]:8/x", "http://localhost:9/x", "http://169.254.170.2/x",
          "http://169.254.170.23/x", "http://[fd00:ec2::23]/x"]
    for url in ok:
        assert ch.ContainerProvider.from_environ(
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI": url}).url == url
    for url in ("http://10.0.0.1/x", "http://example.com/x", "ftp://127.0.0.1/x"):
        with pytest.raises(ec.CredentialsConfigError):
            ch.ContainerProvider.from_environ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": url})
    relative = ch.ContainerProvider.from_environ(
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/c"})
    assert relative.url == "http://169.254.170.2/v2/c"
    assert ch.ContainerProvider.from_environ({}) is None
    with pytest.raises(ec.CredentialsConfigError):
        ch.ContainerProvider.from_environ({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://[::1]/",
                                           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "a\r\nX: y"})


def test_container_token_file_is_read_on_every_fetch(tes, tmp_path):
    token = tmp_path / "token"
    token.write_text("old-token")
    tes.token = "old-token"
    p = ch.ContainerProvider.from_environ({
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": tes.credentials_url,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored-when-a-file-is-given"})
    assert p.get().access_key == minted(tes.label)[0]
    token.write_text("new-token")  # the service rotated it
    tes.token = "new-token"
    p.invalidate()
    p.get()
    assert [c["authorization"] for c in tes.calls] == ["old-token", "new-token"]
    assert "token" not in repr(p).replace("token=<redacted>", "")


def test_container_errors_are_typed(tes):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": tes.credentials_url,
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "wrong"}
    with pytest.raises(ch.CredentialsFetchError) as info:
        ch.ContainerProvider.from_environ(env).get()
    assert info.value.status == 403 and info.value.retryable is False
    tes.fail = [503]
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = tes.token
    with pytest.raises(ch.CredentialsFetchError) as info:
        ch.ContainerProvider.from_environ(env).get()
    assert info.value.status == 503 and info.value.retryable is True
    assert "wrong" not in str(info.value)


def test_container_expiry_on_the_servers_clock(tes):
    tes.date_offset = -7200  # the endpoint's clock is 2 h behind the device's
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": tes.credentials_url,
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": tes.token}
    p = ch.ContainerProvider.from_environ(env)
    now = time.time()
    creds = p.get(now)
    assert creds.expired(now) and p.refresh_state(now) is None
    assert p.get(now + 60) is creds and tes.issued == 1


# -- STS errors ---------------------------------------------------------------------------


def test_sts_errors_are_typed_and_name_the_code(tmp_path):
    sts = FakeSts({"AKIDBASE": ("base-secret", None)}).start()
    try:
        base = ec.StaticProvider(ec.Credentials("AKIDBASE", "wrong-secret"), "test")
        p = ch.AssumeRoleProvider("arn:aws:iam::1:role/r", base, endpoint_url=sts.url,
                                  region="us-west-2")
        with pytest.raises(ch.CredentialsFetchError) as info:
            p.get()
        assert (info.value.status, info.value.code) == (403, "SignatureDoesNotMatch")
        assert info.value.retryable is False and "wrong-secret" not in str(info.value)
        sts.fail = [500]
        base = ec.StaticProvider(ec.Credentials("AKIDBASE", "base-secret"), "test")
        p = ch.AssumeRoleProvider("arn:aws:iam::1:role/r", base, endpoint_url=sts.url,
                                  region="us-west-2")
        with pytest.raises(ch.CredentialsFetchError) as info:
            p.get()
        assert info.value.retryable is True
        assert p.get().access_key == minted("arn:aws:iam::1:role/r")[0]
        token = tmp_path / "t"
        token.write_text("not-the-token")
        w = ch.WebIdentityProvider("arn:aws:iam::1:role/w", str(token), endpoint_url=sts.url)
        with pytest.raises(ch.CredentialsFetchError) as info:
            w.get()
        assert info.value.code == "InvalidIdentityToken" and "not-the-token" not in str(
            info.value)
    finally:
        sts.stop()


def test_sts_endpoint_from_the_table():
    base = ec.StaticProvider(ec.Credentials("A", "S"), "t")
    p = ch.AssumeRoleProvider("arn:aws-cn:iam::1:role/r", base, region="cn-north-1")
    assert (p.url, p.region) == ("https://sts.cn-north-1.amazonaws.com.cn/", "cn-north-1")
    p = ch.AssumeRoleProvider("arn:aws:iam::1:role/r", base, region="us-west-2", fips=True)
    assert p.url == "https://sts-fips.us-west-2.amazonaws.com/"
    p = ch.AssumeRoleProvider("arn:aws:iam::1:role/r", base)  # no region: the global endpoint
    assert (p.url, p.region) == ("https://sts.amazonaws.com/", "us-east-1")


# -- credential_process failures ----------------------------------------------------------


def _script(tmp_path, body):
    path = tmp_path / "proc.py"
    path.write_text(body)
    return "%s %s" % (sys.executable, path)


def test_process_failures_are_typed_and_hide_stderr(tmp_path):
    cases = [
        ("import sys\nsys.stderr.write(%r)\nsys.exit(3)\n" % SECRET, "exited with status 3",
         True),
        ("print('not json %s')\n" % SECRET, "malformed", False),
        ("print('{\"Version\": 2}')\n", "Version", False),
        ("import time\ntime.sleep(30)\n", "no answer", True),
    ]
    for body, words, retryable in cases:
        p = ec.ProcessProvider(_script(tmp_path, body), "p", timeout=1)
        with pytest.raises(ec.CredentialsProcessError) as info:
            p.get()
        assert words in str(info.value) and info.value.retryable is retryable, body
        assert SECRET not in str(info.value)
    p = ec.ProcessProvider("/nonexistent/tool --x", "p")
    with pytest.raises(ec.CredentialsProcessError) as info:
        p.get()
    assert info.value.retryable is False and "cannot run" in str(info.value)


def test_process_without_expiration_never_refreshes(tmp_path):
    marker = tmp_path / "runs"
    body = ("import json, pathlib\np = pathlib.Path(%r)\np.write_text(p.read_text() + 'x' "
            "if p.exists() else 'x')\nprint(json.dumps({'Version': 1, 'AccessKeyId': 'AK', "
            "'SecretAccessKey': 'SK'}))\n" % str(marker))
    p = ec.ProcessProvider(_script(tmp_path, body), "p")
    first = p.get(0)
    assert p.get(10**9) is first and marker.read_text() == "x"
