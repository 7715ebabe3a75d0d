"""Local SQS helpers for scripts/dev and scripts/twenty-event (run with .venv's Python).

  local_sqs.py create ENDPOINT NAME [--fifo]   creates NAME and its dead-letter queue, prints the URL
  local_sqs.py receive ENDPOINT QUEUE_URL      prints what is queued, one JSON object a line
  local_sqs.py table ENDPOINT NAME             creates a DynamoDB idempotency table NAME
"""

import json
import sys

import boto3


def client(endpoint, service="sqs"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create(endpoint, name, fifo):
    sqs = client(endpoint)
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoQueue": "true"} if fifo else {}
    dlq = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=attrs)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=f"{name}{suffix}",
        Attributes={
            **attrs,
            "MaximumMessageSize": "1048576",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1000"}),
        },
    )["QueueUrl"]
    print(url)


def receive(endpoint, url):
    sqs = client(endpoint)
    count = 0
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            count += 1
            print(json.dumps({
                "attributes": {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()},
                "groupId": m.get("Attributes", {}).get("MessageGroupId"),
                "envelope": json.loads(m["Body"]),
            }, ensure_ascii=False))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    print(f"{count} message(s) received and deleted", file=sys.stderr)


def table(endpoint, name):
    client(endpoint, "dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 3 and args[0] == "create":
        create(args[1], args[2], "--fifo" in args[3:])
    elif len(args) == 3 and args[0] == "receive":
        receive(args[1], args[2])
    elif len(args) == 3 and args[0] == "table":
        table(args[1], args[2])
    else:
        sys.exit(__doc__)
