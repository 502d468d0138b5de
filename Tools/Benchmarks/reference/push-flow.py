#!/usr/bin/env python3
"""Small-blob push flows per second against any OCI Distribution endpoint (ours and distribution's
alike, so that the two are measured by the same client in the same run).

One flow = what a registry client sends to push a new small blob in one request and check it:
  POST /v2/<repo>/blobs/uploads/                       (Content-Length: 0)  -> 202 + Location
  PUT  <Location>?digest=sha256:<hex>   body = N random bytes               -> 201
  HEAD /v2/<repo>/blobs/sha256:<hex>                                        -> 200
Each flow pushes fresh random bytes, so every PUT commits a new blob. Modelled on the peer's
../shared/bench/distribution/flow_bench.py (which PATCHes the bytes instead); standard library only.

Prints: FLOWRESULT flows=... seconds=... flows_per_s=... p50_ms=... p99_ms=...
Exit status 0 when every flow succeeded, 1 otherwise.
"""
import argparse
import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.parse


def flow(conn, repo, size):
    payload = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()

    def request(method, target, body=b"", expected=200):
        conn.request(method, target, body=body, headers={"Content-Length": str(len(body))})
        response = conn.getresponse()
        response.read()
        if response.status != expected:
            raise RuntimeError(f"{method} {target}: {response.status}")
        return response

    started = request("POST", f"/v2/{repo}/blobs/uploads/", expected=202)
    location = urllib.parse.urlsplit(started.getheader("Location"))
    query = (location.query + "&" if location.query else "") + "digest=" + digest
    request("PUT", f"{location.path}?{query}", payload, expected=201)
    request("HEAD", f"/v2/{repo}/blobs/{digest}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostport", required=True)
    ap.add_argument("--repo", default="bench/app")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    host, port = args.hostport.rsplit(":", 1)
    latencies, failures, lock = [], [], threading.Lock()
    deadline = time.monotonic() + args.seconds

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        try:
            while time.monotonic() < deadline:
                start = time.monotonic()
                flow(conn, args.repo, args.size)
                mine.append(time.monotonic() - start)
        except Exception as error:  # noqa: BLE001 - any failure fails the run
            failures.append(repr(error))
        with lock:
            latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")
    print(f"FLOWRESULT flows={len(latencies)} failed={len(failures)} seconds={elapsed:.2f} "
          f"flows_per_s={len(latencies) / elapsed:.1f} p50_ms={pct(50):.2f} p99_ms={pct(99):.2f}")
    for failure in failures[:5]:
        print("failure:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
