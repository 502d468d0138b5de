"""Feeds for other services: the log paged and followed live, the projections, metrics, retries."""
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import serving, signed_headers
from test_protocol import post


def get(server, path):
    """A signed GET, as another service holding an access key would send it."""
    url = server.endpoint + path
    return urllib.request.urlopen(urllib.request.Request(url, headers=signed_headers("GET", url)), timeout=30)


def get_json_lines(server, path):
    with get(server, path) as response:
        assert response.headers["Content-Type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.read().splitlines()]


class Follower:
    """Follows /events/stream?after=POS on its own connection, line by line."""

    def __init__(self, server, after, query=""):
        host = urllib.parse.urlparse(server.endpoint)
        self.connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        path = f"/events/stream?after={after}{query}"
        self.connection.request("GET", path, headers=signed_headers("GET", server.endpoint + path))
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.headers["Connection"] == "close", "nothing is answered on a stream's connection after it"
        self.heartbeats = 0

    def next(self):
        """The next event, skipping (and counting) the empty lines sent while the log is quiet."""
        while (line := self.response.readline()) == b"\n":
            self.heartbeats += 1
        return json.loads(line)

    def close(self):
        self.response.close()  # it owns the socket: the answer said the connection closes after it
        self.connection.close()


def tail(server):
    return server.events()[-1]["position"]


def test_a_consumer_that_disconnects_and_resumes_sees_every_event_exactly_once(server, ecr, repo):
    start = tail(server)
    seen = []
    follower = Follower(server, after=start)
    for _ in range(5):
        ecr.initiate_layer_upload(repositoryName=repo)
    for _ in range(3):
        seen.append(follower.next()["position"])
    follower.close()  # gone mid-stream, two events unread
    for _ in range(4):
        ecr.initiate_layer_upload(repositoryName=repo)  # and more happen while it is away
    follower = Follower(server, after=seen[-1])
    end = tail(server)
    while not seen or seen[-1] < end:
        seen.append(follower.next()["position"])
    follower.close()
    assert seen == list(range(start + 1, end + 1)), "gapless, in order, no duplicates"


def test_live_stream_delivers_an_event_as_it_commits(server, ecr, repo):
    follower = Follower(server, after=tail(server))
    answer = ecr.initiate_layer_upload(repositoryName=repo)
    event = follower.next()
    follower.close()
    assert event["type"] == "UploadInitiated" and event["data"]["uploadId"] == answer["uploadId"]


def test_a_quiet_stream_sends_empty_lines_then_the_next_event(server, ecr, repo):
    follower = Follower(server, after=tail(server), query="&heartbeat=1")
    time.sleep(3.5)  # the log is quiet: about three heartbeats
    answer = ecr.initiate_layer_upload(repositoryName=repo)
    event = follower.next()
    follower.close()
    assert event["data"]["uploadId"] == answer["uploadId"]
    assert 2 <= follower.heartbeats <= 5, follower.heartbeats
    for bad in ("3601", "-1", "x"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(server, f"/events/stream?after=0&heartbeat={bad}")
        assert refused.value.code == 400 and refused.value.headers["x-amzn-ErrorType"] == "InvalidParameterException"


def test_a_quiet_stream_whose_reader_is_gone_ends_within_seconds_whatever_its_heartbeat():
    """A client that goes does not cancel its request: a quiet stream with an hour's heartbeat
    read the log twice a second for that hour. It ends within a second or so of the connection's
    close (`upload_feed_streams_open`)."""
    def streams_open(server):
        with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as response:
            found = re.search(r"^upload_feed_streams_open (\S+)$", response.read().decode(), re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    with serving() as server:
        followers = [Follower(server, after=0, query="&heartbeat=3600") for _ in range(3)]
        deadline = time.monotonic() + 10
        while streams_open(server) != 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert streams_open(server) == 3
        for follower in followers[:2]:
            follower.close()
        deadline = time.monotonic() + 10
        while streams_open(server) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert streams_open(server) == 1, "the streams of the readers that went are gone; the other stays"
        followers[2].close()


def test_a_stream_from_past_the_logs_end_is_refused(server, ecr, repo):
    """A consumer that read events this log does not hold (it was restored, or failed over
    losing commits) is told so, rather than left waiting for positions other events will take."""
    ecr.initiate_layer_upload(repositoryName=repo)
    end = tail(server)
    for feed in ("/events", "/events/stream"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(server, f"{feed}?after={end + 5}")
        assert refused.value.code == 400 and refused.value.headers["x-amzn-ErrorType"] == "InvalidParameterException"
        assert f"past the log's last position {end}" in json.loads(refused.value.read())["message"]
    follower = Follower(server, after=end)  # from the end itself: waits for the next event
    answer = ecr.initiate_layer_upload(repositoryName=repo)
    assert follower.next()["data"]["uploadId"] == answer["uploadId"]
    follower.close()


def test_each_line_carries_its_leaf_and_a_cursor_whose_event_the_log_no_longer_holds_is_refused(server, ecr, repo):
    """A line's leafHash is its event's leaf in the transparency log. A consumer gives it back with
    its position: the page and the stream resume when the log still holds that event there, and
    are refused (as after a restore, or a failover that lost commits) when it holds another."""
    answer = ecr.initiate_layer_upload(repositoryName=repo)
    end = tail(server)
    line = get_json_lines(server, f"/events?after={end - 1}&limit=1")[0]
    assert line["position"] == end and line["data"]["uploadId"] == answer["uploadId"]
    proof = server.tool("upload-coordinator", "audit", "proof", "--upload-id", answer["uploadId"], "--data-dir", server.data_dir)
    assert proof.returncode == 0, proof.stderr
    assert json.loads(proof.stdout)["leafHash"] == line["leafHash"]
    # The CLI prints the feed's line, and takes the cursor back as the feeds do.
    def events(*args):
        return server.tool("upload-coordinator", "events", "--data-dir", server.data_dir, *args)
    printed = events("--after", str(end - 1))
    assert printed.returncode == 0 and [json.loads(l) for l in printed.stdout.splitlines()] == [line], printed.stdout + printed.stderr
    assert events("--after", str(end), "--leaf-hash", line["leafHash"]).returncode == 0
    gone = events("--after", str(end), "--leaf-hash", "0" * 64)
    assert gone.returncode != 0 and "no longer holds the event read there" in gone.stderr, gone.stderr

    assert get_json_lines(server, f"/events?after={end}&leafHash={line['leafHash']}") == []
    assert get_json_lines(server, f"/events?after={end - 1}&leafHash=") == [line], "an empty leafHash is none"
    follower = Follower(server, after=end, query=f"&leafHash={line['leafHash'].upper()}")
    later = ecr.initiate_layer_upload(repositoryName=repo)
    assert follower.next()["data"]["uploadId"] == later["uploadId"]
    follower.close()

    def refused(path):
        with pytest.raises(urllib.error.HTTPError) as error:
            get(server, path)
        assert error.value.code == 400 and error.value.headers["x-amzn-ErrorType"] == "InvalidParameterException"
        return json.loads(error.value.read())["message"]

    other = "0" * 64
    for feed in ("/events", "/events/stream"):
        assert "no longer holds the event read there" in refused(f"{feed}?after={end}&leafHash={other}")
        for bad in ("xyz", "ab" * 31, "ab" * 33, "g" * 64):
            assert "64 hexadecimal digits" in refused(f"{feed}?after={end}&leafHash={bad}")
        assert "none at position 0" in refused(f"{feed}?after=0&leafHash={line['leafHash']}")
        # A cursor given twice: a proxy or client that kept the other one would resume elsewhere.
        assert "given 2 times" in refused(f"{feed}?after={end - 1}&after={end}")
        assert "given 2 times" in refused(f"{feed}?after={end}&leafHash={line['leafHash']}&leafHash={other}")


def test_a_stream_left_open_does_not_block_shutdown():
    """A follower still connected, waiting for events that never come, neither holds serve past
    SIGTERM (`serving` requires exit 0) nor sees its stream cut: the stream ends with the chunked
    end, which `http.client` requires (a cut stream raises IncompleteRead)."""
    with serving() as server:
        # Heartbeats well inside its socket's 30 s timeout, so that it is still reading at shutdown.
        follower = Follower(server, after=0, query="&heartbeat=5")
        outcome = {}

        def read_to_the_end():
            try:
                outcome["rest"] = follower.response.read()
            except Exception as error:  # noqa: BLE001 - reported by the test below
                outcome["error"] = error
        reader = threading.Thread(target=read_to_the_end, daemon=True)
        reader.start()
        time.sleep(0.5)  # connected and waiting; nothing below depends on more than that
    reader.join(timeout=30)
    assert not reader.is_alive(), "the stream did not end when serve stopped"
    assert "error" not in outcome, f"the stream was cut, not ended: {outcome.get('error')!r}"
    assert outcome["rest"].strip(b"\n") == b"", outcome["rest"][:200]


def test_a_stream_whose_reader_is_behind_at_shutdown_still_ends_whole(tmp_path):
    """On shutdown a stream stops after the slice it is writing, and its end is sent once the
    reader has taken what came before: a reader that was behind (a full socket) got its
    connection closed with that slice still queued, cut mid-line, without the chunked end."""
    import base64
    import signal
    import socket
    from conftest import Server
    from test_catalog_and_tags import client
    server = Server(str(tmp_path))
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="feeds/behind")
        for i in range(40):  # about 2 MB of events, far more than the sockets hold
            text = f"{i} " + base64.b64encode(os.urandom(18_000)).decode()
            ecr.put_repository_catalog_data(repositoryName="feeds/behind", catalogData={"aboutText": text, "usageText": text})
        path = "/events/stream?after=0&heartbeat=0"
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", server.port))
        headers = {"Host": f"127.0.0.1:{server.port}", **signed_headers("GET", server.endpoint + path)}
        reader.sendall((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += reader.recv(4096)
        time.sleep(1.5)  # the server writes until the sockets are full, and waits
        server.process.send_signal(signal.SIGINT)
        reader.settimeout(30)
        while chunk := reader.recv(4096):  # still behind: what the server queued waits for it
            received += chunk
            time.sleep(0.005)
        reader.close()
    finally:
        assert server.stop() == 0
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body.endswith(b"\r\n0\r\n\r\n"), (head[:100], body[-200:])
    text, at = b"", 0
    while (size := int(body[at:body.index(b"\r\n", at)], 16)) > 0:
        start = body.index(b"\r\n", at) + 2
        text += body[start:start + size]
        at = start + size + 2
    assert text.endswith(b"\n"), "no line cut"
    positions = [json.loads(line)["position"] for line in text.splitlines() if line]
    assert positions == list(range(1, len(positions) + 1)) and len(positions) >= 2, positions[-3:]


def test_events_page_and_projection_endpoints(server, ecr, repo):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    page = get_json_lines(server, "/events?after=0&limit=2")
    assert [e["position"] for e in page] == [1, 2]
    # The log's last position as the page began: a page ending below it was cut short.
    with get(server, "/events?after=0&limit=1") as r:
        tail = int(r.headers["Log-Last-Position"])
        assert [json.loads(line)["position"] for line in r.read().splitlines()] == [1] and tail >= 2
    with get(server, f"/events?after={tail - 1}&limit=10") as r:
        last = int(r.headers["Log-Last-Position"])
        positions = [json.loads(line)["position"] for line in r.read().splitlines()]
        # A page reads on past its first slice: it may also take what was written after the header.
        assert last >= tail and positions == list(range(tail, tail + len(positions))) and positions[-1] >= last, (last, positions)
    with get(server, f"/projections/sessions/{upload_id}") as r:
        body = json.loads(r.read())
    assert body["session"]["state"] == "active" and body["session"]["repositoryName"] == repo
    assert body["position"] >= 1
    with get(server, f"/projections/repositories/000000000000/{repo}") as r:
        body = json.loads(r.read())
    assert body["repository"]["uploadsInitiated"] >= 1
    # Percent-encoded as a client may send them: the name quoted as one segment, any byte escaped.
    for path in (f"/projections/repositories/000000000000/{urllib.parse.quote(repo, safe='')}",
                 f"/projections/repositories/%30%30%30000000000/%{ord(repo[0]):02X}{repo[1:]}",
                 f"/projections/sessions/{upload_id.replace('-', '%2D')}"):
        with get(server, path) as r:
            assert r.status == 200, path
    try:
        get(server, f"/projections/repositories/000000000000/{repo}%zz")
        assert False, "expected 400"
    except urllib.error.HTTPError as e:
        assert e.code == 400 and b"not percent-encoded UTF-8" in e.read()
    try:
        get(server, "/projections/sessions/00000000-0000-4000-8000-000000000000")
        assert False, "expected 404"
    except urllib.error.HTTPError as e:
        assert e.code == 404


@pytest.mark.one_process
def test_metrics_in_prometheus_format(server, ecr, repo):
    def initiations_counted(text):
        series = 'upload_coordinator_requests_total{operation="InitiateLayerUpload",outcome="ok"}'
        return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(series)))

    def scrape():
        with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:  # unsigned: open to scrapers
            return r.read().decode()

    before = initiations_counted(scrape())
    ecr.initiate_layer_upload(repositoryName=repo)
    text = scrape()
    for name in ["upload_coordinator_requests_total", "upload_store_commit_seconds_bucket", "upload_store_batch_commands_bucket",
                 "upload_store_log_position", "upload_store_checkpoint_lag", "upload_store_active_sessions",
                 "upload_store_map_used_bytes", "upload_store_readers", "upload_store_projections_map_used_bytes",
                 "upload_feed_streams_open", "upload_coordinator_disk_free_bytes", "upload_coordinator_disk_total_bytes", "upload_coordinator_disk_reserved_bytes"]:
        assert name in text, name
    free, total = (next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"upload_coordinator_disk_{kind}_bytes"))
                   for kind in ("free", "total"))
    assert 0 < free <= total, (free, total)
    used = [line.split()[-1] for line in text.splitlines() if line.startswith("upload_store_projections_map_used_bytes")]
    assert used and float(used[0]) > 0, used
    assert initiations_counted(text) == before + 1, "the initiation was counted (the module's server is its own: no other client)"


def metric_families(text):
    """{name: {"TYPE": …, "HELP": …}} of each `# TYPE` and `# HELP` line."""
    families = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("# ") and len(parts) >= 4 and parts[1] in ("TYPE", "HELP"):
            families.setdefault(parts[2], {})[parts[1]] = parts[3]
    return families


def test_metrics_say_what_each_is_count_from_zero_and_time_requests():
    """What a scraper and an alert need: every family has its `# HELP`; each operation's and
    endpoint's count exists at 0 before its first request (a rate, or an alert on an absence, has
    a series to read); requests are timed, by operation and by endpoint."""
    with serving() as server:
        def scrape():
            with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:
                return r.read().decode()
        text = scrape()
        for operation in ("InitiateLayerUpload", "CompleteLayerUpload", "PutImage", "DescribeImages"):
            assert f'upload_coordinator_requests_total{{operation="{operation}",outcome="ok"}} 0' in text, operation
        for endpoint in ("ping", "token", "start_upload", "upload", "blob", "manifest", "tags", "referrers"):
            assert f'upload_coordinator_registry_requests_total{{endpoint="{endpoint}",outcome="ok"}} 0' in text, endpoint
        assert "upload_pages_audit_streams_open 0" in text and "upload_feed_streams_open 0" in text

        post(server, "SpencerFrontendService.DescribeRepositories", b"{}")
        with urllib.request.urlopen(server.endpoint + "/token", timeout=30) as r:
            assert r.status == 200
        text = scrape()
        assert re.search(r'upload_coordinator_request_seconds_count\{operation="DescribeRepositories"\} 1\b', text), text
        assert re.search(r'upload_coordinator_registry_request_seconds_count\{endpoint="token"\} 1\b', text), text
        families = metric_families(text)
        assert {name for name, family in families.items() if family.get("TYPE")} >= {
            "upload_coordinator_requests_total", "upload_coordinator_request_seconds", "upload_coordinator_registry_request_seconds",
            "upload_store_commit_seconds", "upload_store_log_position", "upload_coordinator_disk_free_bytes"}, sorted(families)
        undescribed = sorted(name for name, family in families.items() if not family.get("HELP"))
        assert not undescribed, undescribed


def test_a_retried_call_is_answered_with_the_original_result(server, ecr, repo):
    body = json.dumps({"repositoryName": repo}).encode()
    headers = {"amz-sdk-invocation-id": "6b9ad4a0-1f7e-4c39-9f6e-6f7b1c1d2e3f"}
    _, _, first = post(server, "SpencerFrontendService.InitiateLayerUpload", body, headers)
    _, _, again = post(server, "SpencerFrontendService.InitiateLayerUpload", body, headers)
    assert again["uploadId"] == first["uploadId"]
    recorded = [e for e in server.events() if e["metadata"].get("invocationId") == headers["amz-sdk-invocation-id"]]
    assert len(recorded) == 1, "no orphaned second session"


def unread_answer(server, path, source="127.0.0.2"):
    """A signed GET of `path` from `source` that reads no more than its answer's head (and a
    refusal's body): (status, the refusal's body, the socket left open when the answer is 200)."""
    import socket
    host, port = server.endpoint.split("//")[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    headers = signed_headers("GET", f"http://{host}:{port}{path}")
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
    sock.settimeout(30)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    status = int(head.split()[1])
    if status == 200:
        time.sleep(0.2)  # its answer queued as far as the connection takes it
        return status, b"", sock
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < 20 and (more := sock.recv(4096)):
        body += more
    sock.close()
    return status, body, None


def held_by_unread_answers(server, path, count, share):
    """`count` unread answers of `path` from one address, within `share` of answer bytes: the
    statuses, and the first refusal's body; what they held is given back once they go."""
    from test_registry_api import answer_bytes_held
    answers = []
    try:
        for _ in range(count):  # one by one: a failure part way still closes those opened
            answers.append(unread_answer(server, path))
        held = answer_bytes_held(server)
    finally:
        for _, _, sock in answers:
            if sock:
                sock.close()
    assert held <= share + (12 << 20), "no more than the share, and what is already queued"
    deadline = time.monotonic() + 20
    while answer_bytes_held(server) > 1 << 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer_bytes_held(server) < 1 << 20, "answers whose readers went are no longer held"
    statuses = [status for status, _, _ in answers]
    return statuses, next((body for status, body, _ in answers if status != 200), b"")


# A manifest whose U+0085s are two bytes each in the log's record and six (\u0085) in a feed's line.
ESCAPED_THREEFOLD = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [],
                                "annotations": {"pad": "\u0085" * 2_000_000}}, ensure_ascii=False)


def test_feed_slices_held_for_streams_that_do_not_read_are_counted_in_the_answer_budget():
    """A feed's slice holds about 1 MiB of records and one more, and an event's manifest of 4 MiB,
    escaped, is up to 24 MiB of line (12 MiB here), held while a slow reader takes it. Slices were counted only
    as their pieces were queued, so streams that did not read held about 16 MiB each outside
    --max-answer-bytes (40 of them held 690 MiB). Each slice is now held as an answer: past its
    address's share a stream is refused ThrottlingException before it starts, and what a stream
    that goes held is given back."""
    import boto3
    share = 32 << 20
    with serving("--max-answer-bytes", str(share), "--max-answer-bytes-per-address", str(share)) as server:
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        ecr.create_repository(repositoryName="feeds/held")
        before = tail(server)
        ecr.put_image(repositoryName="feeds/held", imageManifest=ESCAPED_THREEFOLD, imageTag="big")
        statuses, refused = held_by_unread_answers(server, f"/events/stream?after={before}", 6, share)
        assert statuses[:2] == [200, 200] and 400 in statuses, statuses  # 12 MB a line: two fit in 32 MiB
        assert b"ThrottlingException" in refused, refused[:300]
