// Verifies deliveries with the Standard Webhooks reference library, as a
// receiver would. stdin: a JSON array of {secret, headers, body}; stdout: one
// line per delivery, the verified payload's event id, or "invalid: <reason>".
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const { secret, headers, body } of JSON.parse(input)) {
  try {
    const payload = new Webhook(secret).verify(body, headers);
    console.log(payload.id);
  } catch (e) {
    console.log(`invalid: ${e.message}`);
  }
}
