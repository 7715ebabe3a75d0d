"""Verifies Standard Webhooks requests with the `standardwebhooks` package.

Reads {"secret", "body", "headers"}, or a list of them, as JSON on standard input; exits 0
when every signature verifies (a body that is not JSON included), 1 (with the reasons on standard error) when one does not.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

given = json.load(sys.stdin)
failed = 0
for n, request in enumerate(given if isinstance(given, list) else [given]):
    try:
        Webhook(request["secret"]).verify(request["body"], request["headers"])
    except json.JSONDecodeError:
        # The package parses the payload only once a signature has matched: a body that
        # is not JSON (a rule's text transform) has verified.
        pass
    except Exception as e:  # the package raises its own WebhookVerificationError
        print(f"request {n}: {type(e).__name__}: {e}", file=sys.stderr)
        failed += 1
sys.exit(1 if failed else 0)
