// The receiver a Twenty user would otherwise write, in Node.js: the same verify (HMAC-SHA256
// over "<timestamp>:<raw body>", constant-time compare, replay window), JSON.parse, and the
// same queued message (SHA-256 id, event name split, envelope JSON). No I/O, like ours.
//
// usage: node benches/peer/receiver.js target/bench-corpus   (scripts/bench runs it)
// Prints one JSON line per payload size: {"name", "bytes", "ns_per_event", "iterations"}.

"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const WINDOW_MS = 300_000;

function handle(body, headers, secret, nowMs) {
  const ts = headers["x-twenty-webhook-timestamp"];
  const sig = headers["x-twenty-webhook-signature"];
  if (!/^[0-9]{1,16}$/.test(ts) || !/^[0-9a-fA-F]{64}$/.test(sig)) return 401;
  const expected = crypto.createHmac("sha256", secret).update(ts + ":").update(body).digest();
  if (!crypto.timingSafeEqual(expected, Buffer.from(sig, "hex"))) return 401;
  if (Math.abs(nowMs - Number(ts)) > WINDOW_MS) return 401;

  const payload = JSON.parse(body.toString("utf8"));
  const name = payload.eventName;
  const dot = name.lastIndexOf(".");
  const record = payload.record;
  const message = JSON.stringify({
    version: 1,
    id: crypto.createHash("sha256").update(body).digest("hex"),
    shape: "record",
    eventName: name,
    objectName: name.slice(0, dot),
    action: name.slice(dot + 1),
    recordId: record && record.id !== undefined ? String(record.id) : null,
    workspaceId: payload.workspaceId ?? null,
    webhookId: payload.webhookId ?? null,
    eventDate: payload.eventDate ?? null,
    receivedAt: new Date(nowMs).toISOString(),
    signatureVerified: true,
    userId: payload.userId ?? null,
    workspaceMemberId: payload.workspaceMemberId ?? null,
    apiKeyId: payload.apiKeyId ?? null,
    batch: null,
    objectMetadata: payload.objectMetadata ?? null,
    record: record ?? null,
    updatedFields: payload.updatedFields ?? null,
    claimCheck: null,
  });
  if (Buffer.byteLength(message) > 1048576) return 413;
  return message;
}

const dir = process.argv[2] || "target/bench-corpus";
for (const name of ["1KiB", "16KiB", "512KiB"]) {
  const body = fs.readFileSync(path.join(dir, `${name}.json`));
  const h = JSON.parse(fs.readFileSync(path.join(dir, `${name}.headers.json`), "utf8"));
  const headers = {
    "x-twenty-webhook-timestamp": h.timestamp,
    "x-twenty-webhook-signature": h.signature,
  };
  const now = Number(h.timestamp);
  if (typeof handle(body, headers, h.secret, now) !== "string") throw new Error(`${name}: not accepted`);
  // Warm up the JIT, then time batches for about 3 s.
  const warmUntil = process.hrtime.bigint() + 1_000_000_000n;
  while (process.hrtime.bigint() < warmUntil) handle(body, headers, h.secret, now);
  let iterations = 0;
  const start = process.hrtime.bigint();
  const stop = start + 3_000_000_000n;
  let t = start;
  while (t < stop) {
    for (let i = 0; i < 16; i++) handle(body, headers, h.secret, now);
    iterations += 16;
    t = process.hrtime.bigint();
  }
  const ns = Number(t - start) / iterations;
  console.log(JSON.stringify({ name, bytes: body.length, ns_per_event: ns, iterations }));
}
