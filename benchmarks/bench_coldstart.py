"""Cold start: a whole Python process that builds and signs one GetDeployments request,
edgecore vs boto3 (client creation + one call answered by a before-send hook, so boto3
also serializes and signs). Runs are interleaved; prints medians and the ratio.

    python benchmarks/bench_coldstart.py [--runs 15]

edgecore's bytecode is compiled first, as an installed package's is (pip compiles
boto3's at install). Two interpreter set-ups are measured: the default one (site
processing, including this checkout's editable-install finder, which costs both sides
the same) and ``-S`` with PYTHONPATH (no site processing: what the code itself costs).
"""

import argparse
import compileall
import os
import site
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EDGECORE = """
import edgecore
client = edgecore.Client(region="us-west-2",
    credentials=edgecore.Credentials("AKIDEXAMPLE", "SECRETEXAMPLE"),
    transport=lambda m, u, h, b: (200, {}, b'{"Deployments": []}'), clock=lambda: 1700000000)
assert client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")["Deployments"] == []
"""

BOTO3 = """
import boto3
from botocore.awsrequest import AWSResponse
class Raw:
    def stream(self, **kw):
        yield b'{"Deployments": []}'
client = boto3.client("sagemaker-edge", region_name="us-west-2",
    aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="SECRETEXAMPLE")
client.meta.events.register("before-send.*",
    lambda request, **kw: AWSResponse(request.url, 200, {}, Raw()))
assert client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")["Deployments"] == []
"""


def run_once(src, flags, env):
    start = time.perf_counter()
    subprocess.run([sys.executable, *flags, "-c", src], check=True, env=env)
    return time.perf_counter() - start


def compare(label, flags, env, runs):
    run_once(EDGECORE, flags, env), run_once(BOTO3, flags, env)  # warm the page cache
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(run_once(EDGECORE, flags, env))
        theirs.append(run_once(BOTO3, flags, env))
    a, b = statistics.median(ours), statistics.median(theirs)
    print("cold start, %s, median of %d whole-process runs" % (label, runs))
    print("  edgecore build+sign GetDeployments : %7.1f ms" % (a * 1000))
    print("  boto3 client + one stubbed call     : %7.1f ms" % (b * 1000))
    print("  ratio edgecore/boto3                : %.3f (goal <= 0.100)" % (a / b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(os.path.join(ROOT, "edgecore"), quiet=1)
    env = dict(os.environ)
    compare("default interpreter start", [], env, args.runs)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + site.getsitepackages())
    compare("python -S (no site processing)", ["-S"], env, args.runs)


if __name__ == "__main__":
    main()
