#!/usr/bin/env python3
"""A function that does not use Basin's SDK: it speaks docs/protocol.md by hand.
It appends the event's `suffix` to every value of the event's `column` of its `orders` input."""

import json
import os
import socket

import pyarrow as pa
import pyarrow.compute as pc

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["BASIN_SOCKET"])
sock.sendall((json.dumps({"invocation": os.environ["BASIN_INVOCATION"], "stream": "control"}) + "\n").encode())
request = json.loads(sock.makefile("rb").readline())

orders = pa.ipc.open_file(pa.memory_map(request["inputs"]["orders"]["path"])).read_all()
column, suffix = request["event"]["column"], request["event"]["suffix"]
shouted = pc.binary_join_element_wise(orders[column].cast(pa.string()), suffix, "")
result = orders.set_column(orders.schema.get_field_index(column), column, shouted)
path = request["output"]["path"]
with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, result.schema) as writer:
    writer.write_table(result)

sock.sendall((json.dumps({"type": "result", "status": "ok", "output": {"kind": "table", "path": path}}) + "\n").encode())
