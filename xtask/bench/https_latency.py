"""Times N sequential HTTPS requests, each on a new connection, directly and through a
forward proxy (CONNECT, then TLS inside the tunnel), and prints the p50 of each in µs.

Usage: https_latency.py ORIGIN_PORT PATH ORIGIN_CA PROXY_PORT PROXY_CA COUNT

The direct requests trust only ORIGIN_CA; the proxied ones trust only PROXY_CA, so a tunnel
that Pipelock did not intercept fails instead of being timed. The first proxied request
issues the leaf certificate; it and the first direct one are warm-up and not counted.
Prints `direct_p50_us N`, `proxied_p50_us N`. Loopback only; every socket has a timeout.
"""

import socket
import ssl
import statistics
import sys
import time

TIMEOUT = 5


def get(sock, context, port, path):
    """Sends GET over TLS on `sock` (already at the origin or tunnelled); returns the status.

    The Host header names the port: Pipelock refuses a request inside a tunnel whose Host
    names another authority than the CONNECT."""
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def direct(port, path, context):
    return get(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT), context, port, path)


def proxied(proxy_port, port, path, context):
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=TIMEOUT)
    sock.sendall(
        f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)  # byte by byte: nothing after the answer may be consumed
        if not chunk:
            raise ConnectionError("the proxy closed the CONNECT")
        answer += chunk
    status = int(answer.split(b" ", 2)[1])
    if status != 200:
        raise ConnectionError(f"CONNECT answered {status}")
    return get(sock, context, port, path)


def timed(call):
    start = time.perf_counter_ns()
    status = call()
    elapsed = (time.perf_counter_ns() - start) / 1000
    if status != 200:
        raise ConnectionError(f"status {status}")
    return elapsed


def main():
    port, path, origin_ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    proxy_port, proxy_ca, count = int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    direct_ctx = ssl.create_default_context(cafile=origin_ca)
    proxy_ctx = ssl.create_default_context(cafile=proxy_ca)
    try:
        timed(lambda: proxied(proxy_port, port, path, proxy_ctx))
    except ssl.SSLCertVerificationError as error:
        sys.exit(f"not intercepted: the tunnel's certificate is not from the Pipelock CA ({error})")
    timed(lambda: direct(port, path, direct_ctx))
    times_direct, times_proxied = [], []
    for _ in range(count):  # interleaved, so drift affects both alike
        times_direct.append(timed(lambda: direct(port, path, direct_ctx)))
        times_proxied.append(timed(lambda: proxied(proxy_port, port, path, proxy_ctx)))
    print(f"direct_p50_us {statistics.median(times_direct):.0f}")
    print(f"proxied_p50_us {statistics.median(times_proxied):.0f}")


if __name__ == "__main__":
    main()
