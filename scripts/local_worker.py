"""The rest of the local chain for scripts/dev (run with .venv's Python).

  local_worker.py poll SQS_ENDPOINT QUEUE_URL INVOKE_URL
      plays Lambda's SQS event source: receives up to 10 messages, invokes twenty-worker
      (through cargo lambda watch's invoke API) with them as Lambda would, and deletes all
      but the messages the worker reports failed (batchItemFailures).
  local_worker.py destination PORT SECRET
      a destination that prints every forwarded event and whether its Standard Webhooks
      signature verifies (with the standardwebhooks package), and answers 204.
"""

import hashlib
import json
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3


def sqs(endpoint):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def lambda_record(message, arn):
    """One SQS message in the shape Lambda's event source gives it to a function."""
    attributes = {
        k: v.get("StringValue")
        for k, v in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            k: {"stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            for k, v in attributes.items()
        },
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


def poll(endpoint, url, invoke_url):
    client = sqs(endpoint)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    while True:
        messages = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=360,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            continue
        event = {"Records": [lambda_record(m, arn) for m in messages]}
        request = urllib.request.Request(
            invoke_url, data=json.dumps(event).encode(), headers={"content-type": "application/json"}
        )
        try:
            # The first invocation compiles the worker: give it time.
            with urllib.request.urlopen(request, timeout=900) as answer:
                response = json.loads(answer.read() or b"{}")
        except Exception as e:  # the worker failed as a whole: SQS redelivers everything
            print(f"poller: invoking twenty-worker failed ({e}); {len(messages)} message(s) left for redelivery", flush=True)
            time.sleep(1)
            continue
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        print(f"poller: {len(messages)} message(s) to twenty-worker, {len(failed)} failed (left for redelivery)", flush=True)


def destination(port, secret):
    from standardwebhooks.webhooks import Webhook

    webhook = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verdict = "signature verified"
            except Exception as e:
                verdict = f"signature NOT verified ({type(e).__name__})"
            envelope = json.loads(body)
            print(
                f"destination: {envelope.get('eventName')} record {envelope.get('recordId')} "
                f"id {headers.get('webhook-id')}: {verdict}",
                flush=True,
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "poll":
        poll(args[1], args[2], args[3])
    elif len(args) == 3 and args[0] == "destination":
        destination(args[1], args[2])
    else:
        sys.exit(__doc__)
