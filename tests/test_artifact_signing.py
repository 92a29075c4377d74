"""Detached artifact signatures (edgecore_ports.signing): the CPython runner against the
local cloud verifies `<key>.sig` with the key pinned in its config; config validation;
the MicroPython agent refuses the keys. CPython only (needs `cryptography`)."""

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from edgecore_ports import ConfigError, signing
from edgecore_ports.runner import Runner, load_config
from edgecore_tools import sign_artifact


def new_key(kind):
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_keys(tmp_path, kind, name="key"):
    """(private PEM path, public PEM path) of a new key."""
    key = new_key(kind)
    priv = tmp_path / (name + ".pem")
    pub = tmp_path / (name + ".pub.pem")
    priv.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


def make_runner(cloud, tmp_path, **extra):
    config = load_config(
        cloud.agent_config(tmp_path / "models", tmp_path / "state", **extra), environ={}
    )
    events = []
    r = Runner(config, environ={}, log=lambda level, event, **f: events.append((level, event, f)),
               sleep=lambda s: None)
    r.events = events
    return r


def active_bytes(tmp_path, handle):
    link = tmp_path / "models" / handle
    assert link.is_symlink(), handle
    files = [p for p in link.iterdir() if p.name != "edgecore.json"]
    assert len(files) == 1
    return files[0].read_bytes()


def no_staged(tmp_path):
    staging = tmp_path / "models" / ".staging"
    return not staging.exists() or not os.listdir(str(staging))


def result(cloud, deployment):
    res = dict((r["deployment"], r["body"]) for r in cloud.results())[deployment["DeploymentName"]]
    return res["DeploymentStatus"], res["DeploymentModels"][0].get("StatusReason", "")


def sig_url(deployment):
    return deployment["Definitions"][0]["S3Url"] + signing.SUFFIX


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_good_signature_activates(local_cloud, tmp_path, kind):
    priv, pub = write_keys(tmp_path, kind)
    data = os.urandom(200000)
    d = local_cloud.deploy("cam", "detector", "1.0", data=data, signing_key=priv)
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub,
                    require_artifact_signature=True)
    assert r.cycle()["ok"]
    assert result(local_cloud, d)[0] == "SUCCESS"
    assert active_bytes(tmp_path, "cam") == data
    assert any(e[1] == "signature.verified" for e in r.events)


def test_missing_signature_with_require_fails_and_keeps_previous(local_cloud, tmp_path):
    priv, pub = write_keys(tmp_path, "ed25519")
    v1 = b"good model " * 1000
    local_cloud.deploy("cam", "detector", "1.0", data=v1, signing_key=priv)
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub,
                    require_artifact_signature=True)
    assert r.cycle()["ok"]
    d2 = local_cloud.deploy("cam", "detector", "2.0", data=b"unsigned " * 1000)
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d2)
    assert status == "FAIL"
    assert "artifact signature missing" in reason, reason
    assert active_bytes(tmp_path, "cam") == v1
    assert no_staged(tmp_path)
    sha1 = hashlib.sha1(b"unsigned " * 1000).hexdigest()
    assert not (tmp_path / "models" / ".versions" / ("cam-" + sha1)).exists()


class Killed(Exception):
    pass


def staged_then_killed(cloud, tmp_path):
    """A cycle without a signing key, killed right after the download: the version is
    verified and in .versions, never activated."""
    from edgecore import agent

    def kill_after_download(point):
        if point == "executed-" + agent.DOWNLOAD:
            raise Killed(point)

    r = make_runner(cloud, tmp_path)
    r.crash_hook = kill_after_download
    with pytest.raises(Killed):
        r.cycle()


def test_version_staged_before_the_key_was_pinned_is_checked(local_cloud, tmp_path):
    """A version verified and moved into .versions while no key was pinned, the agent
    killed before activating it, restarted with a key: the version on disk is not
    trusted, it needs its signature like a new download."""

    _, pub = write_keys(tmp_path, "ed25519")
    unsigned = b"unsigned model " * 1000
    d = local_cloud.deploy("cam", "detector", "1.0", data=unsigned)
    staged_then_killed(local_cloud, tmp_path)
    sha1 = hashlib.sha1(unsigned).hexdigest()
    assert (tmp_path / "models" / ".versions" / ("cam-" + sha1)).is_dir()
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub,
                    require_artifact_signature=True)
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d)
    assert status == "FAIL" and "artifact signature missing" in reason, reason
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))
    assert not any(e[1] == "download.verified" for e in r.events)  # not fetched again


@pytest.mark.parametrize("signed", [True, False])
def test_a_package_staged_before_the_key_was_pinned_is_checked_by_its_digest(
        local_cloud, tmp_path, signed):
    """The same with a model package: its artifact is gone once unpacked, the SHA-256
    kept in edgecore.json is what the signature is checked against."""
    import io
    import tarfile


    priv, pub = write_keys(tmp_path, "ed25519")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("model/weights.bin")
        info.size = 5000
        tf.addfile(info, io.BytesIO(b"w" * 5000))
    d = local_cloud.deploy("cam", "detector", "1.0", data=buf.getvalue(),
                           signing_key=priv if signed else None)
    staged_then_killed(local_cloud, tmp_path)
    vdir = tmp_path / "models" / ".versions" / ("cam-" + hashlib.sha1(buf.getvalue()).hexdigest())
    assert sorted(os.listdir(str(vdir))) == ["content", "edgecore.json"]
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub,
                    require_artifact_signature=True)
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d)
    if signed:
        assert status == "SUCCESS", reason
        assert (tmp_path / "models" / "cam" / "model" / "weights.bin").read_bytes() == b"w" * 5000
    else:
        assert status == "FAIL" and "artifact signature missing" in reason, reason
    assert not any(e[1] == "download.verified" for e in r.events)  # not fetched again


@pytest.mark.parametrize("forgery", ["other-key", "other-bytes", "garbage"])
@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_wrong_signature_fails(local_cloud, tmp_path, kind, forgery):
    priv, pub = write_keys(tmp_path, kind)
    other_priv, _ = write_keys(tmp_path, kind, name="other")
    data = b"model " * 5000
    d = local_cloud.deploy("cam", "detector", "1.0", data=data, signing_key=priv)
    if forgery == "other-key":
        sig = signing.sign(sign_artifact.load_private_key(other_priv),
                           hashlib.sha256(data).hexdigest())
    elif forgery == "other-bytes":
        sig = signing.sign(sign_artifact.load_private_key(priv),
                           hashlib.sha256(b"another model").hexdigest())
    else:
        sig = b"\x30" * 70
    local_cloud.put_object(sig_url(d), sig)
    # require=false: a present but wrong signature fails all the same.
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub)
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d)
    assert status == "FAIL"
    assert "artifact signature does not verify with the pinned key" in reason, reason
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))
    assert no_staged(tmp_path)


def test_oversized_signature_fails(local_cloud, tmp_path):
    _, pub = write_keys(tmp_path, "ed25519")
    d = local_cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    local_cloud.put_object(sig_url(d), b"x" * (signing.MAX_SIGNATURE + 1))
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub)
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d)
    assert status == "FAIL" and "larger than" in reason, reason


def test_missing_signature_without_require_warns_and_activates(local_cloud, tmp_path):
    _, pub = write_keys(tmp_path, "p256")
    data = b"unsigned model " * 100
    d = local_cloud.deploy("cam", "detector", "1.0", data=data)
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub)
    assert r.cycle()["ok"]
    assert result(local_cloud, d)[0] == "SUCCESS"
    assert active_bytes(tmp_path, "cam") == data
    warnings = [e for e in r.events if e[1] == "signature.missing"]
    assert warnings and warnings[0][0] == "warning"
    assert warnings[0][2]["url"] == sig_url(d)


def test_no_key_configured_ignores_signatures(local_cloud, tmp_path):
    d = local_cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    local_cloud.put_object(sig_url(d), b"not a signature")
    r = make_runner(local_cloud, tmp_path)
    assert r.cycle()["ok"]
    assert result(local_cloud, d)[0] == "SUCCESS"


def base_config(tmp_path):
    return {"device_name": "d", "fleet_name": "f", "region": "us-west-2",
            "model_dir": str(tmp_path / "m"), "state_dir": str(tmp_path / "s")}


def test_config_validation(tmp_path):
    _, pub = write_keys(tmp_path, "ed25519")
    _, p384 = write_keys(tmp_path, "p384", name="p384")
    _, rsa_pub = write_keys(tmp_path, "rsa", name="rsa")
    priv_only, _ = write_keys(tmp_path, "p256", name="priv")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    base = base_config(tmp_path)
    ok = load_config(dict(base, artifact_signing_key=pub, require_artifact_signature=True),
                     environ={})
    assert ok["artifact_signing_key"] == pub
    assert load_config(base, environ={})["require_artifact_signature"] is False
    cases = [
        ({"require_artifact_signature": True}, "require_artifact_signature", "needs"),
        ({"require_artifact_signature": "yes"}, "require_artifact_signature", "true or false"),
        ({"artifact_signing_key": str(tmp_path / "nope.pem")}, "artifact_signing_key",
         "cannot read"),
        ({"artifact_signing_key": str(junk)}, "artifact_signing_key", "not a PEM public key"),
        ({"artifact_signing_key": priv_only}, "artifact_signing_key", "not a PEM public key"),
        ({"artifact_signing_key": p384}, "artifact_signing_key", "unsupported key type"),
        ({"artifact_signing_key": rsa_pub}, "artifact_signing_key", "unsupported key type"),
        ({"artifact_signing_key": 7}, "artifact_signing_key", "expected a file path"),
    ]
    for extra, field, words in cases:
        with pytest.raises(ConfigError) as info:
            load_config(dict(base, **extra), environ={})
        assert info.value.field == field, extra
        assert words in str(info.value), (extra, str(info.value))


def test_sign_artifact_cli_round_trip(tmp_path):
    for kind in ("ed25519", "p256"):
        priv, pub = write_keys(tmp_path, kind, name=kind)
        artifact = tmp_path / ("model-" + kind)
        artifact.write_bytes(os.urandom(100000))
        assert sign_artifact.main(["--key", priv, str(artifact)]) == 0
        sig = (tmp_path / ("model-%s.sig" % kind)).read_bytes()
        key = signing.load_public_key(pub)
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        assert signing.verify(key, sig, digest)
        assert not signing.verify(key, sig, hashlib.sha256(b"other").hexdigest())
        assert signing.message(digest) == b"edgecore-artifact-v1:sha256:" + digest.encode()


def test_a_runtime_without_signing_refuses_the_keys_at_load(tmp_path, monkeypatch):
    """A board's firmware has no edgecore_ports.signing (nor cryptography): the keys are
    refused when the config is loaded, never ignored at download time."""
    import sys

    _, pub = write_keys(tmp_path, "ed25519")
    monkeypatch.setitem(sys.modules, "edgecore_ports.signing", None)  # import fails
    base = base_config(tmp_path)
    for extra, field in (({"artifact_signing_key": pub}, "artifact_signing_key"),
                         ({"require_artifact_signature": True}, "require_artifact_signature")):
        with pytest.raises(ConfigError) as info:
            load_config(dict(base, **extra), environ={})
        assert info.value.field == field
    assert "cannot verify signatures" in str(
        pytest.raises(ConfigError, load_config, dict(base, artifact_signing_key=pub),
                      environ={}).value)


def test_localcloud_blobs_keep_the_signature(local_cloud, tmp_path):
    from edgecore_tools.localcloud import admin

    priv, pub = write_keys(tmp_path, "p256")
    cloud = local_cloud
    d = admin.deploy(cloud.db, cloud.s3, cloud.bucket, "cam", "detector", "1.0",
                     data=b"blob " * 100, device=cloud.device_name,
                     blob_dir=str(tmp_path / "blobs"), signing_key=priv)
    cloud.delete_object(sig_url(d))  # as after a restart of the S3 stand-in
    assert admin.reupload_blobs(cloud.db, cloud.s3) >= 1
    r = make_runner(cloud, tmp_path, artifact_signing_key=pub, require_artifact_signature=True)
    assert r.cycle()["ok"]
    assert result(cloud, d)[0] == "SUCCESS"


class _Denied:
    """S3's answer to a GET of a missing key without s3:ListBucket: 403 AccessDenied."""

    status = 403
    headers = {"content-type": "application/xml"}

    def __init__(self):
        self._body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    def readinto(self, buf):
        n = min(len(buf), len(self._body))
        buf[:n], self._body = self._body[:n], self._body[n:]
        return n

    def close(self):
        pass


@pytest.mark.parametrize("require", [False, True])
def test_signature_answered_403_access_denied_is_missing(local_cloud, tmp_path, require):
    """Without list permission S3 answers 403 AccessDenied, not 404, for a missing key:
    a missing signature all the same (a warning unless required)."""
    _, pub = write_keys(tmp_path, "ed25519")
    data = b"unsigned model " * 100
    d = local_cloud.deploy("cam", "detector", "1.0", data=data)
    r = make_runner(local_cloud, tmp_path, artifact_signing_key=pub,
                    require_artifact_signature=require)
    real = r.http.open

    def open_(method, url, headers, body=b"", timeout=None, deadline=None):
        if url.endswith(signing.SUFFIX):
            return _Denied()
        return real(method, url, headers, body, timeout, deadline)

    r.http.open = open_
    assert r.cycle()["ok"]
    status, reason = result(local_cloud, d)
    if require:
        assert status == "FAIL" and "artifact signature missing" in reason, reason
        assert "HTTP 403" in reason
    else:
        assert status == "SUCCESS", reason
        assert active_bytes(tmp_path, "cam") == data
        (warning,) = [e for e in r.events if e[1] == "signature.missing"]
        assert warning[2]["status"] == 403
