#!/usr/bin/env python3
"""Holds N connections to a proxy open, for bench/memory.sh.

    idle_clients.py HOST:PORT N idle|header

`idle`: each connection sends one keep-alive request, reads its whole answer, then waits.
`header`: each connection sends the start of a request header and never finishes it.
Prints "ready <held>" once every connection is in that state, then waits until stdin closes or
a signal ends it. Connections are opened in batches so the listen backlog never overflows.
"""

import selectors
import socket
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tether-bench-idle\r\nAccept: */*\r\n\r\n"
PARTIAL = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tether-bench-idle\r\nX-Unfinished: "
BATCH = 50


def answer_done(buf):
    """True once `buf` holds a whole response (Content-Length or chunked)."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            return len(body) >= int(value.strip())
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return True


def open_batch(addr, n, mode):
    """Opens `n` connections and brings each to its waiting state; returns the sockets."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(addr)
        s.sendall(REQUEST if mode == "idle" else PARTIAL)
        socks.append(s)
    if mode == "header":
        return socks
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    pending = len(socks)
    while pending:
        for key, _ in sel.select(timeout=10):
            s = key.fileobj
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("proxy closed a connection before answering")
            bufs[s] += chunk
            if answer_done(bufs[s]):
                sel.unregister(s)
                pending -= 1
    sel.close()
    return socks


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    total, mode = int(sys.argv[2]), sys.argv[3]
    held = []
    while len(held) < total:
        held += open_batch((host, int(port)), min(BATCH, total - len(held)), mode)
    print(f"ready {len(held)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
