"""Runs moto's SQS/S3 server on 127.0.0.1 for one test process.

Prints the endpoint URL on its first line, then serves until its standard input closes,
which happens when the test process that started it exits, however it exits.
"""

import logging
import sys

from moto.server import ThreadedMotoServer

# One line per request would bury the test output.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
