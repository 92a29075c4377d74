// Runs plain `def test_*` test files under the MicroPython WebAssembly port.
//
//   node tests/micropython/run.mjs tests/test_sha1.py tests/test_sigv4.py ...
//
// edgecore/ is on MicroPython's path (/lib/edgecore), the test files and tests/data/
// are in /tests; mp_runner.py imports each test module and calls its test_* functions.
// Prints "N passed, N failed" and exits 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { loadEdgecore, root, writeFile } from "./mpenv.mjs";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tests/micropython/run.mjs TEST_FILE...");
  process.exit(2);
}

const mp = await loadEdgecore();
// The MicroPython port (ports/) as the package edgecore_ports, as setup.cfg installs it.
mp.FS.mkdir("/lib/edgecore_ports");
for (const name of fs.readdirSync(path.join(root, "ports")).sort()) {
  if (name.endsWith(".py")) {
    writeFile(mp, "/lib/edgecore_ports/" + name, path.join(root, "ports", name));
  }
}
const modules = [];
for (const f of files) {
  const name = path.basename(f, ".py");
  writeFile(mp, "/tests/" + name + ".py", path.resolve(f));
  modules.push(name);
}
writeFile(mp, "/tests/mp_runner.py", path.join(root, "tests", "micropython", "mp_runner.py"));

mp.runPython(
  "import sys\nsys.path.insert(0, '/tests')\nimport mp_runner\n" +
    "mp_runner_failed = mp_runner.main(" + JSON.stringify(modules) + ")\n"
);
process.exit(mp.globals.get("mp_runner_failed") === 0 ? 0 : 1);
