// Loads the MicroPython WebAssembly port with edgecore's portable core on its path.
// Shared by the test runner (run.mjs) and the MicroPython benchmarks.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function copyTree(mp, src, dst) {
  mp.FS.mkdir(dst);
  for (const name of fs.readdirSync(src).sort()) {
    const s = path.join(src, name);
    if (fs.statSync(s).isDirectory()) {
      if (name !== "__pycache__") copyTree(mp, s, dst + "/" + name);
    } else if (name.endsWith(".py")) {
      mp.FS.writeFile(dst + "/" + name, fs.readFileSync(s));
    }
  }
}

// heapsize: the MicroPython GC heap in bytes (a microcontroller has 100 KB to a few MB).
export async function loadEdgecore({ heapsize = 4 * 1024 * 1024 } = {}) {
  const mp = await loadMicroPython({
    heapsize,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  mp.FS.mkdir("/lib");
  copyTree(mp, path.join(root, "edgecore"), "/lib/edgecore");
  mp.FS.mkdir("/tests");
  const data = path.join(root, "tests", "data");
  if (fs.existsSync(data)) copyTree(mp, data, "/tests/data");
  return mp;
}

export function writeFile(mp, dst, src) {
  mp.FS.writeFile(dst, fs.readFileSync(src));
}
