"""Generate edgecore/endpoints.py from botocore's endpoint data (development time only).

The device never imports botocore: this script evaluates botocore's own endpoint rule
sets (``EndpointProvider``) for every partition, every region botocore lists, and every
FIPS / dual-stack combination, for the services edgecore talks to, and writes what it
found as a compact table:

- one URL template per service and flag combination, written with the placeholders
  ``{region}``, ``{dns}`` / ``{dualdns}`` (the partition's DNS suffixes) and ``{bucket}``;
- exceptions where a partition (e.g. S3 has no FIPS in ``aws-cn``) or a region (e.g.
  S3's global ``us-east-1`` host, ``aws-global``) differs from the template.

Services: ``sagemaker-edge`` (the device API), ``s3`` (virtual-hosted object URLs),
``s3-path`` (path-style object URLs) and ``sts`` (AssumeRole for the credential chain).
S3 is resolved with botocore's client defaults (``UseGlobalEndpoint`` for ``us-east-1``,
i.e. ``s3_us_east_1_regional_endpoint = legacy``); STS with its default regional
endpoints. ``tests/test_endpoints.py`` checks the result against botocore for every
region, partition and flag.

Usage: ``.venv/bin/python scripts/gen_endpoints.py [--check]`` (``--check``: exit 1 if
edgecore/endpoints.py is not what this botocore would generate).
"""

import argparse
import os
import re
import sys

import botocore
import botocore.loaders
from boto_capture import capture

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "edgecore",
                   "endpoints_data.py")
COMBOS = ((False, False), (False, True), (True, False), (True, True))  # (fips, dualstack)
BUCKET = "edgecore-placeholder-bucket"
SERVICES = ("sagemaker-edge", "s3", "s3-path", "sts")
_TAIL = r"\-\w+\-\d+$"


def region_prefixes(regex):
    """``^(us|eu)\\-\\w+\\-\\d+$`` -> ("us", "eu"); refuses any other shape."""
    if not regex.startswith("^") or not regex.endswith(_TAIL):
        raise SystemExit("unexpected regionRegex shape: %r" % regex)
    head = regex[1:-len(_TAIL)].replace("\\-", "-")
    m = re.fullmatch(r"([a-z-]*)\(([a-z|]+)\)([a-z-]*)|([a-z-]+)", head)
    if m is None:
        raise SystemExit("unexpected regionRegex head: %r" % regex)
    if m.group(4):
        return (m.group(4),)
    return tuple(m.group(1) + alt + m.group(3) for alt in m.group(2).split("|"))


class Botocore:
    """The endpoint (URL, signing region) real botocore clients use for the four services.

    Each answer is what a client created with that region and ``use_fips_endpoint`` /
    ``use_dualstack_endpoint`` would send a request to (``boto_capture``): the rule set,
    the legacy endpoint data a client also consults when it is created (which refuses
    some variants), S3's client defaults (``us-east-1`` on the global host) and STS's
    (regional endpoints), all as botocore applies them.
    """

    _CALLS = {
        "sagemaker-edge": ("sagemaker-edge", "GetDeployments",
                           {"DeviceName": "d", "DeviceFleetName": "f"}, "/GetDeployments"),
        "s3": ("s3", "GetObject", {"Bucket": BUCKET, "Key": "k"}, "/k"),
        "s3-path": ("s3", "GetObject", {"Bucket": BUCKET, "Key": "k"}, "/k"),
        "sts": ("sts", "GetCallerIdentity", {}, "/"),
    }

    def __init__(self):
        self.partitions = botocore.loaders.create_loader().load_data("partitions")

    def resolve(self, service, region, fips, dualstack):
        """(url, signing region) or (None, botocore's error message)."""
        name, operation, params, tail = self._CALLS[service]
        config = {"use_fips_endpoint": fips, "use_dualstack_endpoint": dualstack}
        if service == "s3-path":
            config["s3"] = {"addressing_style": "path"}
        sent = capture(name, operation, params, region_name=region, config=config)
        if sent.url is None:  # refused before sending
            kwargs = getattr(sent.error, "kwargs", {})
            return None, str(kwargs.get("error_msg") or kwargs.get("msg") or sent.error)
        if not sent.url.endswith(tail):
            raise SystemExit("unexpected %s URL %r" % (service, sent.url))
        return sent.url[:-len(tail)], sent.signing_region


def _template(url, region, partition):
    out = url.replace(BUCKET, "{bucket}").replace(region, "{region}")
    outputs = partition["outputs"]
    out = out.replace(outputs["dualStackDnsSuffix"], "{dualdns}")
    return out.replace(outputs["dnsSuffix"], "{dns}")


def templated(answer, region, partition):
    """An answer (url, signing region) or (None, message) with its region, DNS suffixes
    and bucket replaced by placeholders."""
    return tuple(None if part is None else _template(part, region, partition)
                 for part in answer)


def generate(boto):
    partitions = boto.partitions["partitions"]
    rows = []
    for p in partitions:
        prefixes = region_prefixes(p["regionRegex"])
        outside = tuple(sorted(r for r in p["regions"] if not re.match(p["regionRegex"], r)))
        rows.append((p["id"], prefixes, outside, p["outputs"]["dnsSuffix"],
                     p["outputs"]["dualStackDnsSuffix"]))
    synthetic = dict((row[0], row[1][0] + "-zz-9") for row in rows)

    templates = {}
    exceptions = {}
    for service in SERVICES:
        entries = []
        for fips, dual in COMBOS:
            answer = boto.resolve(service, synthetic["aws"], fips, dual)
            if answer[0] is None:
                raise SystemExit("%s has no endpoint in aws for %s" % (service, (fips, dual)))
            entries.append(templated(answer, synthetic["aws"], partitions[0]))
        templates[service] = tuple(entries)
        for p, row in zip(partitions, rows):
            for i, (fips, dual) in enumerate(COMBOS):
                region = synthetic[row[0]]
                part_entry = templated(boto.resolve(service, region, fips, dual), region, p)
                if part_entry != templates[service][i]:
                    exceptions[(service, row[0], i)] = part_entry
                for listed in sorted(p["regions"]):
                    entry = templated(boto.resolve(service, listed, fips, dual), listed, p)
                    if entry != part_entry:
                        exceptions[(service, listed, i)] = entry
    return rows, templates, exceptions


def render_module(rows, templates, exceptions):
    lines = []
    add = lines.append
    add("# GENERATED by scripts/gen_endpoints.py from botocore %s; do not edit."
        % botocore.__version__)
    add('"""The data of edgecore.endpoints: partitions, URL templates and exceptions."""')
    add("")
    add("BOTOCORE_VERSION = %r" % botocore.__version__)
    add("")
    add("# (name, regionRegex prefixes (a region is <prefix>-<word>-<digits>), regions listed")
    add("#  outside the regex, dnsSuffix, dualStackDnsSuffix), in botocore's order.")
    add("PARTITIONS = (")
    for row in rows:
        line = "    %r," % (row,)
        if len(line) > 100:
            line = "    (%r, %r,\n     %r, %r, %r)," % row
        add(line)
    add(")")
    add("")
    add("# service -> (url template, signing region) for (fips, dualstack) = (F, F), (F, T),")
    add("# (T, F), (T, T).")
    add("TEMPLATES = {")
    for service in SERVICES:
        add("    %r: (" % service)
        for entry in templates[service]:
            add("        %r," % (entry,))
        add("    ),")
    add("}")
    add("")
    add("# (service, partition or region, flag index) -> (url, signing region), or")
    add("# (None, botocore's error message) where botocore has no endpoint.")
    add("EXCEPTIONS = {")
    for key in sorted(exceptions):
        line = "    %r: %r," % (key, exceptions[key])
        if len(line) > 100:
            line = "    %r:\n        %r," % (key, exceptions[key])
        add(line)
    add("}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    text = render_module(*generate(Botocore()))
    if args.check:
        with open(args.out) as f:
            same = f.read() == text
        print("up to date" if same else "%s differs from botocore %s's data; re-run"
              % (args.out, botocore.__version__))
        return 0 if same else 1
    with open(args.out, "w") as f:
        f.write(text)
    print("wrote %s (%d bytes)" % (args.out, len(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
