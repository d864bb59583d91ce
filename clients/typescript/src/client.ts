/**
 * A typed fetch client of the Consent Ledger API: openapi-fetch over the paths that
 * openapi-typescript generated from the ledger's own OpenAPI document (src/schema.ts, made by
 * generate.py), so a route, parameter or body the API does not have fails to compile.
 *
 * Where the document declares a body only as an object (a receipt today), the guards below
 * check at run time what TypeScript cannot.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

export type LedgerClient = Client<paths>;

/** The ledger's receipt of one recorded event (docs/api.md, POST /v1/events). */
export interface Receipt {
  seq: number;
  leaf_index: number;
  event_id: string;
  event_hash: string;
  signature: string;
  key_id: string;
  recorded_at: string;
  duplicate: boolean;
}

/** A client sending `token` as its bearer token on every request to `baseUrl`. */
export function createLedgerClient(baseUrl: string, token: string): LedgerClient {
  const client = createClient<paths>({ baseUrl });
  const bearer: Middleware = {
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
  client.use(bearer);
  return client;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isReceipt(value: unknown): value is Receipt {
  if (!isRecord(value)) return false;
  const numbers = ["seq", "leaf_index"];
  const texts = ["event_id", "event_hash", "signature", "key_id", "recorded_at"];
  return (
    numbers.every((name) => Number.isSafeInteger(value[name])) &&
    texts.every((name) => typeof value[name] === "string") &&
    typeof value.duplicate === "boolean"
  );
}

/** The receipts of a batch's answer (`{"receipts": [...]}`), in the batch's order. */
export function batchReceipts(body: unknown): Receipt[] {
  if (!isRecord(body) || !Array.isArray(body.receipts) || !body.receipts.every(isReceipt)) {
    throw new TypeError(`not a batch's receipts: ${JSON.stringify(body)}`);
  }
  return body.receipts;
}
