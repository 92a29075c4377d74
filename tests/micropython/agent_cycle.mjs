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
// --probe    sample the live heap after every step of the cycle (the agent's
//            cycle_steps() yields after each request, action and download chunk).
//            The wasm port only collects garbage when control is back in JS (it
//            cannot scan the wasm stack; gc.collect() inside Python only asks), so the
//            cycle is driven step by step from JS; after each step gc.collect() is
//            requested, runs on the return to JS, and gc.mem_alloc() is read: the live
//            heap at that point ("peak"). "raw_peak": gc.mem_alloc() at a step's end
//            before that collection (live + the step's garbage, unless the port had to
//            collect during the step).
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
_gen = None

def _step():
    # One step of the current cycle; 1 = more to come, 0 = the cycle ended.
    global _gen
    if _gen is None:
        _gen = _agent.cycle_steps()
    try:
        next(_gen)
        return 1
    except StopIteration as stop:
        _reports.append(stop.args[0])
        _gen = None
        return 0

def _alloc():
    return gc.mem_alloc()

def _gc():
    gc.collect()  # at depth > 0 this only asks: the port collects on the return to JS

def _result():
    active = {}
    for h in _agent.state["active"]:
        active[h] = {"sha1": _agent.state["active"][h]["sha1"],
                     "path": mp_agent.active_model(_agent.model_dir, h)[0]}
    return json.dumps({"reports": _reports, "active": active, "buffer": len(_agent.buf),
                       "base": _base, "logs": [l for l in _logs if l[0] != "info"][:20]})
`;

let ok = false;
try {
  mp.runPython(setup);
  const step = mp.globals.get("_step");
  const alloc = mp.globals.get("_alloc");
  const requestGc = mp.globals.get("_gc");
  const mem = () => { requestGc(); return alloc(); }; // live heap: collected on _gc's return
  const loaded = mem();
  let peak = loaded;
  let rawPeak = loaded;
  let samples = 0;
  let steps = 0;
  const t0 = Date.now();
  for (let c = 0; c < cycles; c++) {
    while (step() === 1) {
      steps++;
      if (probe) {
        const raw = alloc(); // the step's garbage included unless the port collected
        if (raw > rawPeak) rawPeak = raw;
        const m = mem();
        samples++;
        if (m > peak) peak = m;
      }
    }
  }
  const seconds = (Date.now() - t0) / 1000;
  const result = JSON.parse(mp.globals.get("_result")());
  result.seconds = seconds;
  result.steps = steps;
  result.heap = {
    baseline: result.base, after_import: loaded, peak, samples, raw_peak: rawPeak,
    cycle_beyond_import: peak - loaded, peak_beyond_baseline: peak - result.base,
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
