"""A real `upload-coordinator serve` process on a free loopback port, for boto3 and awscli."""
import contextlib
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("UPLOAD_COORDINATOR_BIN_DIR", ROOT / ".build" / "debug"))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def signed_headers(method, url, body=b"", headers=None, key=("test", "test")):
    """Headers for a raw request, SigV4-signed by botocore itself, as awscli would sign it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(*key), "ecr-public", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@contextlib.contextmanager
def database():
    """A new, empty database on the run's PostgreSQL server (Tools/test starts one), dropped afterwards."""
    import uuid
    server = os.environ.get("UPLOAD_COORDINATOR_TEST_DATABASE_URL")
    assert server, "UPLOAD_COORDINATOR_TEST_DATABASE_URL is not set: start a server with Tools/postgres, or run Tools/test"
    name = "uc_e2e_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", server, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        subprocess.run(["psql", server, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


class Server:
    def __init__(self, data_dir, *extra, database_url=None):
        self.data_dir = data_dir
        self.database_url = database_url
        if database_url:
            extra = ("--database-url", database_url, *extra)
        credentials = os.path.join(data_dir, "operator-credentials")
        with open(credentials, "w") as f:
            f.write("test test\nAKIDOTHER othersecret\n")
        self.process = subprocess.Popen(
            [str(BIN / "upload-coordinator"), "serve", "--data-dir", data_dir, "--port", "0", "--credentials", credentials, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # the ready line, once listening
        if "listening on http://" not in line:
            self.process.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.process.stderr.read()}")
        self.endpoint = line.split()[3]
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def tool(self, *args):
        """Runs one of the built executables on this server's store (its database, if it has one)."""
        env = dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=self.database_url or "")
        return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=300, env=env)

    def events(self):
        import json
        out = self.tool("upload-coordinator", "events", "--data-dir", self.data_dir)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]


@contextlib.contextmanager
def serving(*flags):
    """A server on a data directory of its own; it must exit 0 on SIGTERM and its data replay cleanly."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, *flags)
        try:
            yield server
        finally:
            status = server.stop()
        assert status == 0, "serve must exit cleanly on SIGTERM"
        replay = server.tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr


@pytest.fixture(scope="session")
def server():
    with serving() as server:
        yield server


@pytest.fixture(scope="session")
def ecr(server):
    return boto3.client(
        "ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


_counter = [0]


@pytest.fixture
def repo(ecr):
    """A fresh repository for one test."""
    _counter[0] += 1
    name = f"team/app{_counter[0]}-{int(time.time() * 1000) % 100000}"
    ecr.create_repository(repositoryName=name)
    return name
