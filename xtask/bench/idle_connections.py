"""Opens COUNT keep-alive connections to a forward proxy, sends one small absolute-form
request on each and reads the whole response, then keeps them all open and idle.

Usage: idle_connections.py PROXY_PORT ORIGIN_URL COUNT

Prints `open N` once every response is read (N: connections the proxy has not closed), then
waits for a line (or EOF) on stdin and closes everything. Loopback only; every wait is
bounded (30 s in all for the requests).
"""

import resource
import socket
import sys
import time


def read_response(sock):
    """Reads one HTTP/1.1 response with a Content-Length; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ConnectionError("response without Content-Length: " + lines[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status


def still_open(sock):
    """True when the peer has not closed the connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def main():
    port, origin, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    host = origin.split("/")[2]
    request = (
        f"GET {origin} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pipelock-bench\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + 30
    sockets = []
    for _ in range(count):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sys.exit("idle_connections: 30 s deadline passed while connecting")
        sock = socket.create_connection(("127.0.0.1", port), timeout=remaining)
        sock.sendall(request)
        status = read_response(sock)
        if status != 200:
            sys.exit(f"idle_connections: the proxy answered {status}")
        sockets.append(sock)
    time.sleep(1)
    print(f"open {sum(1 for s in sockets if still_open(s))}", flush=True)
    sys.stdin.readline()
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
