"""A command flow with a leased port: it serves on it and talks to itself."""

from __future__ import annotations

import os
import socket
import sys

port = int(sys.argv[1])
assert os.environ["RUNSET_PORT"] == str(port)
with socket.create_server(("127.0.0.1", port)) as server:
    with socket.create_connection(("127.0.0.1", port)) as client:
        peer, _ = server.accept()
        client.sendall(b"ping")
        assert peer.recv(4) == b"ping"
        peer.close()
print(f"served and reached 127.0.0.1:{port}")
