"""Checks CloudWatch Embedded Metric Format documents against the rules of the EMF
specification (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html), independently of the Rust code
that wrote them.

Reads log lines on standard input, checks every line that is a JSON object with an `_aws`
member, and prints, as JSON, the sum of each metric by its dimension values:
{"Metric|Dim=value|...": total}. Exits 1 with the reasons when a document breaks a rule.
"""

import json
import sys

import jsonschema

UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
    "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
    "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
    "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
    "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
]

# The metadata object, metric directives and metric definitions, as the specification
# defines them.
SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(doc):
    """The rules a schema cannot say: every target member is present and well typed."""
    errors = []
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = doc.get(name)
                if not isinstance(value, str) or not 1 <= len(value) <= 1024:
                    errors.append(f"dimension {name!r} is not a string member: {value!r}")
        for metric in directive["Metrics"]:
            value = doc.get(metric["Name"])
            ok = is_number(value) or (
                isinstance(value, list) and 0 < len(value) <= 100 and all(map(is_number, value))
            )
            if not ok:
                errors.append(f"metric {metric['Name']!r} has no numeric member: {value!r}")
    return errors


def main():
    totals = {}
    failures = []
    documents = 0
    for number, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or "_aws" not in doc:
            continue
        documents += 1
        try:
            jsonschema.validate(doc, SCHEMA)
        except jsonschema.ValidationError as e:
            failures.append(f"line {number}: {e.message}")
            continue
        problems = check(doc)
        failures.extend(f"line {number}: {p}" for p in problems)
        if problems:
            continue
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    value = doc[metric["Name"]]
                    values = value if isinstance(value, list) else [value]
                    key = "|".join(
                        [metric["Name"]] + [f"{d}={doc[d]}" for d in dimension_set]
                    )
                    totals[key] = totals.get(key, 0) + sum(values)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"documents": documents, "totals": totals}))


if __name__ == "__main__":
    main()
