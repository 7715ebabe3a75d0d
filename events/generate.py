#!/usr/bin/env python3
"""Writes the sample Function URL events in this folder (API Gateway v2 payload format).

Each is a request exactly as a Function URL hands it to the function, with Twenty's body and
headers (names lowercased, as a Function URL delivers them). Signed ones use the test secret
below and a fixed timestamp, so they are stale on purpose: `scripts/twenty-event` re-signs
them with the current time. `expected.json` says what each should get back.
"""

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
SECRET = "twenty-webhook-test-secret"
TIMESTAMP = "1739201445123"  # 2025-02-10T15:30:45.123Z
NONCE = "6f1c0b5e8a9d4c3b2a1f0e9d8c7b6a59"
WS = "20202020-1c25-4d02-bf25-6aeccf7ea419"
WH = "8c2b6a4e-77a4-4b5e-9f0e-5a1d2c3b4e01"
DATE = "2025-02-10T15:30:45.123Z"


def sign(ts: str, body: str) -> str:
    return hmac.new(SECRET.encode(), f"{ts}:".encode() + body.encode(), hashlib.sha256).hexdigest()


def compact(payload) -> str:
    # JSON.stringify: insertion order, no spaces, raw UTF-8.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def record_event(name, object_id, record, **extra):
    obj = name.rsplit(".", 1)[0]
    payload = {
        "targetUrl": "https://abcdefghij.lambda-url.eu-west-1.on.aws/",
        "eventName": name,
        "objectMetadata": {"id": object_id, "nameSingular": obj},
        "workspaceId": WS,
        "webhookId": WH,
        "eventDate": DATE,
        "userId": "2f4e8b1a-0c3d-4e5f-9a8b-7c6d5e4f3a21",
        "workspaceMemberId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "record": record,
    }
    payload.update(extra)
    return payload


PERSON = {
    "id": "d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d",
    "name": {"firstName": "Zoë", "lastName": "Nguyễn"},
    "emails": {"primaryEmail": "zoe@example.com", "additionalEmails": None},
    "phones": {"primaryPhoneNumber": "612345678", "primaryPhoneCountryCode": "FR", "primaryPhoneCallingCode": "+33", "additionalPhones": []},
    "jobTitle": "CTO",
    "city": "Paris",
    "avatarUrl": None,
    "position": 3,
    "companyId": "4b1f2e3d-5c6a-4b7c-8d9e-0f1a2b3c4d5e",
    "createdAt": "2025-02-10T15:30:45.000Z",
    "updatedAt": "2025-02-10T15:30:45.000Z",
    "deletedAt": None,
    "createdBy": {"source": "MANUAL", "workspaceMemberId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "name": "Ada Admin"},
}
COMPANY = {
    "id": "4b1f2e3d-5c6a-4b7c-8d9e-0f1a2b3c4d5e",
    "name": "Acme Société",
    "domainName": {"primaryLinkUrl": "https://acme.example", "primaryLinkLabel": "", "secondaryLinks": None},
    "employees": 120,
    "annualRecurringRevenue": {"amountMicros": 1250000000000, "currencyCode": "EUR"},
    "address": {"addressStreet1": "1 rue de la Paix", "addressCity": "Paris", "addressCountry": "France", "addressPostcode": "75002"},
    "idealCustomerProfile": False,
    "deletedAt": "2025-02-10T15:30:45.100Z",
}

PAYLOADS = {
    "person-created": record_event("person.created", "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001", PERSON),
    "person-updated": record_event(
        "person.updated",
        "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001",
        {**PERSON, "jobTitle": "CEO", "city": "Lyon"},
        updatedFields=["jobTitle", "city"],
    ),
    "company-deleted": record_event("company.deleted", "7a2b3c4d-1e2f-4a5b-9c8d-0e1f2a3b4c02", COMPANY),
    "pet-created": record_event(
        "pet.created",
        "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e03",
        {"id": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", "name": "Rex", "species": "DOG", "vaccinated": True, "weightKg": 31.5, "tags": ["good", "loud"], "owner": None},
    ),
    "company-updated-batch": {
        "targetUrl": "https://abcdefghij.lambda-url.eu-west-1.on.aws/",
        "eventName": "company.updated",
        "objectMetadata": {"id": "7a2b3c4d-1e2f-4a5b-9c8d-0e1f2a3b4c02", "nameSingular": "company"},
        "workspaceId": WS,
        "webhookId": WH,
        "eventDate": DATE,
        "items": [
            {"record": {**COMPANY, "deletedAt": None, "employees": 121}, "updatedFields": ["employees"]},
            {"record": {"id": "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", "name": "Globex", "employees": 8}, "updatedFields": ["name", "employees"]},
        ],
        "batchSize": 2,
    },
    "metadata-field-created": {
        "targetUrl": "https://abcdefghij.lambda-url.eu-west-1.on.aws/",
        "eventName": "metadata.fieldMetadata.created",
        "workspaceId": WS,
        "webhookId": WH,
        "eventDate": DATE,
        "userId": "2f4e8b1a-0c3d-4e5f-9a8b-7c6d5e4f3a21",
        "event": {
            "metadataName": "fieldMetadata",
            "recordId": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5e",
            "properties": {"after": {"name": "rating", "type": "RATING", "objectMetadataId": "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001"}},
            "type": "created",
        },
    },
    "documented-shape": {
        "event": "person.created",
        "data": {"id": "d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d", "name": {"firstName": "Alice", "lastName": "Doe"}},
        "timestamp": "2025-02-10T15:30:50Z",
    },
}

# name -> (body source, how it is signed, expected status, messages queued)
EVENTS = {
    "person-created": ("person-created", "fresh", 200, 1),
    "person-updated": ("person-updated", "fresh", 200, 1),
    "company-deleted": ("company-deleted", "fresh", 200, 1),
    "pet-created": ("pet-created", "fresh", 200, 1),
    "company-updated-batch": ("company-updated-batch", "fresh", 200, 2),
    "metadata-field-created": ("metadata-field-created", "fresh", 200, 1),
    "documented-shape": ("documented-shape", "fresh", 200, 1),
    "person-created-base64": ("person-created", "fresh", 200, 1),
    "bad-signature": ("person-created", "bad", 401, 0),
    "stale-timestamp": ("person-created", "stale", 401, 0),
    "missing-headers": ("person-created", "none", 401, 0),
    "malformed-json": (None, "fresh", 400, 0),
}


def function_url_event(body: str, headers: dict, base64_body: bool) -> dict:
    all_headers = {
        "accept": "application/json, text/plain, */*",
        "accept-encoding": "gzip, compress, deflate, br",
        "content-length": str(len(body.encode())),
        "content-type": "application/json",
        "host": "abcdefghij.lambda-url.eu-west-1.on.aws",
        "user-agent": "axios/1.7.9",
        "x-amzn-trace-id": "Root=1-67aa1b45-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **headers,
    }
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "axios/1.7.9"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Feb/2025:15:30:45 +0000",
            "timeEpoch": int(TIMESTAMP),
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body else body,
        "isBase64Encoded": base64_body,
    }


def render() -> dict:
    files = {}
    expected = {}
    for name, (source, signing, status, messages) in EVENTS.items():
        body = compact(PAYLOADS[source]) if source else '{"eventName":"person.created","record":{"id":"d0a4c7e2"'
        headers = {}
        if signing in ("fresh", "bad", "stale"):
            ts = TIMESTAMP
            sig = sign(ts, body)
            if signing == "bad":
                sig = sig[:-4] + ("0000" if sig[-4:] != "0000" else "1111")
            headers = {"x-twenty-webhook-timestamp": ts, "x-twenty-webhook-signature": sig, "x-twenty-webhook-nonce": NONCE}
        event = function_url_event(body, headers, name.endswith("base64"))
        files[f"{name}.json"] = json.dumps(event, ensure_ascii=False, indent=2) + "\n"
        expected[name] = {"resign": signing == "fresh", "status": status, "messages": messages}
    files["expected.json"] = json.dumps(expected, indent=2) + "\n"
    return files


if __name__ == "__main__":
    files = render()
    if sys.argv[1:] == ["--check"]:
        stale = [n for n, text in files.items() if not (HERE / n).exists() or (HERE / n).read_text(encoding="utf-8") != text]
        if stale:
            sys.exit(f"events out of date with generate.py: {', '.join(stale)} (run events/generate.py)")
        print(f"events/: {len(files)} files match generate.py")
    else:
        for name, text in files.items():
            (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(files) - 1} events and expected.json")
