"""Benchmark: rest-json framing and parsing, edgecore.wire vs botocore, side by side.

    python3 benchmarks/bench_wire.py [--number 2000]

1. Validate + serialize a full SendHeartbeat (every member; tests/test_wire.py's
   FULL_HEARTBEAT): wire.build_request vs botocore's rest-json serializer with its
   parameter validation (create_serializer("rest-json", include_validation=True)).
2. Parse a GetDeployments response (tests/test_wire.py's DEPLOYMENTS_BODY):
   wire.parse_response vs botocore's RestJSONParser.parse.
Interleaved rounds, best of 5 each; prints microseconds per call and the ratio.
No goal set by the issue; recorded.
"""

import argparse
import json
import os
import sys
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import botocore.session  # noqa: E402
from botocore.parsers import create_parser  # noqa: E402
from botocore.serialize import create_serializer  # noqa: E402
from test_wire import DEPLOYMENTS_BODY, FULL_HEARTBEAT, FULL_HEARTBEAT_BODY  # noqa: E402

from edgecore import wire  # noqa: E402


def best(fn, number, rounds=5):
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args()
    model = botocore.session.get_session().get_service_model("sagemaker-edge")
    heartbeat = model.operation_model("SendHeartbeat")
    deployments = model.operation_model("GetDeployments")
    serializer = create_serializer("rest-json", include_validation=True)
    parser = create_parser("rest-json")
    ordered = json.loads(FULL_HEARTBEAT_BODY)  # same params, model order
    ordered["Models"][0]["LatestSampleTime"] = 1700000001.75
    ordered["DeploymentResult"]["DeploymentEndTime"] = 1699999999.5
    assert serializer.serialize_to_request(ordered, heartbeat)["body"] == FULL_HEARTBEAT_BODY
    headers = {"x-amzn-requestid": "r"}
    response = {"status_code": 200, "headers": headers, "body": DEPLOYMENTS_BODY}

    ours = best(lambda: wire.build_request("SendHeartbeat", FULL_HEARTBEAT), args.number)
    theirs = best(lambda: serializer.serialize_to_request(ordered, heartbeat), args.number)
    print(
        "build SendHeartbeat (%d bytes): edgecore %.1f us, botocore %.1f us, %.1fx"
        % (len(FULL_HEARTBEAT_BODY), ours * 1e6, theirs * 1e6, theirs / ours)
    )
    ours = best(
        lambda: wire.parse_response("GetDeployments", 200, headers, DEPLOYMENTS_BODY), args.number
    )
    theirs = best(lambda: parser.parse(response, deployments.output_shape), args.number)
    print(
        "parse GetDeployments (%d bytes): edgecore %.1f us, botocore %.1f us, %.1fx"
        % (len(DEPLOYMENTS_BODY), ours * 1e6, theirs * 1e6, theirs / ours)
    )


if __name__ == "__main__":
    main()
