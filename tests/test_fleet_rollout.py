# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""Acceptance: boto3's unmodified ``sagemaker`` client drives a full rollout on the fleet
server (fleet, devices, a registered model, a two-stage plan, start, progress, stop) and
edgecore agents receive it; on SQLite and on PostgreSQL. Plus the rollout rules: order,
deterministic PERCENTAGE, stop, failures, pagination. CPython only."""

import hashlib

import pytest
from botocore.exceptions import ClientError

from edgecore_fleet import rollout
from edgecore_ports.runner import Runner, load_config
from edgecore_tools.localcloud import admin

FLEET = "rollout-fleet"
ROLE = "arn:aws:iam::000000000000:role/edge"
DEVICES = ["cam-%d" % i for i in range(1, 7)]


@pytest.fixture
def cloud(local_cloud_factory, fleet_db):
    return local_cloud_factory(device=None, database=fleet_db)


def register_model(sm, cloud, name, data, version="1.0"):
    url = cloud.upload("artifacts/%s.bin" % name, data, "detector", version)
    sm.create_edge_packaging_job(
        EdgePackagingJobName=name, CompilationJobName="none", ModelName="detector",
        ModelVersion=version, RoleArn=ROLE, OutputConfig={"S3OutputLocation": url})
    return url


def agent(cloud, tmp_path, device):
    key = admin.create_key(cloud.db, cloud.s3, device=device)
    config = cloud.agent_config(tmp_path / device / "models", tmp_path / device / "state",
                                device_name=device, fleet_name=FLEET,
                                credentials=cloud.credentials_config(key))
    return Runner(load_config(config, environ={}), environ={},
                  log=lambda level, event, **f: None, sleep=lambda s: None)


def active(tmp_path, device, handle="cam"):
    link = tmp_path / device / "models" / handle
    if not link.is_symlink():
        return None
    (f,) = [p for p in link.iterdir() if p.name != "edgecore.json"]
    return f.read_bytes()


def stage_status(sm, plan):
    out = {}
    for s in sm.describe_edge_deployment_plan(EdgeDeploymentPlanName=plan)["Stages"]:
        d = s["DeploymentStatus"]
        out[s["StageName"]] = (d["StageStatus"], d["EdgeDeploymentSuccessInStage"],
                               d["EdgeDeploymentPendingInStage"],
                               d["EdgeDeploymentFailedInStage"])
    return out


def stage_devices(sm, plan, stage):
    pages = sm.get_paginator("list_stage_devices").paginate(
        EdgeDeploymentPlanName=plan, StageName=stage, PaginationConfig={"PageSize": 2})
    return dict((d["DeviceName"], d["DeviceDeploymentStatus"])
                for p in pages for d in p["DeviceDeploymentSummaries"])


def test_boto3_drives_a_two_stage_rollout_to_real_agents(cloud, tmp_path):
    sm = cloud.sagemaker_client()
    sm.create_device_fleet(DeviceFleetName=FLEET, RoleArn=ROLE,
                           OutputConfig={"S3OutputLocation": "s3://%s/out" % cloud.bucket})
    sm.register_devices(DeviceFleetName=FLEET, Devices=[
        {"DeviceName": d, "Description": "camera"} for d in DEVICES])
    data = b"detector weights v1 " * 1000
    url = register_model(sm, cloud, "detector-v1", data)
    job = sm.describe_edge_packaging_job(EdgePackagingJobName="detector-v1")
    assert job["EdgePackagingJobStatus"] == "COMPLETED" and job["ModelArtifact"] == url
    assert job["ModelSignature"] == "SHA1:" + hashlib.sha1(data).hexdigest()
    sm.create_edge_deployment_plan(
        EdgeDeploymentPlanName="plan-v1", DeviceFleetName=FLEET,
        ModelConfigs=[{"ModelHandle": "cam", "EdgePackagingJobName": "detector-v1"}],
        Stages=[{"StageName": "canary",
                 "DeviceSelectionConfig": {"DeviceSubsetType": "SELECTION",
                                           "DeviceNames": ["cam-1", "cam-2"]},
                 "DeploymentConfig": {"FailureHandlingPolicy": "ROLLBACK_ON_FAILURE"}}])
    sm.create_edge_deployment_stage(EdgeDeploymentPlanName="plan-v1", Stages=[
        {"StageName": "rest", "DeviceSelectionConfig": {
            "DeviceSubsetType": "NAMECONTAINS", "DeviceNameContains": "cam"}}])
    agents = dict((d, agent(cloud, tmp_path, d)) for d in DEVICES)

    # Stages run in order: "rest" cannot start before "canary" is DEPLOYED.
    with pytest.raises(ClientError) as info:
        sm.start_edge_deployment_stage(EdgeDeploymentPlanName="plan-v1", StageName="rest")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    sm.start_edge_deployment_stage(EdgeDeploymentPlanName="plan-v1", StageName="canary")
    assert stage_status(sm, "plan-v1")["canary"] == ("INPROGRESS", 0, 2, 0)
    for d in DEVICES:
        assert agents[d].cycle()["ok"]
    assert [active(tmp_path, d) == data for d in DEVICES] == [True, True] + [False] * 4
    assert stage_status(sm, "plan-v1") == {"canary": ("DEPLOYED", 2, 0, 0),
                                           "rest": ("READYTODEPLOY", 0, 0, 0)}
    assert stage_devices(sm, "plan-v1", "canary") == {"cam-1": "DEPLOYED",
                                                      "cam-2": "DEPLOYED"}

    # Second stage: two devices take it, then it is stopped; those that had not taken it
    # never get it (cam-1/2 keep the canary's), the ones that took it keep it.
    sm.start_edge_deployment_stage(EdgeDeploymentPlanName="plan-v1", StageName="rest")
    for d in ("cam-3", "cam-4"):
        assert agents[d].cycle()["ok"]
    plan = sm.describe_edge_deployment_plan(EdgeDeploymentPlanName="plan-v1")
    assert (plan["EdgeDeploymentSuccess"], plan["EdgeDeploymentPending"]) == (4, 4)
    sm.stop_edge_deployment_stage(EdgeDeploymentPlanName="plan-v1", StageName="rest")
    for d in DEVICES:
        assert agents[d].cycle()["ok"]
    assert [active(tmp_path, d) == data for d in DEVICES] == [True] * 4 + [False] * 2
    assert stage_devices(sm, "plan-v1", "rest") == {
        "cam-1": "STOPPED", "cam-2": "STOPPED", "cam-3": "DEPLOYED", "cam-4": "DEPLOYED",
        "cam-5": "STOPPED", "cam-6": "STOPPED"}
    assert stage_status(sm, "plan-v1")["rest"] == ("STOPPED", 2, 0, 0)
    summary = sm.list_edge_deployment_plans()["EdgeDeploymentPlanSummaries"]
    assert [(p["EdgeDeploymentPlanName"], p["EdgeDeploymentSuccess"],
             p["EdgeDeploymentPending"]) for p in summary] == [("plan-v1", 4, 0)]

    # What the control plane now knows of the devices, from their heartbeats.
    device = sm.describe_device(DeviceName="cam-3", DeviceFleetName=FLEET)
    assert device["Models"][0]["ModelName"] == "detector" and device["AgentVersion"]
    assert device["LatestHeartbeat"]
    report = sm.get_device_fleet_report(DeviceFleetName=FLEET)
    assert report["DeviceStats"] == {"ConnectedDeviceCount": 6, "RegisteredDeviceCount": 6}
    assert [(m["ModelName"], m["ConnectedDeviceCount"]) for m in report["ModelStats"]] \
        == [("detector", 4)]
    listed = [d["DeviceName"] for p in sm.get_paginator("list_devices").paginate(
        DeviceFleetName=FLEET, PaginationConfig={"PageSize": 4}) for d in p["DeviceSummaries"]]
    assert listed == DEVICES
    with_model = sm.list_devices(ModelName="detector")["DeviceSummaries"]
    assert sorted(d["DeviceName"] for d in with_model) == DEVICES[:4]

    # A stage whose artifact fails the device's checksum: FAILED, with the reason.
    bad = b"detector weights v2 " * 1000
    url2 = register_model(sm, cloud, "detector-v2", bad, "2.0")
    cloud.put_object(url2, b"tampered" + bad)  # the registered SHA1 no longer matches
    sm.create_edge_deployment_plan(
        EdgeDeploymentPlanName="plan-v2", DeviceFleetName=FLEET,
        ModelConfigs=[{"ModelHandle": "cam", "EdgePackagingJobName": "detector-v2"}],
        Stages=[{"StageName": "one", "DeviceSelectionConfig": {
            "DeviceSubsetType": "SELECTION", "DeviceNames": ["cam-1"]}}])
    sm.start_edge_deployment_stage(EdgeDeploymentPlanName="plan-v2", StageName="one")
    agents["cam-1"].cycle()
    assert active(tmp_path, "cam-1") == data  # rolled back: the old model stays
    assert stage_status(sm, "plan-v2")["one"] == ("FAILED", 0, 0, 1)
    (summary,) = sm.list_stage_devices(EdgeDeploymentPlanName="plan-v2", StageName="one")[
        "DeviceDeploymentSummaries"]
    assert summary["DeviceDeploymentStatus"] == "FAILED"
    assert "checksum" in summary["DeviceDeploymentStatusMessage"].lower()
    # A finished plan can be deleted; one in progress cannot.
    sm.delete_edge_deployment_plan(EdgeDeploymentPlanName="plan-v2")
    with pytest.raises(ClientError) as info:
        sm.describe_edge_deployment_plan(EdgeDeploymentPlanName="plan-v2")
    assert info.value.response["Error"]["Code"] == "ResourceNotFound"


def test_percentage_selection_is_deterministic_and_proportional():
    names = ["dev-%d" % i for i in range(2000)]
    picked = [n for n in names if rollout.in_percentage("p", "s", n, 25)]
    assert 400 < len(picked) < 600
    assert picked == [n for n in names if rollout.in_percentage("p", "s", n, 25)]
    assert all(rollout.in_percentage("p", "s", n, 100) for n in names)
    assert not any(rollout.in_percentage("p", "s", n, 0) for n in names)
    # Another stage draws independently.
    other = [n for n in names if rollout.in_percentage("p", "s2", n, 25)]
    assert other != picked
    assert len(rollout.deployment_name("p" * 63, "s" * 63)) <= 63


def test_control_plane_errors_and_admin_only(local_cloud_factory, tmp_path):
    cloud = local_cloud_factory()
    sm = cloud.sagemaker_client()

    def code(call, **kw):
        with pytest.raises(ClientError) as info:
            call(**kw)
        return info.value.response["Error"]["Code"]

    out = {"S3OutputLocation": "s3://b/o"}
    sm.create_device_fleet(DeviceFleetName="f1", OutputConfig=out)
    assert code(sm.create_device_fleet, DeviceFleetName="f1", OutputConfig=out) \
        == "ResourceInUse"
    assert code(sm.describe_device_fleet, DeviceFleetName="nope") == "ResourceNotFound"
    assert code(sm.list_devices, NextToken="garbage") == "ValidationException"
    sm.register_devices(DeviceFleetName="f1", Devices=[{"DeviceName": "x1"}])
    sm.update_devices(DeviceFleetName="f1", Devices=[{"DeviceName": "x1",
                                                      "Description": "lobby camera"}])
    described = sm.describe_device(DeviceName="x1", DeviceFleetName="f1")
    assert described["Description"] == "lobby camera" and described["Models"] == []
    assert code(sm.update_devices, DeviceFleetName="f1",
                Devices=[{"DeviceName": "nobody", "Description": "x"}]) == "ResourceNotFound"
    assert code(sm.delete_device_fleet, DeviceFleetName="f1") == "ResourceInUse"
    sm.deregister_devices(DeviceFleetName="f1", DeviceNames=["x1"])
    sm.delete_device_fleet(DeviceFleetName="f1")
    assert code(sm.create_edge_deployment_plan, EdgeDeploymentPlanName="p",
                DeviceFleetName="test-fleet",
                ModelConfigs=[{"ModelHandle": "m", "EdgePackagingJobName": "nojob"}]) \
        == "ValidationException"
    # A device key cannot use the control plane.
    device_sm = cloud.sagemaker_client(cloud.key)
    assert code(device_sm.list_device_fleets) == "AccessDeniedException"
    # Pagination over fleets, AWS style.
    for i in range(5):
        sm.create_device_fleet(DeviceFleetName="pf-%d" % i, OutputConfig=out)
    page = sm.list_device_fleets(MaxResults=2, SortBy="NAME", SortOrder="Ascending")
    assert [f["DeviceFleetName"] for f in page["DeviceFleetSummaries"]] == ["pf-0", "pf-1"]
    names = [f["DeviceFleetName"] for p in sm.get_paginator("list_device_fleets").paginate(
        NameContains="pf", SortBy="NAME", SortOrder="Ascending",
        PaginationConfig={"PageSize": 2}) for f in p["DeviceFleetSummaries"]]
    assert names == ["pf-%d" % i for i in range(5)]
