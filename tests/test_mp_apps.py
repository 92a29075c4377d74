# Not under emulated ARM: drives the real MicroPython binary (an x86 build, tested natively)
"""Issue 13 on the board agent: the real 32-bit MicroPython unix binary (edgecore frozen
in) over TLS against the local cloud, as tests/test_mp_cycle.py drives it.

- a ``.tar`` model package is unpacked on the flash and its directory activated (the
  pointer names ``content``); a ``.tar.gz`` too (the unix build has ``deflate``); a
  hostile one FAILs with the previous kept; a ``.zip`` FAILs with a clear refusal;
- the applications' API in-process (``Agent.api``): ListModels shows the package's
  directory, a capture is buffered on the flash and uploaded to S3 by the cycle's
  bounded step (a signed PUT through the TLS front).
"""

import io
import json
import os
import tarfile
import zipfile

import test_mp_cycle
from mpdevice import Device, require_binary
from test_mp_cycle import device_config, results_by_name

require_binary()
# The same TLS fronts and CA as test_mp_cycle's (pytest finds fixtures by name).
pki = test_mp_cycle.pki
fronts = test_mp_cycle.fronts


def tar_of(files, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.USTAR_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def flash_tree(root):
    out = {}
    for dirpath, _, filenames in os.walk(str(root)):
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, str(root))] = f.read()
    return out


def status(cloud, dep):
    return results_by_name(cloud)[dep["DeploymentName"]]


def test_model_packages_and_the_api_on_the_board(local_cloud, fronts, pki, tmp_path):
    cloud = local_cloud
    flash = tmp_path / "flash"
    config = device_config(cloud, fronts, pki, tmp_path, capture_s3_uri=cloud.capture_s3_uri,
                           capture_batch_size=1)
    weights = os.urandom(20000)
    pkg = tar_of({"model/weights.bin": weights, "model/labels.txt": b"cat\ndog\n"})
    with Device(config, tmp_path, heap=None) as device:
        d1 = cloud.deploy("cam", "detector", "1.0", data=pkg)
        assert device.cycle()["ok"]
        assert status(cloud, d1)["DeploymentStatus"] == "SUCCESS", status(cloud, d1)
        pointer = json.loads((flash / "models" / "cam" / "current.json").read_text())
        assert pointer["file"] == "content", pointer
        content = flash / "models" / "cam" / pointer["sha1"] / "content"
        assert flash_tree(content) == {"model/weights.bin": weights,
                                       "model/labels.txt": b"cat\ndog\n"}
        ok, listed = device.api("list_models")
        assert ok and listed["Models"][0]["Path"] == str(content), listed
        # A capture through the in-process API: on the flash, then in S3 by the next cycle.
        ok, answer = device.api("capture_data", "cam", "board-0001", 1700000000,
                                [{"name": "x", "json": [1, 2, 3]}],
                                [{"name": "y", "csv": "0.5,0.25"}])
        assert ok and answer["Status"] == "IN_PROGRESS", answer
        assert device.cycle()["ok"]
        assert device.api("get_capture_data_status", "board-0001") == (
            True, {"CaptureId": "board-0001", "Status": "SUCCESS"})
        (obj,) = cloud.captures(data=True)
        assert obj["key"].startswith("captures/%s/%s/cam/" % (config["fleet_name"],
                                                              config["device_name"]))
        (rec,) = obj["records"]
        assert rec["captureId"] == "board-0001" and rec["modelSha1"] == pointer["sha1"]
        assert rec["captureData"]["outputs"] == [{"name": "y", "encoding": "CSV",
                                                  "data": "0.5,0.25"}]
        # A .tar.gz replaces it.
        d2 = cloud.deploy("cam", "detector", "2.0",
                          data=tar_of({"model/weights.bin": b"v2" * 500}, "w:gz"))
        assert device.cycle()["ok"]
        assert status(cloud, d2)["DeploymentStatus"] == "SUCCESS", status(cloud, d2)
        pointer = json.loads((flash / "models" / "cam" / "current.json").read_text())
        good = flash / "models" / "cam" / pointer["sha1"] / "content"
        assert flash_tree(good) == {"model/weights.bin": b"v2" * 500}
        before = sorted(flash_tree(flash / "models"))
        # A hostile package and a zip: FAIL, 2.0 stays, nothing new on the flash.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("model/weights.bin", b"zipped")
        for data, words in ((tar_of({"model/../../../escaped.bin": b"x"}), "path traversal"),
                            (buf.getvalue(), "zip archives cannot be unpacked on this port")):
            dep = cloud.deploy("cam", "detector", "3.0", data=data)
            assert device.cycle()["ok"]
            result = status(cloud, dep)
            reason = result["DeploymentModels"][0]["StatusReason"]
            assert result["DeploymentStatus"] == "FAIL" and words in reason, result
            assert json.loads((flash / "models" / "cam" / "current.json").read_text()) \
                == pointer
            assert sorted(flash_tree(flash / "models")) == before
    assert not (tmp_path / "escaped.bin").exists() and not (flash / "escaped.bin").exists()
