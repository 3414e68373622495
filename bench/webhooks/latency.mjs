// Benchmark (not a test): the time from an upload's completion (its event's
// timestamp, taken in the transaction that records it) to the moment a
// webhook receiver has it, over N full uploads (create, PUT, complete) at
// concurrency C against a running broker; beside it, the same events read by
// a poller of GET /v1/events every POLL_MS (what a backend without an
// endpoint would do). Prints Markdown rows. Driven by bench/webhooks/latency.sh.
import http from "node:http";

const base = process.env.BROKER_URL;
const key = process.env.BROKER_KEY;
const N = Number(process.env.UPLOADS ?? 1000);
const C = Number(process.env.CONCURRENCY ?? 8);
const POLL_MS = Number(process.env.POLL_MS ?? 250);
const auth = { authorization: `Bearer ${key}` };

const hooked = new Map(); // upload id -> latency ms (webhook)
const polled = new Map(); // upload id -> latency ms (feed)
let requests = 0;

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const now = Date.now();
  requests++;
  const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  if (event.type === "upload.completed" && !hooked.has(event.data.id)) {
    hooked.set(event.data.id, now - Date.parse(event.timestamp));
  }
  res.writeHead(204).end();
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}/hook`;

async function call(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { ...auth, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

const hook = await call("POST", "/v1/webhooks", { url, eventTypes: ["upload.completed"] });
// The poller starts from the end of the feed as it is now.
let cursor = (await call("GET", "/v1/events?limit=1000")).next;
for (;;) {
  const page = await call("GET", `/v1/events?limit=1000&after=${cursor}`);
  if (page.events.length === 0) break;
  cursor = page.next;
}
let polling = true;
const poller = (async () => {
  while (polling || polled.size < N) {
    const page = await call("GET", `/v1/events?limit=1000&after=${cursor}`);
    const now = Date.now();
    for (const e of page.events) {
      if (e.type === "upload.completed" && !polled.has(e.data.id)) {
        polled.set(e.data.id, now - Date.parse(e.timestamp));
      }
    }
    cursor = page.next;
    if (page.events.length < 1000) await new Promise((r) => setTimeout(r, POLL_MS));
    if (!polling && polled.size >= N) break;
  }
})();

const body = Buffer.alloc(1024, 7);
let next = 0;
const started = Date.now();
async function worker() {
  while (next < N) {
    next++;
    const c = await call("POST", "/v1/uploads", { filename: "w.bin", size: body.length });
    const put = await fetch(c.parts[0].url, { method: "PUT", body });
    if (!put.ok) throw new Error(`PUT: ${put.status}`);
    await call("POST", `/v1/uploads/${c.resumeToken}/complete`);
  }
}
await Promise.all(Array.from({ length: C }, worker));
const took = (Date.now() - started) / 1000;
const deadline = Date.now() + 60_000;
while ((hooked.size < N || polled.size < N) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 50));
}
polling = false;
await poller;
server.close();

function row(label, m) {
  const v = [...m.values()].sort((a, b) => a - b);
  const q = (p) => v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
  return `| ${label} | ${v.length} of ${N} | ${q(50)} ms | ${q(99)} ms | ${v[v.length - 1]} ms |`;
}
console.log(`${N} uploads at concurrency ${C} in ${took.toFixed(1)} s (${(N / took).toFixed(0)} uploads/s); ${requests} webhook requests`);
console.log("| completion → backend | events | p50 | p99 | max |");
console.log("| --- | --- | --- | --- | --- |");
console.log(row("webhook (upload-broker delivery worker)", hooked));
console.log(row(`polling GET /v1/events every ${POLL_MS} ms`, polled));
await call("DELETE", `/v1/webhooks/${hook.id}`);
if (hooked.size < N || polled.size < N) process.exit(1);
