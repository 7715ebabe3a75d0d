"""Runs moto's server (SQS, S3, DynamoDB, ...) on 127.0.0.1 for one test process, its
DynamoDB writes made atomic (below).

Prints the endpoint URL on its first line, then serves until its standard input closes,
which happens when the test process that started it exits, however it exits.
"""

import functools
import logging
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

# DynamoDB checks a condition and writes under one lock; moto's threaded server does not,
# so two concurrent conditional writes to one item can both pass under load (two workers
# racing on one change would both "win"). One lock over every write makes moto's
# conditional writes atomic as DynamoDB's are, so that a test failing there is ours.
WRITES = threading.Lock()


def atomic(method):
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with WRITES:
            return method(*args, **kwargs)

    return locked


for name in ["put_item", "update_item", "delete_item", "transact_write_items"]:
    setattr(DynamoDBBackend, name, atomic(getattr(DynamoDBBackend, name)))

# One line per request would bury the test output.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
