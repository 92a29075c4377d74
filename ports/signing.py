"""Detached artifact signatures (CPython ports only; needs the ``cryptography`` package).

An artifact ``s3://bucket/key`` may have a detached signature at ``s3://bucket/key.sig``:
the raw signature bytes (Ed25519: 64 bytes; ECDSA P-256: DER, SHA-256) over the ASCII
message ``edgecore-artifact-v1:sha256:<hex sha256 of the artifact>``. Signing a digest
rather than the artifact keeps verification in constant memory (Ed25519 needs the whole
message) and lets the device hash the staged file once, after the SHA1 check.
"""

import hashlib

from edgecore_ports import ConfigError

SUFFIX = ".sig"
MAX_SIGNATURE = 1024  # bytes: an Ed25519 or P-256 DER signature is far smaller
PREFIX = b"edgecore-artifact-v1:sha256:"


def message(sha256_hex):
    """The bytes that are signed for an artifact whose SHA-256 is ``sha256_hex``."""
    return PREFIX + sha256_hex.lower().encode("ascii")


def file_sha256(path, chunk=64 * 1024):
    """Hex SHA-256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _supported(key, ec, ed25519):
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return True
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return isinstance(key.curve, ec.SECP256R1)
    return False


def load_public_key(path, field="artifact_signing_key"):
    """The public key of a PEM file (Ed25519 or ECDSA P-256); ConfigError(field) otherwise."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    except ImportError:
        raise ConfigError(field, "verifying signatures needs the 'cryptography' package") from None
    if not isinstance(path, str) or not path:
        raise ConfigError(field, "expected the path of a PEM public key file")
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024)
    except OSError as exc:
        raise ConfigError(field, "cannot read %s: %s" % (path, exc.strerror or exc)) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            field, "%s is not a PEM public key (%s)" % (path, exc.__class__.__name__)
        ) from None
    except Exception as exc:  # e.g. cryptography's UnsupportedAlgorithm
        raise ConfigError(field, "%s: unsupported key (%s)" % (path, exc)) from None
    if not _supported(key, ec, ed25519):
        raise ConfigError(
            field, "%s: unsupported key type; expected an Ed25519 or ECDSA P-256 public key" % path
        )
    return key


def verify(public_key, signature, sha256_hex):
    """True when ``signature`` signs the artifact whose SHA-256 is ``sha256_hex``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    msg = message(sha256_hex)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, msg, ec.ECDSA(hashes.SHA256()))
        else:
            public_key.verify(signature, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(private_key, sha256_hex):
    """The detached signature of an artifact (Ed25519 or ECDSA P-256 private key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if not _supported(private_key, ec, ed25519):
        raise ValueError("expected an Ed25519 or ECDSA P-256 private key")
    msg = message(sha256_hex)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(msg, ec.ECDSA(hashes.SHA256()))
    return private_key.sign(msg)
