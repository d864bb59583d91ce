/**
 * One round trip from Node: post a batch of events, read their receipts, post it again (the
 * ledger answers the same receipts, marked duplicate: nothing is stored twice), then fetch one
 * of the events back. Prints what it saw as one JSON object, for tests/e2e/test_typescript_client.py.
 *
 *   LEDGER_URL=http://127.0.0.1:8000 LEDGER_TOKEN=cl_... node dist/roundtrip.js
 *
 * The token needs the scopes events:write and history:read.
 */
import { randomUUID } from "node:crypto";
import { env, exit, stderr, stdout } from "node:process";

import { batchReceipts, createLedgerClient } from "./client.js";
import type { components } from "./schema.js";

type Fact = components["schemas"]["Fact"];

function required(name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

async function main(): Promise<void> {
  const ledger = createLedgerClient(required("LEDGER_URL"), required("LEDGER_TOKEN"));
  const fresh = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 12)}`;
  const now = new Date().toISOString();
  const version = fresh("policy-ts");
  const subject = fresh("user-ts");
  const batch: Fact[] = [
    {
      type: "policy.version_published",
      event_id: fresh("evt-ts"),
      occurred_at: now,
      version,
      effective_at: "2026-01-01T00:00:00Z",
      material: false,
      text_digest: "sha256:" + "ab".repeat(32),
      purposes: [
        { id: "marketing_email", name: "Marketing e-mail", legal_basis: "consent", retention_days: 730 },
      ],
    },
    {
      type: "consent.given",
      event_id: fresh("evt-ts"),
      occurred_at: now,
      subject,
      purposes: ["marketing_email"],
      policy_version: version,
      collection_method: "web_form",
    },
  ];

  const posted = await ledger.POST("/v1/events", { body: batch });
  if (posted.response.status !== 201) {
    throw new Error(`the batch was answered ${posted.response.status}: ${JSON.stringify(posted.error)}`);
  }
  const receipts = batchReceipts(posted.data);

  const again = await ledger.POST("/v1/events", { body: batch });
  if (again.response.status !== 200) {
    throw new Error(`the resent batch was answered ${again.response.status}: ${JSON.stringify(again.error)}`);
  }
  const resent = batchReceipts(again.data);

  const consent = receipts[receipts.length - 1];
  if (consent === undefined) throw new Error("the batch had no receipt");
  const fetched = await ledger.GET("/v1/events/{seq}", {
    params: { path: { seq: consent.seq }, query: { purpose: "round trip from Node" } },
  });
  if (fetched.data === undefined) {
    throw new Error(`event ${consent.seq} was answered ${fetched.response.status}: ${JSON.stringify(fetched.error)}`);
  }
  stdout.write(
    JSON.stringify({ event_ids: batch.map((e) => e.event_id), subject, receipts, resent, event: fetched.data }) + "\n",
  );
}

main().catch((error: unknown) => {
  stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  exit(1);
});
