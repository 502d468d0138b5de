"""A real `upload-coordinator serve` process on a free loopback port, for boto3 and awscli.

With UPLOAD_COORDINATOR_E2E_BACKEND=postgres (Tools/test's second pass), every server of the run
keeps its store in a PostgreSQL database of its own, and the shared `server` is a deployment of two
nodes on one database and one data folder, behind a proxy that hands each new connection to the
next node: the same suite, on the deployment a second machine needs."""
import collections
import contextlib
import os
import pathlib
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("UPLOAD_COORDINATOR_BIN_DIR", ROOT / ".build" / "debug"))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
POSTGRES = os.environ.get("UPLOAD_COORDINATOR_E2E_BACKEND") == "postgres"


def pytest_collection_modifyitems(config, items):
    """In the PostgreSQL pass, the tests that read one process's own counters (marked
    `one_process`) are left out, by name: behind the proxy, a test's requests reach two nodes."""
    if not POSTGRES:
        return
    skip = pytest.mark.skip(reason="reads one process's own counters; the proxy spreads the requests over two nodes")
    for item in items:
        if item.get_closest_marker("one_process"):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "one_process: reads one serve process's own counters (left out of the PostgreSQL pass)")


# The database of each data directory a server of this run uses, for the tools run on it.
DATABASES = {}


def tool(*args, cwd=None):
    """Runs one of the built executables (in `cwd`, when given); on a data directory whose server
    keeps its store in PostgreSQL, on that database too."""
    data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else None
    env = dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=DATABASES.get(str(data_dir), ""))
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def stop_signals_at_their_defaults():
    """For a child's `preexec_fn`: SIGINT, SIGTERM and SIGHUP as a command started from a terminal
    gets them, whatever the suite inherited (`nohup Tools/test` hands SIGHUP down ignored, a
    shell's background job SIGINT), for tests of what those signals do."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def anonymous_pull(endpoint, repository):
    """The header of an anonymous pull of `repository`: the token `/token` gives without credentials
    (a call without any is challenged, a public pull too, as ECR Public challenges it)."""
    import requests
    answer = requests.get(f"{endpoint}/token", params={"scope": f"repository:{repository}:pull"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def send_expecting_continue(port, method, target, headers, body):
    """Sends a request with `Expect: 100-continue` as curl does, its body only once the server
    answers `100 Continue`. Where curl waits a second and then sends it anyway, this never does:
    a server that wants the body without asking for it gets no answer here (`None`, after 10 s).
    - Returns: the interim statuses, the final status (or `None`), its headers (lower-cased names)
      and its body."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    with connection:
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}",
                 "Expect: 100-continue"] + [f"{name}: {value}" for name, value in headers.items()]
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received, interim = b"", []
        while True:
            while b"\r\n\r\n" not in received:
                try:
                    chunk = connection.recv(65536)
                except socket.timeout:
                    return interim, None, {}, b""
                if not chunk:
                    return interim, None, {}, b""
                received += chunk
            head, received = received.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ")[1])
            if 100 <= status < 200:
                interim.append(status)
                connection.sendall(body)
                connection.settimeout(30)  # the body's answer waits for its commit: a slower machine's slack
                continue
            fields = dict((name.strip().lower().decode(), value.strip().decode())
                          for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:]))
            length = int(fields.get("content-length", "0"))
            while len(received) < length:
                chunk = connection.recv(65536)
                assert chunk
                received += chunk
            return interim, status, fields, received[:length]


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
    """`serve` on `data_dir`. `credentials` is written to a --credentials file (None: no flag, for
    tests of where else keys come from); `env` replaces this process's environment,
    `preexec_fn` runs in the child before serve (resource limits) and `wrapper` is a command that
    runs serve (a preload that runs its clock ahead)."""
    def __init__(self, data_dir, *extra, database_url=None, credentials="test test\nAKIDOTHER othersecret\n",
                 env=None, preexec_fn=None, wrapper=()):
        self.data_dir = data_dir
        self.database_url = database_url
        if database_url:
            extra = ("--database-url", database_url, *extra)
            DATABASES[str(data_dir)] = database_url
        if credentials is not None:
            credentials_file = os.path.join(data_dir, "operator-credentials")
            with open(credentials_file, "w") as f:
                f.write(credentials)
            extra = ("--credentials", credentials_file, *extra)
        # A wrapper's serve is its child: both lead a process group of their own, killed whole.
        self.process = subprocess.Popen(
            [*wrapper, str(BIN / "upload-coordinator"), "serve", "--data-dir", data_dir, "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn, start_new_session=bool(wrapper),
            env=dict(os.environ if env is None else env, UPLOAD_COORDINATOR_DATABASE_URL=database_url or ""))
        self._wrapped = bool(wrapper)
        # The ready line, once listening; a server that never gets there fails this test, not the run.
        ready = queue.Queue()
        threading.Thread(target=lambda: ready.put(self.process.stdout.readline()), daemon=True).start()
        try:
            line = ready.get(timeout=120)
        except queue.Empty:
            line = "(no ready line within 120 s)"
        if "listening on http://" not in line:
            self.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.process.stderr.read()}")
        self.endpoint = line.split()[3]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        # Its log is read as it comes, so that no log can fill the pipe and stall the server.
        self.stderr_lines = collections.deque(maxlen=5000)
        self._stderr_reader = threading.Thread(target=self.stderr_lines.extend, args=(self.process.stderr,), daemon=True)
        self._stderr_reader.start()

    def stderr_text(self):
        """What serve wrote to stderr (its last 5,000 lines): all of it once it has exited."""
        if self.process.poll() is not None:
            self._stderr_reader.join(timeout=30)
        return "".join(self.stderr_lines)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)  # past serve's own --shutdown-timeout (30 s)
        except subprocess.TimeoutExpired:
            self.kill()  # never left running past its test
            self.process.wait()
            raise

    def kill(self):
        """SIGKILL to serve (and to a wrapper with it)."""
        if self._wrapped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()

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
def serving(*flags, **options):
    """A server on a data directory of its own (and in the PostgreSQL pass a database of its own);
    it must exit 0 on SIGTERM and its data replay cleanly, every blob it names there and hashing to its
    digest. `options` go to ``Server`` (its credentials)."""
    with tempfile.TemporaryDirectory() as data_dir, (database() if POSTGRES else contextlib.nullcontext()) as url:
        server = Server(data_dir, *flags, database_url=url, **options)
        try:
            yield server
        finally:
            status = server.stop()
        assert status == 0, "serve must exit cleanly on SIGTERM"
        replay = server.tool("upload-replay", "--data-dir", data_dir, "--blobs", "contents")
        assert replay.returncode == 0, replay.stdout + replay.stderr


class RoundRobinProxy:
    """A TCP proxy on a free loopback port that hands each new connection to the next of `ports`:
    a load balancer in front of several nodes."""

    def __init__(self, ports):
        self.ports, self.next = ports, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            port = self.ports[self.next % len(self.ports)]
            self.next += 1
            upstream = None
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
                # Each chunk goes on at once, as a load balancer forwards it: with Nagle's algorithm
                # a request's body would wait for the ACK of its headers, which the node delays 40 ms.
                for sock in (client, upstream):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                for sock in (client, upstream):
                    if sock is not None:
                        sock.close()
                continue
            done = threading.Semaphore(0)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()
            threading.Thread(target=self._close_when_done, args=(client, upstream, done), daemon=True).start()

    @staticmethod
    def _pipe(source, destination, done):
        """Copies one direction; at its end, half-closes the other side, as the client did."""
        try:
            while data := source.recv(65536):
                destination.sendall(data)
        except OSError:
            pass
        finally:
            try:
                destination.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            done.release()

    @staticmethod
    def _close_when_done(client, upstream, done):
        done.acquire()
        done.acquire()
        client.close()
        upstream.close()

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        except OSError:
            pass
        self.listener.close()


class Deployment(Server):
    """Two serve nodes on one database and one data folder, reached through a RoundRobinProxy; it
    stands where a Server does (endpoint, port, data_dir, tool, events, stop)."""

    def __init__(self, data_dir, database_url):
        self.data_dir, self.database_url = data_dir, database_url
        self.nodes = [Server(data_dir, database_url=database_url) for _ in range(2)]
        for node in self.nodes:  # no output may fill a pipe and stall a node (Server reads stderr)
            threading.Thread(target=node.process.stdout.read, daemon=True).start()
        self.proxy = RoundRobinProxy([node.port for node in self.nodes])
        self.port = self.proxy.port
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = self.nodes[0].process

    def stderr_text(self):
        """Both nodes' logs, one after the other."""
        return "".join(node.stderr_text() for node in self.nodes)

    def stop(self):
        self.proxy.close()
        statuses = []
        for node in self.nodes:  # every node, even when one does not stop in time
            try:
                statuses.append(node.stop())
            except subprocess.TimeoutExpired:
                node.process.kill()
                statuses.append(-9)
        return max(statuses, key=abs)


@pytest.fixture(scope="session")
def server():
    if not POSTGRES:
        with serving() as server:
            yield server
        return
    with tempfile.TemporaryDirectory() as data_dir, database() as url:
        deployment = Deployment(data_dir, url)
        try:
            yield deployment
        finally:
            status = deployment.stop()
        assert status == 0, "serve must exit cleanly on SIGTERM"
        replay = deployment.tool("upload-replay", "--data-dir", data_dir, "--blobs", "contents")
        assert replay.returncode == 0, replay.stdout + replay.stderr


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
