"""bench_views' HTTP client in a process of its own, as a frontend is: it does not share the
server's CPU or event loop.

Reads JSON lines on stdin and answers one JSON line on stdout for each:

* ``{"op": "define", "name": N, "path": P, "body": B, "headers": H}``: remember a request
  (a POST of the JSON ``B``); answers ``{"ok": true}``;
* ``{"op": "run", "name": N}``: send it over the one keep-alive connection and read the whole
  answer; answers ``{"ms": wall time, "ok": status 200 and no "errors" key, "bytes": size}``.

The time is the client's own, from sending the request to having read the last byte: the
pipe to bench_views is not in it.
"""

from __future__ import annotations

import gc
import http.client
import json
import sys
import time


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    gc.disable()  # a short-lived client: its collector must not add to the measured times
    connection = http.client.HTTPConnection(host, port, timeout=60)
    requests: dict[str, tuple[str, bytes, dict[str, str]]] = {}
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "define":
            headers = {"Content-Type": "application/json", **command["headers"]}
            requests[command["name"]] = (command["path"], json.dumps(command["body"]).encode(), headers)
            answer: dict[str, object] = {"ok": True}
        else:
            path, body, headers = requests[command["name"]]
            began = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            data = response.read()
            elapsed = (time.perf_counter() - began) * 1000
            ok = response.status == 200 and b'"errors"' not in data
            answer = {"ms": elapsed, "ok": ok, "bytes": len(data), "head": "" if ok else data[:300].decode()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
