"""Which URL serves a service in a region: botocore's endpoint rules, from a generated table.

``resolve(service, region, fips=False, dualstack=False, bucket=None) -> (url, signing_region)``
gives the URL botocore's endpoint rule set gives for ``sagemaker-edge`` (the device API),
``s3`` (virtual-hosted: ``bucket`` required), ``s3-path`` (path style: the URL ends with
the encoded ``/bucket``) and ``sts``, in every partition (``aws``, ``aws-cn``,
``aws-us-gov``, the ISO partitions, ``aws-eusc``) and for every FIPS / dual-stack
combination. Where botocore has no endpoint (S3 FIPS in ``aws-cn``) it raises
``EndpointResolutionError`` with botocore's own words.

The table lives in ``edgecore.endpoints_data`` (imported on first use: a client given
its ``endpoint_url`` never loads it), generated from botocore's data by
``scripts/gen_endpoints.py`` at development time; ``tests/test_endpoints.py`` compares
this module with botocore for every listed region, partition and flag (devices never
load botocore). ``partition(region)`` matches a region to its partition exactly as
botocore's ``aws.partition`` does (listed regions, then ``<prefix>-<word>-<digits>``;
unknown regions fall back to ``aws``). ``normalize_region`` turns botocore's FIPS pseudo
regions (``fips-us-west-2``, ``us-west-2-fips``) into the region and the FIPS flag.
"""

_WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_DIGITS = "0123456789"
_LABEL = _WORD[:-1] + "-"  # letters, digits, hyphen


class EndpointResolutionError(ValueError):
    """No endpoint exists for this service, region and flags (botocore says the same).

    A ValueError, as every configuration problem in the core is (MicroPython cannot
    also make it an EdgecoreError: native and Python bases do not mix there)."""


def valid_region(region):
    """botocore's check of a region name: a DNS label (1-63 letters, digits, inner
    hyphens), not all digits. It keeps a region from smuggling a host into a URL."""
    if not isinstance(region, str) or not 0 < len(region) <= 63:
        return False
    if region[0] == "-" or region[-1] == "-" or _all_in(region, _DIGITS):
        return False
    return _all_in(region, _LABEL)


def normalize_region(region):
    """``(region, fips)``: botocore strips ``fips-`` and ``-fips`` and turns FIPS on."""
    plain = region.replace("fips-", "").replace("-fips", "")
    return plain, plain != region


def _all_in(text, chars):
    return bool(text) and all(c in chars for c in text)


def _matches(region, prefixes):
    # botocore's regionRegex: ^(<prefix>|...)\-\w+\-\d+$ (ASCII here: regions are DNS labels).
    for prefix in prefixes:
        if region.startswith(prefix + "-"):
            rest = region[len(prefix) + 1:]
            i = rest.find("-")
            if (i > 0 and rest.find("-", i + 1) < 0 and _all_in(rest[:i], _WORD)
                    and _all_in(rest[i + 1:], _DIGITS)):
                return True
    return False


def partition(region):
    """The partition row (name, prefixes, listed regions, dnsSuffix, dualStackDnsSuffix)."""
    from edgecore.endpoints_data import PARTITIONS  # only when a host is built: RAM on boards

    for row in PARTITIONS:
        if region in row[2] or _matches(region, row[1]):
            return row
    return PARTITIONS[0]


def _flags(fips, dualstack):
    return (2 if fips else 0) + (1 if dualstack else 0)


def resolve(service, region, fips=False, dualstack=False, bucket=None):
    """``(url, signing_region)`` for ``service`` in ``region``; see the module doc.

    ``bucket`` (``s3``/``s3-path``) is substituted as given: the caller encodes it for a
    path (``sigv4.quote(bucket, "")``) and checks it is a DNS label for a host.
    """
    from edgecore.endpoints_data import EXCEPTIONS, TEMPLATES

    templates = TEMPLATES.get(service)
    if templates is None:
        raise ValueError("endpoints: unknown service %r; expected one of %s"
                         % (service, ", ".join(sorted(TEMPLATES))))
    if not valid_region(region):
        raise ValueError("endpoints: region must be 1-63 letters, digits and inner hyphens, "
                         "not all digits; got %r" % (region,))
    row = partition(region)
    i = _flags(fips, dualstack)
    entry = EXCEPTIONS.get((service, region, i))
    if entry is None:
        entry = EXCEPTIONS.get((service, row[0], i), templates[i])
    url, signing = entry
    if url is None:
        raise EndpointResolutionError(
            "endpoints: no %s endpoint in %s (partition %s) with%s FIPS and with%s dual-stack: %s"
            % (service, region, row[0], "" if fips else "out", "" if dualstack else "out",
               _fill(signing, region, row, bucket)))
    return _fill(url, region, row, bucket), _fill(signing, region, row, bucket)


def _fill(template, region, row, bucket):
    out = template.replace("{region}", region).replace("{dualdns}", row[4])
    out = out.replace("{dns}", row[3])
    if "{bucket}" in out:
        if bucket is None:
            raise ValueError("endpoints: bucket required for an S3 URL")
        out = out.replace("{bucket}", bucket)
    return out
