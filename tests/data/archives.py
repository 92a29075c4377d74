"""Archives built by hand for the tests (CPython and MicroPython: no tarfile needed):
ustar members of every kind, a small .tar.gz model package, and a directory's tree."""

import binascii
import os

# model/weights.bin (bytes 0..255 x 8) and model/config.json, as gzip'd ustar.
MODEL_TAR_GZ = binascii.unhexlify(
    "1f8b080800f1536502ff6d6f64656c2e74617200cbcd4f49cdd12f4fcd4ccf2829d64bcacc63a03e30000233"
    "1313300d04e8b409886d68626a64626e0ee23018181a1a999832281830d0019416972416019dc23042012313"
    "330b2b1b3b072717370f2f1fbf80a090b088a898b884a494b48cac9cbc82a292b28aaa9aba86a696b68eae9e"
    "be81a191b189a999b985a595b58dad9dbd83a393b38bab9bbb87a797b78faf9f7f4060507048685878446454"
    "744c6c5c7c426252724a6a5a7a466656764e6e5e7e4161517149695979456555754d6d5d7d436353734b6b5b"
    "7b476757774f6f5fff848993264f993a6dfa8c99b366cf993b6ffe82858b162f59ba6cf98a95ab56af59bb6e"
    "fd868d9b366fd9ba6dfb8e9dbb76efd9bb6fff8183870e1f397aecf88993a74e9f397beefc858b972e5fb97a"
    "edfa8d9bb76edfb97beffe83878f1e3f79faecf98b97af5ebf79fbeefd878f9f3e7ff9faedfb8f9fbf7efff9"
    "fbefffa8ff47fd3feaff51ff8ffa7fd4ff23d1ffb9e0f65f727e5e5a66ba5e5671fe00b4ff0c0c0ccd30db7f"
    "26a3ed3f7a806aa59cc4cad4a262252b05e35a2e8651300a46c1281805a360148c8251300a46c1281805a360"
    "148c8251300a46c1281805a360148c8251300a46c1100600dd0c208500280000"
)
WEIGHTS = bytes(range(256)) * 8


def _octal(n, width):
    return (("%0" + str(width - 1) + "o") % n).encode() + b"\x00"


def tar_header(name, size=0, kind=b"0", link="", mode=0o644, magic=True):
    """One 512-byte ustar header with a valid checksum."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(1700000000, 12)
    h[148:156] = b" " * 8
    h[156:157] = kind
    link = link.encode("utf-8")
    h[157 : 157 + len(link)] = link
    if magic:
        h[257:265] = b"ustar\x0000"
    h[148:156] = _octal(sum(h), 7) + b" "
    return bytes(h)


def tar(*members):
    """A tar archive of (name, data_or_None, kind, link, mode) tuples (data None: size 0)."""
    out = []
    for m in members:
        name, data, kind, link, mode = (tuple(m) + (None, b"0", "", 0o644))[:5] if len(m) < 5 else m
        data = data or b""
        out.append(tar_header(name, len(data), kind, link, mode))
        out.append(data + b"\x00" * (-len(data) % 512))
    out.append(b"\x00" * 1024)
    return b"".join(out)


def f(name, data, mode=0o644):
    return (name, data, b"0", "", mode)


def d(name):
    return (name, None, b"5", "", 0o755)


def sym(name, target):
    return (name, None, b"2", target, 0o777)


def hard(name, target):
    return (name, None, b"1", target, 0o644)


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def tree(root):
    """{relative path: bytes, or "dir", or "-> target"} of everything under root."""
    out = {}
    stack = [""]
    lstat = getattr(os, "lstat", os.stat)
    while stack:
        rel = stack.pop()
        for name in os.listdir(root + rel):
            p = rel + "/" + name
            mode = lstat(root + p)[0] & 0o170000
            if mode == 0o040000:
                out[p] = "dir"
                stack.append(p)
            elif mode == 0o120000:
                out[p] = "-> " + os.readlink(root + p)
            else:
                out[p] = read(root + p)
    return out
