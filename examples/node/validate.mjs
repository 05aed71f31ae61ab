// Validate crmstream input events with Ajv (JSON Schema 2020-12) before publishing them.
//
//   npm ci --prefix examples/node
//   node examples/node/validate.mjs < examples/events.jsonl
//
// Reads JSON lines {"topic": "crm.purchases", "event": {...}} and prints one JSON line per
// event: {"topic", "event_id", "valid", "errors"}. Exit code 1 if any event is invalid.
// The schemas are the committed files in schemas/json/; an event they accept is one the
// crmstream worker accepts (tests/integration/test_language_examples.py holds them to it).
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const SCHEMAS = new URL("../../schemas/json/", import.meta.url);
const TOPICS = {
  "crm.purchases": "purchase.json",
  "crm.chats": "chat_message.json",
  "crm.feedback": "feedback.json",
  "crm.customers": "customer_details.json",
};

const ajv = new Ajv2020({ allErrors: true });
addFormats(ajv); // checks "format": "date-time", as the worker does
const validators = Object.fromEntries(
  Object.entries(TOPICS).map(([topic, file]) => [
    topic,
    ajv.compile(JSON.parse(readFileSync(new URL(file, SCHEMAS), "utf8"))),
  ]),
);

export function check(topic, event) {
  const validate = validators[topic];
  if (validate === undefined) {
    return [`${topic} is not a crmstream input topic`];
  }
  if (validate(event)) {
    return [];
  }
  return validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`);
}

let invalid = 0;
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { topic, event } = JSON.parse(line);
  const errors = check(topic, event);
  invalid += errors.length > 0;
  const eventId = event && typeof event === "object" ? event.event_id : undefined;
  console.log(JSON.stringify({ topic, event_id: eventId, valid: errors.length === 0, errors }));
}
process.exitCode = invalid ? 1 : 0;
