"""Two `serve` processes on one data folder: two LMDB processes, or in the PostgreSQL pass two nodes
on one database. One upload's chunks sent to both take turns under the upload's lock in the shared
staging folder, so a layer's bytes are always the ones its digest names."""
import contextlib
import os
import socket
import tempfile
import threading
import time
from urllib.parse import urlsplit

from conftest import POSTGRES, database
from test_attacks import Served
from test_registry_api import MIB, Registry, patch, sha256, start_upload, with_digest


@contextlib.contextmanager
def two_nodes(*flags):
    """Two servers on one data folder (and one database in the PostgreSQL pass); each must exit 0
    on SIGTERM, and the store must replay cleanly afterwards."""
    with tempfile.TemporaryDirectory() as data_dir, (database() if POSTGRES else contextlib.nullcontext()) as url:
        nodes = [Served(data_dir, *flags, database_url=url) for _ in range(2)]
        try:
            yield nodes
        finally:
            statuses = [node.stop() for node in nodes]
        assert statuses == [0, 0], statuses
        replay = nodes[0].tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr


def staged_bytes(data_dir, upload_id):
    with contextlib.suppress(FileNotFoundError):
        return os.path.getsize(os.path.join(data_dir, "staging", upload_id))
    return 0


def test_a_chunk_sent_to_another_node_waits_for_the_one_streaming_in_and_the_layer_holds_its_digests_bytes():
    with two_nodes("--allow-anonymous", "--create-repositories-on-push") as (a, b):
        reg_a, reg_b = Registry(a), Registry(b)
        location = start_upload(reg_a, "team/shared")
        upload_id = location.rstrip("/").split("?")[0].rsplit("/", 1)[1]
        bytes_a, bytes_b = os.urandom(4 * MIB), os.urandom(4 * MIB)
        path = urlsplit(location).path + ("?" + urlsplit(location).query if urlsplit(location).query else "")

        # Node A takes the first half of a chunk, then waits for the rest.
        streaming = socket.create_connection(("127.0.0.1", a.port))
        streaming.sendall(f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nContent-Type: application/octet-stream\r\n"
                          f"Content-Range: 0-{len(bytes_a) - 1}\r\nContent-Length: {len(bytes_a)}\r\n\r\n".encode()
                          + bytes_a[:2 * MIB])
        deadline = time.monotonic() + 30
        while staged_bytes(a.data_dir, upload_id) < MIB:
            assert time.monotonic() < deadline, "node A never staged its first bytes"
            time.sleep(0.01)

        # Node B is sent a chunk for the same offset meanwhile: it waits for A's.
        answers = {}
        other = threading.Thread(target=lambda: answers.update(b=patch(reg_b, location, bytes_b, 0)))
        other.start()
        other.join(1.0)
        assert other.is_alive(), f"node B must wait while node A streams the upload's chunk in: {answers}"

        streaming.sendall(bytes_a[2 * MIB:])
        head = b""
        while b"\r\n\r\n" not in head:
            received = streaming.recv(65536)
            assert received, "node A closed the connection without an answer"
            head += received
        streaming.close()
        assert head.split(b"\r\n", 1)[0].split()[1] == b"202", head
        other.join(60)
        assert answers["b"].status_code == 416, answers["b"].text
        assert answers["b"].headers["Range"] == f"0-{len(bytes_a) - 1}"

        digest = sha256(bytes_a)
        assert reg_b("PUT", with_digest(location, digest)).status_code == 201
        for reg in (reg_a, reg_b):
            assert reg("GET", f"/v2/team/shared/blobs/{digest}").content == bytes_a


def test_a_node_starting_beside_a_busy_one_reports_no_staged_bytes_missing():
    """At start a node reports active uploads whose staging is gone. It read the uploads, then looked
    for their files: one the other node completed between the two (its staging removed after its
    commit) was reported as bytes the disk lacks, on most starts beside a busy node."""
    with two_nodes("--allow-anonymous", "--create-repositories-on-push") as (a, b):
        stop, pushed, reports = threading.Event(), [], []

        def push():
            registry = Registry(a)
            while not stop.is_set():
                data = os.urandom(4096)
                location = start_upload(registry, "team/busy")
                location = patch(registry, location, data, 0).headers["Location"]
                assert registry("PUT", with_digest(location, sha256(data))).status_code == 201
                pushed.append(data)

        pushers = [threading.Thread(target=push) for _ in range(4)]
        for pusher in pushers:
            pusher.start()
        try:
            for _ in range(20):
                node = Served(a.data_dir, "--allow-anonymous", database_url=a.database_url)
                assert node.stop() == 0
                reports.append(node.stderr_text())
        finally:
            stop.set()
            for pusher in pushers:
                pusher.join(timeout=60)
        assert len(pushed) > 20, "the other node was busy while this one started"
        assert not [line for text in reports for line in text.splitlines() if "the disk lacks" in line], reports
