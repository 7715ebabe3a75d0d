"""A local server that answers like Twenty's REST API, for the reconciliation tests.

Built from ../shared/twenty-rest-api.md: `GET /rest/<namePlural>` with `filter` (field
conditions with operators, `and(...)`, `or(...)`, `not(...)`, a bare comma list meaning
`and`), `order_by` (directions, `id` ascending appended as the tie-breaker), `limit`
(default and cap; larger values clamped), opaque base64 cursors that contain `+`, `/` and
`=` (`starting_after`), `pageInfo` and `totalCount`; soft-deleted rows only when the
filter names `deletedAt`; `Authorization: Bearer <key>`; 400 for an unknown plural;
`/rest/metadata/objects` in either of its two envelopes; 429 past a per-minute limit.

Test control, under `/_control/`: `POST records` `{"object": plural, "record": {...}}`
upserts a record (stamping `createdAt`/`updatedAt` unless given); `POST bulk`
`{"object", "count", "prefix"}` adds that many records, a millisecond apart; `POST delete`
`{"object", "id", "at"}` soft-deletes; `POST config` changes `limit_default`,
`limit_cap`, `metadata_envelope` ("objects" or "list"), `per_minute`, `fail_next`
(a list of statuses to answer before serving), `fail_after_lists` (answer 500 to every
list request once that many were served, 0 for never), `always` (a status answered to
every request, 429 with `retry-after: 1`; 0 for none), `forbidden` (plurals whose lists
answer 403, as to a key whose role may not read them), `hang_lists_secs` (list requests
answer only after that long), `webhook_api` ("current": both `/rest/metadata/webhooks`
and the deprecated `/rest/webhooks` answer bare JSON; "legacy": only `/rest/webhooks`, in
the record envelope of servers before webhooks moved to core; "none"),
`refuse_webhook_secret` (a PATCH that sets `secret` gets 400), `refuse_webhook_create` (a
POST gets 400); `GET stats` gives request
counts; `POST webhooks` seeds a webhook, `GET webhooks` lists them with their secrets.

Webhook management, from the same notes: `GET` (list, by `createdAt`), `GET /{id}`, `POST`
(201; `targetUrl` stored normalised as `new URL(u).toString()` does, non-http(s) refused
with `INVALID_TARGET_URL`; `operations` default `["*.*"]`; a secret made when none is
given), `PATCH /{id}` (merges `targetUrl`, `operations`, `description`, `secret`),
`DELETE /{id}`; the secret is returned in clear on every read.

Prints its endpoint on its first line, then serves until its standard input closes.
"""

import base64
import json
import re
import secrets
import uuid
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_KEY = "twenty-test-api-key"
OBJECTS = [
    {"nameSingular": "person", "namePlural": "people", "isActive": True, "isSystem": False},
    {"nameSingular": "company", "namePlural": "companies", "isActive": True, "isSystem": False},
    {"nameSingular": "opportunity", "namePlural": "opportunities", "isActive": True, "isSystem": False},
    {"nameSingular": "timelineActivity", "namePlural": "timelineActivities", "isActive": True, "isSystem": True},
    {"nameSingular": "pet", "namePlural": "pets", "isActive": False, "isSystem": False},
]

LOCK = threading.Lock()
RECORDS = {o["namePlural"]: {} for o in OBJECTS}
CONFIG = {
    "limit_default": 60,
    "limit_cap": 200,
    "metadata_envelope": "objects",
    "per_minute": 0,
    "fail_next": [],
    "fail_after_lists": 0,
    "always": 0,
    "forbidden": [],
    "hang_lists_secs": 0,
    "webhook_api": "current",
    "refuse_webhook_secret": False,
    "refuse_webhook_create": False,
}
WEBHOOKS = {}
STATS = {"requests": 0, "lists": 0, "throttled": 0}
RECENT = []


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- filter -------------------------------------------------------------------------

COND = re.compile(r"^([A-Za-z0-9_.]+)\[([a-zA-Z]+)\]:(.*)$", re.S)


def split_top(text):
    """Splits on commas outside parentheses, brackets and quotes."""
    parts, depth, quote, start = [], 0, False, 0
    for i, c in enumerate(text):
        if c == '"':
            quote = not quote
        elif not quote and c in "([":
            depth += 1
        elif not quote and c in ")]":
            depth -= 1
        elif not quote and depth == 0 and c == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_filter(text):
    text = text.strip()
    for fn in ("and", "or", "not"):
        if text.startswith(fn + "(") and text.endswith(")"):
            return (fn, [parse_filter(p) for p in split_top(text[len(fn) + 1:-1])])
    parts = split_top(text)
    if len(parts) > 1:
        return ("and", [parse_filter(p) for p in parts])
    m = COND.match(text)
    if not m:
        raise ValueError(f"invalid filter: {text}")
    field, op, value = m.groups()
    if op not in {"eq", "neq", "in", "is", "gt", "gte", "lt", "lte", "like", "ilike", "startsWith", "endsWith", "containsAny"}:
        raise ValueError(f"unknown operator {op}")
    value = value.strip()
    if op == "in":
        value = [v.strip().strip('"') for v in value.strip("[]").split(",") if v.strip()]
    else:
        value = value.strip('"')
    return ("cond", field, op, value)


def names(tree):
    if tree[0] == "cond":
        return {tree[1]}
    return set().union(*(names(t) for t in tree[1]))


def get(record, field):
    v = record
    for part in field.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def holds(tree, record):
    kind = tree[0]
    if kind == "and":
        return all(holds(t, record) for t in tree[1])
    if kind == "or":
        return any(holds(t, record) for t in tree[1])
    if kind == "not":
        return not all(holds(t, record) for t in tree[1])
    _, field, op, value = tree
    v = get(record, field)
    if op == "is":
        return (v is None) if value.upper() == "NULL" else (v is not None)
    if v is None:
        return False
    v = str(v)
    return {
        "eq": v == value, "neq": v != value, "in": v in value,
        "gt": v > value, "gte": v >= value, "lt": v < value, "lte": v <= value,
        "startsWith": v.startswith(value), "endsWith": v.endswith(value),
        "like": value.strip("%") in v, "ilike": value.strip("%").lower() in v.lower(),
        "containsAny": v in value,
    }[op]


# --- order and cursors --------------------------------------------------------------

def parse_order(text):
    order = []
    for part in split_top(text or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)(?:\[([A-Za-z]+)\])?$", part)
        if not m:
            raise ValueError(f"invalid order_by: {part}")
        direction = m.group(2) or "AscNullsFirst"
        if direction not in {"AscNullsFirst", "AscNullsLast", "DescNullsFirst", "DescNullsLast"}:
            raise ValueError(f"invalid direction {direction}")
        order.append((m.group(1), direction))
    if not any(f == "id" for f, _ in order):
        order.append(("id", "AscNullsFirst"))
    return order


def sort_records(records, order):
    for field, direction in reversed(order):
        nulls_first = direction.endswith("NullsFirst")
        desc = direction.startswith("Desc")
        present = [r for r in records if get(r, field) is not None]
        absent = [r for r in records if get(r, field) is None]
        present.sort(key=lambda r: str(get(r, field)), reverse=desc)
        records = absent + present if nulls_first else present + absent
    return records


def cursor_of(record):
    # Opaque, like Twenty's: base64 of JSON. The `?>` padding makes the encoding contain
    # `+` and `/`, and the length `=`, as real cursors do.
    raw = json.dumps({"id": record["id"], "pad": "??>>??>"}).encode()
    if len(raw) % 3 == 0:
        raw += b" "
    return base64.b64encode(raw).decode()


def id_of(cursor):
    try:
        return json.loads(base64.b64decode(cursor))["id"]
    except Exception:
        raise ValueError("invalid cursor")


def normalise_url(text):
    """As `new URL(text).toString()`: scheme and host lower-cased, the default port dropped,
    a bare origin given `/`. None when it is no http(s) URL."""
    from urllib.parse import urlsplit as split, urlunsplit
    try:
        u = split(text.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme.lower() not in ("http", "https") or not u.hostname:
        return None
    scheme = u.scheme.lower()
    host = u.hostname.lower()
    if port and not (scheme == "http" and port == 80) and not (scheme == "https" and port == 443):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, u.path or "/", u.query, u.fragment))


def new_webhook(body):
    target = normalise_url(body.get("targetUrl") or "")
    if target is None:
        return None
    stamp = now_iso()
    return {"id": str(uuid.uuid4()), "targetUrl": target,
            "operations": body.get("operations") or ["*.*"],
            "description": body.get("description"),
            "secret": body.get("secret") or secrets.token_hex(32),
            "workspaceId": "ws-1", "createdAt": stamp, "updatedAt": stamp, "deletedAt": None}


# --- HTTP ---------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        length = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self.read_json()
        with LOCK:
            if path == "/_control/records":
                table = RECORDS[body["object"]]
                record = dict(body["record"])
                stamp = now_iso()
                old = table.get(record["id"], {})
                record.setdefault("createdAt", old.get("createdAt", stamp))
                record.setdefault("updatedAt", stamp)
                record.setdefault("deletedAt", None)
                table[record["id"]] = {**old, **record}
                return self.send_json(200, table[record["id"]])
            if path == "/_control/bulk":
                # `count` new records, one millisecond apart, ending now.
                table = RECORDS[body["object"]]
                end = time.time()
                for i in range(body["count"]):
                    at = datetime.fromtimestamp(end - (body["count"] - i) / 1000, timezone.utc)
                    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                    rid = f"{body.get('prefix', 'r')}-{i:06d}"
                    table[rid] = {"id": rid, "name": {"firstName": f"N{i}", "lastName": "Bulk"},
                                  "emails": {"primaryEmail": f"n{i}@example.com", "additionalEmails": None},
                                  "city": "Paris", "createdAt": stamp, "updatedAt": stamp, "deletedAt": None}
                return self.send_json(200, {"count": len(table)})
            if path == "/_control/delete":
                record = RECORDS[body["object"]][body["id"]]
                at = body.get("at") or now_iso()
                record["deletedAt"] = at
                record["updatedAt"] = at
                return self.send_json(200, record)
            if path == "/_control/config":
                CONFIG.update(body)
                return self.send_json(200, CONFIG)
            if path == "/_control/webhooks":
                hook = new_webhook(body)
                WEBHOOKS[hook["id"]] = hook
                return self.send_json(200, hook)
        if path.startswith("/rest/"):
            return self.webhook_api("POST", path, body)
        self.send_json(404, {"error": "not found"})

    def do_PATCH(self):
        path = urlsplit(self.path).path
        return self.webhook_api("PATCH", path, self.read_json())

    def do_DELETE(self):
        return self.webhook_api("DELETE", urlsplit(self.path).path, None)

    def webhook_api(self, method, path, body):
        """The webhook endpoints; False when `path` is not one of them."""
        with LOCK:
            STATS["requests"] += 1
        if self.headers.get("authorization") != f"Bearer {API_KEY}":
            return self.send_json(401, {"statusCode": 401, "messages": ["Token invalid."], "error": "UNAUTHENTICATED"})
        m = re.match(r"^/rest/(metadata/webhooks|webhooks)(?:/([^/]+))?$", path)
        api = CONFIG["webhook_api"]
        if not m or api == "none" or (api == "legacy" and m.group(1) != "webhooks"):
            return self.send_json(404, {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"})
        legacy = api == "legacy"
        hook_id = m.group(2)
        with LOCK:
            if method == "GET" and hook_id is None:
                hooks = sorted(WEBHOOKS.values(), key=lambda h: h["createdAt"])
                if legacy:
                    return self.send_json(200, {"data": {"webhooks": hooks}, "pageInfo": {}, "totalCount": len(hooks)})
                return self.send_json(200, hooks)
            if method == "GET":
                hook = WEBHOOKS.get(hook_id)
                if hook is None:
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return None
                return self.send_json(200, hook)
            if method == "POST" and hook_id is None:
                if CONFIG["refuse_webhook_create"]:
                    return self.send_json(400, {"statusCode": 400, "error": "BadRequestException", "messages": ["injected: create refused"]})
                hook = new_webhook(body)
                if hook is None:
                    return self.send_json(400, {"statusCode": 400, "error": "BadRequestException", "code": "INVALID_TARGET_URL", "messages": ["Invalid target URL"]})
                WEBHOOKS[hook["id"]] = hook
                return self.send_json(201, {"data": {"createWebhook": hook}} if legacy else hook)
            if method == "PATCH" and hook_id is not None:
                hook = WEBHOOKS.get(hook_id)
                if hook is None:
                    return self.send_json(404, {"statusCode": 404, "error": "NotFoundException", "code": "WEBHOOK_NOT_FOUND", "messages": ["Webhook not found"]})
                if "secret" in body and CONFIG["refuse_webhook_secret"]:
                    return self.send_json(400, {"statusCode": 400, "error": "BadRequestException", "messages": ["injected: secret refused"]})
                if "targetUrl" in body:
                    target = normalise_url(body["targetUrl"] or "")
                    if target is None:
                        return self.send_json(400, {"statusCode": 400, "error": "BadRequestException", "code": "INVALID_TARGET_URL", "messages": ["Invalid target URL"]})
                    hook["targetUrl"] = target
                for key in ("operations", "description", "secret"):
                    if key in body:
                        hook[key] = body[key]
                hook["updatedAt"] = now_iso()
                return self.send_json(200, {"data": {"updateWebhook": hook}} if legacy else hook)
            if method == "DELETE" and hook_id is not None:
                WEBHOOKS.pop(hook_id, None)
                return self.send_json(200, True)
        return self.send_json(404, {"statusCode": 404, "message": "Cannot " + method})

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_control/stats":
            with LOCK:
                return self.send_json(200, STATS)
        if url.path == "/_control/webhooks":
            with LOCK:
                return self.send_json(200, sorted(WEBHOOKS.values(), key=lambda h: h["createdAt"]))
        if url.path.startswith("/rest/metadata/webhooks") or url.path.startswith("/rest/webhooks"):
            return self.webhook_api("GET", url.path, None)
        with LOCK:
            STATS["requests"] += 1
            if CONFIG["fail_next"] or CONFIG["always"]:
                status = CONFIG["fail_next"].pop(0) if CONFIG["fail_next"] else CONFIG["always"]
                STATS["throttled"] += status == 429
                return self.send_json(status, {"statusCode": status, "message": "injected"},
                                      [("retry-after", "1")] if status == 429 else [])
            if CONFIG["per_minute"]:
                t = time.monotonic()
                RECENT[:] = [x for x in RECENT if t - x < 60]
                if len(RECENT) >= CONFIG["per_minute"]:
                    STATS["throttled"] += 1
                    return self.send_json(429, {"statusCode": 429, "message": "Too many requests"})
                RECENT.append(t)
        if self.headers.get("authorization") != f"Bearer {API_KEY}":
            return self.send_json(401, {"statusCode": 401, "messages": ["Token invalid."], "error": "UNAUTHENTICATED"})
        if url.path == "/rest/metadata/objects":
            objects = [dict(o, id=f"om-{o['nameSingular']}") for o in OBJECTS]
            page = {"startCursor": None, "endCursor": None, "hasNextPage": False, "hasPreviousPage": False}
            if CONFIG["metadata_envelope"] == "objects":
                return self.send_json(200, {"data": {"objects": objects}, "pageInfo": page, "totalCount": len(objects)})
            return self.send_json(200, {"data": objects, "pageInfo": page, "totalCount": len(objects)})
        m = re.match(r"^/rest/([A-Za-z0-9_]+)$", url.path)
        if not m:
            return self.send_json(404, {"statusCode": 404, "message": "Cannot GET"})
        plural = m.group(1)
        if plural not in RECORDS:
            singular = {o["nameSingular"]: o["namePlural"] for o in OBJECTS}.get(plural)
            hint = f" Did you mean '{singular}'?" if singular else ""
            return self.send_json(400, {"statusCode": 400, "messages": [f"object '{plural}' not found.{hint}"], "error": "BadRequestException"})
        if plural in CONFIG["forbidden"]:
            return self.send_json(403, {"statusCode": 403, "error": "FORBIDDEN",
                                        "messages": ["PERMISSION_DENIED"]})
        if CONFIG["hang_lists_secs"]:
            time.sleep(CONFIG["hang_lists_secs"])
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            tree = parse_filter(query["filter"][0]) if "filter" in query else None
            order = parse_order(query.get("order_by", [""])[0])
            limit = int(query.get("limit", [CONFIG["limit_default"]])[0])
            after = id_of(query["starting_after"][0]) if "starting_after" in query else None
        except ValueError as e:
            return self.send_json(400, {"statusCode": 400, "messages": [str(e)], "error": "BadRequestException"})
        limit = max(1, min(limit, CONFIG["limit_cap"]))
        with LOCK:
            if CONFIG["fail_after_lists"] and STATS["lists"] >= CONFIG["fail_after_lists"]:
                return self.send_json(500, {"statusCode": 500, "message": "injected outage"})
            STATS["lists"] += 1
            rows = [dict(r) for r in RECORDS[plural].values()]
        with_deleted = tree is not None and "deletedAt" in names(tree)
        rows = [r for r in rows if with_deleted or r.get("deletedAt") is None]
        if tree is not None:
            rows = [r for r in rows if holds(tree, r)]
        rows = sort_records(rows, order)
        total = len(rows)
        if after is not None:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        page, more = rows[:limit], len(rows) > limit
        self.send_json(200, {
            "data": {plural: page},
            "totalCount": total,
            "pageInfo": {
                "startCursor": cursor_of(page[0]) if page else None,
                "endCursor": cursor_of(page[-1]) if page else None,
                "hasNextPage": more,
                "hasPreviousPage": after is not None,
            },
        })


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
sys.stdin.read()
server.shutdown()
