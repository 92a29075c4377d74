"""The local AWS IoT credentials provider (edgecore_tools.localcloud.iot) and its PKI.

A real mutual-TLS endpoint on 127.0.0.1 minting keys of a LocalCloud; checked with
``requests`` (an independent client) and with edgecore's own IotCredentialsProvider.
CPython only.
"""

import json
import time

import pytest
import requests

from edgecore.credentials import Credentials
from edgecore.errors import ClientError
from edgecore_fleet import sigcheck
from edgecore_ports import credentials as ec
from edgecore_tools.localcloud.iot import DEFAULT_ROLE_ALIAS, IotCredentialsEndpoint, Pki

THING = "edge-thing-1"


@pytest.fixture
def iot(local_cloud, tmp_path):
    endpoint = IotCredentialsEndpoint.start(local_cloud, tmp_path / "pki")
    yield endpoint
    endpoint.stop()


def fetch(iot, cert, key, thing=THING, alias=DEFAULT_ROLE_ALIAS, method="GET"):
    headers = {} if thing is None else {"x-amzn-iot-thingname": thing}
    return requests.request(
        method, "%s/role-aliases/%s/credentials" % (iot.url, alias), headers=headers,
        cert=(cert, key), verify=iot.pki.ca_path, timeout=10,
    )


def edge_call(cloud, creds, now=None):
    """GetDeviceRegistration signed by edgecore with `creds` at `now`."""
    from edgecore.client import Client
    from edgecore_ports import cpython

    client = Client(cloud.region, creds, endpoint_url=cloud.endpoint_url,
                    transport=cpython.transport, clock=lambda: now or time.time())
    return client.get_device_registration(DeviceName=cloud.device_name,
                                          DeviceFleetName=cloud.fleet_name)


def test_mints_a_key_valid_for_the_edge_endpoint_and_s3(local_cloud, iot):
    cert, key = iot.provision(THING)
    deployment = local_cloud.deploy("cam", "detector", "1.0", data=b"model bytes")
    before = time.time()
    resp = fetch(iot, cert, key)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert list(doc) == ["credentials"]
    creds = doc["credentials"]
    assert sorted(creds) == ["accessKeyId", "expiration", "secretAccessKey", "sessionToken"]
    # "2024-01-02T03:04:05Z", DEFAULT duration (3600 s) after now by the cloud clock.
    assert len(creds["expiration"]) == 20 and creds["expiration"].endswith("Z")
    expiration = sigcheck.parse_amz_date(creds["expiration"].replace("-", "").replace(":", ""))
    assert int(before) + 3600 <= expiration <= time.time() + 3600
    assert iot.minted == [{"access_key_id": creds["accessKeyId"], "thing": THING,
                           "device": local_cloud.device_name, "expiration": expiration}]
    record = local_cloud.db.lookup_key(creds["accessKeyId"])
    assert record.device == local_cloud.device_name and record.session_token
    assert int(record.expiration) == expiration
    wire_key = {"access_key_id": creds["accessKeyId"],
                "secret_access_key": creds["secretAccessKey"],
                "session_token": creds["sessionToken"]}
    # The edge endpoint (botocore-checked signature) and moto's S3 both accept it.
    assert edge_call(local_cloud, Credentials(creds["accessKeyId"], creds["secretAccessKey"],
                                              creds["sessionToken"]))["DeviceRegistration"] \
        == "REGISTERED"
    bucket, _, obj = deployment["Definitions"][0]["S3Url"][5:].partition("/")
    body = local_cloud.s3_client(wire_key).get_object(Bucket=bucket, Key=obj)["Body"].read()
    assert body == b"model bytes"
    assert iot.requests[-1]["status"] == 200 and iot.requests[-1]["thing"] == THING


def test_edgecore_provider_gets_and_refreshes_from_it(local_cloud, iot):
    cert, key = iot.provision(THING)
    provider = ec.provider_from_config(
        {"iot": iot.iot_config(THING, cert, key, timeout=[5, 5])}, environ={})
    now = time.time()
    first = provider.get(now)
    assert first.access_key == iot.minted[0]["access_key_id"]
    assert first.expiration == iot.minted[0]["expiration"]
    assert provider.get(now + 60) is first
    provider.invalidate()
    second = provider.get(now + 60)
    assert second.access_key == iot.minted[1]["access_key_id"] != first.access_key
    assert edge_call(local_cloud, second)["DeviceRegistration"] == "REGISTERED"


def test_untrusted_certificate_fails_the_handshake(iot, tmp_path):
    rogue_cert, rogue_key = Pki.create(tmp_path / "rogue").device(THING)
    iot.provision(THING)  # the thing exists; only this certificate is not from the CA
    with pytest.raises(requests.exceptions.SSLError) as info:
        fetch(iot, rogue_cert, rogue_key)
    # The server lingers so the client reads the TLS alert rather than a reset.
    assert "unknown ca" in str(info.value).lower()
    assert iot.handshake_event.wait(10)
    assert "certificate" in iot.handshake_failures[0].lower()
    assert iot.minted == [] and iot.requests == []


def test_client_without_certificate_fails_the_handshake(iot):
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(iot.url + "/role-aliases/%s/credentials" % DEFAULT_ROLE_ALIAS,
                     headers={"x-amzn-iot-thingname": THING}, verify=iot.pki.ca_path,
                     timeout=10)
    assert iot.handshake_event.wait(10)
    assert iot.minted == []


def test_certificate_must_be_attached_to_the_named_thing(iot):
    cert, key = iot.provision(THING)
    other_cert, other_key = iot.provision("other-thing")
    for c, k, thing in ((cert, key, "other-thing"), (other_cert, other_key, THING),
                        (cert, key, "no-such-thing")):
        resp = fetch(iot, c, k, thing=thing)
        assert resp.status_code == 403, resp.text
        assert resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert "not attached" in resp.json()["message"]
    assert fetch(iot, cert, key).status_code == 200
    iot.detach(THING, cert)
    assert fetch(iot, cert, key).status_code == 403
    assert len(iot.minted) == 1
    assert [r["status"] for r in iot.requests] == [403, 403, 403, 200, 403]


def test_thing_header_optional_for_a_certificate_of_one_thing(iot):
    cert, key = iot.provision(THING)
    assert fetch(iot, cert, key, thing=None).status_code == 200
    assert iot.minted[0]["thing"] == THING
    iot.attach("second-thing", cert)  # now ambiguous: the header is needed
    assert fetch(iot, cert, key, thing=None).status_code == 403
    assert fetch(iot, cert, key, thing="second-thing").status_code == 200


def test_thing_maps_to_its_device(local_cloud, iot):
    local_cloud.add_device("other-device")
    cert, key = iot.provision("other-thing", device="other-device")
    assert fetch(iot, cert, key, thing="other-thing").status_code == 200
    akid = iot.minted[0]["access_key_id"]
    assert iot.minted[0]["device"] == "other-device"
    assert local_cloud.db.lookup_key(akid).device == "other-device"


def test_unknown_alias_path_and_method(iot):
    cert, key = iot.provision(THING)
    resp = fetch(iot, cert, key, alias="no-such-alias")
    assert resp.status_code == 404
    assert resp.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert resp.json() == {"message": "Role alias does not exist"}
    resp = requests.get(iot.url + "/role-aliases", cert=(cert, key), verify=iot.pki.ca_path,
                        timeout=10)
    assert resp.status_code == 404
    assert fetch(iot, cert, key, method="POST").status_code == 405
    iot.add_role_alias("second-alias", duration=900)
    resp = fetch(iot, cert, key, alias="second-alias")
    assert resp.status_code == 200
    assert iot.minted[-1]["expiration"] - time.time() <= 900
    assert len(iot.minted) == 1


def test_follows_the_cloud_clock_and_expire(local_cloud, iot):
    cert, key = iot.provision(THING)
    local_cloud.set_clock_offset(7200)
    doc = fetch(iot, cert, key).json()["credentials"]
    assert iot.minted[0]["expiration"] >= time.time() + 7200 + 3600 - 5
    creds = Credentials(doc["accessKeyId"], doc["secretAccessKey"], doc["sessionToken"])
    assert edge_call(local_cloud, creds, now=time.time() + 7200)["DeviceRegistration"] \
        == "REGISTERED"
    iot.expire(doc["accessKeyId"])
    with pytest.raises(ClientError) as info:
        edge_call(local_cloud, creds, now=time.time() + 7200)
    assert info.value.code == "ExpiredTokenException"
    with pytest.raises(KeyError):
        iot.expire("ASIANOSUCHKEY")


def test_edge_only_keys_when_asked(local_cloud, tmp_path):
    with IotCredentialsEndpoint.start(local_cloud, tmp_path / "pki", s3_keys=False,
                                      duration=900, role_alias="edge-only") as iot:
        cert, key = iot.provision(THING)
        doc = fetch(iot, cert, key, alias="edge-only").json()["credentials"]
        creds = Credentials(doc["accessKeyId"], doc["secretAccessKey"], doc["sessionToken"])
        assert edge_call(local_cloud, creds)["DeviceRegistration"] == "REGISTERED"
        assert iot.minted[0]["expiration"] <= time.time() + 900


def test_pki_files_and_bad_names(tmp_path):
    import os
    import stat

    pki = Pki.create(tmp_path / "p")
    cert, key = pki.device("thing:with:colons")
    for path in (pki.ca_path, pki.server_cert, pki.server_key, cert, key):
        assert os.path.isfile(path)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pki.server_key).st_mode) == 0o600
    with open(key) as f:
        assert "PRIVATE KEY" in f.read()
    with pytest.raises(ValueError):
        pki.device("bad thing")
    with pytest.raises(ValueError):
        IotCredentialsEndpoint(None, pki, role_alias="bad/alias")


def test_no_secret_in_the_request_log(iot):
    cert, key = iot.provision(THING)
    doc = fetch(iot, cert, key).json()["credentials"]
    text = json.dumps([iot.requests, iot.minted, iot.handshake_failures])
    assert doc["secretAccessKey"] not in text and doc["sessionToken"] not in text
