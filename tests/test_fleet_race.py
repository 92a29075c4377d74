# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""Several fleet server processes on one PostgreSQL, racing heartbeats and results, one
of them SIGKILLed mid-run: no acknowledged heartbeat is lost and no result is counted
twice. Real processes (``edgecore-fleet serve``), real SigV4 (edgecore_fleet.loadgen).
A short load smoke test, not a benchmark: no timing is asserted. CPython only."""

import os
import signal
import threading
import time
import urllib.request

import pytest
from fleet_proc import FleetServer
from sqlalchemy import select

from edgecore_fleet import control, loadgen, rollout
from edgecore_fleet import schema as t
from edgecore_fleet.store import Store, loads

FLEET = "race-fleet"
N = 40
CYCLES = 5


@pytest.fixture
def fleet(fleet_postgres, tmp_path):
    url = fleet_postgres.new_database()
    store = Store.open(url).migrate()
    devices = []
    for i in range(N):
        name = "race-%03d" % i
        store.add_device(name, FLEET)
        store.add_key("AKIDRACE%03d" % i, "secret-%03d" % i, device=name)
        devices.append((name, ("AKIDRACE%03d" % i, "secret-%03d" % i)))
    control.register_model(store, "job-1", "model-a", "1.0", "s3://b/k", "a" * 40)
    with store.tx() as conn:
        conn.execute(t.plans.insert().values(name="race-plan", fleet=FLEET, model_configs=(
            '[{"EdgePackagingJobName": "job-1", "ModelHandle": "m"}]'), created=0, modified=0))
        rollout.add_stages(conn, "race-plan", [{"StageName": "all", "DeviceSelectionConfig": {
            "DeviceSubsetType": "PERCENTAGE", "Percentage": 100}}], 0)
    rollout.start(store, "race-plan", "all")
    logs = [open(str(tmp_path / ("%s.log" % n)), "wb") for n in "ab"]  # noqa: SIM115
    servers = [FleetServer(url, log=log) for log in logs]
    yield store, devices, servers
    for s in servers:
        s.stop()
    for log in logs:
        log.close()
    store.close()


def test_racing_servers_lose_nothing_and_count_nothing_twice(fleet):
    store, devices, (a, b) = fleet
    deployment = rollout.deployment_name("race-plan", "all")
    runs = []

    def drive(urls):
        runs.append(loadgen.run(urls, devices, FLEET, workers=2, cycles=CYCLES, connections=2,
                                result_for=deployment, timeout=10, deadline=60))

    threads = [threading.Thread(target=drive, args=(urls,))
               for urls in ([a.url, b.url], [b.url, a.url])]
    for th in threads:
        th.start()
    time.sleep(1.0)
    (worker,) = a.workers()
    os.kill(worker, signal.SIGKILL)  # a server process dies mid-request
    for th in threads:
        th.join(180)
    assert len(runs) == 2
    print("race:", [dict((k, v) for k, v in r.items() if k != "acked") for r in runs])
    assert a.workers() != [worker]  # gunicorn replaced the killed worker

    acked = set(x for r in runs for x in r["acked"])
    assert len(acked) == N * CYCLES  # every (device, cycle) heartbeat was acknowledged
    with store.engine.connect() as conn:
        recorded = set()
        for device, body in conn.execute(select(t.heartbeats.c.device, t.heartbeats.c.body)):
            seq = loads(body)["AgentMetrics"][0]["Value"]
            recorded.add((device, int(seq)))
        counts = rollout.stage_progress(conn, "race-plan")["all"]
    assert acked <= recorded  # none lost
    # Every device reported its result at least twice, on racing servers: counted once.
    results = store.results()
    assert len(results) >= 2 * N
    assert counts == {"success": N, "pending": 0, "failed": 0, "stopped": 0}
    assert store.counts()["devices_seen"] == N
    # The killed worker was replaced: server A answers again.
    with urllib.request.urlopen(a.url + "/healthz", timeout=10) as r:
        assert r.status == 200
