// A synchronous TCP socket bridge for the MicroPython WebAssembly port (which has no
// sockets), so edgecore_ports.micropython's HTTP client runs unchanged over real TCP.
//
// Why this shape: MicroPython (wasm) calls JS functions synchronously and cannot await.
// Node's `net` is asynchronous. So the sockets live in a worker thread, and the main
// thread (running MicroPython) posts a request to the worker and blocks in
// Atomics.wait on a SharedArrayBuffer until the worker answers. The worker's event loop
// keeps running while the main thread is blocked. Bytes move through the shared buffer
// and are copied straight into / out of MicroPython's heap (the wasm memory, captured
// when the module is instantiated) at the address Python passes
// (uctypes.addressof(buf)), so no Python objects are allocated per read.
//
// Use:  const bridge = installBridge();            // BEFORE loadMicroPython is called
//       const mp = await loadEdgecore(...);
//       bridge.register(mp);                        // JS module "edgecore_bridge"
//       ... MicroPython code: import mp_bridge; make_transport(connect=mp_bridge.connect)
//       bridge.close();
//
// JS module "edgecore_bridge" (all synchronous; a negative result is -errno):
//   connect(host, port, tls, timeout_s) -> id | -errno
//   write(id, addr, n) -> n | -errno        readinto(id, addr, n) -> n (0 = EOF) | -errno
//   settimeout(id, s)   close(id)           errmsg() -> text of the last error
// tests/micropython/mp_bridge.py wraps it as a stream object (write/readinto/close).
import { Worker } from "node:worker_threads";

const DATA_SIZE = 64 * 1024;
const WAIT_LIMIT_MS = 120000; // a stuck worker fails the call instead of hanging the test

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const net = require("node:net");
const tls = require("node:tls");
const ctrl = new Int32Array(workerData.ctrl);
const data = new Uint8Array(workerData.data);
const socks = new Map();
let nextId = 1;

function reply(result, message) {
  if (message) {
    const b = Buffer.from(String(message).slice(0, 1000));
    data.set(b.subarray(0, data.length));
    ctrl[2] = Math.min(b.length, data.length);
  }
  ctrl[1] = result;
  Atomics.store(ctrl, 0, 1);
  Atomics.notify(ctrl, 0);
}

function errno(err) {
  const map = { ECONNREFUSED: 111, ECONNRESET: 104, ETIMEDOUT: 110, EPIPE: 32,
                ENOTFOUND: 2, EHOSTUNREACH: 113, ENETUNREACH: 101 };
  return -(map[err && err.code] || 5);
}

// Serve a pending read from the socket's queue, or wait for data/end/error/timeout.
function tryRead(s) {
  const want = s.want;
  if (want === null) return;
  if (s.queue.length) {
    let n = 0;
    while (n < want && s.queue.length) {
      const head = s.queue[0];
      const k = Math.min(head.length, want - n);
      data.set(head.subarray(0, k), n);
      n += k;
      if (k === head.length) s.queue.shift(); else s.queue[0] = head.subarray(k);
    }
    s.want = null;
    clearTimeout(s.timer);
    if (s.queue.length === 0 && !s.ended) s.sock.resume();
    reply(n);
  } else if (s.error) {
    s.want = null; clearTimeout(s.timer); reply(errno(s.error), s.error.message);
  } else if (s.ended) {
    s.want = null; clearTimeout(s.timer); reply(0);
  }
}

parentPort.on("message", (m) => {
  if (m.op === "connect") {
    const opts = { host: m.host, port: m.port };
    let sock;
    let done = false;
    const fail = (err) => { if (!done) { done = true; sock.destroy(); reply(errno(err), err.message); } };
    if (m.tls) {
      sock = tls.connect({ ...opts, servername: m.host, ca: m.ca || undefined });
      sock.once("secureConnect", ok);
    } else {
      sock = net.connect(opts);
      sock.once("connect", ok);
    }
    sock.setNoDelay(true);
    const timer = m.timeout > 0 ? setTimeout(() => fail({ code: "ETIMEDOUT", message: "connect timed out" }), m.timeout * 1000) : null;
    sock.once("error", fail);
    function ok() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.removeListener("error", fail);
      const id = nextId++;
      const s = { sock, queue: [], ended: false, error: null, want: null, timer: null, timeout: m.timeout };
      socks.set(id, s);
      sock.on("data", (chunk) => { s.queue.push(chunk); if (s.queue.length > 64) sock.pause(); tryRead(s); });
      sock.on("end", () => { s.ended = true; tryRead(s); });
      sock.on("error", (err) => { s.error = err; tryRead(s); });
      sock.on("close", () => { s.ended = true; tryRead(s); });
      reply(id);
    }
  } else if (m.op === "write") {
    const s = socks.get(m.id);
    if (!s || s.error) return reply(-32, "write on a closed socket");
    const copy = Buffer.from(data.subarray(0, m.n));  // copied before the main thread reuses it
    s.sock.write(copy);
    reply(m.n);
  } else if (m.op === "read") {
    const s = socks.get(m.id);
    if (!s) return reply(-9, "read on a closed socket");
    s.want = Math.min(m.n, data.length);
    if (s.timeout > 0 && !s.queue.length && !s.ended && !s.error) {
      s.timer = setTimeout(() => { if (s.want !== null) { s.want = null; reply(-110, "read timed out"); } }, s.timeout * 1000);
    }
    tryRead(s);
  } else if (m.op === "settimeout") {
    const s = socks.get(m.id);
    if (s) s.timeout = m.timeout;
    reply(0);
  } else if (m.op === "close") {
    const s = socks.get(m.id);
    if (s) { s.sock.destroy(); socks.delete(m.id); }
    reply(0);
  }
});
`;

export function installBridge() {
  let memory = null;
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = async function (...args) {
    const result = await instantiate.apply(this, args);
    const exports = (result.instance || result).exports;
    for (const value of Object.values(exports)) {
      if (value instanceof WebAssembly.Memory) memory = value;
    }
    return result;
  };
  const ctrlBuf = new SharedArrayBuffer(16);
  const dataBuf = new SharedArrayBuffer(DATA_SIZE);
  const ctrl = new Int32Array(ctrlBuf);
  const data = new Uint8Array(dataBuf);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ctrl: ctrlBuf, data: dataBuf } });
  let lastError = "";
  const stats = { calls: 0, bytesIn: 0, bytesOut: 0, connects: 0 };

  function call(msg) {
    stats.calls++;
    Atomics.store(ctrl, 0, 0);
    ctrl[2] = 0;
    worker.postMessage(msg);
    if (Atomics.wait(ctrl, 0, 0, WAIT_LIMIT_MS) === "timed-out") {
      lastError = "bridge: worker did not answer " + msg.op;
      return -110;
    }
    const result = ctrl[1];
    if (result < 0) lastError = Buffer.from(data.subarray(0, ctrl[2])).toString();
    return result;
  }

  function heap() {
    if (memory === null) throw new Error("bridge: installBridge() must run before loadMicroPython()");
    return new Uint8Array(memory.buffer); // re-made per call: the memory may have grown
  }

  const module = {
    connect(host, port, useTls, timeout) {
      stats.connects++;
      return call({ op: "connect", host, port, tls: !!useTls, timeout: timeout || 0 });
    },
    write(id, addr, n) {
      n = Math.min(n, DATA_SIZE);
      data.set(heap().subarray(addr, addr + n));
      const r = call({ op: "write", id, n });
      if (r > 0) stats.bytesOut += r;
      return r;
    },
    readinto(id, addr, n) {
      const r = call({ op: "read", id, n });
      if (r > 0) {
        heap().set(data.subarray(0, r), addr);
        stats.bytesIn += r;
      }
      return r;
    },
    settimeout(id, s) {
      return call({ op: "settimeout", id, timeout: s || 0 });
    },
    close(id) {
      return call({ op: "close", id });
    },
    errmsg() {
      return lastError;
    },
  };

  return {
    stats,
    register(mp) {
      WebAssembly.instantiate = instantiate;
      mp.registerJsModule("edgecore_bridge", module);
    },
    close() {
      return worker.terminate();
    },
  };
}
