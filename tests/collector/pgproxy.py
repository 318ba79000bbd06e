"""A switchable pass-through to PostgreSQL, to take the database away for real.

It listens on a unix socket named like PostgreSQL's (`.s.PGSQL.<port>`) in
its own directory and pipes bytes to the real server. `stop()` removes the
socket and cuts every open connection, so a client sees exactly what a
crashed or restarting server looks like (broken connections, then refused
connects); `start()` brings it back.
"""

import os
import socket
import tempfile
import threading
from pathlib import Path


class PostgresProxy:
    def __init__(self, target_dir: str, port: int | str = 5432) -> None:
        self.target = str(Path(target_dir) / f".s.PGSQL.{port or 5432}")
        # Short path: unix socket names are limited to about 100 bytes.
        self.dir = tempfile.mkdtemp(prefix="pgproxy-")
        self.path = os.path.join(self.dir, f".s.PGSQL.{port or 5432}")
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.stop()
        os.rmdir(self.dir)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
