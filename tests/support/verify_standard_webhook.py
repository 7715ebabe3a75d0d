"""Verifies one Standard Webhooks request with the `standardwebhooks` package.

Reads {"secret", "body", "headers"} as JSON on standard input; exits 0 when the signature
verifies, 1 (with the reason on standard error) when it does not.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
try:
    Webhook(request["secret"]).verify(request["body"], request["headers"])
except Exception as e:  # the package raises its own WebhookVerificationError
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
