"""Write the detached signature of a model artifact: ``FILE.sig`` next to ``FILE``.

    python -m edgecore_tools.sign_artifact --key priv.pem FILE [FILE ...]

``priv.pem`` is an unencrypted PEM private key, Ed25519 or ECDSA P-256. The signature is
over ``edgecore-artifact-v1:sha256:<hex sha256 of FILE>`` (see edgecore_ports.signing);
upload it as ``<artifact key>.sig`` and pin the public key in the device config
(``artifact_signing_key``).
"""

import argparse
import sys

from edgecore_ports import signing


def load_private_key(path):
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def sign_file(private_key, path):
    """The signature bytes of the file at ``path``."""
    return signing.sign(private_key, signing.file_sha256(path))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m edgecore_tools.sign_artifact",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--key", required=True, help="PEM private key (Ed25519 or ECDSA P-256)")
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    try:
        key = load_private_key(args.key)
        for path in args.files:
            sig = sign_file(key, path)
            with open(path + signing.SUFFIX, "wb") as f:
                f.write(sig)
            print("%s%s" % (path, signing.SUFFIX))
    except (OSError, ValueError, TypeError) as exc:
        print("sign_artifact: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
