"""One listening socket per ``serve --workers N`` worker (``SO_REUSEPORT``), so that the
kernel spreads the connections over the workers.

uvicorn's supervisor gives every worker the same listening socket. Whichever worker wakes
first then accepts every connection waiting (an event loop accepts in a loop), so 20
keep-alive connections opened at once usually all land on one worker, measured with
bench/bench_api_scale.py: 20/0, 19/1, 16/4, and the second process adds little. With one
``SO_REUSEPORT`` socket per worker on the same address, the kernel assigns each new
connection to one socket by a hash of its addresses: an even spread on average, and no
worker can take another's connections. The sockets are bound by the supervisor and stay open
in it, so a worker that dies and is replaced finds the connections queued meanwhile on its
socket. :class:`SocketPerWorker` is uvicorn's supervisor with that one change; changing the
number of workers at run time (SIGTTIN, SIGTTOU) is refused.
"""

from __future__ import annotations

import logging
import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("uvicorn.error")


def bind_sockets(host: str, port: int, count: int, backlog: int = 2048) -> list[socket.socket]:
    """``count`` listening TCP sockets on ``host:port`` sharing it with ``SO_REUSEPORT``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


class SocketPerWorker(Multiprocess):
    """uvicorn's supervisor (start, watch and replace the workers, SIGHUP restarts them one by
    one), where worker ``i`` listens on ``sockets[i]`` only."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets=sockets)
        self.processes_num = len(sockets)

    def _start(self, index: int) -> Process:
        process = Process(self.config, [self.sockets[index]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(index) for index in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung or dead
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                log.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info(f"Child process [{process.pid}] died")
            self.processes[index] = self._start(index)

    def restart_all(self) -> None:
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(index)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error(f"New child process [{new.pid}] was not ready in time; "
                              f"keeping worker [{old.pid}] and aborting the restart.")
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        log.warning("Received SIGTTIN: the number of workers is fixed by --workers; ignored.")

    def handle_ttou(self) -> None:
        log.warning("Received SIGTTOU: the number of workers is fixed by --workers; ignored.")
