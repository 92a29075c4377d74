# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The read-only dashboard, rendered by headless Debian Chromium: screenshots of the
overview, a fleet and a plan are checked (size, not blank, colours of the progress bars)
and the DOM Chromium built says what the fleet holds. CPython only; needs chromium
(.ci/run installs it)."""

import os
import shutil
import subprocess

import pytest

from edgecore_fleet import control, rollout
from edgecore_fleet import schema as t

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
SIZE = (1200, 800)


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def browse(chromium, tmp_path, url, *args):
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    out = subprocess.run([chromium] + FLAGS + ["--user-data-dir=%s" % profile] + list(args)
                         + [url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def screenshot(chromium, tmp_path, url, name):
    from PIL import Image

    path = tmp_path / (name + ".png")  # kept with the test run for a person to look at
    browse(chromium, tmp_path, url, "--screenshot=%s" % path,
           "--window-size=%d,%d" % SIZE)
    image = Image.open(str(path)).convert("RGB")
    assert image.size == SIZE
    return image


@pytest.fixture
def fleet(local_cloud):
    """A fleet with 5 devices (3 heard from), a plan whose first stage is half done."""
    store = local_cloud.db
    for i in range(5):
        store.add_device("cam-%d" % i, "dash-fleet")
    for i in range(3):
        store.add_heartbeat("cam-%d" % i, "dash-fleet", {
            "AgentVersion": "2.1", "Models": [{"ModelName": "detector", "ModelVersion": "7"}]})
    control.register_model(store, "det-7", "detector", "7", "s3://b/det-7.bin", "a" * 40)
    with store.tx() as conn:
        conn.execute(t.plans.insert().values(
            name="dash-plan", fleet="dash-fleet",
            model_configs='[{"EdgePackagingJobName": "det-7", "ModelHandle": "cam"}]',
            created=0, modified=0))
        rollout.add_stages(conn, "dash-plan", [
            {"StageName": "canary", "DeviceSelectionConfig": {
                "DeviceSubsetType": "SELECTION", "DeviceNames": ["cam-0", "cam-1"]}},
            {"StageName": "rest", "DeviceSelectionConfig": {
                "DeviceSubsetType": "PERCENTAGE", "Percentage": 100}}], 0)
    rollout.start(store, "dash-plan", "canary")
    name = rollout.deployment_name("dash-plan", "canary")
    store.add_heartbeat("cam-0", "dash-fleet", {"AgentVersion": "2.1", "DeploymentResult": {
        "DeploymentName": name, "DeploymentStatus": "SUCCESS"}})
    store.add_heartbeat("cam-1", "dash-fleet", {"AgentVersion": "2.1", "DeploymentResult": {
        "DeploymentName": name, "DeploymentStatus": "FAIL",
        "DeploymentStatusMessage": "SHA1 checksum mismatch"}})
    return local_cloud


def _has(image, colour, tolerance=40):
    r0, g0, b0 = colour
    return any(abs(r - r0) + abs(g - g0) + abs(b - b0) < tolerance
               for _, (r, g, b) in image.getcolors(SIZE[0] * SIZE[1]))


def test_overview_fleet_and_plan_pages(fleet, chromium, tmp_path):
    base = fleet.endpoint_url
    dom = browse(chromium, tmp_path, base + "/dashboard", "--dump-dom")
    assert "<h1>Fleets</h1>" in dom and "dash-fleet" in dom and "test-fleet" in dom
    assert "dash-plan" in dom and "canary: <b>FAILED</b>" in dom
    assert "1 deployed, 0 pending, 1 failed, 0 stopped" in dom
    assert "rest: <b>READYTODEPLOY</b>" in dom
    overview = screenshot(chromium, tmp_path, base + "/dashboard", "overview")
    colours = overview.getcolors(SIZE[0] * SIZE[1])
    assert len(colours) > 20  # text and tables, not a blank page
    assert _has(overview, (0x23, 0x34, 0x45))  # the table headers' dark blue
    assert _has(overview, (0x33, 0xaa, 0x77)) and _has(overview, (0xcc, 0x33, 0x33))  # bars

    dom = browse(chromium, tmp_path, base + "/dashboard/fleets/dash-fleet", "--dump-dom")
    for i in range(5):
        assert "cam-%d" % i in dom
    assert dom.count("detector 7") == 3 and dom.count(">never<") == 2
    assert "2.1" in dom
    page = screenshot(chromium, tmp_path, base + "/dashboard/fleets/dash-fleet", "fleet")
    assert len(page.getcolors(SIZE[0] * SIZE[1])) > 20

    dom = browse(chromium, tmp_path, base + "/dashboard/plans/dash-plan", "--dump-dom")
    assert "Stage canary: FAILED" in dom and "SHA1 checksum mismatch" in dom
    assert "Stage rest: READYTODEPLOY" in dom and "no devices selected" in dom
    plan = screenshot(chromium, tmp_path, base + "/dashboard/plans/dash-plan", "plan")
    assert _has(plan, (0xcc, 0x33, 0x33))
    # A page that does not exist, and markup in a name, are handled.
    assert "No such page" in browse(chromium, tmp_path, base + "/dashboard/plans/nope",
                                    "--dump-dom")
