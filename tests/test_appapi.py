# Runs under MicroPython too
"""edgecore_ports.appapi: the operations as the MicroPython agent offers them in-process
(and as the CPython socket server serves them): the models' view of the agent state,
the version token, validation, and CaptureData into a real CaptureStore."""

from test_capture import Port, tmpdir  # the fake port and temp dirs of the capture tests

from edgecore_ports import appapi, capture
from edgecore_ports.appapi import ApiError, AppApi, ModelSet

SHA_A = "a" * 40
SHA_B = "b" * 40


def state(active_sha=SHA_A, activated=1700000000):
    return {
        "active": {
            "model-a": {"name": "model-a", "version": "v1", "sha1": active_sha,
                        "s3url": "s3://b/k", "deployment": "dep-2", "size": 10,
                        "path": "/models/model-a", "activated": activated},
        },
        "pending": [{"DeploymentName": "dep-1", "DeploymentEndTime": 10, "DeploymentModels": [
            {"ModelHandle": "model-a", "Status": "FAIL", "StatusReason": "old",
             "DesiredState": "DEPLOY"}]}],
        "last_result": {"DeploymentName": "dep-2", "DeploymentEndTime": 20, "DeploymentModels": [
            {"ModelHandle": "model-a", "Status": "SUCCESS", "StatusReason": "deployed",
             "DesiredState": "DEPLOY"},
            {"ModelHandle": "model-b", "Status": "FAIL", "StatusReason": "download failed: x",
             "DesiredState": "DEPLOY"}]},
    }


def refused(status, code, fn, *args):
    try:
        fn(*args)
    except ApiError as exc:
        assert (exc.status, exc.code) == (status, code), (exc.status, exc.code, exc.message)
        return exc
    raise AssertionError("not refused: %s" % code)


def test_models_from_state():
    models = appapi.models_from_state(state())
    assert models[0] == {
        "ModelHandle": "model-a", "Active": True, "ModelName": "model-a", "ModelVersion": "v1",
        "Sha1": SHA_A, "Path": "/models/model-a", "ActivatedAt": 1700000000,
        "Deployment": "dep-2", "Size": 10,
        "LastAttempt": {"Deployment": "dep-2", "Status": "SUCCESS", "StatusReason": "deployed",
                        "DesiredState": "DEPLOY", "EndTime": 20},
    }, models[0]
    assert models[1]["ModelHandle"] == "model-b" and models[1]["Active"] is False
    assert models[1]["LastAttempt"]["StatusReason"] == "download failed: x"
    assert appapi.models_from_state({"active": {}, "pending": []}) == []


def test_version_changes_with_the_active_set_only():
    ms = ModelSet(appapi.models_from_state(state()))
    v1 = ms.version
    assert not ms.update(appapi.models_from_state(state()))
    doc = state()
    doc["last_result"]["DeploymentModels"][1]["StatusReason"] = "another failure"
    assert not ms.update(appapi.models_from_state(doc))  # a result, not the active set
    assert ms.update(appapi.models_from_state(state(SHA_B)))
    assert ms.version != v1 and len(ms.version) == 16
    assert ModelSet(appapi.models_from_state(state())).version == v1  # same across restarts


def test_list_describe_watch():
    api = AppApi(ModelSet(appapi.models_from_state(state())))
    listed = api.list_models()
    assert [m["ModelHandle"] for m in listed["Models"]] == ["model-a"]
    assert api.describe_model("model-b")["Active"] is False
    refused(404, "ModelNotFound", api.describe_model, "model-c")
    refused(400, "ValidationError", api.describe_model, "../etc")
    first = api.watch_models()
    assert first["Changed"] is True and first["Version"] == listed["Version"]
    same = api.watch_models(first["Version"], 0)
    assert same["Changed"] is False
    api.models.update(appapi.models_from_state(state(SHA_B)))
    moved = api.watch_models(first["Version"], 0)
    assert moved["Changed"] is True and moved["Models"][0]["Sha1"] == SHA_B
    refused(400, "ValidationError", api.watch_models, None, -1)
    refused(400, "ValidationError", api.watch_models, None, 301)
    refused(400, "ValidationError", api.watch_models, None, float("nan"))
    refused(400, "ValidationError", api.watch_models, 5, 1)


def test_record_inference():
    seen = []

    def record(handle, latency_ms, sample_time):
        seen.append((handle, latency_ms, sample_time))
        return handle == "model-a"

    api = AppApi(ModelSet(appapi.models_from_state(state())), record_inference=record)
    assert api.record_inference("model-a", 12.5, 1700000000) == {}
    assert seen == [("model-a", 12.5, 1700000000)]
    refused(404, "ModelNotActive", api.record_inference, "model-b")
    for bad in ((-1, None), (float("inf"), None), (None, "now"), (True, None)):
        exc = refused(400, "ValidationError", api.record_inference, "model-a", bad[0], bad[1])
        assert exc.field in ("LatencyMs", "SampleTime")


class Wake:
    def __init__(self):
        self.n = 0

    def wake(self):
        self.n += 1


def test_capture_data_and_status():
    ms = ModelSet(appapi.models_from_state(state()))
    refused(503, "CaptureNotConfigured", AppApi(ms).capture_data, "model-a", "c-1", 1, [])
    assert AppApi(ms).get_capture_data_status("c-1")["Status"] == "NOT_FOUND"
    store = capture.CaptureStore(tmpdir(), Port(), buffer_bytes=2000)
    wake = Wake()
    api = AppApi(ms, store=store, uploader=wake, device="cam-1", fleet="fleet-a",
                 clock=lambda: 1700000001.5)
    x = [{"name": "x", "dtype": "int16", "shape": [2], "data": b"\x01\x00\x02\x00"}]
    assert api.capture_data("model-a", "c-1", None, x) == {"CaptureId": "c-1",
                                                            "Status": "IN_PROGRESS"}
    assert wake.n == 1
    assert api.get_capture_data_status("c-1") == {"CaptureId": "c-1", "Status": "IN_PROGRESS"}
    with open(store.dir + "/q/" + store.ids["c-1"], "rb") as f:
        import json

        meta = json.loads(f.read())["eventMetadata"]
    assert meta["inferenceTime"] == 1700000001.5 and meta["modelVersion"] == "v1"
    assert meta["modelSha1"] == SHA_A and meta["deviceName"] == "cam-1"
    refused(409, "CaptureIdInUse", api.capture_data, "model-a", "c-1", None, x)
    refused(404, "ModelNotActive", api.capture_data, "model-b", "c-2", None, x)
    exc = refused(400, "ValidationError", api.capture_data, "model-a", "c-2", None,
                  [{"name": "x", "json": float("nan")}])
    assert exc.field == "Inputs[0].json"
    big = [{"name": "x", "dtype": "uint8", "shape": [1500], "data": bytes(1500)}]
    refused(413, "RecordTooLarge", api.capture_data, "model-a", "c-3", None, big + big)
    ok = [{"name": "x", "dtype": "uint8", "shape": [900], "data": bytes(900)}]
    exc = refused(507, "BufferFull", api.capture_data, "model-a", "c-4", None, ok)
    assert "buffer full" in exc.message
    refused(400, "ValidationError", api.get_capture_data_status, "../x")
