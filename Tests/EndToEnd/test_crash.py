"""Crash safety: SIGKILL the server at random moments under load, many times, and check that
nothing acknowledged is lost, nothing is recorded twice, positions stay dense, the projections
equal a fresh rebuild, and the files agree with the log. CRASH_ITERATIONS sets the count
(50 by default; the long mode runs 500)."""
import hashlib
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BIN, Server, database

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "50"))
REPO = "crash/app"


class Ledger:
    """What clients were told, and the bytes they sent: the truth the log must hold."""

    def __init__(self):
        self.lock = threading.Lock()
        self.uploads = set()
        self.parts = {}       # (uploadId, first, last) -> bytes
        self.completed = {}   # uploadId -> digest
        self.wrong = []       # answers no crash explains: (operation's error code, message)

    def assert_progress(self, uploads):
        """Enough of each kind acknowledged that the checks below compare something."""
        assert len(self.uploads) > uploads, f"too little progress: {len(self.uploads)} uploads"
        assert len(self.parts) > uploads // 2 and len(self.completed) > uploads // 4, \
            f"too little progress: {len(self.parts)} parts, {len(self.completed)} completions"
        assert self.wrong == [], f"answers no crash explains: {self.wrong[:5]}"


# What a server killed or restarting may answer: failures, never a wrong answer. (Two uploads of
# the same few random bytes are one layer.)
EXPLAINED = {"ServerException", "ThrottlingException", "LayerAlreadyExistsException"}


def client(endpoint):
    return boto3.client("ecr-public", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))


def work(endpoint, ledger, stop, seed):
    rng = random.Random(seed)
    ecr = client(endpoint)
    while not stop.is_set():
        try:
            upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
            with ledger.lock:
                ledger.uploads.add(upload_id)
            data = rng.randbytes(rng.randint(1, 4096))
            ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=0,
                                  partLastByte=len(data) - 1, layerPartBlob=data)
            with ledger.lock:
                ledger.parts[(upload_id, 0, len(data) - 1)] = data
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if rng.random() < 0.7:
                ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[digest])
                with ledger.lock:
                    ledger.completed[upload_id] = digest
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code not in EXPLAINED:
                with ledger.lock:
                    ledger.wrong.append((code, error.response["Error"].get("Message")))
            if stop.is_set():
                return
            time.sleep(0.01)
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
            # the connection refused, reset or timed out: the server is down. Anything else (an
            # answer botocore cannot parse, a 200 without its uploadId) is a wrong answer.
            if stop.is_set():
                return
            time.sleep(0.01)
        except Exception as error:  # noqa: BLE001 - recorded, and the run fails on it
            with ledger.lock:
                ledger.wrong.append((type(error).__name__, repr(error)[:300]))
            if stop.is_set():
                return


def tool_env(database_url):
    return dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=database_url or "")


def events(data_dir, database_url=None):
    out = subprocess.run([str(BIN / "upload-coordinator"), "events", "--data-dir", data_dir],
                         capture_output=True, text=True, timeout=120, env=tool_env(database_url))
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def check(data_dir, ledger, database_url=None):
    log = events(data_dir, database_url)
    assert [e["position"] for e in log] == list(range(1, len(log) + 1)), "positions dense"
    initiated = [e["data"]["uploadId"] for e in log if e["type"] == "UploadInitiated"]
    parts = [(e["data"]["uploadId"], e["data"]["partFirstByte"], e["data"]["partLastByte"]) for e in log if e["type"] == "LayerPartUploaded"]
    completed = {e["data"]["uploadId"]: e["data"]["layerDigest"] for e in log if e["type"] == "LayerUploadCompleted"}
    assert len(initiated) == len(set(initiated)), "no upload recorded twice"
    assert len(parts) == len(set(parts)), "no part recorded twice"
    assert len(completed) == len([e for e in log if e["type"] == "LayerUploadCompleted"]), "no completion twice"
    assert ledger.uploads <= set(initiated), "every acknowledged upload is in the log"
    assert set(ledger.parts) <= set(parts), "every acknowledged part is in the log"
    for upload_id, digest in ledger.completed.items():
        assert completed.get(upload_id) == digest, "every acknowledged completion is in the log"
    # files agree with the log: completed layers are blobs with their bytes; parts of uploads still
    # in progress are staged with the bytes that were sent
    for digest in completed.values():
        with open(os.path.join(data_dir, "blobs", "sha256", digest[7:]), "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == digest
    ended = set(completed)
    for (upload_id, first, last) in parts:
        if upload_id in ended or (upload_id, first, last) not in ledger.parts:
            continue
        with open(os.path.join(data_dir, "staging", upload_id), "rb") as f:
            assert f.read()[first:last + 1] == ledger.parts[(upload_id, first, last)]
    replay = subprocess.run([str(BIN / "upload-replay"), "--data-dir", data_dir], capture_output=True, text=True, timeout=300,
                            env=tool_env(database_url))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    return len(log)


@pytest.mark.parametrize("backend", ["lmdb", "postgres"])
def test_sigkill_at_random_moments_loses_nothing_acknowledged(backend):
    with tempfile.TemporaryDirectory() as data_dir:
        if backend == "postgres":
            with database() as url:
                sigkill_under_load(data_dir, url)
        else:
            sigkill_under_load(data_dir, None)


def sigkill_under_load(data_dir, database_url):
    rng = random.Random(20261129)
    ledger = Ledger()
    for iteration in range(ITERATIONS):
        # Room for every upload left open (about a third are never completed): 500 kills leave thousands.
        server = Server(data_dir, "--max-active-uploads", "1000000", database_url=database_url)
        if iteration == 0:
            client(server.endpoint).create_repository(repositoryName=REPO)
        stop = threading.Event()
        workers = [threading.Thread(target=work, args=(server.endpoint, ledger, stop, rng.random())) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(0.05, 0.5))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
        stop.set()
        for w in workers:
            w.join(timeout=30)
        check(data_dir, ledger, database_url)
    final = check(data_dir, ledger, database_url)
    print(f"{final} events; {len(ledger.uploads)} uploads, {len(ledger.parts)} parts, {len(ledger.completed)} completions acknowledged")
    ledger.assert_progress(ITERATIONS)
