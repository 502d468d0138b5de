"""Several `serve` nodes on one PostgreSQL database and one shared data folder, as a deployment
past one machine runs them: flows hop between nodes, a feed on one node delivers every node's
events, a retry is answered by whichever node gets it, a node SIGKILLed under load loses nothing
it acknowledged while the others keep serving, and PostgreSQL restarting gives errors, never
wrong answers, after which the nodes reconnect by themselves."""
import contextlib
import datetime
import json
import os
import shutil
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from conftest import BIN, ROOT, anonymous_pull, database
from test_attacks import TARGET, Served, post, upload
from test_crash import Ledger, check, client, work
from test_feeds import Follower, get_json_lines
from test_layer_flow import manifest, sha


@contextlib.contextmanager
def nodes(count, *flags, wrappers=()):
    """`count` serve nodes on one new database and one data folder, started in turn (the i-th
    run by the command `wrappers[i]`, when given); each must exit 0 on SIGTERM (unless the test
    killed it), and the store must replay cleanly afterwards."""
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        servers = [Served(data_dir, *flags, database_url=url, wrapper=wrappers[i] if i < len(wrappers) else ()) for i in range(count)]
        try:
            yield servers
        finally:
            statuses = [server.stop() for server in servers if server.process.poll() is None]
        assert all(status == 0 for status in statuses), statuses
        replay = servers[0].tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr


@pytest.fixture
def postgres_of_its_own(monkeypatch):
    """A PostgreSQL server for this test alone (Tools/postgres), for the tests that freeze, stop or
    restart theirs: the run's own server stays up for the tests another worker runs meanwhile.
    - Returns: its folder (`Tools/postgres restart` takes it); `database()` makes databases on it."""
    folder = tempfile.mkdtemp(prefix="uc-postgres.", dir="/tmp")  # the postgres user must reach it, whatever TMPDIR says
    started = subprocess.run([str(ROOT / "Tools" / "postgres"), "start", folder], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    monkeypatch.setenv("UPLOAD_COORDINATOR_TEST_DATABASE_URL", started.stdout.strip())
    try:
        yield folder
    finally:
        subprocess.run([str(ROOT / "Tools" / "postgres"), "stop", folder], capture_output=True, timeout=300)


def aws(server, *args):
    """The real awscli, against one node."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run(["aws", "ecr-public", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_a_push_hops_across_three_nodes_and_every_node_reads_it():
    with nodes(3) as (a, b, c):
        aws(a, "create-repository", "--repository-name", "hop/app")
        layer, config = os.urandom(3 * 1024 * 1024), b'{"architecture":"amd64","os":"linux"}'
        for data in (layer, config):
            upload_id = client(b.endpoint).initiate_layer_upload(repositoryName="hop/app")["uploadId"]
            client(c.endpoint).upload_layer_part(repositoryName="hop/app", uploadId=upload_id, partFirstByte=0,
                                                 partLastByte=len(data) - 1, layerPartBlob=data)
            done = aws(a, "complete-layer-upload", "--repository-name", "hop/app", "--upload-id", upload_id,
                       "--layer-digests", sha(data))
            assert done["layerDigest"] == sha(data)
        body = manifest((sha(config), len(config)), [(sha(layer), len(layer))])
        image = client(b.endpoint).put_image(repositoryName="hop/app", imageManifest=body, imageTag="v1")["image"]
        assert image["imageId"]["imageDigest"] == sha(body.encode())
        for node in (a, b, c):
            details = client(node.endpoint).describe_images(repositoryName="hop/app")["imageDetails"]
            assert [d["imageTags"] for d in details] == [["v1"]]
            checked = client(node.endpoint).batch_check_layer_availability(repositoryName="hop/app", layerDigests=[sha(layer)])
            assert checked["layers"][0]["layerAvailability"] == "AVAILABLE"
        log = a.events()
        assert [e["position"] for e in log] == list(range(1, len(log) + 1))
        # Every node serves the one log, through its own feed.
        for node in (a, b, c):
            assert [e["position"] for e in get_json_lines(node, "/events?after=0")] == [e["position"] for e in log]


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_a_node_whose_clock_runs_two_days_ahead_keeps_the_databases_time():
    """Every node decides and records at the database's clock, checks signatures and tokens at it,
    and judges the shared folder's files by the file system's. A node whose own clock ran two days
    ahead, leading the sweeper, expired every upload the other nodes held (idle two days by its
    clock), recorded times all later decisions then followed, refused every signed call and every
    registry token the others handed out, and cut back bytes staged a moment before."""
    if not os.path.exists(LIBFAKETIME):
        pytest.fail("libfaketime is not installed (Tools/ensure-dependencies --tests installs it)")
    # Its wall clock only. `timeout` runs serve from a process under the same preload, and passes
    # SIGTERM on; `faketime` does not, and serve exec'd straight from a process without the preload
    # is given no arguments. Under it a task's sleep never ends, so the node ahead sweeps once, as
    # it starts: it starts after the upload, and after the node that started it stopped, so that it
    # takes the sweeper's lead.
    ahead = ("env", f"LD_PRELOAD={LIBFAKETIME}", "FAKETIME=+2d", "FAKETIME_DONT_FAKE_MONOTONIC=1", "timeout", "1h")
    flags = ("--sweep-interval", "1", "--upload-expiry", "3600")
    # The node ahead expires after 20 s idle by the database's clock: an upload idle that long is
    # its proof that it swept, and one idle a second is what it must leave (two days by its clock).
    ahead_flags = ("--sweep-interval", "1", "--upload-expiry", "20")
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        first = Served(data_dir, *flags, database_url=url)
        try:
            aws(first, "create-repository", "--repository-name", "clock/app")
            stale_id = client(first.endpoint).initiate_layer_upload(repositoryName="clock/app")["uploadId"]
            time.sleep(22)
            upload_id = client(first.endpoint).initiate_layer_upload(repositoryName="clock/app")["uploadId"]
            cut_id = client(first.endpoint).initiate_layer_upload(repositoryName="clock/app")["uploadId"]
        finally:
            status = first.stop()
        assert status == 0
        # Bytes staged past what the log records, as by a part whose commit's answer was lost: a
        # node starting on PostgreSQL leaves them a while (the commit may still land), by the file
        # system's clock, not its own (by which they were written two days ago). The same bytes
        # two hours old by the file system's clock are cut back: the proof that it tidied.
        staged, old = (os.path.join(data_dir, "staging", name) for name in (upload_id, cut_id))
        for path in (staged, old):
            with open(path, "wb") as f:
                f.write(b"x" * 100)
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        skewed = Served(data_dir, *ahead_flags, database_url=url, wrapper=ahead)
        node = None
        try:
            deadline = time.monotonic() + 30  # its one sweep, and its first tidying of staging
            while os.path.getsize(old) != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert os.path.getsize(old) == 0, "the node ahead tidied staging, by the file system's clock"
            assert os.path.getsize(staged) == 100
            node = Served(data_dir, *flags, database_url=url)
            data = os.urandom(1024)
            # A signed call to the node ahead is on time.
            client(skewed.endpoint).upload_layer_part(repositoryName="clock/app", uploadId=upload_id, partFirstByte=0,
                                                      partLastByte=len(data) - 1, layerPartBlob=data)
            # A password one node hands out, and a token the other gives for it, hold on both.
            authorization = client(skewed.endpoint).get_authorization_token()["authorizationData"]["authorizationToken"]
            scope = {"scope": "repository:clock/app:pull,push", "service": "upload-coordinator"}
            token = requests.get(f"{node.endpoint}/token", params=scope, headers={"Authorization": f"Basic {authorization}"}, timeout=10)
            assert token.status_code == 200, token.text
            pushed = requests.post(f"{skewed.endpoint}/v2/clock/app/blobs/uploads/?digest={sha(data)}", data=data, timeout=10,
                                   headers={"Authorization": f"Bearer {token.json()['token']}"})
            assert pushed.status_code == 201, pushed.text
            log = node.events()
            expired = [e["data"]["uploadId"] for e in log if e["type"] == "UploadExpired"]
            assert expired == [stale_id], ("only the upload idle past 20 s by the database's clock expired", expired)
            assert any(e["type"] == "LayerPartUploaded" and e["data"]["uploadId"] == upload_id for e in log), log
            assert len(log) > 6, log
            now = time.time()
            for event in log:
                recorded = datetime.datetime.fromisoformat(event["recordedAt"].replace("Z", "+00:00")).timestamp()
                assert abs(recorded - now) < 600, event
            assert any("clock is off the database's" in line for line in skewed.stderr_lines), skewed.last_lines()
        finally:
            statuses = []
            for server in (skewed, node):
                with contextlib.suppress(subprocess.TimeoutExpired):  # stop() has killed it then
                    statuses.append(server and server.stop())
        assert statuses == [0, 0]
        replay = node.tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_feed_on_one_node_delivers_another_nodes_events_as_they_commit():
    with nodes(2) as (a, b):
        ecr = client(a.endpoint)  # made before the clock starts: a boto3 client takes a while to build
        follower = Follower(b, 0)
        try:
            started = time.monotonic()
            ecr.create_repository(repositoryName="feed/app")
            event = follower.next()
            assert event["type"] == "RepositoryCreated" and event["data"]["repositoryName"] == "feed/app"
            # Under the feed's own fallback (it reads the log again each second): woken by NOTIFY.
            assert time.monotonic() - started < 0.8
        finally:
            follower.close()


def test_one_node_says_it_sweeps_idle_uploads_and_the_other_that_another_does():
    """The sweeper's leader's --upload-expiry is the one in force: a node given another one never
    said that its setting was not used. Each says which it is."""
    with nodes(2) as (a, b):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ("this node sweeps idle uploads" in a.stderr_text() and "another node does" in b.stderr_text()):
            time.sleep(0.2)
        assert "this node sweeps idle uploads" in a.stderr_text() and "expiry.idle_seconds=86400" in a.stderr_text(), a.stderr_text()
        assert "this node does not sweep idle uploads now: another node does" in b.stderr_text() and "this node sweeps" not in b.stderr_text(), b.stderr_text()


def test_a_frozen_leader_loses_the_sweep_to_another_node_and_learns_it_when_it_thaws():
    """A leader frozen (SIGSTOP: its kernel keeps the connection open, so no keepalive notices)
    held the sweep's lock for as long as it stood still, and no node expired anything. Its
    connection, touched every 5 s while the process runs, is ended once idle for 30 s: another
    node sweeps, and the thawed one says it no longer does."""
    with nodes(2, "--sweep-interval", "1", "--upload-expiry", "3") as (a, b):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "this node sweeps idle uploads" not in a.stderr_text():
            time.sleep(0.2)
        assert "this node sweeps idle uploads" in a.stderr_text(), a.stderr_text()
        a.process.send_signal(signal.SIGSTOP)
        try:
            ecr = client(b.endpoint)
            ecr.create_repository(repositoryName="frozen/lead")
            upload = ecr.initiate_layer_upload(repositoryName="frozen/lead")["uploadId"]
            frozen = time.monotonic()
            while time.monotonic() - frozen < 60 and not [
                    e for e in b.events() if e["type"] == "UploadExpired" and e["data"]["uploadId"] == upload]:
                time.sleep(1)
            took = time.monotonic() - frozen
            assert "this node sweeps idle uploads" in b.stderr_text() and took < 60, (took, b.stderr_text()[-2000:])
        finally:
            a.process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "does not sweep idle uploads now" not in a.stderr_text():
            time.sleep(0.2)
        assert "this node does not sweep idle uploads now" in a.stderr_text().split("this node sweeps idle uploads", 1)[1], a.stderr_text()[-2000:]


def test_a_frozen_nodes_listener_is_ended_by_the_server_and_comes_back_when_it_thaws():
    """A frozen node (SIGSTOP) never reads the notifications the server sends its listening
    connection, which holds the server's queue of them at its place: once the queue (8 GB) fills,
    every node's commit fails. The connection is touched every second while the node runs; frozen,
    the server ends it once idle for 30 s (`idle_session_timeout`), and the thawed node listens
    again on a new one."""
    listening = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle' "
                 "AND query = 'SELECT position FROM events ORDER BY position DESC LIMIT 1'")
    with nodes(1) as (node,):
        listeners = lambda: subprocess.run(["psql", node.database_url, "-Atc", listening], capture_output=True, text=True,
                                           check=True, timeout=60).stdout.split()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(listeners()) != 1:
            time.sleep(0.5)
        [frozen_listener] = listeners()
        node.process.send_signal(signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            while time.monotonic() - frozen_at < 60 and frozen_listener in listeners():
                time.sleep(1)
            assert frozen_listener not in listeners(), "the server still holds the frozen node's listener after 60 s"
        finally:
            node.process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(listeners()) != 1:
            time.sleep(0.5)
        assert len(listeners()) == 1 and "lost the connection that listens for commits" in node.stderr_text(), node.stderr_text()[-2000:]


def test_a_retry_sent_to_another_node_gets_the_original_answer():
    with nodes(2) as (a, b):
        status, _, _ = post(a, TARGET + "CreateRepository", json.dumps({"repositoryName": "retry/app"}).encode())
        assert status == 200
        invocation = {"amz-sdk-invocation-id": "0b6f3c1e-2a4d-4f8b-9e7c-5d1a2b3c4d5e"}
        body = json.dumps({"repositoryName": "retry/app"}).encode()
        status, _, first = post(a, TARGET + "InitiateLayerUpload", body, invocation)
        assert status == 200, first
        status, _, again = post(b, TARGET + "InitiateLayerUpload", body, invocation)
        assert status == 200 and again == first, (again, first)
        assert [e["data"]["uploadId"] for e in b.events() if e["type"] == "UploadInitiated"] == [first["uploadId"]]
        # A call that changed nothing (CallAnswered), retried on the other node after the tag it
        # named was pushed there: answered as it was, and the tag stays.
        delete = json.dumps({"repositoryName": "retry/app", "imageIds": [{"imageTag": "v1"}]}).encode()
        deleting = {"amz-sdk-invocation-id": "0b6f3c1e-2a4d-4f8b-9e7c-delete"}
        status, _, refused = post(a, TARGET + "BatchDeleteImage", delete, deleting)
        assert status == 200 and [f["failureCode"] for f in refused["failures"]] == ["ImageNotFound"], refused
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
        status, _, _ = post(b, TARGET + "PutImage", json.dumps({"repositoryName": "retry/app", "imageManifest": index, "imageTag": "v1"}).encode())
        assert status == 200
        status, _, refused_again = post(b, TARGET + "BatchDeleteImage", delete, deleting)
        assert status == 200 and refused_again == refused, (refused_again, refused)
        status, _, images = post(a, TARGET + "DescribeImages", json.dumps({"repositoryName": "retry/app"}).encode())
        assert [d.get("imageTags") for d in images["imageDetails"]] == [["v1"]], images


def test_a_nodes_writer_keeps_a_bounded_share_of_the_manifests_it_stores():
    """An image's record holds its manifest (up to 4 MiB), and a node's writer keeps the records its
    decisions read and wrote across batches: it kept every pushed one, 300 MiB of memory after 300
    pushes of 1 MiB manifests. Its cache is bounded by bytes (64 MiB) as well as by count, so past
    its first fill the node's memory levels off (measured from there: what the allocator keeps of
    the first fill is not growth)."""
    with nodes(1) as (node,):
        ecr = client(node.endpoint)
        ecr.create_repository(repositoryName="cache/app")
        config = b'{"os":"linux"}'
        digest = upload(ecr, "cache/app", config)

        def push(i):
            ecr.put_image(repositoryName="cache/app", imageTag=f"t{i}", imageManifest=json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(config)},
                "layers": [], "annotations": {"i": str(i), "pad": "x" * 1_000_000}}))
        def median_memory(pushes):
            """The median of five samples over `pushes`: one sample swings by tens of MiB with
            whichever thread's allocator arena last grew or gave back."""
            samples = []
            for n, i in enumerate(pushes):
                push(i)
                if n % 4 == 3:
                    samples.append(node.status("RssAnon"))
            return statistics.median(samples)
        for i in range(80):  # the cache first fills at about 67
            push(i)
        filled = median_memory(range(80, 100))
        for i in range(100, 220):
            push(i)
        grown = (median_memory(range(220, 240)) - filled) / 1024
        assert grown < 60, f"the node's anonymous memory grew by {grown:.0f} MiB over 140 pushes of 1 MB manifests"


def test_a_node_killed_under_load_loses_nothing_it_acknowledged_and_the_other_keeps_serving():
    with nodes(2) as (a, b):
        client(a.endpoint).create_repository(repositoryName="crash/app")
        ledger, stop, rng = Ledger(), threading.Event(), random.Random(20261201)
        workers = [threading.Thread(target=work, args=(node.endpoint, ledger, stop, rng.random())) for node in (a, a, b, b)]
        for worker in workers:
            worker.start()
        time.sleep(1.5)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=30)
        time.sleep(1.5)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        assert client(b.endpoint).initiate_layer_upload(repositoryName="crash/app")["uploadId"]
        check(b.data_dir, ledger, b.database_url)
        ledger.assert_progress(20)


def test_a_database_that_stops_answering_costs_requests_the_answer_limit_not_for_ever(postgres_of_its_own):
    """The server's processes of this node's connections, and the server's own, frozen (SIGSTOP:
    the connections stay open, so no keepalive notices, and a new one is never answered): every
    request is answered within a few answer limits, as ServerException, never left waiting; once
    they thaw, all is as before and the log replays (`nodes`)."""
    folder = postgres_of_its_own
    limit = 2
    with nodes(1, "--database-answer-limit", str(limit)) as (node,):
        # One attempt each (an SDK's retry would meet a new connection), and time enough to answer.
        ecr = boto3.client("ecr-public", endpoint_url=node.endpoint, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}, read_timeout=120))
        ecr.create_repository(repositoryName="frozen/app")
        ecr.initiate_layer_upload(repositoryName="frozen/app")
        ecr.describe_repositories(repositoryNames=["frozen/app"])  # a pooled reader connection too
        url = node.database_url
        pids = subprocess.run(["psql", url, "-Atc", "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                               "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"],
                              capture_output=True, text=True, check=True, timeout=60).stdout.split()
        assert len(pids) >= 3, pids  # the writer's, a reader's, the listener's (and the leader's)
        with open(os.path.join(folder, "data", "postmaster.pid")) as f:
            pids.append(f.readline().strip())  # so that no new connection is answered either
        answers, frozen_at = [], time.monotonic()
        try:
            for pid in pids:
                os.kill(int(pid), signal.SIGSTOP)
            for call in (lambda: ecr.describe_repositories(repositoryNames=["frozen/app"]),
                         lambda: ecr.initiate_layer_upload(repositoryName="frozen/app")):
                started = time.monotonic()
                try:
                    call()
                    answers.append(("answered", time.monotonic() - started))
                except ClientError as error:
                    answers.append((error.response["Error"]["Code"], time.monotonic() - started))
            # /metrics still serves the counters, which show the incident, and says the store's
            # figures could not be read.
            metrics = requests.get(f"{node.endpoint}/metrics", timeout=60)
            assert metrics.status_code == 200, metrics.text
            assert "upload_store_statistics_up 0.0" in metrics.text, metrics.text
            assert 'upload_coordinator_requests_total{operation="DescribeRepositories",outcome="ServerException"} 1' in metrics.text, metrics.text
        finally:
            for pid in pids:  # every one, whatever failed: a stopped server stops every later test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGCONT)
        assert [code for code, _ in answers] == ["ServerException", "ServerException"], answers
        # A cut at the limit (the read), or a cut and a new connection given up after libpq's
        # connect_timeout of 5 s, not tried again (the write's idle connection, then a new one).
        assert all(seconds < 3 * limit + 5 + 4 for _, seconds in answers), answers
        assert time.monotonic() - frozen_at < 60
        # Thawed: the node serves as before, on connections of its own making.
        upload_id = ecr.initiate_layer_upload(repositoryName="frozen/app")["uploadId"]
        assert upload_id in [e["data"]["uploadId"] for e in node.events() if e["type"] == "UploadInitiated"]
        assert "upload_store_statistics_up 1.0" in requests.get(f"{node.endpoint}/metrics", timeout=60).text


def nodes_that_write_again(servers, repository, within=30):
    """How many of `servers` initiate an upload in `repository` within `within` seconds, each
    tried until it does: the nodes' recovery from a fault, without a restart."""
    deadline, written = time.monotonic() + within, set()
    while time.monotonic() < deadline and len(written) < len(servers):
        for node in servers:
            if node.port in written:
                continue
            try:
                client(node.endpoint).initiate_layer_upload(repositoryName=repository)
                written.add(node.port)
            except ClientError:
                time.sleep(0.2)
    return len(written)


def test_postgres_restarting_gives_errors_never_wrong_answers_and_the_nodes_reconnect(postgres_of_its_own):
    folder = postgres_of_its_own
    with nodes(2) as (a, b):
        client(a.endpoint).create_repository(repositoryName="restart/app")
        answered, refused, stop = [], [], threading.Event()

        def load(node):
            ecr = client(node.endpoint)
            while not stop.is_set():
                try:
                    answered.append(ecr.initiate_layer_upload(repositoryName="restart/app")["uploadId"])
                except ClientError as error:
                    refused.append((error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]))
                    time.sleep(0.05)
                except (EndpointConnectionError, ReadTimeoutError) as error:
                    refused.append((type(error).__name__, 0))

        workers = [threading.Thread(target=load, args=(node,)) for node in (a, b)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        subprocess.run([str(ROOT / "Tools" / "postgres"), "restart", folder, "2"], check=True, timeout=120)
        # Back up: both nodes serve again without being restarted.
        recovered = nodes_that_write_again((a, b), "restart/app")
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        assert recovered == 2, "both nodes reconnected by themselves"
        assert refused, "the restart was seen by the load"
        assert {code for code, _ in refused} <= {"ServerException", "ThrottlingException"}, set(refused)
        assert all(status in (500, 400) for _, status in refused), set(refused)
        # Every answered upload is in the log, once.
        initiated = [e["data"]["uploadId"] for e in a.events() if e["type"] == "UploadInitiated"]
        assert len(initiated) == len(set(initiated)) and set(answered) <= set(initiated)


def test_the_registry_answers_503_with_retry_after_while_postgres_restarts(postgres_of_its_own):
    """A read of the registry while the database could not be reached answered 500 `UNKNOWN`, which
    says the server failed; distribution's 503 `UNAVAILABLE` with `Retry-After` tells a client the
    fault passes. (The AWS API's `ServerException` is retried by SDKs whatever its cause.)"""
    folder = postgres_of_its_own
    with nodes(1) as (node,):
        client(node.endpoint).create_repository(repositoryName="outage/app")
        url = f"{node.endpoint}/v2/outage/app/tags/list"
        pull = anonymous_pull(node.endpoint, "outage/app")  # checked without the database: the outage is what answers
        assert requests.get(url, headers=pull, timeout=30).status_code == 200
        restart = subprocess.Popen([str(ROOT / "Tools" / "postgres"), "restart", folder, "4"])
        refused = []
        try:
            while restart.poll() is None:
                answer = requests.get(url, headers=pull, timeout=30)
                if answer.status_code != 200:
                    refused.append((answer.status_code, answer.headers.get("Retry-After"), answer.json()["errors"][0]["code"]))
                time.sleep(0.05)
        finally:
            assert restart.wait(timeout=120) == 0
        assert refused, "the restart was seen"
        assert set(refused) == {(503, "1", "UNAVAILABLE")}, set(refused)
        assert nodes_that_write_again((node,), "outage/app") == 1


def test_a_database_made_read_only_then_writable_again_is_written_without_a_restart():
    """A session takes `default_transaction_read_only` as it starts (a standby's is read-only for
    good): the writer kept its read-only session once the setting was put back, and refused every
    write until the node restarted. Now it gives such a session up, and the next one writes."""
    server = os.environ["UPLOAD_COORDINATOR_TEST_DATABASE_URL"]

    def psql(sql):
        subprocess.run(["psql", server, "-qc", sql], check=True, capture_output=True, timeout=60)

    with nodes(2) as (a, b):
        name = a.database_url.rsplit("/", 1)[1]
        client(a.endpoint).create_repository(repositoryName="readonly/app")
        psql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")  # as a failover would
        for node in (a, b):
            codes = set()
            for _ in range(3):  # the cut connection's failure, then read-only sessions'
                with pytest.raises(ClientError) as refused:
                    client(node.endpoint).initiate_layer_upload(repositoryName="readonly/app")
                codes.add(refused.value.response["Error"]["Code"])
            assert codes == {"ServerException"}, codes
        psql(f"ALTER DATABASE {name} RESET default_transaction_read_only")
        assert nodes_that_write_again((a, b), "readonly/app") == 2, "both nodes write again, unrestarted"


def test_a_database_of_another_program_is_refused_and_left_as_it_was():
    """A mistyped --database-url naming another program's database: serve filled it with this
    store's tables beside the program's (or, on a table of the same name, failed part way and left
    one behind). The LMDB store refuses another program's environment alike."""
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        subprocess.run(["psql", url, "-qc", "CREATE TABLE customers (id int); CREATE TABLE events (id int)"], check=True, capture_output=True)
        for command in (["serve", "--port", "0"], ["migrate"], ["events"]):
            out = subprocess.run([str(BIN / "upload-coordinator"), *command, "--data-dir", data_dir, "--database-url", url],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode != 0 and "tables of another program (customers, events)" in out.stderr, (command, out.stderr)
        tables = subprocess.run(["psql", url, "-tAc", "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"],
                                check=True, capture_output=True, text=True).stdout.strip()
        assert tables == "customers,events", tables


def test_copy_store_moves_a_store_to_postgres_and_back_and_audit_root_agrees():
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as back_dir, database() as url:
        lmdb = Served(data_dir)
        try:
            ecr = client(lmdb.endpoint)
            ecr.create_repository(repositoryName="copy/app")
            layer = os.urandom(100_000)
            upload_id = ecr.initiate_layer_upload(repositoryName="copy/app")["uploadId"]
            ecr.upload_layer_part(repositoryName="copy/app", uploadId=upload_id, partFirstByte=0, partLastByte=len(layer) - 1, layerPartBlob=layer)
            ecr.complete_layer_upload(repositoryName="copy/app", uploadId=upload_id, layerDigests=[sha(layer)])
        finally:
            assert lmdb.stop() == 0
        def root(*args):
            out = lmdb.tool("upload-coordinator", "audit", "root", *args)
            assert out.returncode == 0 and '"rootHash"' in out.stdout, out.stderr
            return out.stdout

        before = root("--data-dir", data_dir)

        # A node tried on a new database signed its empty log as it stopped: the refusal says so
        # (checkpoints are never removed), and nothing is written.
        with tempfile.TemporaryDirectory() as tried_dir, database() as tried_url:
            assert Served(tried_dir, database_url=tried_url).stop() == 0
            tried = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", tried_url)
            assert tried.returncode == 1 and "a checkpoint of its empty log, which a node that served it signed" in tried.stderr, tried.stderr
            events = subprocess.run(["psql", tried_url, "-tAc", "SELECT count(*) FROM events"], check=True, capture_output=True, text=True).stdout
            assert events.strip() == "0" and not os.path.exists(os.path.join(data_dir, "moved-to-postgresql"))
        copied = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", url)
        assert copied.returncode == 0, copied.stderr
        assert json.loads(copied.stdout)["events"] == 4
        again = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", url)
        assert again.returncode == 1 and "the destination already holds 4 events" in again.stderr, again.stderr
        assert root("--data-dir", data_dir, "--database-url", url) == before
        # The folder's old LMDB store is not written again (a node missing its database URL would
        # serve the old log, and cut the database's staged parts back to it); it is still read.
        stale = lmdb.tool("upload-coordinator", "create-repository", "--data-dir", data_dir, "--repository-name", "copy/stale")
        assert stale.returncode != 0 and "moved to PostgreSQL" in stale.stderr, stale.stderr
        backup = lmdb.tool("upload-coordinator", "backup", "--data-dir", data_dir, "--to", os.path.join(back_dir, "stale-backup"))
        assert backup.returncode != 0 and "moved to PostgreSQL" in backup.stderr, backup.stderr
        old = lmdb.tool("upload-coordinator", "audit", "root", "--data-dir", data_dir)
        assert old.stdout == before and "was moved to PostgreSQL" in old.stderr, "read, said to be the store as it was then: " + old.stderr
        moved = os.path.join(data_dir, "moved-to-postgresql")
        assert os.stat(moved).st_mode & 0o777 == 0o600, oct(os.stat(moved).st_mode)
        # The database named by the environment is where the folder's store went: no warning that
        # it overrides the folder's (old) LMDB store.
        named = subprocess.run([str(BIN / "upload-coordinator"), "audit", "root", "--data-dir", data_dir], capture_output=True, text=True,
                               timeout=300, env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=url))
        assert named.returncode == 0 and named.stdout == before and "warning" not in named.stderr, named.stderr

        # Served from PostgreSQL with the same folder of blobs: the layer is there.
        node = Served(data_dir, database_url=url)
        try:
            checked = client(node.endpoint).batch_check_layer_availability(repositoryName="copy/app", layerDigests=[sha(layer)])
            assert checked["layers"][0]["layerAvailability"] == "AVAILABLE"
        finally:
            assert node.stop() == 0
        after = root("--data-dir", data_dir, "--database-url", url)
        assert after == before

        back = lmdb.tool("upload-coordinator", "copy-store", "--from-database-url", url, "--to-data-dir", back_dir)
        assert back.returncode == 0, back.stderr
        assert root("--data-dir", back_dir) == after
        # copy-store copies the store only: the README says to copy the folder's blobs beside it,
        # and upload-replay names the ones not there yet.
        lacking = lmdb.tool("upload-replay", "--data-dir", back_dir)
        assert lacking.returncode == 4 and sha(layer) in lacking.stderr, lacking.stdout + lacking.stderr
        shutil.copytree(os.path.join(data_dir, "blobs"), os.path.join(back_dir, "blobs"), dirs_exist_ok=True)
        for args in (["--data-dir", back_dir], ["--data-dir", data_dir, "--database-url", url]):
            replay = lmdb.tool("upload-replay", *args, "--blobs", "contents")
            assert replay.returncode == 0, replay.stdout + replay.stderr


def test_copy_store_does_not_move_a_store_a_process_still_writes():
    """Moving a folder's LMDB store to PostgreSQL while `serve` still writes it would leave every
    write after the snapshot in the abandoned store: refused until it stops, and once moved, the
    folder's store is opened to write by nothing."""
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        lmdb = Served(data_dir)
        try:
            client(lmdb.endpoint).create_repository(repositoryName="copy/live")
            refused = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", url)
            assert refused.returncode != 0 and "open to write" in refused.stderr, refused.stderr
            assert not os.path.exists(os.path.join(data_dir, "moved-to-postgresql"))
            events = subprocess.run(["psql", url, "-tAc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
                                    capture_output=True, text=True, check=True)
            assert events.stdout.strip() == "0", "nothing was written to the destination"
            client(lmdb.endpoint).create_repository(repositoryName="copy/after")
        finally:
            assert lmdb.stop() == 0
        moved = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", url)
        assert moved.returncode == 0 and json.loads(moved.stdout)["events"] >= 2, moved.stderr
        stale = lmdb.tool("upload-coordinator", "create-repository", "--data-dir", data_dir, "--repository-name", "copy/stale")
        assert stale.returncode != 0 and "moved to PostgreSQL" in stale.stderr, stale.stderr


def test_copy_store_refuses_a_wrong_source_or_destination_before_writing_anything():
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as other, database() as url:
        lmdb = Served(data_dir)
        try:
            client(lmdb.endpoint).create_repository(repositoryName="copy/app")
        finally:
            assert lmdb.stop() == 0

        def copy_store(*args):
            return lmdb.tool("upload-coordinator", "copy-store", *args)

        missing = os.path.join(other, "misspelled")
        out = copy_store("--from-data-dir", missing, "--to-database-url", url)
        assert out.returncode != 0 and "holds no store" in out.stderr, out.stderr
        assert not os.path.exists(missing), "a source is only read: nothing is made where it was named"
        tables = subprocess.run(["psql", url, "-tAc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
                                capture_output=True, text=True, check=True)
        assert tables.stdout.strip() == "0", "the destination was neither migrated nor written"

        taken = os.path.join(other, "taken")
        os.mkdir(taken)
        with open(os.path.join(taken, "keep"), "w") as f:
            f.write("an operator's file")
        out = copy_store("--from-data-dir", data_dir, "--to-data-dir", taken)
        assert out.returncode == 64 and "not an empty folder" in out.stderr, out.stderr
        assert os.listdir(taken) == ["keep"] and sorted(os.listdir(other)) == ["taken"], os.listdir(other)


def test_serve_refuses_a_database_that_is_not_its_folders_store_before_touching_its_staging():
    """Start-up removes staging its store does not know (a crash's leftovers): a database that is
    new (a mistyped name), another deployment's, or named by the environment over a folder's LMDB
    store must be refused before that, or every upload in progress there loses its parts."""
    first, rest = os.urandom(5 << 20), os.urandom(1000)
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as other_dir, \
            tempfile.TemporaryDirectory() as lmdb_dir, database() as url, database() as new, database() as other:
        def start_upload(folder, database_url):
            node = Served(folder, database_url=database_url)
            try:
                ecr = client(node.endpoint)
                ecr.create_repository(repositoryName="fold/app")
                upload = ecr.initiate_layer_upload(repositoryName="fold/app")["uploadId"]
                ecr.upload_layer_part(repositoryName="fold/app", uploadId=upload, partFirstByte=0, partLastByte=len(first) - 1, layerPartBlob=first)
            finally:
                assert node.stop() == 0
            return upload

        def serve(folder, database_url, env=None):
            command = [str(BIN / "upload-coordinator"), "serve", "--data-dir", folder, "--port", "0", "--allow-anonymous"]
            return subprocess.run(command + (["--database-url", database_url] if database_url else []), capture_output=True,
                                  text=True, timeout=120, env=env)

        upload = start_upload(data_dir, url)
        start_upload(other_dir, other)
        staged = os.path.join(data_dir, "staging", upload)
        for wrong, why in ((new, "the store holds no events"), (other, "not signed by")):
            refused = serve(data_dir, wrong)
            assert refused.returncode != 0 and why in refused.stderr, refused.stderr
            assert os.path.getsize(staged) == len(first), "the upload's part is kept"
        # The URL left out: an LMDB store would be made among the database's staging.
        refused = serve(data_dir, None)
        assert refused.returncode == 64 and "no LMDB store" in refused.stderr, refused.stderr
        assert not os.path.exists(os.path.join(data_dir, "data.mdb"))
        lmdb_upload = start_upload(lmdb_dir, None)
        refused = serve(lmdb_dir, None, env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=new))
        assert refused.returncode == 64 and "holds an LMDB store" in refused.stderr, refused.stderr
        assert os.path.getsize(os.path.join(lmdb_dir, "staging", lmdb_upload)) == len(first)
        refused = subprocess.run([str(BIN / "upload-coordinator"), "migrate", "--data-dir", data_dir], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 64 and "no LMDB store" in refused.stderr, refused.stderr
        # An LMDB store with no events in a folder (made by mistake) names nothing: no refusal.
        with tempfile.TemporaryDirectory() as fresh:
            subprocess.run([str(BIN / "upload-coordinator"), "migrate", "--data-dir", fresh], check=True, capture_output=True)
            node = Served(fresh, database_url=new)
            assert node.stop() == 0

        node = Served(data_dir, database_url=url)
        try:
            ecr = client(node.endpoint)
            ecr.upload_layer_part(repositoryName="fold/app", uploadId=upload, partFirstByte=len(first),
                                  partLastByte=len(first) + len(rest) - 1, layerPartBlob=rest)
            ecr.complete_layer_upload(repositoryName="fold/app", uploadId=upload, layerDigests=[sha(first + rest)])
        finally:
            assert node.stop() == 0


def test_a_database_holding_an_unfinished_copy_is_opened_by_nothing():
    """copy-store marks a PostgreSQL destination until the copy is whole (its log could stop short
    of the source's, then grow from there): serve and upload-replay refuse it while it is marked."""
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        lmdb = Served(data_dir)
        try:
            client(lmdb.endpoint).create_repository(repositoryName="copy/app")
        finally:
            assert lmdb.stop() == 0
        copied = lmdb.tool("upload-coordinator", "copy-store", "--from-data-dir", data_dir, "--to-database-url", url)
        assert copied.returncode == 0, copied.stderr
        marks = ["psql", url, "-tAc", "SELECT count(*) FROM projection_state WHERE name = 'copy_store_unfinished'"]
        assert subprocess.run(marks, capture_output=True, text=True, check=True).stdout.strip() == "0", "a whole copy is unmarked"

        # as a copy that died part way leaves it
        subprocess.run(["psql", url, "-qc", "INSERT INTO projection_state VALUES ('copy_store_unfinished', 1)"], check=True)
        serve = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data_dir, "--database-url", url, "--port", "0",
                                "--allow-anonymous"], capture_output=True, text=True, timeout=60)
        assert serve.returncode != 0 and "did not finish" in serve.stderr, serve.stderr
        replay = lmdb.tool("upload-replay", "--data-dir", data_dir, "--database-url", url)
        assert replay.returncode == 3 and "did not finish" in replay.stdout + replay.stderr, replay.stdout + replay.stderr



def test_two_nodes_with_keys_of_their_own_started_at_once_leave_one_serving():
    """Without --log-key each data folder makes its own key. Two nodes started at once on an empty
    database could both find no checkpoint, each make a key and both serve, the second one's
    signing failing from then on. Now each signs the log's first checkpoint before it serves,
    which claims the log for its key: one serves, the other stops at start, asks for the log's
    key and keeps none of its own (whether it lost the claim as it signed, or found the log
    claimed before it made a key: the timing picks which). Given the log's key, it serves."""
    with tempfile.TemporaryDirectory() as first_dir, tempfile.TemporaryDirectory() as second_dir, database() as url:
        def start(folder):
            return subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", folder, "--database-url", url,
                                     "--port", "0", "--allow-anonymous"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes = {folder: start(folder) for folder in (first_dir, second_dir)}
        listening = {}

        def watch(folder, process):
            for line in process.stdout:
                if "listening on" in line:
                    listening[folder] = True
                    return
        watchers = [threading.Thread(target=watch, args=item, daemon=True) for item in processes.items()]
        for watcher in watchers:
            watcher.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(listening) + sum(p.poll() is not None for p in processes.values()) < 2:
            time.sleep(0.1)
        try:
            serving = [folder for folder in listening if processes[folder].poll() is None]
            stopped = [folder for folder, process in processes.items() if process.poll() is not None]
            assert len(serving) == 1 and len(stopped) == 1, (listening, {f: p.poll() for f, p in processes.items()})
            loser = processes[stopped[0]]
            reason = loser.stderr.read()
            assert loser.returncode != 0 and ("holds no log key" in reason or "claimed the log first" in reason), reason
            assert not os.path.exists(os.path.join(stopped[0], "transparency-log.key"))
            second = Served(stopped[0], "--log-key", os.path.join(serving[0], "transparency-log.key"), database_url=url)
            try:
                client(second.endpoint).create_repository(repositoryName="claim/app")
            finally:
                assert second.stop() == 0
        finally:
            statuses = []
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        statuses.append(process.wait(timeout=60))
                    except subprocess.TimeoutExpired:
                        process.kill()
                        statuses.append(process.wait())
        assert statuses == [0], statuses


def test_events_refuses_to_join_two_histories_when_the_database_is_restored_while_it_prints():
    """`events` reads the log a page (1,000 events) per snapshot. A restore between two pages
    (here the database swapped for a copy taken 900 events earlier, which then took other events)
    made it print the first page of one history and the rest of another: dense, gap-free, each
    line with a valid leafHash, and exit 0. Each page now checks that the log still holds the last
    event printed."""
    from concurrent.futures import ThreadPoolExecutor
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        admin, name = url.rsplit("/", 1)[0] + "/postgres", url.rsplit("/", 1)[1]
        psql = lambda sql: subprocess.run(["psql", admin, "-qc", sql], check=True, capture_output=True, timeout=60)

        def initiations(count):
            node = Served(data_dir, database_url=url)
            try:
                ecr = client(node.endpoint)
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda _: ecr.initiate_layer_upload(repositoryName="restored/app"), range(count)))
            finally:
                assert node.stop() == 0

        node = Served(data_dir, database_url=url)
        client(node.endpoint).create_repository(repositoryName="restored/app")
        assert node.stop() == 0
        initiations(899)  # 900 events
        psql(f"CREATE DATABASE {name}_copy TEMPLATE {name}")  # the backup
        try:
            initiations(600)  # 1,500 events
            env = dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=url)
            printing = subprocess.Popen([str(BIN / "upload-coordinator"), "events", "--data-dir", data_dir],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            time.sleep(3)  # its first page fills the pipe, which nobody reads yet: it waits to print
            psql(f"DROP DATABASE {name} WITH (FORCE)")
            psql(f"ALTER DATABASE {name}_copy RENAME TO {name}")  # restored
            initiations(700)  # other events at 901 and on
            out, err = printing.communicate(timeout=120)
        finally:
            psql(f"DROP DATABASE IF EXISTS {name}_copy WITH (FORCE)")
        printed = [json.loads(line)["position"] for line in out.decode().splitlines()]
        assert printing.returncode != 0 and "no longer holds the event printed at position 1000" in err.decode(), err.decode()
        assert printed == list(range(1, 1001)), "nothing of the second history"
