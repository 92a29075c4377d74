# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The fleet store on SQLite and PostgreSQL: the migrated schema is exactly schema.py's
(Alembic finds nothing to change), migrating is idempotent, and the device-side rules
hold: deployments supersede per handle, a stage is marked taken when handed out, a
result moves a device's stage row once however often it is resent. CPython only."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgecore_fleet import control, rollout
from edgecore_fleet import schema as t
from edgecore_fleet.store import Store


def test_migrations_build_exactly_the_schema(fleet_db):
    store = Store.open(fleet_db).migrate()
    store.migrate()  # again: nothing to do
    assert store.revision() == "0001"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []
    store.close()


def _stage(store, devices, name="p1", percentage=100):
    control.register_model(store, "job-" + name, "model-a", "1.0", "s3://b/" + name, "a" * 40)
    with store.tx() as conn:
        conn.execute(t.plans.insert().values(
            name=name, fleet="f", created=0, modified=0, model_configs=json.dumps(
                [{"EdgePackagingJobName": "job-" + name, "ModelHandle": "m"}])))
        rollout.add_stages(conn, name, [{"StageName": "s", "DeviceSelectionConfig": {
            "DeviceSubsetType": "PERCENTAGE", "Percentage": percentage}}], 0)
    rollout.start(store, name, "s")
    return rollout.deployment_name(name, "s")


def _rows(store, plan="p1"):
    with store.read() as conn:
        return dict((r.device, r.status) for r in conn.execute(
            t.stage_devices.select().where(t.stage_devices.c.plan == plan)))


def test_handout_results_and_supersede(fleet_db):
    store = Store.open(fleet_db).migrate()
    for d in ("a", "b", "c"):
        store.add_device(d, "f")
    name = _stage(store, "abc")
    assert _rows(store) == {"a": "READYTODEPLOY", "b": "READYTODEPLOY", "c": "READYTODEPLOY"}
    (dep,) = store.deployments_for("a", "f")
    assert dep["name"] == name and dep["definitions"][0]["Checksum"]["Sum"] == "a" * 40
    assert _rows(store)["a"] == "INPROGRESS"
    ok = {"AgentVersion": "1", "DeploymentResult": {"DeploymentName": name,
                                                     "DeploymentStatus": "SUCCESS"}}
    fail = {"AgentVersion": "1", "DeploymentResult": {
        "DeploymentName": name, "DeploymentStatus": "FAIL",
        "DeploymentModels": [{"ModelHandle": "m", "Status": "FAIL", "StatusReason": "bad"}]}}
    for _ in range(3):  # resent: counted once
        store.add_heartbeat("a", "f", ok)
    store.add_heartbeat("b", "f", fail)
    store.add_heartbeat("b", "f", ok)  # a later, contradicting result changes nothing
    with store.read() as conn:
        assert rollout.stage_progress(conn, "p1")["s"] == {
            "success": 1, "pending": 1, "failed": 1, "stopped": 0}
    assert len(store.results("a")) == 3 and len(store.heartbeats()) == 5
    device = store.device("a")
    assert device["last_heartbeat"] and device["agent_version"] == "1"
    # A newer stage touching the same handle supersedes the older one for the device.
    newer = _stage(store, "abc", name="p2")
    assert [d["name"] for d in store.deployments_for("a", "f")] == [newer]
    # Direct deployments: per target and handle, the newest wins; fleet ones stay.
    store.add_deployment("d1", "DO_NOTHING", [{"ModelHandle": "x", "State": "DEPLOY"}],
                         device="c")
    store.add_deployment("d2", "DO_NOTHING", [{"ModelHandle": "x", "State": "DEPLOY"}],
                         device="c")
    store.add_deployment("d3", "DO_NOTHING", [{"ModelHandle": "y", "State": "DEPLOY"}],
                         fleet="f")
    assert [d["name"] for d in store.deployments_for("c", "f")][:2] == ["d2", "d3"]
    store.close()


def test_a_stage_can_be_started_once_and_stopped(fleet_db):
    import pytest

    from edgecore_fleet.errors import ApiError

    store = Store.open(fleet_db).migrate()
    for d in ("a", "b"):
        store.add_device(d, "f")
    name = _stage(store, "ab")
    with pytest.raises(ApiError):
        rollout.start(store, "p1", "s")
    store.deployments_for("a", "f")  # a takes it
    rollout.stop(store, "p1", "s")
    assert _rows(store) == {"a": "INPROGRESS", "b": "STOPPED"}
    assert [d["name"] for d in store.deployments_for("a", "f")] == [name]
    assert store.deployments_for("b", "f") == []
    with pytest.raises(ApiError):
        rollout.stop(store, "p1", "s")
    store.close()


def test_prune_keeps_recent_heartbeats_results_and_progress(fleet_db):
    store = Store.open(fleet_db).migrate()
    store.add_device("a", "f")
    name = _stage(store, "a")
    for i in range(25):
        store.add_heartbeat("a", "f", {"AgentVersion": "1"}, received=1000.0 + i)
    store.add_heartbeat("a", "f", {"AgentVersion": "1", "DeploymentResult": {
        "DeploymentName": name, "DeploymentStatus": "SUCCESS"}}, received=1100.0)
    recent = store.add_heartbeat("a", "f", {"AgentVersion": "2"}, received=5000.0)
    assert store.prune_heartbeats(2000.0, batch=10) == 26
    assert [h["id"] for h in store.heartbeats()] == [recent]
    assert len(store.results()) == 1
    assert store.device("a")["agent_version"] == "2"
    with store.read() as conn:
        assert rollout.stage_progress(conn, "p1")["s"]["success"] == 1
    store.close()
