// Receives upload-broker's webhooks and verifies each with the Standard
// Webhooks reference library (npm `standardwebhooks`).
//   npm ci && WEBHOOK_SECRET=whsec_… PORT=3000 node receiver.mjs
import http from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.WEBHOOK_SECRET);
// Deliveries come at least once: deduplicate by webhook-id (keep it in your
// database, in the transaction that acts on the event).
const seen = new Set();

http
  .createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    try {
      // Checks the signature and that the timestamp is within 5 minutes.
      event = webhook.verify(body, req.headers);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (!seen.has(event.id)) {
      seen.add(event.id);
      const { id, key, objectSize } = event.data;
      console.log(`${event.type} ${id} ${key} ${objectSize ?? ""}`.trim());
    }
    res.writeHead(204).end(); // answer within 10 s; do slow work afterwards
  })
  .listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => console.log("listening"));
