// Pure-Python SHA1 throughput under the MicroPython WebAssembly port.
//
//   node benchmarks/bench_sha1_micropython.mjs [KIB]      (default 256 KiB)
//
// Loads the port the way tests/micropython/run.mjs does, copies edgecore/*.py to
// /lib/edgecore, hashes KIB KiB with edgecore.sha1.Sha1 (and with edgecore.checksum's
// verify_stream over io.BytesIO) timed with time.ticks_ms() (best of three), and prints one
// "micropython-sha1 ..." line that bench_checksum.py parses.
import { loadMicroPython } from "../tests/micropython/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const kib = parseInt(process.argv[2] || "256", 10);
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
mp.FS.mkdir("/lib");
mp.FS.mkdir("/lib/edgecore");
for (const name of fs.readdirSync(path.join(root, "edgecore")).sort()) {
  if (name.endsWith(".py")) {
    mp.FS.writeFile("/lib/edgecore/" + name, fs.readFileSync(path.join(root, "edgecore", name)));
  }
}
mp.runPython(`
import gc, io, sys, time
from edgecore.sha1 import Sha1
from edgecore.checksum import verify_stream
data = bytes(range(256)) * (4 * ${kib})
want = Sha1(data).hexdigest()  # also warms up the wasm engine
ms_sha1 = ms_verify = 1 << 29
for _ in range(3):  # node's wasm tiering makes single runs noisy: best of three
    gc.collect()
    t0 = time.ticks_ms()
    Sha1(data).digest()
    ms_sha1 = min(ms_sha1, time.ticks_diff(time.ticks_ms(), t0))
    gc.collect()
    t0 = time.ticks_ms()
    n = verify_stream(io.BytesIO(data), "SHA1", want, chunk_size=4096)
    ms_verify = min(ms_verify, time.ticks_diff(time.ticks_ms(), t0))
assert n == len(data)
print("micropython-sha1 version=%s bytes=%d sha1_ms=%d sha1_MBps=%.3f verify_ms=%d verify_MBps=%.3f"
      % (sys.version.split(";")[-1].strip().split()[1], len(data), ms_sha1, len(data) / 1e3 / max(ms_sha1, 1),
         ms_verify, len(data) / 1e3 / max(ms_verify, 1)))
`);
