"""Security review, written as tests (CPython; the local cloud of tests/conftest.py).

- The agent never writes outside model_dir and state_dir: hostile ModelHandles and S3
  keys fail with a typed FAIL result and leave no file anywhere else (a whole temp
  root is snapshotted before and after); archives are stored, never unpacked.
- It never follows a redirect, so credentials never reach another host.
- TLS verification is on unless the config turns it off, and then a loud warning.
- State and cached (IoT) credentials are owner-only (0600), whatever the umask.
- Secrets never appear in the output or in any file the agent writes (a full CLI cycle
  at --log-level debug with a known secret key and session token).
"""

import hashlib
import http.server
import io
import json
import logging
import os
import stat
import sys
import tarfile
import threading

import pytest

from edgecore_ports.runner import Runner, load_config

MARK = "edgecore-escape-7f3a"  # every hostile path names this: find it anywhere afterwards


# ---- helpers ---------------------------------------------------------------------------


def device_dirs(tmp_path):
    """model_dir and state_dir three levels down a fresh root, so that "../.." escapes
    still land inside the root we snapshot."""
    base = tmp_path / "root" / "a" / "b"
    return base / "models", base / "state"


def snapshot(root):
    """{relative path: (kind, size, mode)} of everything under root (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) \
                else "file"
            out[os.path.relpath(path, str(root))] = (kind, st.st_size, st.st_mode & 0o777)
    return out


def escaped(before, after, allowed_prefixes):
    """Paths new or changed in `after` that are not under one of `allowed_prefixes`."""
    bad = []
    for path, info in after.items():
        if before.get(path) == info:
            continue
        if not any(path == p or path.startswith(p + os.sep) for p in allowed_prefixes):
            bad.append(path)
    return sorted(bad)


def marked_paths(tmp_path, models, state_dir):
    """Paths naming MARK outside model_dir/state_dir: anywhere under tmp_path, and at
    the top of /tmp and of tmp_path's parent (where absolute or ../ escapes would land)."""
    inside = (os.path.realpath(str(models)), os.path.realpath(str(state_dir)))
    found = []
    for dirpath, dirnames, filenames in os.walk(str(tmp_path)):
        if os.path.realpath(dirpath).startswith(inside):
            continue
        found += [os.path.join(dirpath, n) for n in dirnames + filenames if MARK in n]
    for top in ("/tmp", os.path.dirname(str(tmp_path)), "/"):
        found += [os.path.join(top, n) for n in os.listdir(top) if MARK in n]
    return found


def make_runner(config_doc, **kwargs):
    events = []
    r = Runner(load_config(config_doc, environ={}), environ={},
               log=lambda level, event, **f: events.append((level, event, f)),
               sleep=lambda s: None, **kwargs)
    r.events = events
    return r


def results_by_name(cloud):
    return dict((r["deployment"], r["body"]) for r in cloud.results())


def put(cloud, key, data):
    cloud.s3.put_object(cloud.bucket, key, data)
    return "s3://%s/%s" % (cloud.bucket, key)


def definition(handle, s3url, data, state="DEPLOY"):
    return {
        "ModelHandle": handle,
        "ModelName": "hostile-model",
        "ModelVersion": "1.0",
        "State": state,
        "S3Url": s3url,
        "Checksum": {"Type": "SHA1", "Sum": hashlib.sha1(data).hexdigest()},
    }


# ---- never writes outside model_dir and state_dir --------------------------------------

HOSTILE_HANDLES = [
    "..",
    ".",
    "../" + MARK,
    "a/../../" + MARK,
    "/tmp/" + MARK,
    "x/" + MARK,
    MARK + "/..",
    "..\\" + MARK,
    MARK + "\x00",
    "",
]


@pytest.mark.parametrize("state", ["DEPLOY", "UNDEPLOY"])
def test_hostile_model_handles_fail_and_write_nothing_outside(local_cloud, tmp_path, state):
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    data = b"payload " * 100
    url = put(cloud, "models/ok/model.bin", data)
    r = make_runner(cloud.agent_config(models, state_dir))
    assert r.cycle()["ok"]  # creates the dirs: the baseline has them
    root = tmp_path / "root"
    before = snapshot(root)
    names = []
    for i, handle in enumerate(HOSTILE_HANDLES):
        name = "hostile-%d" % i
        cloud.db.add_deployment(name, "ROLLBACK_ON_FAILURE", [definition(handle, url, data, state)],
                                device=cloud.device_name)
        names.append((name, handle))
    for _ in range(len(names)):  # one result per heartbeat, a few heartbeats per cycle
        report = r.cycle()
        assert report["ok"], report
        if all(n in results_by_name(cloud) for n, _ in names):
            break
    after = snapshot(root)
    allowed = [os.path.relpath(str(models), str(root)), os.path.relpath(str(state_dir), str(root))]
    assert escaped(before, after, allowed) == []
    assert marked_paths(tmp_path, models, state_dir) == []
    results = results_by_name(cloud)
    for name, handle in names:
        res = results[name]  # every hostile deployment got a result: a typed FAIL
        assert res["DeploymentStatus"] == "FAIL", (handle, res)
        model = res["DeploymentModels"][0]
        assert model["Status"] == "FAIL"
        assert "invalid ModelHandle" in model["StatusReason"], (handle, model)
    # Nothing hostile became active, nothing was downloaded.
    assert sorted(os.listdir(str(models))) == [".versions"]
    assert os.listdir(str(models / ".versions")) == []


@pytest.mark.parametrize(
    "key",
    [
        "../../" + MARK + ".bin",
        "models/../../../" + MARK,
        "models/..",
        "models/" + MARK + "/..",
        "models/%2e%2e/%2e%2e/" + MARK,
        "models/..%2f..%2f" + MARK,
        "/" + MARK,
        "models/.." + "\\" + MARK,
        "models/edgecore.json",
    ],
)
def test_hostile_s3_keys_stay_inside_model_dir(local_cloud, tmp_path, key):
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    data = b"model bytes " * 50
    try:
        url = put(cloud, key, data)
    except Exception:  # an S3 that will not store such a key: the agent still gets the URL
        url = "s3://%s/%s" % (cloud.bucket, key)
    r = make_runner(cloud.agent_config(models, state_dir))
    assert r.cycle()["ok"]
    root = tmp_path / "root"
    before = snapshot(root)
    cloud.db.add_deployment("d1", "ROLLBACK_ON_FAILURE", [definition("cam", url, data)],
                            device=cloud.device_name)
    report = r.cycle()
    assert report["ok"], report
    after = snapshot(root)
    allowed = [os.path.relpath(str(models), str(root)), os.path.relpath(str(state_dir), str(root))]
    assert escaped(before, after, allowed) == []
    assert marked_paths(tmp_path, models, state_dir) == []
    res = results_by_name(cloud)["d1"]
    model = res["DeploymentModels"][0]
    if model["Status"] == "SUCCESS":
        # Stored under the handle's version directory, under a sanitized file name.
        link = models / "cam"
        assert os.path.realpath(str(link)).startswith(os.path.realpath(str(models)) + os.sep)
        files = sorted(p.name for p in link.iterdir())
        assert len(files) == 2 and "edgecore.json" in files
        artifact = [f for f in files if f != "edgecore.json"][0]
        assert "/" not in artifact and not artifact.startswith(".")
        assert (link / artifact).read_bytes() == data
    else:
        assert res["DeploymentStatus"] == "FAIL" and model["StatusReason"]


def _tar_with_hostile_members():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind in (("../" + MARK, "file"), ("/tmp/" + MARK, "file"),
                           (MARK + "-link", "symlink"), ("ok/model.bin", "file")):
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                payload = b"member " + name.encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.mark.parametrize("unpack", [True, False])
def test_a_hostile_archive_is_refused_or_stored_verbatim(local_cloud, tmp_path, unpack):
    # A model archive with "..", absolute and symlink members: refused whole when model
    # packages are unpacked (the default: edgecore_ports.archive's rules, the deployment
    # FAILs), one opaque file with unpack_archives false; never anything outside.
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    data = _tar_with_hostile_members()
    url = put(cloud, "models/cam/model.tar.gz", data)
    cloud.db.add_deployment("d-tar", "ROLLBACK_ON_FAILURE", [definition("cam", url, data)],
                            device=cloud.device_name)
    root = tmp_path / "root"
    models.parent.mkdir(parents=True)
    before = snapshot(root)
    r = make_runner(cloud.agent_config(models, state_dir, unpack_archives=unpack))
    assert r.cycle()["ok"]
    result = results_by_name(cloud)["d-tar"]
    allowed = [os.path.relpath(str(models), str(root)), os.path.relpath(str(state_dir), str(root))]
    assert escaped(before, snapshot(root), allowed) == []
    assert marked_paths(tmp_path, models, state_dir) == []
    if unpack:
        assert result["DeploymentStatus"] == "FAIL", result
        assert "model package refused" in result["DeploymentModels"][0]["StatusReason"]
        assert not os.path.lexists(str(models / "cam"))
        assert [p for p in snapshot(models) if os.path.islink(str(models / p))] == []
        return
    assert result["DeploymentStatus"] == "SUCCESS"
    link = models / "cam"
    assert sorted(p.name for p in link.iterdir()) == ["edgecore.json", "model.tar.gz"]
    assert (link / "model.tar.gz").read_bytes() == data
    links = [p for p in snapshot(models) if os.path.islink(str(models / p))]
    assert links == ["cam"]  # the only symlink is the agent's own active-model link


# ---- redirects -------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request; answers 307 to ``redirect_to`` (or 200 when None)."""

    redirect_to = None
    seen = None

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path, dict(self.headers)))
        if self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _any

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector():
    """(redirecting server URL, list of requests the *other* host received)."""
    servers = []

    def serve(redirect_to):
        handler = type("H", (_Recorder,), {"redirect_to": redirect_to, "seen": []})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, handler.seen

    other, other_seen = serve(None)
    # Another host: "localhost" instead of 127.0.0.1, and another port.
    redir, redir_seen = serve("http://localhost:%d" % other.server_address[1])
    yield "http://127.0.0.1:%d" % redir.server_address[1], redir_seen, other_seen
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("port_name", ["cpython", "micropython"])
def test_transports_do_not_follow_redirects(redirector, port_name):
    url, redir_seen, other_seen = redirector
    import importlib

    port = importlib.import_module("edgecore_ports." + port_name)
    t = port.make_transport()
    status, headers, body = t.transport(
        "GET", url + "/bucket/key", {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/x"})
    assert status == 307
    assert len(redir_seen) == 1
    assert other_seen == []
    with t.open("GET", url + "/bucket/key", {"Authorization": "x"}) as resp:
        assert resp.status == 307
    assert other_seen == []


def test_agent_never_sends_credentials_to_a_redirect_target(local_cloud, tmp_path, redirector):
    url, redir_seen, other_seen = redirector
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    d = cloud.deploy("cam", "detector", "1.0", data=b"m" * 1000)
    # The edge endpoint is real; S3 answers 307 to another host (as a hostile or
    # misconfigured S3 endpoint / region redirect would).
    r = make_runner(cloud.agent_config(models, state_dir, s3_endpoint_url=url))
    report = r.cycle()
    assert report["ok"], report
    assert redir_seen and all("Authorization" in h for _, _, h in redir_seen)
    assert other_seen == []
    model = results_by_name(cloud)[d["DeploymentName"]]["DeploymentModels"][0]
    assert model["Status"] == "FAIL"
    assert "307" in model["StatusReason"], model["StatusReason"]
    assert not os.path.lexists(str(models / "cam"))


def test_agent_edge_endpoint_redirect_is_an_error_not_followed(tmp_path, redirector):
    url, redir_seen, other_seen = redirector
    models, state_dir = device_dirs(tmp_path)
    doc = {
        "device_name": "dev-1", "fleet_name": "fleet-1", "region": "us-west-2",
        "model_dir": str(models), "state_dir": str(state_dir), "endpoint_url": url,
        "s3_endpoint_url": url, "max_retries": 0,
        "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40},
    }
    r = make_runner(doc)
    report = r.cycle()
    assert not report["ok"]
    assert redir_seen
    assert other_seen == []


# ---- hostile S3 responses ---------------------------------------------------------------


@pytest.fixture
def raw_s3():
    """A one-answer-per-connection S3 stand-in: returns (url, set_response(bytes))."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    answer = [b"HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n"]
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(answer[0])
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.getsockname()[1], lambda b: answer.__setitem__(0, b)
    stop.set()
    t.join(5)
    srv.close()


BODY = b"m" * 1000
HOSTILE_S3 = {
    "latin1-digit-length": b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n"
    + BODY,
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\nConnection: close\r\n\r\n"
    + BODY,
    "huge-length": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\n" + BODY,
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY,
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + BODY,
    "206-unasked": b"HTTP/1.1 206 Partial\r\nContent-Range: bytes x\r\nContent-Length: 10\r\n"
    b"\r\n0123456789",
    "xml-error-huge": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 200040\r\n\r\n<Error><Code>"
    + b"C" * 100000 + b"</Code><Message>" + b"M" * 100000 + b"</Message></Error>",
    "garbage": b"\x00\xff" * 5000,
}


@pytest.mark.parametrize("case", sorted(HOSTILE_S3))
def test_hostile_s3_response_fails_the_model_cleanly(local_cloud, tmp_path, raw_s3, case):
    cloud = local_cloud
    url, set_response = raw_s3
    set_response(HOSTILE_S3[case])
    models, state_dir = device_dirs(tmp_path)
    s3url_ = "s3://%s/models/cam/model.bin" % cloud.bucket
    cloud.db.add_deployment("d-s3", "ROLLBACK_ON_FAILURE", [definition("cam", s3url_, BODY)],
                            device=cloud.device_name)
    r = make_runner(cloud.agent_config(models, state_dir, s3_endpoint_url=url,
                                       max_retries=1, retry_time_budget=1))
    report = r.cycle()
    assert report["ok"], report
    res = results_by_name(cloud)["d-s3"]
    model = res["DeploymentModels"][0]
    if case in ("negative-length", "latin1-digit-length") and model["Status"] == "SUCCESS":
        # requests ignores an invalid Content-Length and the agent treats it as unknown
        # (ASCII digits only): the body is read to the close, and the bytes still had to
        # match the SHA1 to be activated.
        assert [p.read_bytes() for p in (models / "cam").iterdir()
                if p.name != "edgecore.json"] == [BODY]
        return
    assert model["Status"] == "FAIL", model
    assert 0 < len(model["StatusReason"]) <= 1024
    assert not os.path.lexists(str(models / "cam"))
    assert os.listdir(str(models / ".versions")) == []


class _SmallDiskPort:
    """The real port, with free_space() saying only `free` bytes are left."""

    def __init__(self, port, free):
        self._port = port
        self.free = free

    def free_space(self, path):
        return self.free

    def __getattr__(self, name):
        return getattr(self._port, name)


def test_download_without_length_is_bounded_by_free_space(local_cloud, tmp_path, raw_s3):
    from edgecore_ports import load_port

    cloud = local_cloud
    url, set_response = raw_s3
    chunk = b"z" * 65536
    body = (b"10000\r\n" + chunk + b"\r\n") * 64 + b"0\r\n\r\n"  # 4 MiB, chunked
    set_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    models, state_dir = device_dirs(tmp_path)
    s3url_ = "s3://%s/models/cam/model.bin" % cloud.bucket
    cloud.db.add_deployment("d-big", "ROLLBACK_ON_FAILURE", [definition("cam", s3url_, b"x")],
                            device=cloud.device_name)
    reserve = 1 << 20
    seen = []
    config = load_config(cloud.agent_config(models, state_dir, s3_endpoint_url=url,
                                            max_retries=0, free_space_reserve_bytes=reserve),
                         environ={})
    r = Runner(config, environ={}, sleep=lambda s: None,
               port=_SmallDiskPort(load_port(config["board"]), reserve + (1 << 20)),
               progress=lambda handle, done, total: seen.append(done))
    assert r.cycle()["ok"]
    assert results_by_name(cloud)["d-big"]["DeploymentStatus"] == "FAIL"
    assert max(seen or [0]) <= (1 << 20) + 65536  # stopped once the free space was used


# ---- TLS verification ------------------------------------------------------------------


def test_tls_verification_is_on_by_default(tmp_path):
    models, state_dir = device_dirs(tmp_path)
    doc = {"device_name": "d", "fleet_name": "f", "region": "us-west-2",
           "model_dir": str(models), "state_dir": str(state_dir),
           "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "x" * 40}}
    config = load_config(doc, environ={})
    assert config["verify_tls"] is True
    r = Runner(config, environ={})
    assert r.http.session.verify is True
    r2 = Runner(load_config(dict(doc, ca_bundle="/etc/ssl/certs/ca.pem"), environ={}),
                environ={})
    assert r2.http.session.verify == "/etc/ssl/certs/ca.pem"
    for bad in ("false", 0, "no", None):
        with pytest.raises(Exception) as info:
            load_config(dict(doc, verify_tls=bad), environ={})
        assert "verify_tls" in str(info.value)


def test_tls_verification_off_only_when_asked_and_loudly(tmp_path, monkeypatch, caplog):
    from edgecore_ports import cpython

    monkeypatch.setattr(cpython, "_warned_insecure", False)
    models, state_dir = device_dirs(tmp_path)
    doc = {"device_name": "d", "fleet_name": "f", "region": "us-west-2",
           "model_dir": str(models), "state_dir": str(state_dir), "verify_tls": False,
           "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "x" * 40}}
    with caplog.at_level(logging.WARNING):
        r = Runner(load_config(doc, environ={}), environ={})
    assert r.http.session.verify is False
    warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert any("TLS CERTIFICATE VERIFICATION IS DISABLED" in rec.getMessage() for rec in warnings)


def test_micropython_transport_warns_when_tls_verification_is_off(monkeypatch, capsys):
    from edgecore_ports import micropython as mp

    monkeypatch.setattr(mp, "_warned_insecure", False)
    t = mp.make_transport()
    assert t.verify is True
    assert "DISABLED" not in capsys.readouterr().out
    mp.make_transport(verify=False)
    assert "TLS CERTIFICATE VERIFICATION IS DISABLED" in capsys.readouterr().out


def test_cli_logs_the_tls_warning(local_cloud, tmp_path, run_cli):
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(cloud.agent_config(models, state_dir, verify_tls=False)))
    proc = run_cli(["run", "--config", str(path), "--once"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TLS CERTIFICATE VERIFICATION IS DISABLED" in proc.stderr
    proc = run_cli(["run", "--config", str(path.with_name("x.json")), "--once"])
    assert "TLS CERTIFICATE" not in proc.stderr


def test_cli_tls_warning_is_a_json_log_line(local_cloud, tmp_path, run_cli):
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(cloud.agent_config(models, state_dir, verify_tls=False)))
    proc = run_cli(["run", "--config", str(path), "--once"])
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    warnings = [r for r in records if r["event"] == "python.log" and r["level"] == "warning"]
    assert any("verif" in r["message"].lower() for r in warnings), records


# ---- file modes ------------------------------------------------------------------------


def _assert_owner_only(directory):
    checked = 0
    for dirpath, _dirnames, filenames in os.walk(str(directory)):
        for name in filenames:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            assert mode & 0o077 == 0, (os.path.join(dirpath, name), oct(mode))
            checked += 1
    return checked


def test_state_files_are_0600_whatever_the_umask(local_cloud, tmp_path):
    cloud = local_cloud
    models, state_dir = device_dirs(tmp_path)
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 1000)
    old = os.umask(0)  # the worst case: everything created world-writable by default
    try:
        r = make_runner(cloud.agent_config(models, state_dir))
        assert r.cycle()["ok"]
        from edgecore_ports.runner import record_inference

        record_inference(str(state_dir), "cam", latency_ms=3)
        assert r.cycle()["ok"]
    finally:
        os.umask(old)
    # 0710: the agent's group may reach the local API's socket, nothing more.
    assert os.stat(str(state_dir)).st_mode & 0o777 == 0o710
    assert os.stat(str(state_dir / "state.json")).st_mode & 0o777 == 0o600
    assert _assert_owner_only(state_dir) >= 1


@pytest.fixture
def iot_cloud(local_cloud, tmp_path):
    from edgecore_tools.localcloud.iot import IotCredentialsEndpoint

    iot = IotCredentialsEndpoint.start(local_cloud, tmp_path / "pki")
    try:
        yield local_cloud, iot
    finally:
        iot.stop()


def test_iot_credentials_cache_is_0600_and_secrets_stay_out_of_logs(iot_cloud, tmp_path):
    cloud, iot = iot_cloud
    cert, key = iot.provision("thing-sec")
    models, state_dir = device_dirs(tmp_path)
    cache_dir = tmp_path / "iot-cache"
    cache_dir.mkdir(mode=0o700)
    cache = cache_dir / "iot-credentials.json"
    doc = iot.agent_config(models, state_dir, "thing-sec", cert, key,
                           iot_extra={"cache_file": str(cache), "timeout": [5, 5]})
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 1000)
    old = os.umask(0)
    try:
        r = make_runner(doc)
        assert r.cycle()["ok"]
    finally:
        os.umask(old)
    assert os.stat(str(cache)).st_mode & 0o777 == 0o600
    assert _assert_owner_only(state_dir) >= 1
    record = cloud.db.lookup_key(iot.minted[0]["access_key_id"])
    cached = json.loads(cache.read_text())
    assert cached["secretAccessKey"] == record.secret_key
    text = json.dumps(r.events, default=str)
    for secret in (record.secret_key, record.session_token):
        assert secret not in text
        assert secret not in (state_dir / "state.json").read_text()
    # A cache file others can read is not trusted (and not used).
    os.chmod(str(cache), 0o644)
    r2 = make_runner(doc)
    assert r2.credentials._seed(r2.now()) is None


# ---- secrets never logged ---------------------------------------------------------------


def _scan(paths, secrets):
    hits = []
    for root in paths:
        for dirpath, _dirnames, filenames in os.walk(str(root)):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    content = f.read()
                for s in secrets:
                    if s.encode() in content:
                        hits.append((path, s[:6]))
    return hits


def test_full_cli_cycle_at_debug_never_shows_secrets(local_cloud, tmp_path, agent_env, run_cli):
    import subprocess

    cloud = local_cloud
    key = cloud.create_key(temporary=True, expires_in=3600)
    secrets = [key["secret_access_key"], key["session_token"]]
    assert all(len(s) >= 16 for s in secrets)
    models, state_dir = device_dirs(tmp_path)
    good = cloud.deploy("cam", "detector", "1.0", data=b"m" * 5000)
    bad = cloud.deploy("gps", "gps-model", "1.0", data=b"g" * 5000)
    cloud.put_object(bad["Definitions"][0]["S3Url"], b"tampered")  # a failure path too
    cloud.inject_fault("GetDeployments", status=400, code="ThrottlingException",
                       message="Rate exceeded", times=1)  # and a retry
    config = cloud.agent_config(models, state_dir, credentials=cloud.credentials_config(key))
    cfg_path = tmp_path / "agent.json"
    cfg_path.write_text(json.dumps(config))
    agent_tmp = tmp_path / "agent-tmp"
    agent_tmp.mkdir()
    env = dict(agent_env, TMPDIR=str(agent_tmp))
    outputs = []
    for args in (["run", "--config", str(cfg_path), "--once", "--log-level", "debug"],
                 ["status", "--config", str(cfg_path)],
                 ["status", "--config", str(cfg_path), "--json"]):
        proc = subprocess.run([sys.executable, "-m", "edgecore_tools.cli"] + args,
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout + proc.stderr)
    results = results_by_name(cloud)
    assert results[good["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert results[bad["DeploymentName"]]["DeploymentStatus"] == "FAIL"
    assert "debug" in outputs[0]  # the debug level really was on
    for out in outputs:
        for s in secrets:
            assert s not in out
    assert _scan([models, state_dir, agent_tmp], secrets) == []
    # And a failing run (the service refuses the signature) says why without the secret.
    config["credentials"]["secret_access_key"] = "WRONG" + key["secret_access_key"]
    cfg_path.write_text(json.dumps(config))
    proc = run_cli(["run", "--config", str(cfg_path), "--once", "--log-level", "debug"])
    assert proc.returncode == 1
    for s in secrets + [config["credentials"]["secret_access_key"]]:
        assert s not in proc.stdout + proc.stderr
