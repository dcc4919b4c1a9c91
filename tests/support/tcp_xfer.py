#!/usr/bin/python3
"""A TCP transfer whose bytes are checked end to end (SHA-256).

  tcp_xfer.py serve ADDR PORT [TIMEOUT]  prints "BYTES SHA256 SECONDS" when the sender closes
  tcp_xfer.py send ADDR PORT FILE [RATE] sends FILE; RATE (bytes/s) paces it, so a
                                          transfer can be made to last through rekeys
The sender exits 1 with the reason when the connection breaks."""
import hashlib
import socket
import sys
import time


def serve(addr, port, timeout):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(timeout)
    c, _ = s.accept()
    c.settimeout(timeout)
    h, n, t0 = hashlib.sha256(), 0, time.time()
    while True:
        d = c.recv(65536)
        if not d:
            break
        h.update(d)
        n += len(d)
    print(n, h.hexdigest(), f"{time.time() - t0:.2f}", flush=True)


def send(addr, port, path, rate, src=None):
    data = open(path, "rb").read()
    for _ in range(100):
        try:
            # src: the address the policy covers, where the host has several.
            s = socket.create_connection((addr, port), timeout=20, source_address=(src, 0) if src else None)
            break
        except OSError:
            time.sleep(0.1)
    else:
        print("cannot connect", file=sys.stderr)
        return 1
    s.settimeout(30)
    try:
        if not rate:
            s.sendall(data)
        else:
            chunk = max(1024, rate // 20)
            t0 = time.time()
            for off in range(0, len(data), chunk):
                due = t0 + off / rate
                now = time.time()
                if due > now:
                    time.sleep(due - now)
                s.sendall(data[off: off + chunk])
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # wait for the receiver to close: everything was read
    except OSError as e:
        print(f"connection broke: {e}", file=sys.stderr)
        return 1
    s.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 60)
    else:
        sys.exit(send(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 0,
                      sys.argv[6] if len(sys.argv) > 6 else None))
