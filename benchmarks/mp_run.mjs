// Runs one Python script under the MicroPython WebAssembly port with edgecore on its path.
//
//   node benchmarks/mp_run.mjs SCRIPT.py [ARG...]     (ARGs are in sys.argv[1:] there)
//
// Used by the MicroPython benchmarks (mp_*.py); tests/data/ and tests/test_*.py files
// named after the script are available under /tests for shared fixtures.
import path from "node:path";
import { loadEdgecore, root, writeFile } from "../tests/micropython/mpenv.mjs";

const [script, ...args] = process.argv.slice(2);
if (!script) {
  console.error("usage: node benchmarks/mp_run.mjs SCRIPT.py [ARG...]");
  process.exit(2);
}
const mp = await loadEdgecore({ heapsize: 8 * 1024 * 1024 });
writeFile(mp, "/tests/test_wire.py", path.join(root, "tests", "test_wire.py"));
mp.FS.writeFile("/main.py", "");
const src = (await import("node:fs")).readFileSync(path.resolve(script), "utf8");
mp.runPython(
  "import sys\nsys.path.insert(0, '/tests')\nsys.argv[:] = " +
    JSON.stringify([script, ...args]) + "\n" + src
);
