"""bench_api_scale's load client, in a process of its own: N keep-alive connections, each
sending its next request as soon as the previous answer is read (closed loop).

    api_load_client.py HOST PORT MODE CONNECTIONS WARMUP_S DURATION_S < requests.json

``requests.json``: a list of ``{"path", "body", "headers"}`` (POSTs of JSON bodies);
connection ``i`` starts at request ``i`` of the list and goes round it. After ``WARMUP_S``
seconds (not recorded) it prints ``START``, records for ``DURATION_S`` seconds, prints
``END``, then one JSON line: the latencies (ms, send to last byte read), errors, and this
process's CPU seconds over the recorded window. A request in flight at the end of the window
is not counted.

MODE, the HTTP client (bench_api_scale measures the CPU each costs per request):

* ``raw``: asyncio streams on uvloop, the request bytes prepared once, the answer read by
  its Content-Length (what a lean client costs);
* ``threads``: one thread per connection, ``http.client`` (as bench/http_client_process.py);
* ``httpx``: one ``httpx2.AsyncClient`` (asyncio) with ``CONNECTIONS`` connections.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import sys
import threading
import time


class Window:
    """The recorded window: requests completed inside it count."""

    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("inf")
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def record(self, began: float, ok: bool, detail: bytes) -> None:
        now = time.perf_counter()
        if self.start <= began and now <= self.end:
            self.latencies.append((now - began) * 1000)
            if not ok:
                self.errors += 1
                self.first_error = self.first_error or detail[:300].decode(errors="replace")


def _ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"errors"' not in body


def _encoded(request: dict, host: str, port: int) -> bytes:
    body = json.dumps(request["body"]).encode()
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json",
               "Content-Length": str(len(body)), **request["headers"]}
    head = f"POST {request['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


async def _raw_connection(host: str, port: int, requests: list[bytes], offset: int, window: Window,
                          stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    while not stop.is_set():
        began = time.perf_counter()
        writer.write(requests[index % len(requests)])
        index += 1
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        window.record(began, _ok(int(status_line.split()[1]), body), body)
    writer.close()


async def _httpx_run(host: str, port: int, requests: list[dict], connections: int, window: Window,
                     stop: asyncio.Event) -> None:
    import httpx2 as httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits, timeout=60) as client:
        async def loop(offset: int) -> None:
            index = offset
            while not stop.is_set():
                request = requests[index % len(requests)]
                index += 1
                began = time.perf_counter()
                response = await client.post(request["path"], json=request["body"], headers=request["headers"])
                window.record(began, _ok(response.status_code, response.content), response.content)

        await asyncio.gather(*(loop(i) for i in range(connections)))


def _thread_connection(host: str, port: int, requests: list[dict], offset: int, window: Window,
                       stop: threading.Event) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    prepared = [(r["path"], json.dumps(r["body"]).encode(), {"Content-Type": "application/json", **r["headers"]})
                for r in requests]
    index = offset
    while not stop.is_set():
        path, body, headers = prepared[index % len(prepared)]
        index += 1
        began = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        data = response.read()
        window.record(began, _ok(response.status, data), data)
    connection.close()


def _windowed(window: Window, warmup: float, duration: float) -> float:
    """Sleep through the warm-up and the window, marking it; the CPU seconds of the window."""
    time.sleep(warmup)
    cpu = time.process_time()
    window.start = time.perf_counter()
    print("START", flush=True)
    time.sleep(duration)
    window.end = time.perf_counter()
    cpu = time.process_time() - cpu
    print("END", flush=True)
    return cpu


def main() -> None:
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    connections, warmup, duration = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    requests = json.load(sys.stdin)
    gc.disable()  # short-lived: its collector must not add to the measured latencies
    window = Window()
    cpu = 0.0
    if mode == "threads":
        stop = threading.Event()
        threads = [threading.Thread(target=_thread_connection, args=(host, port, requests, i, window, stop))
                   for i in range(connections)]
        for thread in threads:
            thread.start()
        cpu = _windowed(window, warmup, duration)
        stop.set()
        for thread in threads:
            thread.join()
    else:
        import uvloop

        async def run() -> float:
            stop = asyncio.Event()
            if mode == "raw":
                encoded = [_encoded(r, host, port) for r in requests]
                tasks = [asyncio.create_task(_raw_connection(host, port, encoded, i, window, stop))
                         for i in range(connections)]
            else:
                tasks = [asyncio.create_task(_httpx_run(host, port, requests, connections, window, stop))]
            seconds = await asyncio.to_thread(_windowed, window, warmup, duration)
            stop.set()
            await asyncio.gather(*tasks)
            return seconds

        cpu = uvloop.run(run())
    print(json.dumps({"latencies": window.latencies, "errors": window.errors, "first_error": window.first_error,
                      "cpu_s": cpu, "window_s": window.end - window.start}), flush=True)


if __name__ == "__main__":
    main()
