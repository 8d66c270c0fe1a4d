"""A TCP relay on loopback that can cut its connections, to test resuming after a network cut,
or silently stall them, to test noticing a connection that died without a word."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CuttingProxy:
    """Relays 127.0.0.1:<port> to a target; each connection is cut (both sockets shut down)
    once ``cut_after_bytes`` bytes have flowed from the server to the client. ``None``
    relays forever. ``connections`` counts accepted connections."""

    def __init__(self, target_host: str, target_port: int, cut_after_bytes: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.cut_after_bytes = cut_after_bytes
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._stalls: list[threading.Event] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True, name="cutting-proxy").start()

    def stall(self) -> None:
        """From now on, drop whatever the current connections carry, both ways, without
        closing them: a relay or NAT that lost its state (neither data nor a close from one
        end reaches the other). Connections accepted later are relayed normally."""
        with self._lock:
            for stalled in self._stalls:
                stalled.set()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            stalled = threading.Event()
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
                self._stalls.append(stalled)
            limit = self.cut_after_bytes
            pair = (client, server)
            threading.Thread(target=self._pump, args=(client, server, None, pair, stalled), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limit, pair, stalled), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, limit: int | None,
              pair: tuple[socket.socket, socket.socket], stalled: threading.Event) -> None:
        moved = 0
        try:
            while True:
                data = source.recv(65536)
                if stalled.is_set():
                    if not data:
                        return  # nor does a close get through: the sockets wait for close()
                    continue  # swallowed: neither end learns anything
                if not data:
                    break
                if limit is not None and moved + len(data) >= limit:
                    sink.sendall(data[: max(0, limit - moved)])
                    break  # the cut: stop mid-stream
                sink.sendall(data)
                moved += len(data)
        except OSError:
            pass
        finally:
            for sock in pair:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing.set()
        with suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.close()

    def cut_all(self) -> int:
        """Cut every connection open now (as a network failure would); new ones still go
        through. Returns how many connections were cut."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
        return len(sockets) // 2
