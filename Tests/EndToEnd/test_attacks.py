"""Attacks on a running server: hostile input, hostile connections, hostile feed readers, hostile flags.

Each test attacks a real `upload-coordinator serve` and then checks that an honest, signed call
is still answered. Most share one server started with small limits, so that timeouts fire within
seconds; tests that need other flags start their own. Every server is stopped with SIGTERM, must
exit 0, and its data directory must then replay cleanly.
"""
import base64
import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import selectors
import socket
import string
import subprocess
import tempfile
import threading
import time
import urllib.parse

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import BIN, Server
from test_layer_flow import manifest, sha

KEY_A = ("AKIDOTHER", "othersecret")  # the attacker's key (a known, valid one)
KEY_B = ("test", "test")              # the honest client's key
HEADER_TIMEOUT = 2
IDLE_TIMEOUT = 3
MAX_CONNECTIONS = 300
SLACK = 3.0  # seconds a timeout may take to be noticed (the server checks twice a second)
MIB = 1024 * 1024
U64_MAX = 18446744073709551615
TARGET = "SpencerFrontendService."


# ---------------------------------------------------------------------------------------------
# Servers


class Served(Server):
    """conftest's Server, with its standard output drained too (so that nothing can fill a pipe and stall it)."""

    def __init__(self, data_dir, *extra, **options):
        super().__init__(data_dir, *extra, **options)
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def last_lines(self):
        return "".join(list(self.stderr_lines)[-20:])

    @property
    def pid(self):
        return self.process.pid

    def status(self, field):
        """A field of /proc/<pid>/status in kB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self):
        return self.process.poll() is None


@contextlib.contextmanager
def running(*flags):
    """A server of the test's own: stopped with SIGTERM (exit 0 required), then replayed."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = Served(data_dir, *flags)
        try:
            yield server
        except BaseException:
            with contextlib.suppress(Exception):
                server.stop()
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=30)
            raise
        try:
            finish(server)
        finally:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=30)


def finish(server):
    status = server.stop()
    assert status == 0, f"serve must exit 0 on SIGTERM; got {status}: {server.last_lines()}"
    replay = server.tool("upload-replay", "--data-dir", server.data_dir)
    assert replay.returncode == 0, replay.stdout + replay.stderr


@pytest.fixture(scope="module")
def srv():
    """The shared server, with limits small enough for timeouts to fire within seconds."""
    # Every client here is one address (loopback): the per-address cap is the whole cap.
    with running("--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT),
                 "--max-connections", str(MAX_CONNECTIONS), "--max-connections-per-address", str(MAX_CONNECTIONS)) as server:
        yield server


# ---------------------------------------------------------------------------------------------
# Clients


def client(server, key=KEY_B, region="us-east-1"):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name=region,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30,
                                      max_pool_connections=4))


def assert_honest(server):
    """The server is alive and answers an honest signed call."""
    assert server.alive(), f"serve died: {server.last_lines()}"
    registries = client(server).describe_registries()["registries"]
    assert registries and registries[0]["registryId"] == "000000000000"


def sign(method, url, body=b"", headers=None, key=KEY_B, region="us-east-1"):
    """SigV4 headers from botocore itself, for a chosen key and region."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(*key), "ecr-public", region).add_auth(request)
    return dict(request.headers.items())


def address(server):
    return ("127.0.0.1", server.port)


def host_header(server):
    return urllib.parse.urlparse(server.endpoint).netloc


class Raw:
    """One keep-alive connection sending raw AWS JSON 1.1 POSTs (reconnects if the server closed it)."""

    def __init__(self, server, key=KEY_B, timeout=30):
        self.server, self.key, self.timeout = server, key, timeout
        self.connection = None

    def post(self, target, body, extra=None, sign_it=True, region="us-east-1"):
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            headers["X-Amz-Target"] = target
        if sign_it:
            headers = sign("POST", self.server.endpoint + "/", body, headers, self.key, region)
        headers.update(extra or {})
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(*address(self.server), timeout=self.timeout)
            try:
                self.connection.request("POST", "/", body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.headers, json.loads(data) if data else {}
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.connection is not None:
            self.connection.close()
        self.connection = None


def post(server, target, body, extra=None, key=KEY_B, sign_it=True, region="us-east-1"):
    raw = Raw(server, key)
    try:
        return raw.post(target, body, extra, sign_it, region)
    finally:
        raw.close()


def get(server, path, key=KEY_B, timeout=30):
    connection = http.client.HTTPConnection(*address(server), timeout=timeout)
    try:
        connection.request("GET", path, headers=sign("GET", server.endpoint + path, key=key))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def error_of(status, headers, body, expected_status, expected_type):
    assert status == expected_status, (status, body)
    assert body.get("__type") == expected_type, body
    assert headers["x-amzn-ErrorType"] == expected_type, dict(headers)


def signed_head(server, method, path, body_hash_of=b"", headers=None, key=KEY_B, content_length=None):
    """A raw request head, signed as botocore would sign `body_hash_of`, declaring `content_length`."""
    base = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    signed = sign(method, server.endpoint + path, body_hash_of, base, key)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header(server)}"]
    lines += [f"{k}: {v}" for k, v in signed.items()]
    lines.append(f"Content-Length: {len(body_hash_of) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(server, timeout=10, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(address(server))
    return s


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response with a Content-Length body; returns (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def connection_metrics(server, sock=None):
    """The server's connection figures from /metrics: {reason: connections it closed} and the
    connections open (the scrape's own included). On `sock` when given (a source address of its own)."""
    if sock is None:
        text = requests.get(f"{server.endpoint}/metrics", timeout=30).text
    else:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 200, status
        text = body.decode()
    closed, open_now = {}, None
    for line in text.splitlines():
        if line.startswith('upload_coordinator_connections_closed_total{reason="'):
            closed[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("upload_coordinator_connections_open "):
            open_now = float(line.rsplit(" ", 1)[1])
    return closed, open_now


def wait_closed(sock, deadline):
    """Reads (and discards) until the server closes the connection; returns when, or None by `deadline`."""
    sock.setblocking(False)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return time.monotonic()
            continue
        except (BlockingIOError, InterruptedError):
            time.sleep(0.02)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return time.monotonic()
    return None


def still_open(sock):
    """True when the server has not closed the connection (nothing to read and no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def server_side_open(server, client_ports, queued=False):
    """The client ports whose connection the server still holds ESTABLISHED, from /proc/net/tcp
    (with `queued`, the bytes its side has queued for them instead)."""
    ports, total = set(), 0
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            if local == server.port and remote in client_ports and fields[3] == "01":
                ports.add(remote)
                total += int(fields[4].split(":")[0], 16)
    return total if queued else ports


def events_after(server, position):
    return [e for e in server.events() if e["position"] > position]


def tail(server):
    events = server.events()
    return events[-1]["position"] if events else 0


def upload(ecr, repo, data):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha(data)])["layerDigest"] == sha(data)
    return sha(data)


def image_manifest(ecr, repo, salt):
    """A manifest whose config and layer exist in `repo`, so that PutImage can only fail on its tag."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "salt": salt}).encode()
    layer = f"layer {salt}".encode()
    return manifest((upload(ecr, repo, config), len(config)), [(upload(ecr, repo, layer), len(layer))])


# ---------------------------------------------------------------------------------------------
# 1. Positions at the edge of UInt64 in the feeds and the CLI


def test_event_positions_at_the_edge_of_uint64_answer_and_never_kill_the_server(srv):
    ecr = client(srv)
    ecr.create_repository(repositoryName="edge/app")
    ecr.initiate_layer_upload(repositoryName="edge/app")
    # Past the log's end, as a stream's is: refused (never wrapped around to 0).
    for after in (U64_MAX, U64_MAX - 1):
        status, headers, body = get(srv, f"/events?after={after}&limit=10")
        assert status == 400 and b"past the log's last position" in body, (after, status, body[:200])
        assert srv.alive()
    status, _, body = get(srv, f"/events?after=0&limit={U64_MAX}")
    assert status == 200 and body.count(b"\n") >= 2
    for bad in ("-1", "abc", str(U64_MAX + 1), "1e3", "%2B1", "-0", "00"):  # a sign or a leading zero: a second spelling of a cursor
        for path in (f"/events?after={bad}", f"/events/stream?after={bad}"):
            status, headers, body = get(srv, path, timeout=10)
            assert status == 400, (path, status, body[:200])
            assert headers["x-amzn-ErrorType"] == "InvalidParameterException", (path, dict(headers))
            assert json.loads(body)["__type"] == "InvalidParameterException"
    status, headers, body = get(srv, "/events?after=0&limit=abc")
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidParameterException"

    # A stream from the last position there can be: refused as past the log's end (never wrapped
    # around to 0, which would replay the whole log), and the server lives on.
    status, headers, body = get(srv, f"/events/stream?after={U64_MAX}", timeout=10)
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidParameterException", (status, body[:200])
    assert b"past the log's last position" in body and b'"position"' not in body
    ecr.initiate_layer_upload(repositoryName="edge/app")
    assert srv.alive()

    out = srv.tool("upload-coordinator", "events", "--data-dir", srv.data_dir, "--after", str(U64_MAX))
    assert out.returncode == 1 and out.stdout == "" and "past the log's last position" in out.stderr, (out.returncode, out.stdout[:200], out.stderr[-500:])
    out = srv.tool("upload-coordinator", "events", "--data-dir", srv.data_dir, "--after", "-1")
    assert out.returncode > 0, "a negative position is a usage error, not a crash"
    assert_honest(srv)


# ---------------------------------------------------------------------------------------------
# 2. Invocation ids and tags: refused one by one, and never at an honest caller's expense


BAD_INVOCATION_IDS = ["", "x" * 65, "x" * 600]
BAD_TAGS = ["v\x00", "v\n1", "v1\n", "a/b", "../..", "..", ".hidden", "-x", "\u202ev1", "\U0001F600" * 300, "x" * 301, "ta g", ""]


def bad_tag_bodies(repo, body):
    out = []
    for tag in BAD_TAGS:
        out.append(json.dumps({"repositoryName": repo, "imageManifest": body, "imageTag": tag}).encode())
        out.append(json.dumps({"repositoryName": repo, "imageManifest": body, "imageTag": tag}, ensure_ascii=False).encode())
    return out


def test_bad_invocation_ids_and_tags_are_refused_and_write_nothing(srv):
    ecr_a = client(srv, KEY_A)
    ecr_a.create_repository(repositoryName="hostile/app")
    body = image_manifest(ecr_a, "hostile/app", "tags")
    before = tail(srv)
    initiate = json.dumps({"repositoryName": "hostile/app"}).encode()
    for invocation in BAD_INVOCATION_IDS:
        for target, payload in [("InitiateLayerUpload", initiate), ("CreateRepository", b'{"repositoryName": "hostile/new"}')]:
            answer = post(srv, TARGET + target, payload, {"amz-sdk-invocation-id": invocation}, key=KEY_A)
            error_of(*answer, 400, "InvalidParameterException")
    for payload in bad_tag_bodies("hostile/app", body):
        answer = post(srv, TARGET + "PutImage", payload, key=KEY_A)
        error_of(*answer, 400, "InvalidParameterException")
    assert events_after(srv, before) == [], "a refused request wrote an event"

    # the boundaries themselves are accepted: a 64-character invocation id, a 300-character tag
    status, _, answer = post(srv, TARGET + "InitiateLayerUpload", initiate, {"amz-sdk-invocation-id": "i" * 64}, key=KEY_A)
    assert status == 200 and answer["uploadId"], answer
    assert [e["metadata"].get("invocationId") for e in events_after(srv, before)] == ["i" * 64]
    assert_honest(srv)


def test_longest_repository_name_with_longest_tag_is_pushed(srv):
    ecr = client(srv)
    repo = "a" * 100 + "/" + "b" * 104
    assert len(repo) == 205
    ecr.create_repository(repositoryName=repo)
    body = image_manifest(ecr, repo, "long")
    tag = ("T" + "a1._-" * 60)[:300]
    assert len(tag) == 300
    image = ecr.put_image(repositoryName=repo, imageManifest=body, imageTag=tag)["image"]
    assert image["imageId"] == {"imageDigest": sha(body.encode()), "imageTag": tag}
    assert [t["imageTag"] for t in ecr.describe_image_tags(repositoryName=repo)["imageTagDetails"]] == [tag]
    details = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"]
    assert details[0]["imageTags"] == [tag]
    assert_honest(srv)


def test_a_flood_of_bad_requests_from_one_key_never_fails_another_keys_calls(srv):
    ecr_a = client(srv, KEY_A)
    ecr_a.create_repository(repositoryName="hostile/flood")
    client(srv).create_repository(repositoryName="honest/flood")
    body = image_manifest(ecr_a, "hostile/flood", "flood")
    bad = [("PutImage", payload, None) for payload in bad_tag_bodies("hostile/flood", body)]
    initiate = json.dumps({"repositoryName": "hostile/flood"}).encode()
    bad += [("InitiateLayerUpload", initiate, {"amz-sdk-invocation-id": i}) for i in BAD_INVOCATION_IDS]
    before = tail(srv)
    stop = threading.Event()
    refused, wrong, honest_ok, honest_failed = [0], [], [0], []
    lock = threading.Lock()

    def attacker(seed):
        rng = random.Random(seed)
        raw = Raw(srv, KEY_A, timeout=30)
        try:
            while not stop.is_set():
                target, payload, extra = rng.choice(bad)
                status, _, answer = raw.post(TARGET + target, payload, extra)
                with lock:
                    if status == 400 and answer.get("__type") == "InvalidParameterException":
                        refused[0] += 1
                    else:
                        wrong.append((target, status, answer))
        except Exception as error:  # noqa: BLE001 - reported below
            with lock:
                wrong.append(("exception", repr(error)))
        finally:
            raw.close()

    clients = [client(srv) for _ in range(6)]

    def honest(ecr):
        end = time.monotonic() + 6
        while time.monotonic() < end and not stop.is_set():
            try:
                assert ecr.initiate_layer_upload(repositoryName="honest/flood")["uploadId"]
                with lock:
                    honest_ok[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    honest_failed.append(repr(error))

    attackers = [threading.Thread(target=attacker, args=(i,)) for i in range(2)]
    honests = [threading.Thread(target=honest, args=(c,)) for c in clients]
    for t in attackers + honests:
        t.start()
    for t in honests:
        t.join(timeout=60)
    stop.set()
    for t in attackers:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in attackers + honests), "a client thread hung"
    assert wrong == [], wrong[:5]
    assert refused[0] >= 100, f"the attack barely ran: {refused[0]} requests"
    assert honest_failed == [], f"{len(honest_failed)} of {honest_ok[0] + len(honest_failed)} honest calls failed: {honest_failed[:5]}"
    assert honest_ok[0] >= 100, f"only {honest_ok[0]} honest calls were answered"
    recorded = events_after(srv, before)
    assert [e for e in recorded if e["metadata"].get("principal") == "AKIDOTHER"] == [], "a refused request wrote an event"
    assert len([e for e in recorded if e["type"] == "UploadInitiated" and e["metadata"].get("principal") == "test"]) == honest_ok[0]
    assert_honest(srv)


# ---------------------------------------------------------------------------------------------
# 3. Metrics labels come from a closed set


def test_random_targets_mint_no_metric_series(srv):
    rng = random.Random(7)
    tokens = []
    raw = Raw(srv, KEY_B, timeout=10)
    try:
        for i in range(2000):
            token = "Zq" + "".join(rng.choices(string.ascii_letters + string.digits, k=1000 if i % 10 == 0 else 24))
            tokens.append(token)
            target = token if i % 7 == 0 else TARGET + token
            status, _, answer = raw.post(target, b"{}", sign_it=False)
            assert status == 403 and answer["__type"] == "MissingAuthenticationTokenException", (status, answer)
        for i in range(200):  # signed too: an authenticated caller cannot mint labels either
            token = "Zs" + "".join(rng.choices(string.ascii_letters, k=40))
            tokens.append(token)
            status, _, answer = raw.post(TARGET + token, b"{}")
            assert status == 400 and answer["__type"] == "UnknownOperationException", (status, answer)
    finally:
        raw.close()
    connection = http.client.HTTPConnection(*address(srv), timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    assert response.status == 200 and "upload_coordinator_requests_total" in text
    assert len(text.encode()) < 64 * 1024, f"/metrics is {len(text)} bytes"
    assert "Zq" not in text and "Zs" not in text, [line for line in text.splitlines() if "Zq" in line or "Zs" in line][:3]
    assert_honest(srv)


# ---------------------------------------------------------------------------------------------
# 8. Unknown targets are answered only after authentication


def test_unknown_targets_are_answered_only_after_authentication(srv):
    for target in (TARGET + "Nope", TARGET + "TagResource", "Nope", None):
        status, headers, body = post(srv, target, b"{}", sign_it=False)
        error_of(status, headers, body, 403, "MissingAuthenticationTokenException")
        status, headers, body = post(srv, target, b"{}", key=("AKIDNOBODY", "x"))
        error_of(status, headers, body, 403, "UnrecognizedClientException")
    error_of(*post(srv, TARGET + "Nope", b"{}"), 400, "UnknownOperationException")
    assert_honest(srv)


def test_any_region_a_client_signs_for_is_taken_unless_serve_names_one(srv):
    """A client configured for another region signs for it, whatever the endpoint URL: taken by
    default, refused where `serve --region` names the one region served."""
    assert client(srv, region="eu-west-1").describe_registries()["registries"]
    status, headers, body = post(srv, TARGET + "DescribeRegistries", b"{}", region="EU_West")
    error_of(status, headers, body, 403, "InvalidSignatureException")
    with running("--region", "eu-west-1") as other:
        assert client(other, region="eu-west-1").describe_registries()["registries"]
        status, headers, body = post(other, TARGET + "DescribeRegistries", b"{}", region="us-east-1")
        error_of(status, headers, body, 403, "InvalidSignatureException")
    assert_honest(srv)


# ---------------------------------------------------------------------------------------------
# 5. Idempotency: an invocation id names one call


def test_an_invocation_id_reused_for_another_request_is_refused(srv):
    invocation = {"amz-sdk-invocation-id": "0d6f3c1e-8a55-4c8e-9a51-3f1f2d0c9b7a"}
    first = json.dumps({"repositoryName": "idem/c1"}).encode()
    status, _, created = post(srv, TARGET + "CreateRepository", first, invocation)
    assert status == 200 and created["repository"]["repositoryName"] == "idem/c1", created
    status, headers, body = post(srv, TARGET + "CreateRepository", json.dumps({"repositoryName": "idem/c2"}).encode(), invocation)
    error_of(status, headers, body, 400, "IdempotentParameterMismatchException")
    ecr = client(srv)
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["idem/c2"])
    status, _, again = post(srv, TARGET + "CreateRepository", first, invocation)
    assert status == 200 and again == created, (status, again, created)
    created_events = [e for e in srv.events() if e["type"] == "RepositoryCreated" and e["data"].get("repositoryName", "").startswith("idem/")]
    assert [e["data"]["repositoryName"] for e in created_events] == ["idem/c1"]
    assert_honest(srv)


# ---------------------------------------------------------------------------------------------
# 4. Connections: slow heads, idle connections, slow bodies, unread bodies


def test_an_unsigned_body_that_takes_too_long_to_arrive_is_408():
    """A sender that knows only a key id must not hold the spool budget for hours at the lowest body rate."""
    with running("--max-unsigned-body-seconds", "2") as server:
        body = json.dumps({"repositoryName": "team/app", "uploadId": "x", "partFirstByte": 0, "partLastByte": 0,
                        "layerPartBlob": "A" * 200_000}).encode()
        sock = connect(server)
        sock.sendall(signed_head(server, "POST", "/", body, {"X-Amz-Target": TARGET + "UploadLayerPart"}, key=KEY_A) + body[:150_000])
        time.sleep(2.5)
        sock.sendall(body[150_000:152_048])
        status, headers, answer = read_response(sock)
        assert status == 408 and json.loads(answer)["__type"] == "RequestTimeoutException", (status, answer)
        sock.close()
        # the server goes on answering
        assert client(server).describe_registries()["registries"]


def test_a_body_cut_short_by_its_client_is_the_clients_error_not_the_servers(srv):
    """A client that ends its side of the connection part way through a body (a cancelled push,
    or an attacker who needs only a key id): answered as a client error (400), counted as such,
    and never as a server's failure, on both front ends; nothing of the body is kept."""
    ecr = client(srv)
    ecr.create_repository(repositoryName="cut/app")
    counted_before = requests.get(f"{srv.endpoint}/metrics", timeout=30).text
    body = json.dumps({"repositoryName": "cut/app", "uploadId": "x", "partFirstByte": 0, "partLastByte": 0,
                       "layerPartBlob": "A" * 200_000}).encode()
    sock = connect(srv)
    sock.sendall(signed_head(srv, "POST", "/", body, {"X-Amz-Target": TARGET + "UploadLayerPart"}) + body[:100_000])
    sock.shutdown(socket.SHUT_WR)
    status, _, answer = read_response(sock)
    sock.close()
    assert status == 400 and json.loads(answer)["__type"] == "SerializationException", (status, answer)
    # The registry: a chunk cut short is BLOB_UPLOAD_INVALID, and its upload holds nothing of it.
    token = base64.b64decode(ecr.get_authorization_token()["authorizationData"]["authorizationToken"]).decode()
    basic = "Basic " + base64.b64encode(token.encode()).decode()
    started = requests.post(f"{srv.endpoint}/v2/cut/app/blobs/uploads/", headers={"Authorization": basic}, timeout=30)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    sock = connect(srv)
    sock.sendall((f"PATCH {location} HTTP/1.1\r\nHost: {host_header(srv)}\r\nAuthorization: {basic}\r\n"
                  "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n").encode() + b"x" * 1000)
    sock.shutdown(socket.SHUT_WR)
    status, _, answer = read_response(sock)
    sock.close()
    assert status == 400 and json.loads(answer)["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", (status, answer)
    session = requests.get(f"{srv.endpoint}{location}", headers={"Authorization": basic}, timeout=30)
    assert session.status_code == 204 and session.headers["Range"] == "0-0", (session.status_code, dict(session.headers))

    def counts(text):
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("upload_coordinator_") and "_total{" in line}
    before, after = counts(counted_before), counts(requests.get(f"{srv.endpoint}/metrics", timeout=30).text)
    grew = {series: after[series] - before.get(series, 0) for series in after if after[series] != before.get(series, 0)}
    # Counted before its signature could be checked: as no operation yet.
    assert grew.get('upload_coordinator_requests_total{operation="unknown",outcome="SerializationException"}') == 1, grew
    assert grew.get('upload_coordinator_registry_requests_total{endpoint="upload",outcome="BLOB_UPLOAD_INVALID"}') == 1, grew
    assert not [series for series in grew if any(fault in series for fault in ("ServerException", "\"UNKNOWN\"", "UNAVAILABLE"))], grew


def test_a_client_sending_on_after_an_answer_that_ends_its_connection_is_drained_then_closed():
    """An answer that ends the connection (`Connection: close`) is followed by a half-close, and
    what the client still sends is read and dropped, so that its answer is never reset away; a
    client that neither stops nor closes is closed at the header timeout, and counted so. (A server
    of its own: the count is of this one connection.)"""
    with running("--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT)) as srv:
        drained_then_closed(srv)


def drained_then_closed(srv):
    closed_before, _ = connection_metrics(srv)
    sock = connect(srv)
    sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: " + host_header(srv).encode() + b"\r\nConnection: close\r\n\r\n")
    status, headers, _ = read_response(sock)
    assert status == 401 and headers.get("connection") == "close", (status, headers)
    assert sock.recv(1) == b"", "the answer is followed by the end of the server's stream"
    answered = time.monotonic()
    sock.setblocking(False)
    refused_at = None
    while time.monotonic() < answered + HEADER_TIMEOUT + SLACK + 2:
        try:
            sock.send(b"x" * 512)  # drained while the server reads on; refused once it has closed
        except BlockingIOError:
            pass
        except OSError:
            refused_at = time.monotonic()
            break
        time.sleep(0.1)
    sock.close()
    assert refused_at is not None, "the server never closed a connection whose client sent on"
    assert HEADER_TIMEOUT - 0.6 <= refused_at - answered <= HEADER_TIMEOUT + SLACK + 1, refused_at - answered
    closed_after, _ = connection_metrics(srv)
    grew = {reason: closed_after[reason] - closed_before.get(reason, 0) for reason in closed_after}
    # Closed as a client that did not close after its last answer (not as a head that never
    # completed: what it sent on is no request), the one connection the server ended (the
    # scrapes' own end at their client's close).
    assert {reason: n for reason, n in grew.items() if n} == {"not_closed_after_last_answer": 1}, grew


def test_slow_heads_are_closed_at_the_header_timeout_while_honest_calls_are_answered(srv):
    dribble = (b"POST / HTTP/1.1\r\nHost: " + host_header(srv).encode() + b"\r\nX-Amz-Target: " + TARGET.encode() +
               b"DescribeRegistries\r\nX-Pad: " + b"a" * 4000)
    selector = selectors.DefaultSelector()
    sockets = {}  # socket -> [connected at, bytes sent, closed at, kind, clock start]

    def add(sock, kind, start):
        sock.setblocking(False)
        sockets[sock] = [start, 0, None, kind]
        selector.register(sock, selectors.EVENT_READ)

    closed_before, _ = connection_metrics(srv)
    # A connection that completed a request, then dribbles its next head, and one that just waits.
    for kind in ("second-head", "idle"):
        sock = connect(srv)
        body = b"{}"
        sock.sendall(signed_head(srv, "POST", "/", body, {"X-Amz-Target": TARGET + "DescribeRegistries"}) + body)
        status, _, _ = read_response(sock)
        assert status == 200
        add(sock, kind, time.monotonic())
    for i in range(200):
        add(connect(srv), "silent" if i % 10 == 0 else "dribble", time.monotonic())

    latencies, honest_errors, stop = [], [], threading.Event()

    def honest():
        ecr = client(srv)
        while not stop.is_set():
            started = time.monotonic()
            try:
                assert ecr.describe_registries()["registries"]
                latencies.append(time.monotonic() - started)
            except Exception as error:  # noqa: BLE001
                honest_errors.append(repr(error))
            time.sleep(0.2)

    watcher = threading.Thread(target=honest)
    watcher.start()
    try:
        deadline = time.monotonic() + max(HEADER_TIMEOUT, IDLE_TIMEOUT) + 2 * SLACK + 2
        next_byte = 0.0
        while time.monotonic() < deadline and any(state[2] is None for state in sockets.values()):
            now = time.monotonic()
            if now >= next_byte:
                next_byte = now + 0.25
                for sock, state in sockets.items():
                    if state[2] is None and state[3] in ("dribble", "second-head") and state[1] < len(dribble):
                        if state[3] == "second-head" and state[1] == 0:
                            state[0] = now  # its head's clock starts with its first byte
                        try:
                            state[1] += sock.send(dribble[state[1]:state[1] + 1])
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            state[2] = time.monotonic()
                            selector.unregister(sock)
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    if sock.recv(65536):
                        continue  # an error response before the close is fine
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                sockets[sock][2] = time.monotonic()
                selector.unregister(sock)
    finally:
        stop.set()
        watcher.join(timeout=30)
        for sock in sockets:
            sock.close()
        selector.close()

    open_left = [state[3] for state in sockets.values() if state[2] is None]
    assert open_left == [], f"{len(open_left)} slow connections were never closed: {sorted(set(open_left))}"
    for kind, limit in [("dribble", HEADER_TIMEOUT), ("silent", HEADER_TIMEOUT), ("second-head", HEADER_TIMEOUT), ("idle", IDLE_TIMEOUT)]:
        lifetimes = [state[2] - state[0] for state in sockets.values() if state[3] == kind]
        assert max(lifetimes) <= limit + SLACK, f"{kind}: closed after {max(lifetimes):.1f}s, the limit is {limit}s"
        assert min(lifetimes) >= limit - 0.6, f"{kind}: closed after {min(lifetimes):.1f}s, before its {limit}s"
    # Each close is counted by its reason, for the operator (other tests' connections may close too).
    closed_after, _ = connection_metrics(srv)
    grew = {reason: closed_after[reason] - closed_before.get(reason, 0) for reason in closed_after}
    slow_heads = sum(1 for state in sockets.values() if state[3] in ("dribble", "silent", "second-head"))
    assert grew.get("header_timeout", 0) >= slow_heads and grew.get("idle_timeout", 0) >= 1, grew
    assert honest_errors == [], honest_errors[:5]
    assert len(latencies) >= 5 and max(latencies) < 2.0, f"honest calls took up to {max(latencies or [0]):.2f}s ({len(latencies)} calls)"
    assert_honest(srv)


def test_a_body_slower_than_the_minimum_rate_is_closed_and_a_slow_enough_one_is_answered(srv):
    results = {}

    def slow():  # 4 bytes a second: never idle, but far below 1024 B/s
        sock = connect(srv)
        body = b"{" + b" " * 4000 + b"}"
        sock.sendall(signed_head(srv, "POST", "/", body, {"X-Amz-Target": TARGET + "DescribeRegistries"}))
        started = time.monotonic()
        sock.setblocking(False)
        sent = 0
        closed = None
        while time.monotonic() < started + 25 and closed is None:
            try:
                if sock.recv(65536) == b"":
                    closed = time.monotonic()
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed = time.monotonic()
            if closed is None and sent < len(body) - 1:
                try:
                    sent += sock.send(body[sent:sent + 1])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    closed = time.monotonic()
            time.sleep(0.25)
        sock.close()
        results["slow"] = None if closed is None else closed - started

    def enough():  # 2 KiB a second for 13 s: slow, but above the minimum rate
        sock = connect(srv, timeout=30)
        body = b"{" + b" " * (26 * 1024) + b"}"
        sock.sendall(signed_head(srv, "POST", "/", body, {"X-Amz-Target": TARGET + "DescribeRegistries"}))
        try:
            for i in range(0, len(body), 512):
                sock.sendall(body[i:i + 512])
                time.sleep(0.25)
            results["enough"] = read_response(sock, timeout=30)
        except OSError as error:
            results["enough"] = repr(error)
        sock.close()

    threads = [threading.Thread(target=slow), threading.Thread(target=enough)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results["slow"] is not None, "a body arriving at 4 B/s was never closed"
    assert 9.5 <= results["slow"] <= 10 + SLACK, f"closed after {results['slow']:.1f}s; the rate is enforced after 10 s"
    assert not isinstance(results["enough"], str), f"a body at 2 KiB/s was cut off: {results['enough']}"
    status, _, body = results["enough"]
    assert status == 200 and json.loads(body)["registries"], body
    assert_honest(srv)


def held_back_chunk(srv, repository, first_seconds, expect_continue=False, release_after=None):
    """A first PATCH to an upload sent at 16 KiB a second for `first_seconds` (or, given
    `release_after`, the rest at once that many seconds after the second began), and a second of
    32 MiB (more than every buffer between holds) sent once the first holds the upload's lock
    (with `expect_continue`, its body sent only once the server asks for it, as curl sends any
    body over 1 MiB): (the first's answer, the second's answer or the error that cut it off)."""
    ecr = client(srv)
    ecr.create_repository(repositoryName=repository)
    token = ecr.get_authorization_token()["authorizationData"]["authorizationToken"]
    authorization = "Basic " + token  # base64 of `AWS:<password>`, as docker login sends it

    def request(method, path, length, extra=()):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header(srv)}", f"Authorization: {authorization}",
                 f"Content-Length: {length}", "Content-Type: application/octet-stream", *extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    sock = connect(srv)
    sock.sendall(request("POST", f"/v2/{repository}/blobs/uploads/", 0))
    status, headers, _ = read_response(sock)
    sock.close()
    assert status == 202, status
    location = urllib.parse.urlsplit(headers["location"])
    session = location.path + ("?" + location.query if location.query else "")
    staged = os.path.join(srv.data_dir, "staging", location.path.rstrip("/").rsplit("/", 1)[1])
    assert not os.path.exists(staged), "made by the first chunk, under the upload's lock"

    first_length, held_length = int(first_seconds * 4) * 4096, 32 * MIB
    results = {}

    def first():
        sock = connect(srv, timeout=30)
        sock.sendall(request("PATCH", session, first_length, ["Content-Range: 0-%d" % (first_length - 1)]))
        for sent in range(0, first_length, 4096):
            if release_after is not None and "held_started" in results and time.monotonic() >= results["held_started"] + release_after:
                sock.sendall(b"a" * (first_length - sent))
                break
            sock.sendall(b"a" * 4096)
            time.sleep(0.25)
        results["first"] = read_response(sock, timeout=30)
        sock.close()

    def held():
        sock = connect(srv, timeout=60)
        try:
            if expect_continue:
                sock.sendall(request("PATCH", session, held_length, ["Expect: 100-continue"]))
                answer = read_response(sock, timeout=60)
                if answer[0] == 100:
                    sock.sendall(b"b" * held_length)
                    answer = read_response(sock, timeout=60)
                results["held"] = answer
                return
            sock.sendall(request("PATCH", session, held_length) + b"b" * held_length)
            results["held"] = read_response(sock, timeout=60)
        except OSError as error:
            results["held"] = repr(error)
        sock.close()

    threads = [threading.Thread(target=first), threading.Thread(target=held)]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not os.path.exists(staged):  # the first chunk holds the upload's lock
        assert time.monotonic() < deadline, "the first chunk never began"
        time.sleep(0.01)
    results["held_started"] = time.monotonic()
    threads[1].start()
    for t in threads:
        t.join(timeout=90)
    assert results["first"][0] == 202, results["first"]
    return first_length, held_length, results["held"]


def test_a_chunk_held_back_behind_another_on_its_upload_is_not_taken_for_a_slow_client(srv):
    """A second PATCH to an upload waits for the first's lock before the server reads its body:
    its bytes stop arriving for longer than the idle timeout, through no fault of the client's.
    The guard judges a body only while the server asks for it, so the chunk is taken afterwards.
    Held half a second past the idle timeout, by construction: short of the 5 s (twice the idle
    timeout less a second) after which it is refused to be retried, however slow the machine."""
    first_length, held_length, held = held_back_chunk(srv, "attack/held-back", first_seconds=8, release_after=IDLE_TIMEOUT + 0.5)
    assert not isinstance(held, str), f"the held-back chunk was cut off: {held}"
    status, headers, body = held
    assert status == 202, (status, body)
    assert headers["range"] == f"0-{first_length + held_length - 1}", headers
    assert_honest(srv)


@pytest.mark.parametrize("expect_continue", [False, True], ids=["body-sent", "expect-continue"])
def test_a_chunk_held_back_for_about_twice_the_idle_timeout_is_refused_as_one_to_retry(srv, expect_continue):
    """Held back, a body is not the client's fault, but it holds a connection, what the kernel
    buffers for it, and a task waiting for the upload: once it has waited twice the idle timeout
    less a second, it is refused with 429 TOOMANYREQUESTS, which clients retry, before the guard
    would close its connection (at twice the idle timeout). It waited as long as the first took.
    A chunk sent with `Expect: 100-continue`, whose body waits for the server's word, was closed
    as idle at one idle timeout, with no answer."""
    started = time.monotonic()
    _, _, held = held_back_chunk(srv, f"attack/held-too-long-{int(expect_continue)}", first_seconds=2 * IDLE_TIMEOUT + 4,
                                 expect_continue=expect_continue)
    assert not isinstance(held, str), f"cut off after {time.monotonic() - started:.0f} s, not refused: {held}"
    status, _, body = held
    assert status == 429 and b"TOOMANYREQUESTS" in body, (status, body)
    assert_honest(srv)


def test_a_huge_declared_body_from_an_unknown_or_missing_key_is_refused_without_waiting_for_it(srv):
    for key, expected in [(("AKIDNOBODY", "secret"), "UnrecognizedClientException"), (None, "MissingAuthenticationTokenException")]:
        sock = connect(srv)
        if key:
            head = signed_head(srv, "POST", "/", b"", {"X-Amz-Target": TARGET + "UploadLayerPart"}, key=key, content_length=28_000_000)
        else:
            head = (f"POST / HTTP/1.1\r\nHost: {host_header(srv)}\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    f"X-Amz-Target: {TARGET}UploadLayerPart\r\nContent-Length: 28000000\r\n\r\n").encode()
        started = time.monotonic()
        sock.sendall(head)
        status, headers, body = read_response(sock, timeout=5)
        elapsed = time.monotonic() - started
        sock.close()
        assert status == 403 and json.loads(body)["__type"] == expected, (status, body)
        assert headers["x-amzn-errortype"] == expected
        assert elapsed < 2.0, f"answered after {elapsed:.1f}s"
    assert_honest(srv)


def test_a_connection_answered_before_its_body_ended_is_still_timed_out(srv):
    """The server refuses an unsigned request before reading its body; the client then sends the
    body and goes quiet. The connection must still be closed at the idle timeout, not held forever
    (which would let anyone fill the connection cap for free)."""
    sock = connect(srv)
    sock.sendall((f"POST / HTTP/1.1\r\nHost: {host_header(srv)}\r\nContent-Type: application/x-amz-json-1.1\r\n"
                  f"X-Amz-Target: {TARGET}DescribeRegistries\r\nContent-Length: 1\r\n\r\n").encode())
    status, _, _ = read_response(sock, timeout=5)
    assert status == 403
    sock.sendall(b"x")
    sent = time.monotonic()
    closed = wait_closed(sock, sent + IDLE_TIMEOUT + SLACK + 2)
    sock.close()
    assert closed is not None, "the connection was never closed"
    assert closed - sent >= IDLE_TIMEOUT - 0.6, f"closed after {closed - sent:.1f}s, before the idle timeout"
    assert_honest(srv)


class RSSSampler:
    """The server's resident memory (kB), sampled every 10 ms from now until `stop()`, which
    returns the samples (the first taken before anything runs)."""

    def __init__(self, server):
        self.server, self.samples, self.stopping = server, [server.status("VmRSS")], threading.Event()
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()

    def _sample(self):
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.server.status("VmRSS"))
            time.sleep(0.01)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        return self.samples


def test_stalled_bodies_are_closed_at_the_idle_timeout_and_cost_no_memory():
    with running("--idle-timeout", str(IDLE_TIMEOUT)) as server:
        assert_honest(server)
        rss_before, fds_before = server.status("VmRSS"), server.open_fds()
        sampler = RSSSampler(server)
        chunk = os.urandom(MIB)
        stalled = [None] * 20
        failures = []

        def stall(i):
            try:
                sock = connect(server, timeout=20)
                sock.sendall(signed_head(server, "POST", "/", b"", {"X-Amz-Target": TARGET + "UploadLayerPart"}, content_length=28_000_000))
                for _ in range(8):
                    sock.sendall(chunk)
                stalled[i] = (sock, time.monotonic())
            except OSError as error:
                failures.append(repr(error))

        threads = [threading.Thread(target=stall, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        try:
            assert failures == [], f"the server stopped reading bodies: {failures[:3]}"
            assert all(stalled), "a sender hung"
            # every connection is closed within the idle timeout of its last byte
            late = []
            for sock, stopped in stalled:
                closed = wait_closed(sock, stopped + IDLE_TIMEOUT + SLACK + 1)
                if closed is None:
                    late.append("never")
                elif closed - stopped > IDLE_TIMEOUT + SLACK:
                    late.append(f"{closed - stopped:.1f}s")
            assert late == [], f"stalled bodies closed late: {late}"
        finally:
            peak = sampler.stop()
            for entry in stalled:
                if entry:
                    entry[0].close()
        grown = (max(peak) - rss_before) / 1024
        assert grown < 100, f"RSS grew by {grown:.0f} MB for 160 MB of unauthenticated, unfinished bodies"
        # nothing is held for them afterwards: no descriptor, no spooled file
        deadline = time.monotonic() + 5
        while server.open_fds() > fds_before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.open_fds() <= fds_before + 2, f"descriptors: {fds_before} before, {server.open_fds()} after"
        spool = os.path.join(server.data_dir, "spool")
        assert not os.path.isdir(spool) or os.listdir(spool) == [], os.listdir(spool)[:5]
        assert_honest(server)


def test_a_signed_body_of_millions_of_values_is_refused_without_parsing_them():
    """Foundation's parser boxes every value: 24 MB of numbers cost some 720 MB parsed. Such a body
    is refused (SerializationException) before it is parsed, and costs little more than its bytes."""
    with running() as server:
        rss_before = server.status("VmRSS")
        sampler = RSSSampler(server)
        try:
            body = b'{"repositoryName":"team/app","extra":[' + b",".join([b"1"] * 12_000_000) + b"]}"
            status, _, answer = post(server, TARGET + "InitiateLayerUpload", body)
        finally:
            peak = sampler.stop()
        assert status == 400 and answer["__type"] == "SerializationException", (status, answer)
        assert "more than 10000 JSON values" in answer["message"]
        grown = (max(peak) - rss_before) / 1024
        assert grown < 250, f"RSS grew by {grown:.0f} MB for a {len(body) // MIB} MB body"


def test_layer_bytes_stop_at_the_disks_reserve_and_every_other_call_goes_on():
    """A pusher cannot fill the disk the log grows on: past `--reserved-disk-bytes` a part is
    LimitExceededException and a registry chunk TOOMANYREQUESTS, neither writing a byte, while
    calls that stage nothing go on."""
    from test_registry_api import Registry, assert_error, login_password, patch, start_upload
    with running("--reserved-disk-bytes", str(1 << 62)) as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="team/full")
        upload_id = ecr.initiate_layer_upload(repositoryName="team/full")["uploadId"]
        with pytest.raises(ecr.exceptions.LimitExceededException, match="disk is nearly full"):
            ecr.upload_layer_part(repositoryName="team/full", uploadId=upload_id, partFirstByte=0, partLastByte=9,
                                  layerPartBlob=b"0123456789")
        reg = Registry(server, auth=("AWS", login_password(ecr)))
        location = start_upload(reg, "team/full")
        assert_error(patch(reg, location, os.urandom(MIB), 0), 429, "TOOMANYREQUESTS")
        # Refused before the body is asked for, through either API, when the client waits to be.
        from urllib.parse import urljoin, urlsplit
        from conftest import send_expecting_continue, signed_headers
        from test_registry_api import basic
        url = urlsplit(urljoin(server.endpoint, location))
        interim, status, _, answer = send_expecting_continue(
            server.port, "PATCH", url.path + ("?" + url.query if url.query else ""),
            {"Authorization": basic(login_password(ecr)), "Content-Type": "application/octet-stream"}, os.urandom(2 * MIB))
        assert (interim, status) == ([], 429) and b"TOOMANYREQUESTS" in answer, (interim, status, answer)
        part = json.dumps({"repositoryName": "team/full", "uploadId": upload_id, "partFirstByte": 0, "partLastByte": 2 * MIB - 1,
                           "layerPartBlob": base64.b64encode(os.urandom(2 * MIB)).decode()}).encode()
        headers = signed_headers("POST", server.endpoint + "/", part, {
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.UploadLayerPart"})
        interim, status, _, answer = send_expecting_continue(
            server.port, "POST", "/", {name: value for name, value in headers.items() if name.lower() not in ("host", "content-length")}, part)
        assert (interim, status) == ([], 400) and b"LimitExceededException" in answer, (interim, status, answer)
        assert os.listdir(os.path.join(server.data_dir, "staging")) in ([], [".upload-locks"])
        kinds = [event["type"] for event in server.events()]
        assert "LayerPartUploaded" not in kinds and kinds.count("UploadInitiated") == 2, kinds
        # The operator was told at start that nothing would be taken.
        assert any("less free space than --reserved-disk-bytes" in line for line in server.stderr_lines), server.last_lines()


def test_a_layer_stops_at_its_size_limit_through_either_api_and_keeps_what_it_had():
    """`--max-layer-bytes` bounds one upload: a registry client's streamed chunks have no other
    bound but the disk. A part past it is LimitExceededException, a chunk 413 SIZE_INVALID (not
    the full disk's retryable TOOMANYREQUESTS); neither keeps a byte or records an event, and the
    upload still completes with what it had."""
    from test_registry_api import Registry, assert_error, login_password, patch, start_upload
    limit = 3 * MIB
    with running("--max-layer-bytes", str(limit)) as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="team/big")
        upload_id = ecr.initiate_layer_upload(repositoryName="team/big")["uploadId"]
        first = os.urandom(2 * MIB)
        ecr.upload_layer_part(repositoryName="team/big", uploadId=upload_id, partFirstByte=0,
                              partLastByte=len(first) - 1, layerPartBlob=first)
        with pytest.raises(ecr.exceptions.LimitExceededException, match=f"at most {limit} bytes"):
            ecr.upload_layer_part(repositoryName="team/big", uploadId=upload_id, partFirstByte=len(first),
                                  partLastByte=len(first) + MIB, layerPartBlob=os.urandom(MIB + 1))
        staged = os.path.join(server.data_dir, "staging", upload_id)
        assert os.path.getsize(staged) == len(first)

        reg = Registry(server, auth=("AWS", login_password(ecr)))
        location = start_upload(reg, "team/big")
        accepted = patch(reg, location, os.urandom(2 * MIB), 0)
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["Location"]
        assert_error(patch(reg, location, os.urandom(2 * MIB)), 413, "SIZE_INVALID")
        # Its Content-Length says so before its body is read: a client that sent
        # `Expect: 100-continue` is refused without being asked for it.
        from urllib.parse import urljoin, urlsplit
        from conftest import send_expecting_continue
        from test_registry_api import basic
        url = urlsplit(urljoin(server.endpoint, location))
        interim, status, _, answer = send_expecting_continue(
            server.port, "PATCH", url.path + ("?" + url.query if url.query else ""),
            {"Authorization": basic(login_password(ecr)), "Content-Type": "application/octet-stream"}, os.urandom(2 * MIB))
        assert (interim, status) == ([], 413) and b"SIZE_INVALID" in answer, (interim, status, answer)
        assert reg("GET", location).headers["Range"] == f"0-{2 * MIB - 1}"
        exact = patch(reg, location, os.urandom(MIB), 2 * MIB)  # up to the limit itself is taken
        assert exact.status_code == 202, exact.text

        digest = "sha256:" + hashlib.sha256(first).hexdigest()
        assert ecr.complete_layer_upload(repositoryName="team/big", uploadId=upload_id,
                                         layerDigests=[digest])["layerDigest"] == digest
        kinds = [event["type"] for event in server.events()]
        assert kinds.count("LayerPartUploaded") == 3 and kinds.count("LayerUploadCompleted") == 1, kinds


def test_a_body_declared_larger_than_the_limit_is_refused_before_a_byte_of_it_is_read():
    """A Content-Length past the 30,000,000 bytes a request may carry (or the registry's manifest
    limit) is answered 413 at once: the body is not read, nor spooled against the budget first
    (it was 30 MB read, and written to the spool for a known key, before the refusal)."""
    with running() as server:
        for key in (KEY_A, ("AKIDUNKNOWN", "x")):
            sock = connect(server)
            try:
                sock.sendall(signed_head(server, "POST", "/", body_hash_of=b"{}", key=key, content_length=10**12,
                                         headers={"X-Amz-Target": TARGET + "UploadLayerPart"}))
                status, _, body = read_response(sock, timeout=5)
            finally:
                sock.close()
            expected = "RequestEntityTooLargeException" if key == KEY_A else "UnrecognizedClientException"
            assert (status, json.loads(body)["__type"]) == ((413 if key == KEY_A else 403), expected), (key, status, body)
        from test_registry_api import login_password
        password = login_password(client(server))
        sock = connect(server)
        try:
            client(server).create_repository(repositoryName="team/declared")
            auth = base64.b64encode(f"AWS:{password}".encode()).decode()
            sock.sendall((f"PUT /v2/team/declared/manifests/v1 HTTP/1.1\r\nHost: {host_header(server)}\r\n"
                          f"Authorization: Basic {auth}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                          f"Content-Length: {10**9}\r\n\r\n").encode())
            status, _, body = read_response(sock, timeout=5)
        finally:
            sock.close()
        assert status == 413 and json.loads(body)["errors"][0]["code"] == "MANIFEST_INVALID", (status, body)
        assert_honest(server)


def test_connections_beyond_the_maximum_are_closed_at_once():
    cap = 10
    with running("--max-connections", str(cap), "--header-timeout", "30", "--idle-timeout", "30") as server:
        assert_honest(server)
        time.sleep(0.3)  # the honest call's connection is gone from the count
        held = [connect(server) for _ in range(cap)]
        time.sleep(0.5)  # all accepted and counted
        try:
            for _ in range(3):
                extra = connect(server, timeout=5)
                started = time.monotonic()
                closed = wait_closed(extra, started + 2)
                extra.close()
                assert closed is not None and closed - started < 1.5, "a connection beyond the maximum was not closed at once"
            assert all(still_open(sock) for sock in held), "the server closed connections within its maximum"
        finally:
            for sock in held:
                sock.close()
        # Once the server has seen the held connections close; a scrape before that is itself
        # refused at the cap, and counted so.
        deadline, closed, open_now, refused_scrapes = time.monotonic() + 10, {}, None, 0
        while time.monotonic() < deadline:
            try:
                closed, open_now = connection_metrics(server)
                break
            except requests.RequestException:
                refused_scrapes += 1
                time.sleep(0.2)
        assert closed.get("connection_limit") == 3 + refused_scrapes and open_now is not None, (closed, open_now, refused_scrapes)
        # once the held connections are gone, honest calls are served again
        deadline, last = time.monotonic() + 5, None
        while time.monotonic() < deadline:
            try:
                assert_honest(server)
                break
            except Exception as error:  # noqa: BLE001 - the server may take a moment to see the closes
                last = error
                time.sleep(0.2)
        else:
            raise AssertionError(f"honest calls were not served after the connections closed: {last!r}")


def test_one_address_cannot_take_every_connection():
    """Past --max-connections-per-address, one client address's new connections are closed at
    once, while another address is served; a connection that closes makes room again."""
    per_address = 3

    def connect_from(source):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(address(server))
        return sock

    def served(sock):
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return read_response(sock)[0] == 401

    with running("--max-connections", "50", "--max-connections-per-address", str(per_address),
                 "--header-timeout", "30", "--idle-timeout", "30") as server:
        held = [connect_from("127.0.0.1") for _ in range(per_address)]
        time.sleep(0.5)  # all accepted and counted
        try:
            extra = connect_from("127.0.0.1")
            started = time.monotonic()
            closed = wait_closed(extra, started + 2)
            extra.close()
            assert closed is not None and closed - started < 1.5, "a connection past the per-address cap was not closed"
            assert all(still_open(sock) for sock in held), "the server closed connections within the per-address cap"
            other = connect_from("127.0.0.2")
            assert served(other), "another address was not served"
            closed, open_now = connection_metrics(server, other)
            assert closed.get("address_limit") == 1 and open_now == per_address + 1, (closed, open_now)
            other.close()
            held.pop().close()
            # Once the server has seen the close, which a loaded machine may take a while to do.
            deadline = time.monotonic() + 10
            while True:
                again = connect_from("127.0.0.1")
                try:
                    answered = served(again)
                except OSError:
                    answered = False
                if answered or time.monotonic() > deadline:
                    break
                again.close()
                time.sleep(0.2)
            held.append(again)
            assert answered, "a connection within the cap again was not served"
        finally:
            for sock in held:
                sock.close()


# ---------------------------------------------------------------------------------------------
# 6. Feed readers that stop reading cost the API nothing, and are closed


def test_stalled_stream_readers_do_not_slow_the_api_and_are_closed():
    with running("--idle-timeout", str(IDLE_TIMEOUT), "--max-active-uploads", "1000000") as server:
        repos = [f"feed/app{i}" for i in range(4)]
        ecr = client(server)
        for repo in repos:
            ecr.create_repository(repositoryName=repo)
        made, lock, errors = [0], threading.Lock(), []
        target_count, budget_end = 10_000, time.monotonic() + 60

        def writer(i):
            raw = Raw(server, KEY_B, timeout=30)
            body = json.dumps({"repositoryName": repos[i % len(repos)]}).encode()
            try:
                while time.monotonic() < budget_end:
                    with lock:
                        if made[0] >= target_count:
                            return
                        made[0] += 1
                    status, _, answer = raw.post(TARGET + "InitiateLayerUpload", body)
                    if status != 200:
                        errors.append((status, answer))
                        return
            finally:
                raw.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == [], errors[:3]
        log_end = tail(server)
        assert log_end >= 5000, f"only {log_end} events in the log"

        ecr.describe_registries()
        baseline = []
        for _ in range(10):
            started = time.monotonic()
            ecr.describe_registries()
            baseline.append(time.monotonic() - started)

        path = "/events/stream?after=0"
        readers = []
        for _ in range(50):
            sock = connect(server, timeout=10, rcvbuf=4096)
            headers = sign("GET", server.endpoint + path)
            sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host_header(server)}\r\n" +
                          "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
            readers.append(sock)
        opened = time.monotonic()
        time.sleep(0.5)  # they are catching up, then stall on their full buffers
        during = []
        for _ in range(10):
            started = time.monotonic()
            ecr.describe_registries()
            during.append(time.monotonic() - started)
        measured = time.monotonic()
        assert measured - opened < IDLE_TIMEOUT, "the calls took so long that the readers may already be closed"
        limit = max(1.0, 5 * max(baseline))
        assert max(during) < limit, f"DescribeRegistries took up to {max(during):.3f}s with 50 stalled readers (baseline {max(baseline):.3f}s)"

        # Not one byte is read until the server has closed its end (seen in the kernel's table, where
        # its side of each connection leaves ESTABLISHED), so that no read counts as progress.
        ports = {sock.getsockname()[1] for sock in readers}
        deadline = opened + IDLE_TIMEOUT + 2 + 2 * SLACK
        # On a loaded machine the server may still be filling the readers' socket buffers (each
        # write the kernel takes is progress); the idle timeout runs from the last one. The buffers
        # are bounded (TCP_NOTSENT_LOWAT), so the queued bytes stop growing, and from then on each
        # reader must be closed within the same allowance.
        most_queued = -1
        while server_side_open(server, ports) and time.monotonic() < min(deadline, opened + 60):
            queued_now = server_side_open(server, ports, queued=True)
            if queued_now > most_queued:
                most_queued = queued_now
                deadline = max(deadline, time.monotonic() + IDLE_TIMEOUT + 2 + 2 * SLACK)
            time.sleep(0.1)
        still = server_side_open(server, ports)
        if still:  # for the message: how long they did stay, and what the server had queued for them
            queued = [server_side_open(server, ports, queued=True)]
            late_deadline = time.monotonic() + 60
            while server_side_open(server, ports) and time.monotonic() < late_deadline:
                time.sleep(0.25)
                queued.append(server_side_open(server, ports, queued=True))
            left = server_side_open(server, ports)
            ever = f"all were closed {time.monotonic() - opened:.0f}s after they opened" if not left else f"{len(left)} still open after {time.monotonic() - opened:.0f}s"
            most = max(queued)
            for sock in readers:
                sock.close()
            raise AssertionError(
                f"{len(still)} of 50 readers that never read were still open {deadline - opened:.0f}s after they opened (idle timeout "
                f"{IDLE_TIMEOUT}s); {ever}; meanwhile the server queued up to {most / MIB:.0f} MiB in their socket buffers "
                f"({queued[0] / MIB:.0f} MiB at {deadline - opened:.0f}s)")
        # ...and then each reads, without blocking, what was in flight, to the end of the stream
        heads = {sock: b"" for sock in readers}
        open_readers = set(readers)
        selector = selectors.DefaultSelector()
        for sock in readers:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        drain_deadline = time.monotonic() + 15
        try:
            while open_readers and time.monotonic() < drain_deadline:
                for key, _ in selector.select(timeout=0.1):
                    sock = key.fileobj
                    try:
                        chunk = sock.recv(1 << 20)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except (ConnectionResetError, ConnectionAbortedError):
                        chunk = b""
                    if chunk:
                        heads[sock] += chunk[:12 - len(heads[sock])]
                    else:
                        open_readers.discard(sock)
                        selector.unregister(sock)
        finally:
            selector.close()
            for sock in readers:
                sock.close()
        assert len(open_readers) == 0, f"{len(open_readers)} readers closed by the server never reached the end of their stream"
        assert all(h == b"HTTP/1.1 200" for h in heads.values()), set(heads.values())

        # a reader that reads still gets the log, from the start
        status, _, page = get(server, "/events?after=0&limit=5")
        assert status == 200 and [json.loads(line)["position"] for line in page.splitlines()] == [1, 2, 3, 4, 5]
        assert_honest(server)


# ---------------------------------------------------------------------------------------------
# 7. Flags out of range are usage errors, never crashes


@pytest.mark.parametrize("flags", [
    ["--upload-expiry", "9223372036854775807"],
    ["--sweep-interval", "9223372036854775807"],
    ["--port", "70000"],
    ["--idle-timeout", "0"],
    ["--header-timeout", "0"],
    ["--max-connections", "0"],
    ["--max-spooled-bytes", "1000", "--max-spooled-bytes-per-address", "1001"],
    ["--max-answer-bytes", "1000"],
    ["--max-answer-bytes-per-address", "1000"],
    ["--max-answer-bytes-per-address", str(600 << 20)],
])
def test_out_of_range_flags_are_refused_with_a_usage_message(flags):
    with tempfile.TemporaryDirectory() as data_dir:
        credentials = os.path.join(data_dir, "operator-credentials")
        with open(credentials, "w") as f:
            f.write("test test\n")
        port = [] if "--port" in flags else ["--port", "0"]
        process = subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", data_dir, *port,
                                    "--credentials", credentials, *flags],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=30)
            raise AssertionError(f"serve {' '.join(flags)} kept running: {out[:300]}")
        assert process.returncode > 0, f"serve {' '.join(flags)} ended with {process.returncode} (a signal when negative): {err[-500:]}"
        assert "usage" in err.lower() and flags[0] in err, err[-800:]
        assert "listening" not in out


@pytest.mark.parametrize("head", [
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
], ids=["connect", "upgrade"])
def test_what_follows_a_tunnel_or_an_upgrade_is_dropped_not_kept(head):
    """NIO's decoder parses nothing after a CONNECT (refused 501) or a request asking to upgrade
    (answered, and then the connection ends), and kept every byte that followed it: one anonymous
    connection sending 1.5 GB grew the server by 1.5 GB in 2 s, held until the drain's timeout.
    What follows the last request is now dropped before the decoder."""
    with running() as server:
        before = server.status("VmRSS")
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.settimeout(10)
        sock.sendall(head.encode())
        junk, sent = b"A" * (1 << 20), 0
        with contextlib.suppress(OSError):  # the server may end the connection first
            while sent < 400 << 20:
                sock.sendall(junk)
                sent += len(junk)
        grown = server.status("VmRSS") - before
        sock.close()
        assert sent >= 100 << 20, f"the server took only {sent >> 20} MiB before it ended the connection"
        assert grown < 64 * 1024, f"the server grew by {grown >> 10} MiB while it read {sent >> 20} MiB after the last request"


def test_a_connection_may_pipeline_a_hundred_requests_and_no_more():
    """Each request handed on waits, parsed, until the ones before it are answered: connections
    that sent 20,000 small GETs each without reading an answer held 0.7 to 2 MB each (100 of them,
    205 MB). Past 100 unanswered, the next request is refused 429 once they are answered, and the
    connection ends; what follows it is dropped."""
    with running("--allow-anonymous") as server:
        request = f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
        # A client that reads: a hundred answers, then the refusal, then the end.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request * 150)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
        assert statuses == [200] * 100 + [429], statuses[95:]
        # Clients that read nothing hold no more than their first hundred.
        before = server.status("VmRSS")
        socks = []
        try:
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                with contextlib.suppress(OSError):
                    sock.sendall(request * 20_000)
                socks.append(sock)
            time.sleep(1)
            grown = server.status("VmRSS") - before
        finally:
            for sock in socks:
                sock.close()
        assert grown < 40 * 1024, f"50 connections that read nothing grew the server by {grown >> 10} MiB"
