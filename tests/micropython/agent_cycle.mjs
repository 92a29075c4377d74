// Runs edgecore's MicroPython agent (edgecore_ports.mp_agent) in the MicroPython
// WebAssembly port against a real (local) cloud, over TCP through bridge.mjs.
//
//   node tests/micropython/agent_cycle.mjs --config agent.json [--cycles N]
//        [--flash DIR] [--mpy DIST] [--heap BYTES] [--probe]
//
// --config   agent config JSON (AGENT_IFACES.md keys); model_dir/state_dir are replaced
//            by /flash/models and /flash/state inside the wasm filesystem.
// --flash    the board's flash on the host: DIR (if it exists) is copied into /flash
//            first and /flash (models + state) back to DIR after the run (a reboot).
// --mpy      load DIST/lib's .mpy files (firmware/micropython/build-mpy.sh's output)
//            instead of the .py sources: checks the bytecode loads under this runtime.
// --probe    sample the heap at every step of the cycle (the agent's feed hook runs
//            after every request, action and download chunk): gc.mem_alloc() there is
//            the live heap plus the step's garbage (the wasm port collects only when
//            control is back in JS: it cannot scan the wasm stack), so "peak" is an upper
//            bound of the live peak; the real unix binary measures it exactly.
// Prints one line "RESULT {json}" (reports, heap figures, seconds); exit 1 when a
// cycle's report is not ok.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { installBridge } from "./bridge.mjs";
import { root } from "./mpenv.mjs";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const configPath = arg("--config");
if (!configPath) {
  console.error("usage: node tests/micropython/agent_cycle.mjs --config FILE [--cycles N] [--export DIR] [--mpy DIST] [--probe]");
  process.exit(2);
}
const cycles = parseInt(arg("--cycles", "1"), 10);
const flashDir = arg("--flash");
const mpyDir = arg("--mpy");
const heapsize = parseInt(arg("--heap", String(2 * 1024 * 1024)), 10);
const probe = process.argv.includes("--probe");

function copyIn(mp, src, dst, exts) {
  mp.FS.mkdir(dst);
  for (const name of fs.readdirSync(src).sort()) {
    const s = path.join(src, name);
    if (fs.statSync(s).isDirectory()) {
      if (name !== "__pycache__") copyIn(mp, s, dst + "/" + name, exts);
    } else if (exts.some((e) => name.endsWith(e))) {
      mp.FS.writeFile(dst + "/" + name, fs.readFileSync(s));
    }
  }
}

function copyOut(mp, src, dst) {
  fs.mkdirSync(dst, { recursive: true });
  for (const name of mp.FS.readdir(src)) {
    if (name === "." || name === "..") continue;
    const s = src + "/" + name;
    if (mp.FS.isDir(mp.FS.stat(s).mode)) copyOut(mp, s, path.join(dst, name));
    else fs.writeFileSync(path.join(dst, name), mp.FS.readFile(s));
  }
}

const bridge = installBridge(); // before loadMicroPython: it captures the wasm memory
const mp = await loadMicroPython({
  heapsize,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
bridge.register(mp);
mp.FS.mkdir("/lib");
if (mpyDir) {
  const lib = path.join(mpyDir, "lib");
  for (const name of fs.readdirSync(lib)) copyIn(mp, path.join(lib, name), "/lib/" + name, [".mpy"]);
} else {
  copyIn(mp, path.join(root, "edgecore"), "/lib/edgecore", [".py"]);
  copyIn(mp, path.join(root, "ports"), "/lib/edgecore_ports", [".py"]);
}
mp.FS.writeFile("/lib/mp_bridge.py", fs.readFileSync(path.join(root, "tests", "micropython", "mp_bridge.py")));
if (flashDir && fs.existsSync(flashDir)) copyIn(mp, flashDir, "/flash", [""]);
else mp.FS.mkdir("/flash");
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
config.model_dir = "/flash/models";
config.state_dir = "/flash/state";
mp.FS.writeFile("/flash/agent.json", JSON.stringify(config));

const setup = `
import gc, json, time
gc.collect()
_base = gc.mem_alloc()
import mp_bridge
from edgecore_ports import mp_agent
_logs = []
_agent = mp_agent.Agent(mp_agent.read_config_file("/flash/agent.json"),
                        connect=mp_bridge.connect,
                        log=lambda level, event, **f: _logs.append((level, event, f)),
                        sleep=lambda s: None)
_reports = []
_probe = [${probe ? "True" : "False"}, 0, 0]  # on, steps, peak

def _feed():
    _probe[1] += 1
    if _probe[0]:
        _probe[2] = max(_probe[2], gc.mem_alloc())

_agent.feed = _feed

def _cycle():
    _reports.append(_agent.cycle())

def _alloc():
    return gc.mem_alloc()

def _gc():
    gc.collect()  # at depth > 0 this only asks: the port collects on the return to JS

def _result():
    active = {}
    for h in _agent.state["active"]:
        active[h] = {"sha1": _agent.state["active"][h]["sha1"],
                     "path": mp_agent.active_model(_agent.store.root, h)[0]}
    return json.dumps({"reports": _reports, "active": active, "buffer": len(_agent.buf),
                       "base": _base, "steps": _probe[1], "peak": _probe[2],
                       "logs": [l for l in _logs if l[0] != "info"][:20]})
`;

let ok = false;
try {
  mp.runPython(setup);
  const cycle = mp.globals.get("_cycle");
  const alloc = mp.globals.get("_alloc");
  const requestGc = mp.globals.get("_gc");
  const mem = () => { requestGc(); return alloc(); }; // live heap: collected on _gc's return
  const loaded = mem();
  const t0 = Date.now();
  for (let c = 0; c < cycles; c++) {
    cycle();
    mem(); // garbage of a cycle goes before the next
  }
  const seconds = (Date.now() - t0) / 1000;
  const result = JSON.parse(mp.globals.get("_result")());
  result.seconds = seconds;
  result.heap = {
    baseline: result.base, after_import: loaded, peak: Math.max(result.peak, loaded),
    samples: probe ? result.steps : 0, cycle_beyond_import: result.peak - loaded,
  };
  result.bridge = bridge.stats;
  result.mpy = !!mpyDir;
  console.log("RESULT " + JSON.stringify(result));
  ok = result.reports.every((r) => r.ok);
} catch (e) {
  console.error(e.name === "PythonError" ? e.message : e.stack);
}
if (flashDir) {
  fs.rmSync(flashDir, { recursive: true, force: true });
  copyOut(mp, "/flash", flashDir);
}
await bridge.close();
process.exit(ok ? 0 : 1);
