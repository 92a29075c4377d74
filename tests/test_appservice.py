# Runs under MicroPython too
"""edgecore_ports.appservice: the applications' API wired to the executor, in-process (as
the MicroPython agent offers it): the model set follows the saved state and changes
exactly when the active set does, inferences reach the heartbeat, captures are buffered
and uploaded by bounded steps with signed PUTs.

The in-memory cloud of test_runner_rules (tests/data/fake_cloud.py). The socket side,
with a real agent process against the local cloud: test_e2e_apps.py."""

import json

from test_runner_rules import deploy_def, each_store, make_runner

from edgecore_ports.appapi import ApiError
from edgecore_ports.appservice import AppServices

CAPTURE_URI = "s3://models/captures/"


def services(cloud, root, store, **extra):
    r = make_runner(cloud, root, store, **extra)
    r.start()
    apps = AppServices(r, http=cloud)
    flags = []
    update = apps.models.update

    def counting(models):
        changed = update(models)
        flags.append(changed)
        return changed

    apps.models.update = counting
    return r, apps, flags


def raises(code, call, *args, **kw):
    try:
        call(*args, **kw)
    except ApiError as exc:
        assert exc.code == code, (exc.code, code, exc)
        return exc
    raise AssertionError("no ApiError %s" % code)


@each_store
def test_the_model_set_follows_the_saved_state(cloud, root, store):
    r, apps, flags = services(cloud, root, store)
    api = apps.api
    first = api.list_models()
    assert first["Models"] == []
    url, sha = cloud.put("cam/v1/model.bin", b"model one")
    cloud.deploy(deploy_def("cam", url, sha))
    assert r.cycle()["ok"]
    listed = api.list_models()
    (m,) = listed["Models"]
    assert m["ModelHandle"] == "cam" and m["Sha1"] == sha and m["Active"] is True
    assert m["Path"] == r.state["active"]["cam"]["path"] and m["ActivatedAt"]
    assert m["LastAttempt"]["Status"] == "SUCCESS"
    assert listed["Version"] != first["Version"]
    # Many saves (plan, activation, results, heartbeat): one change of the active set.
    assert len(flags) > 2 and flags.count(True) == 1, flags
    # A watcher behind the times answers at once; an idle cycle changes nothing.
    answer = api.watch_models(since=first["Version"], timeout=0)
    assert answer["Changed"] is True and answer["Version"] == listed["Version"]
    assert r.cycle()["ok"]
    assert api.list_models()["Version"] == listed["Version"] and flags.count(True) == 1
    # The update: one more change; the old version's watcher sees it.
    url2, sha2 = cloud.put("cam/v2/model.bin", b"model two")
    cloud.deploy(deploy_def("cam", url2, sha2))
    assert r.cycle()["ok"]
    assert api.describe_model("cam")["Sha1"] == sha2 and flags.count(True) == 2
    assert api.watch_models(since=listed["Version"], timeout=0)["Changed"] is True


@each_store
def test_a_failed_first_deployment_is_described_not_listed(cloud, root, store):
    r, apps, _ = services(cloud, root, store)
    url, _ = cloud.put("cam/v1/model.bin", b"model")
    cloud.deploy(deploy_def("cam", url, "0" * 40))
    assert r.cycle()["ok"]
    assert apps.api.list_models()["Models"] == []
    m = apps.api.describe_model("cam")
    assert m["Active"] is False and m["LastAttempt"]["Status"] == "FAIL", m
    raises("ModelNotFound", apps.api.describe_model, "other")


@each_store
def test_inferences_recorded_through_the_api_reach_the_heartbeat(cloud, root, store):
    r, apps, _ = services(cloud, root, store)
    url, sha = cloud.put("cam/v1/model.bin", b"model")
    cloud.deploy(deploy_def("cam", url, sha))
    assert r.cycle()["ok"]
    for ms in (10, 30):
        assert apps.api.record_inference("cam", latency_ms=ms) == {}
    raises("ModelNotActive", apps.api.record_inference, "nope", latency_ms=1)
    raises("ValidationError", apps.api.record_inference, "cam", latency_ms=1e12)
    raises("ValidationError", apps.api.record_inference, "cam", sample_time=1e11)
    assert r.cycle()["ok"]
    (model,) = cloud.heartbeats[-1]["Models"]
    metrics = dict((m["MetricName"], m["Value"]) for m in model["ModelMetrics"])
    assert metrics == {"inference-count": 2.0, "latency-mean-ms": 20.0,
                       "latency-max-ms": 30.0}, model
    assert model["LatestInference"] == 1700000000


@each_store
def test_captures_are_buffered_and_uploaded_by_bounded_steps(cloud, root, store):
    r, apps, _ = services(cloud, root, store, capture_s3_uri=CAPTURE_URI, capture_batch_size=2)
    api = apps.api
    raises("ModelNotActive", api.capture_data, "cam", "c-0", inputs=[{"name": "x", "json": 1}])
    url, sha = cloud.put("cam/v1/model.bin", b"model")
    cloud.deploy(deploy_def("cam", url, sha))
    assert r.cycle()["ok"]
    for i in range(3):
        assert api.capture_data("cam", "c-%d" % i, inference_time=1700000000 + i,
                                inputs=[{"name": "x", "data": b"\x01\x02", "dtype": "uint8",
                                         "shape": [2]}],
                                outputs=[{"name": "y", "json": {"p": i}}])["Status"] \
            == "IN_PROGRESS"
    raises("CaptureIdInUse", api.capture_data, "cam", "c-0", inputs=[{"name": "x", "json": 1}])
    assert apps.step() == 1  # one full batch, one PUT
    puts = [q for q in cloud.requests if q["op"] == "PutObject"]
    assert len(puts) == 1 and puts[0]["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256")
    (path,) = [p for p in cloud.objects if "/captures/" in p]
    assert path.startswith("/models/captures/fleet-1/dev-1/cam/2023/11/14/22/"), path
    lines = cloud.objects[path].split(b"\n")
    assert [json.loads(x)["eventMetadata"]["captureId"] for x in lines if x] == ["c-0", "c-1"]
    assert json.loads(lines[0])["eventMetadata"]["modelSha1"] == sha
    assert api.get_capture_data_status("c-1")["Status"] == "SUCCESS"
    assert api.get_capture_data_status("c-2")["Status"] == "IN_PROGRESS"
    assert api.get_capture_data_status("c-9")["Status"] == "NOT_FOUND"


@each_store
def test_refused_uploads_end_in_failure_and_never_stop_the_cycles(cloud, root, store):
    r, apps, _ = services(cloud, root, store, capture_s3_uri=CAPTURE_URI, capture_batch_size=1)
    apps.uploader.max_refusals = 1
    url, sha = cloud.put("cam/v1/model.bin", b"model")
    cloud.deploy(deploy_def("cam", url, sha))
    assert r.cycle()["ok"]
    apps.api.capture_data("cam", "c-0", inputs=[{"name": "x", "csv": "1,2"}])
    cloud.fault("PutObject", "status", (403, "AccessDenied"))
    assert apps.step() == 0
    status = apps.api.get_capture_data_status("c-0")
    assert status["Status"] == "FAILURE" and "AccessDenied" in status["Reason"], status
    assert r.cycle()["ok"]


@each_store
def test_without_capture_s3_uri_captures_are_refused(cloud, root, store):
    r, apps, _ = services(cloud, root, store)
    assert apps.store is None and apps.step() == 0
    raises("CaptureNotConfigured", apps.api.capture_data, "cam", "c-0",
           inputs=[{"name": "x", "json": 1}])
