// Benchmark (not a test): N full upload lifecycles (create, which signs the
// part; PUT 1 KiB to the presigned URL; complete) at concurrency C against a
// running broker, and a resume (POST …/resume) on every tenth. Prints
// throughput, p50/p99 per route, and the broker's RSS and Postgres
// connections sampled during the run. Driven by bench/load/run.sh.
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

const base = process.env.BROKER_URL;
const key = process.env.BROKER_KEY;
const pid = process.env.BROKER_PID;
const db = process.env.BENCH_DB_NAME;
const N = Number(process.env.LIFECYCLES ?? 10000);
const C = Number(process.env.CONCURRENCY ?? 64);
const auth = { authorization: `Bearer ${key}` };
const times = { create: [], put: [], resume: [], complete: [] };

async function timed(route, f) {
  const t = performance.now();
  const r = await f();
  times[route].push(performance.now() - t);
  return r;
}

async function call(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { ...auth, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function rssMiB() {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(s)[1]) / 1024;
}
function pgConnections() {
  const out = execFileSync("psql", [process.env.ADMIN_URL, "-tAc",
    `select count(*) from pg_stat_activity where datname = '${db}'`]).toString();
  return Number(out.trim());
}

const idle = rssMiB();
let peakRss = idle, peakConns = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, rssMiB());
  peakConns = Math.max(peakConns, pgConnections());
}, 500);

const body = Buffer.alloc(1024, 1);
let next = 0, done = 0;
const started = performance.now();
async function worker() {
  while (next < N) {
    const i = next++;
    const c = await timed("create", () => call("POST", "/v1/uploads", { filename: `l${i}.bin`, size: body.length }));
    await timed("put", async () => {
      const r = await fetch(c.parts[0].url, { method: "PUT", body });
      if (!r.ok) throw new Error(`PUT ${r.status}`);
    });
    if (i % 10 === 0) await timed("resume", () => call("POST", `/v1/uploads/${c.resumeToken}/resume`));
    await timed("complete", () => call("POST", `/v1/uploads/${c.resumeToken}/complete`));
    done++;
  }
}
await Promise.all(Array.from({ length: C }, worker));
const secs = (performance.now() - started) / 1000;
clearInterval(sampler);

const q = (v, p) => v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
console.log(`${done} lifecycles at concurrency ${C} in ${secs.toFixed(1)} s: ${(done / secs).toFixed(0)} lifecycles/s`);
console.log("| route | requests | p50 | p99 |");
console.log("| --- | --- | --- | --- |");
for (const [route, v] of Object.entries(times)) {
  v.sort((a, b) => a - b);
  const label = { create: "POST /v1/uploads (create + sign)", put: "PUT part (LocalStack, presigned)", resume: "POST …/resume (ListParts)", complete: "POST …/complete" }[route];
  console.log(`| ${label} | ${v.length} | ${q(v, 50).toFixed(1)} ms | ${q(v, 99).toFixed(1)} ms |`);
}
console.log(`broker RSS: ${idle.toFixed(1)} MiB idle, ${peakRss.toFixed(1)} MiB peak; Postgres connections of the broker's database: ${peakConns} at most`);
