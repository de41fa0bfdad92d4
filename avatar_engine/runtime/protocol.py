"""Messages between the runtime and its ranks, over local sockets."""

from __future__ import annotations

import pickle
from multiprocessing.connection import Connection


def send(conn: Connection, message: tuple) -> None:
    """Plain pickle: tensors travel as bytes. (Connection.send would share them through
    multiprocessing's resource sharer, which only works between processes it spawned.)"""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Connection) -> tuple:
    return pickle.loads(conn.recv_bytes())
