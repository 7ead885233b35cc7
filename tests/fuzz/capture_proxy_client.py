#!/usr/bin/env python3
"""Saves what a real HTTP client sends to its proxy, to seed the request_head and forwarding corpora.

Usage: capture_proxy_client.py OUT.bin [--connect] -- CLIENT ARGS...   ({port} in the arguments is replaced)

Listens on 127.0.0.1 (a free port), runs the client pointed at it as its proxy, and records every
byte of the one connection until the client has been quiet for a second. The first head is
answered like a proxy would: "200 Connection established" with --connect (the client then sends
its ClientHello, which is kept: it is what follows a CONNECT head on the wire), "100 Continue"
when the client asks for it (and "200 OK" once 2000 body bytes came), "200 OK" otherwise.
"""
import socket
import subprocess
import sys
import threading

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BODY_BEFORE_OK = 2000


def serve(listener: socket.socket, connect: bool, received: bytearray) -> None:
    conn, _ = listener.accept()
    conn.settimeout(1.0)
    answered = False
    waiting_for_body = False
    with conn:
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                return
            if not chunk:
                return
            received.extend(chunk)
            head_end = received.find(b"\r\n\r\n")
            if not answered and head_end >= 0:
                answered = True
                head = bytes(received[:head_end]).lower()
                if connect:
                    conn.sendall(ESTABLISHED)
                elif b"expect: 100-continue" in head:
                    conn.sendall(CONTINUE)
                    waiting_for_body = True
                else:
                    conn.sendall(OK)
            elif waiting_for_body and len(received) - head_end > BODY_BEFORE_OK:
                waiting_for_body = False
                conn.sendall(OK)


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    split = args.index("--")
    out, options, client = args[0], args[1:split], args[split + 1:]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received = bytearray()
    server = threading.Thread(target=serve, args=(listener, "--connect" in options, received))
    server.start()
    # Clients that upload from stdin (curl -T -) get 3000 bytes.
    subprocess.run([a.replace("{port}", str(port)) for a in client], input=b"x" * 3000,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
    server.join()
    with open(out, "wb") as f:
        f.write(received)
    print(f"{out}: {len(received)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
