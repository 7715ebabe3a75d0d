#!/usr/bin/env python3
"""Validates envelopes against docs/message-schema.json: those the sample-events test
queued, and those the worker sent with fields of its own.

tests/sample_events.rs writes every envelope it received from SQS to
target/sample-envelopes/, tests/collapse.rs what the worker sent for a collapsing rule to
target/sent-envelopes/; this fails if either has none or any does not match the schema.
"""

import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
schema = json.loads((ROOT / "docs/message-schema.json").read_text())
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)

files = []
for folder in ("sample-envelopes", "sent-envelopes"):
    found = sorted((ROOT / "target" / folder).glob("*.json"))
    if not found:
        sys.exit(f"no envelopes in target/{folder}: run cargo test first")
    files += found
bad = 0
for path in files:
    for error in validator.iter_errors(json.loads(path.read_text(encoding="utf-8"))):
        bad += 1
        print(f"{path.name}: {error.json_path}: {error.message}")
if bad:
    sys.exit(f"{bad} schema violation(s)")
print(f"{len(files)} envelopes match docs/message-schema.json")
