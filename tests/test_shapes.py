# Runs under MicroPython too
"""Tests for edgecore.shapes: the model tables and the hand-written pattern checkers.

Plain functions with bare asserts: runs under pytest and under MicroPython
(python tests/micropython/run_real.py unix tests/test_shapes.py). The property tests against
Python's ``re`` are CPython-only, in tests/test_wire_props.py; the tables are compared
with botocore's loaded model in tests/test_wire_botocore.py.
"""

from edgecore import shapes
from edgecore.shapes import LIST, OPERATIONS, PATTERNS, SHAPES, STRING, STRUCTURE


def _check(pattern, good, bad):
    fn = PATTERNS[pattern]
    for s in good:
        assert fn(s), (pattern, s)
    for s in bad:
        assert not fn(s), (pattern, s)


def test_device_name_pattern():
    _check(
        "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$",
        ["a", "Z9", "cam-1", "cam_1", "a--b", "a__b", "a-_b", "a--__b", "a-b_c-d", "0"],
        ["", "-a", "_a", "a-", "a_", "a_-b", "a_b-", "a b", "a.b", "caf\u00e9", "a\n", "\u0661"],
    )


def test_entity_name_pattern():
    _check(
        "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$",
        ["a", "dep-1", "a---b", "ABC123"],
        ["", "-", "a-", "-a", "a_b", "a/b", "a.b", "a\n", "\u00e9"],
    )


def test_dimension_pattern():
    _check(
        "^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$",
        ["a", "agent/cpu", "a/", "a//b", "a-/", "a--b/c"],
        ["", "/a", "-a", "a-", "a/-", "a_b", "a.b", "a\n"],
    )


def test_checksum_pattern():
    _check(
        "^[a-z0-9](-*[a-z0-9])*$",
        ["0", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "a-b"],
        ["", "A", "abcD", "a-", "-a", "a_b"],
    )


def test_s3_uri_pattern():
    _check(
        "^s3://([^/]+)/?(.*)$",
        [
            "s3://b",
            "s3://b/",
            "s3://b/k",
            "s3://b/k/x y",
            "s3://b\n",
            "s3://b\nc/k",
            "s3://\u00e9/k",
        ],
        [
            "",
            "s3://",
            "s3:///k",
            "S3://b/k",
            "http://b/k",
            "s3://b/k\n",
            "s3://b/\r",
            "s3://b/k\u2028",
        ],
    )


def test_version_pattern_is_a_search():
    # Unanchored, as AWS applies it: one allowed character anywhere is enough.
    _check(
        "[a-zA-Z0-9\\ \\_\\.]+",
        ["1.0", "v2", " ", "_", ".", "\u00e9\u00e9a", "1.0/beta"],
        ["", "/", "-+", "\u00e9"],
    )


def _referenced(spec):
    if spec[0] == STRUCTURE:
        return [m[1] for m in spec[1]]
    if spec[0] == LIST:
        return [spec[1]]
    return []


def test_tables_are_consistent():
    kinds = (STRUCTURE, LIST, STRING, shapes.DOUBLE, shapes.TIMESTAMP)
    for name, spec in SHAPES.items():
        assert spec[0] in kinds, (name, spec[0])  # rows spell the kinds as literals
        for ref in _referenced(spec):
            assert ref in SHAPES, (name, ref)
        if spec[0] == STRUCTURE:
            names = [m[0] for m in spec[1]]
            for n in names:  # wire.py writes member names unescaped
                assert n and all(shapes._alnum(c) for c in n), n
            assert len(set(names)) == len(names), name
            for req in spec[2]:
                assert req in names, (name, req)
        if spec[0] == STRING:
            assert spec[3] is None or spec[3] in PATTERNS, name
            assert spec[1] is None or spec[2] is None or spec[1] <= spec[2], name
    for op, (method, uri, inp, out) in OPERATIONS.items():
        assert method == "POST" and uri == "/" + op
        assert SHAPES[inp][0] == STRUCTURE
        assert out is None or SHAPES[out][0] == STRUCTURE


def _depth(name, seen):
    # The model is acyclic, so the wire layer's shape-driven recursion is bounded.
    assert name not in seen, "recursive shape " + name
    refs = _referenced(SHAPES[name])
    if not refs:
        return 1
    return 1 + max(_depth(r, seen + (name,)) for r in refs)


def test_model_depth_is_small_and_acyclic():
    depths = [_depth(name, ()) for name in SHAPES]
    assert max(depths) == 7  # GetDeploymentsResult.Deployments[].Definitions[].Checksum.Sum


def test_member_order_is_model_order():
    assert shapes.member_names("SendHeartbeatRequest") == (
        "AgentMetrics",
        "Models",
        "AgentVersion",
        "DeviceName",
        "DeviceFleetName",
        "DeploymentResult",
    )
    assert SHAPES["SendHeartbeatRequest"][2] == ("AgentVersion", "DeviceName", "DeviceFleetName")
