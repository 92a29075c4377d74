// Runs plain `def test_*` test files under the MicroPython WebAssembly port.
//
//   node tests/micropython/run.mjs tests/test_sha1.py tests/test_sigv4.py ...
//
// edgecore/*.py is copied to /lib/edgecore (on MicroPython's sys.path), each test file
// and tests/data/ to /tests, then mp_runner.py imports each test module and calls its
// test_* functions. Prints "N passed, N failed" and exits 1 on any failure.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tests/micropython/run.mjs TEST_FILE...");
  process.exit(2);
}

const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copyTree(src, dst) {
  mp.FS.mkdir(dst);
  for (const name of fs.readdirSync(src).sort()) {
    const s = path.join(src, name);
    if (fs.statSync(s).isDirectory()) {
      if (name !== "__pycache__") copyTree(s, dst + "/" + name);
    } else if (!name.endsWith(".pyc")) {
      mp.FS.writeFile(dst + "/" + name, fs.readFileSync(s));
    }
  }
}

mp.FS.mkdir("/lib");
copyTree(path.join(root, "edgecore"), "/lib/edgecore");
mp.FS.mkdir("/tests");
if (fs.existsSync(path.join(root, "tests", "data"))) {
  copyTree(path.join(root, "tests", "data"), "/tests/data");
}
const modules = [];
for (const f of files) {
  const name = path.basename(f, ".py");
  mp.FS.writeFile("/tests/" + name + ".py", fs.readFileSync(path.resolve(f)));
  modules.push(name);
}
mp.FS.writeFile("/tests/mp_runner.py", fs.readFileSync(path.join(here, "mp_runner.py")));

mp.runPython(
  "import sys\nsys.path.insert(0, '/tests')\nimport mp_runner\n" +
    "mp_runner_failed = mp_runner.main(" + JSON.stringify(modules) + ")\n"
);
const failed = mp.globals.get("mp_runner_failed");
process.exit(failed === 0 ? 0 : 1);
