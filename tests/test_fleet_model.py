# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The control plane's model table (edgecore_fleet.cpmodel) is what botocore's
``sagemaker`` model says, every operation of the issue is served, and the validator words
its errors as AWS does. CPython only (botocore)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore_fleet import control, cpmodel, gen_model
from edgecore_fleet.errors import ApiError
from edgecore_fleet.validate import control_validator, device_validator

EDGE_OPERATIONS = [
    "CreateDeviceFleet",
    "DescribeDeviceFleet",
    "UpdateDeviceFleet",
    "DeleteDeviceFleet",
    "ListDeviceFleets",
    "RegisterDevices",
    "DeregisterDevices",
    "UpdateDevices",
    "DescribeDevice",
    "ListDevices",
    "GetDeviceFleetReport",
    "CreateEdgeDeploymentPlan",
    "CreateEdgeDeploymentStage",
    "DeleteEdgeDeploymentStage",
    "StartEdgeDeploymentStage",
    "StopEdgeDeploymentStage",
    "DescribeEdgeDeploymentPlan",
    "ListEdgeDeploymentPlans",
    "DeleteEdgeDeploymentPlan",
    "ListStageDevices",
    "DescribeEdgePackagingJob",
    "ListEdgePackagingJobs",
]


def test_generated_table_is_current():
    with open(cpmodel.__file__) as f:
        assert f.read() == gen_model.render(), "run: python -m edgecore_fleet.gen_model"


def test_every_operation_is_served():
    assert len(EDGE_OPERATIONS) == 22  # the issue names 20 edge operations + 2 job ones
    for name in EDGE_OPERATIONS + ["CreateEdgePackagingJob"]:
        assert name in cpmodel.OPERATIONS and name in control.HANDLERS


def _error(validator, shape, value):
    with pytest.raises(ApiError) as info:
        validator.validate(shape, value)
    return info.value


def test_control_validation_words_errors_as_aws():
    v = control_validator()
    e = _error(v, "CreateDeviceFleetRequest", {"DeviceFleetName": "bad name!"})
    assert e.code == "ValidationException" and e.status == 400
    assert e.message.startswith("2 validation errors detected: ")
    assert (
        "Value null at 'outputConfig' failed to satisfy constraint: Member must not be "
        "null" in e.message
    )
    assert (
        "Value 'bad name!' at 'deviceFleetName' failed to satisfy constraint: Member "
        "must satisfy regular expression pattern" in e.message
    )
    e = _error(v, "ListDevicesRequest", {"MaxResults": 101})
    assert "Member must have value less than or equal to 100" in e.message
    e = _error(v, "ListDevicesRequest", {"MaxResults": "ten"})
    assert e.code == "SerializationException"
    e = _error(
        v,
        "CreateEdgeDeploymentPlanRequest",
        {
            "EdgeDeploymentPlanName": "p",
            "DeviceFleetName": "f",
            "ModelConfigs": [{"ModelHandle": "m", "EdgePackagingJobName": "j"}],
            "Stages": [{"StageName": "s", "DeviceSelectionConfig": {"DeviceSubsetType": "ALL"}}],
        },
    )
    assert "'stages.1.member.deviceSelectionConfig.deviceSubsetType'" in e.message
    assert "enum value set: [PERCENTAGE, SELECTION, NAMECONTAINS]" in e.message
    v.validate(
        "CreateDeviceFleetRequest",
        {
            "DeviceFleetName": "fleet-1",
            "OutputConfig": {"S3OutputLocation": "s3://b/p"},
            "Tags": [{"Key": "Été", "Value": "ok"}],
        },
    )


def test_device_validation_uses_the_device_side_constraints():
    v = device_validator()
    e = _error(
        v,
        "SendHeartbeatRequest",
        {
            "DeviceName": "d",
            "DeviceFleetName": "f",
            "AgentVersion": "1",
            "AgentMetrics": [{"Value": "x"}],
        },
    )
    assert e.code == "SerializationException"
    e = _error(v, "GetDeploymentsRequest", {"DeviceName": "a" * 64, "DeviceFleetName": "f"})
    assert "Member must have length less than or equal to 63" in e.message


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "DeviceFleetName",
                "OutputConfig",
                "RoleArn",
                "Description",
                "EnableIotRoleAlias",
                "Tags",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        ),
    )
)
def test_validator_never_crashes(params):
    try:
        control_validator().validate("CreateDeviceFleetRequest", params)
    except ApiError as e:
        assert e.code in ("ValidationException", "SerializationException")
