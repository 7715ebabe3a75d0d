#!/usr/bin/env python3
"""Validates the envelopes the sample-events test queued against docs/message-schema.json.

tests/sample_events.rs writes every envelope it received from SQS to
target/sample-envelopes/; this fails if there are none or any does not match the schema.
"""

import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
schema = json.loads((ROOT / "docs/message-schema.json").read_text())
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)

files = sorted((ROOT / "target/sample-envelopes").glob("*.json"))
if not files:
    sys.exit("no envelopes in target/sample-envelopes: run cargo test first")
bad = 0
for path in files:
    for error in validator.iter_errors(json.loads(path.read_text(encoding="utf-8"))):
        bad += 1
        print(f"{path.name}: {error.json_path}: {error.message}")
if bad:
    sys.exit(f"{bad} schema violation(s)")
print(f"{len(files)} envelopes match docs/message-schema.json")
