"""SigV4 enforced by the server: who may call, and who did."""
import datetime
import hashlib
import hmac
import json
import os
import time
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BIN, Server, signed_headers


def client(server, key=("test", "test"), unsigned=False):
    config = Config(retries={"max_attempts": 1}, **({"signature_version": UNSIGNED} if unsigned else {}))
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1], config=config)


def code(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def sign_at(url, body, target, when, key=("test", "test")):
    """SigV4 by hand, for a chosen X-Amz-Date (botocore always signs with now)."""
    host = url.split("//", 1)[1].split("/", 1)[0]
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": amz_date, "x-amz-target": target}
    names = sorted(headers)
    canonical = "\n".join(["POST", "/", "", "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names),
                           hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/us-east-1/ecr-public/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + key[1]).encode()
    for part in [amz_date[:8], "us-east-1", "ecr-public", "aws4_request"]:
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return headers


def send(url, body, headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST", headers=headers), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_unsigned_unknown_wrong_secret_are_refused_by_name(server):
    assert code(lambda: client(server, unsigned=True).describe_registries()) == "MissingAuthenticationTokenException"
    assert code(lambda: client(server, key=("nobody", "x")).describe_registries()) == "UnrecognizedClientException"
    assert code(lambda: client(server, key=("test", "wrong")).describe_registries()) == "InvalidSignatureException"


@pytest.mark.parametrize("path", ["/prefix/", "/a//b/", "/a/./b", "/a/b/../c/", "/a%20b/"])
def test_an_endpoint_url_with_a_path_is_signed_and_checked_alike(server, path):
    """botocore signs the path without its dot segments and repeated slashes; the server, which
    answers the API at any path, checks it the same way (it refused `//` and `.`)."""
    ecr = boto3.client("ecr-public", endpoint_url=server.endpoint + path, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    assert ecr.describe_registries()["registries"]
    wrong = boto3.client("ecr-public", endpoint_url=server.endpoint + path, region_name="us-east-1",
                         aws_access_key_id="test", aws_secret_access_key="wrong")
    assert code(wrong.describe_registries) == "InvalidSignatureException"


def test_expired_tampered_body_and_tampered_header_are_refused(server):
    url, target = server.endpoint + "/", "SpencerFrontendService.DescribeRegistries"
    now = datetime.datetime.now(datetime.timezone.utc)
    status, body = send(url, b"{}", sign_at(url, b"{}", target, now))
    assert status == 200, body
    status, body = send(url, b"{}", sign_at(url, b"{}", target, now - datetime.timedelta(minutes=20)))
    assert status == 400 and body["__type"] == "InvalidSignatureException" and "expired" in body["message"]
    status, body = send(url, b'{"maxResults": 5}', sign_at(url, b"{}", target, now))
    assert status == 403 and body["__type"] == "InvalidSignatureException"
    headers = sign_at(url, b"{}", target, now)
    headers["x-amz-target"] = "SpencerFrontendService.CreateRepository"
    status, body = send(url, b"{}", headers)
    assert status == 403 and body["__type"] == "InvalidSignatureException"


def test_the_principal_is_recorded_with_each_event(server):
    other = client(server, key=("AKIDOTHER", "othersecret"))
    other.create_repository(repositoryName="auth/by-other")
    client(server).initiate_layer_upload(repositoryName="auth/by-other")
    events = [e for e in server.events() if e["data"].get("repositoryName") == "auth/by-other"]
    assert [e["metadata"].get("principal") for e in events] == ["AKIDOTHER", "test"]


def test_feeds_need_a_signature_too(server):
    try:
        urllib.request.urlopen(server.endpoint + "/events?after=0&limit=1", timeout=30)
        assert False, "expected 403"
    except urllib.error.HTTPError as e:
        assert e.code == 403 and json.loads(e.read())["__type"] == "MissingAuthenticationTokenException"


def test_serve_never_runs_open_by_accident():
    with tempfile.TemporaryDirectory() as data:
        refused = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0",
                                  "--host", "0.0.0.0", "--allow-anonymous"], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "loopback" in refused.stderr
        # Refused before the store opens: a folder named by mistake gets no store.
        assert refused.returncode == 64 and os.listdir(data) == [], os.listdir(data)
        missing = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0",
                                  "--credentials", os.path.join(data, "no-such-file")], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 64 and os.listdir(data) == [], (missing.returncode, os.listdir(data))
        assert "--credentials" in missing.stderr and "No such file" in missing.stderr and "NSCocoaErrorDomain" not in missing.stderr, missing.stderr
        process = subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "listening on" in process.stdout.readline()
            path = os.path.join(data, "credentials")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            key_id, secret = open(path).read().split()
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
        assert f"AWS_ACCESS_KEY_ID={key_id}" in err, "serve prints how to use the generated key"
        assert "(mode 600)" in err and "may be read by other users" not in err and "can be guessed" not in err, err
        # The mode it states is the file's: it said 0600 whatever the file's was.
        os.chmod(path, 0o644)
        err = started_and_stopped(data)
        assert "(mode 644)" in err and f"{path} may be read by other users (mode 644)" in err and "chmod 600" in err, err


def test_serve_warns_of_a_credentials_file_others_can_read_and_of_a_guessable_secret(tmp_path):
    """A credentials file of mode 0644, and a one-character secret, were taken without a word (the
    sign-in page takes guesses as fast as they come). Keys given twice, or whose id no signature
    can carry, are refused at start."""
    strong, weak = "AKIDSTRONG " + "s" * 40, "AKIDWEAK x"
    with tempfile.TemporaryDirectory() as data:
        server = Server(data, credentials=f"{strong}\r\n{weak}\r\n")  # written 0644, with Windows line ends
        try:
            deadline = time.monotonic() + 10
            while "can be guessed" not in server.stderr_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            err = server.stderr_text()
        finally:
            server.stop()
        assert "the secret of access key AKIDWEAK has 1 characters" in err and "AKIDSTRONG has" not in err, err
        assert "operator-credentials may be read by other users (mode 644)" in err, err
    for text, reason in ((f"{strong}\nAKIDSTRONG {'t' * 40}\n", "access key id AKIDSTRONG is on line 1 too"),
                         ("anonymous " + "s" * 40 + "\n", "the principal the audit shows for calls without a key")):
        credentials = tmp_path / "credentials"
        credentials.write_text(text)
        out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
                              "--credentials", str(credentials)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 64 and reason in out.stderr, out.stderr
    # The same rules for a key given in the environment.
    env = {k: v for k, v in os.environ.items() if k != "UPLOAD_COORDINATOR_CREDENTIALS"}
    env.update(UPLOAD_COORDINATOR_ACCESS_KEY_ID="command-line", UPLOAD_COORDINATOR_SECRET_ACCESS_KEY="s" * 40)
    out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", str(tmp_path / "data"), "--port", "0"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 64 and "the principal the audit shows for calls without a key" in out.stderr, out.stderr


def ready_line(process, timeout=120):
    """serve's first line on stdout, or a placeholder after `timeout`: a start that hangs fails its test, not the run."""
    import queue
    import threading
    found = queue.Queue()
    threading.Thread(target=lambda: found.put(process.stdout.readline()), daemon=True).start()
    try:
        return found.get(timeout=timeout)
    except queue.Empty:
        return "(no ready line)"


def started_and_stopped(data):
    """What `serve` on `data` (its generated key) wrote to standard error, started until it listened, then stopped."""
    process = subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in ready_line(process)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    return err


def test_processes_starting_together_on_a_fresh_folder_agree_on_one_generated_key():
    """The generated key pair is written whole under another name and linked into place: servers
    started at once on one new folder (several may share it) all start, with the same key. The
    folder they create is private to its owner."""
    with tempfile.TemporaryDirectory() as parent:
        data = os.path.join(parent, "new")
        processes = [subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = []
        try:
            ready = [ready_line(process) for process in processes]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                errors.append(process.communicate(timeout=30)[1])
        assert all("listening on" in line for line in ready), errors
        key_id, _ = open(os.path.join(data, "credentials")).read().split()
        assert all(f"AWS_ACCESS_KEY_ID={key_id}" in err for err in errors), errors
        assert sorted(os.listdir(data)).count("credentials") == 1 and not [n for n in os.listdir(data) if ".new-" in n]
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        assert not any("chmod 700" in err for err in errors), errors


def test_every_file_serve_makes_in_its_data_folder_is_private_to_its_owner(tmp_path):
    """Blobs include private repositories' layers: each file is 0600 whatever the umask, a layer
    copied from several parts and a repository's logo too, not only the folders around them."""
    previous = os.umask(0o022)
    try:
        server = Server(str(tmp_path))
    finally:
        os.umask(previous)
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="modes/app", catalogData={"logoImageBlob": b"\x89PNG\r\n\x1a\n" + os.urandom(300)})
        upload = ecr.initiate_layer_upload(repositoryName="modes/app")["uploadId"]
        first, second = os.urandom(5 * 1024 * 1024), os.urandom(1000)
        ecr.upload_layer_part(repositoryName="modes/app", uploadId=upload, partFirstByte=0, partLastByte=len(first) - 1, layerPartBlob=first)
        ecr.upload_layer_part(repositoryName="modes/app", uploadId=upload, partFirstByte=len(first),
                              partLastByte=len(first) + len(second) - 1, layerPartBlob=second)
        digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
        assert ecr.complete_layer_upload(repositoryName="modes/app", uploadId=upload, layerDigests=[digest])["layerDigest"] == digest
        ecr.initiate_layer_upload(repositoryName="modes/app")  # one in progress
    finally:
        assert server.stop() == 0
    readable = sorted(f"{path.relative_to(tmp_path)} {oct(stat.S_IMODE(path.stat().st_mode))}" for path in tmp_path.rglob("*")
                      if path.name != "operator-credentials" and stat.S_IMODE(path.stat().st_mode) & 0o077)
    assert not readable, readable
    assert (tmp_path / "blobs" / "sha256" / digest.split(":")[1]).exists()


def test_serve_warns_when_others_can_open_its_data_folder():
    with tempfile.TemporaryDirectory() as data:
        os.chmod(data, 0o755)
        err = started_and_stopped(data)
        assert "chmod 700" in err and "mode=755" in err, err


def test_an_empty_access_key_from_the_environment_is_refused_at_start():
    """An unset variable often arrives empty (compose, systemd); an empty secret would let anyone
    who knows the key id sign."""
    import subprocess
    import tempfile
    from conftest import BIN
    with tempfile.TemporaryDirectory() as data:
        for key_id, secret in [("AKIDENV", ""), ("", "secret")]:
            env = {k: v for k, v in os.environ.items() if k != "UPLOAD_COORDINATOR_CREDENTIALS"}
            env.update(UPLOAD_COORDINATOR_ACCESS_KEY_ID=key_id, UPLOAD_COORDINATOR_SECRET_ACCESS_KEY=secret)
            out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0"],
                                 env=env, capture_output=True, text=True, timeout=60)
            assert out.returncode != 0 and "must not be empty" in out.stderr, (key_id, secret, out.stderr)


def test_half_given_credentials_are_refused_at_start_not_replaced_by_a_generated_key():
    """One of the two variables set without the other: the server started with a generated key
    and refused the user's, without a word."""
    import subprocess
    import tempfile
    from conftest import BIN
    with tempfile.TemporaryDirectory() as data:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("UPLOAD_COORDINATOR_") or k == "UPLOAD_COORDINATOR_DATABASE_URL"}
        for variables, flags, expected in [({"UPLOAD_COORDINATOR_ACCESS_KEY_ID": "AKIDENV"}, [], "set without UPLOAD_COORDINATOR_SECRET_ACCESS_KEY"),
                                           ({"UPLOAD_COORDINATOR_SECRET_ACCESS_KEY": "secret"}, [], "set without UPLOAD_COORDINATOR_ACCESS_KEY_ID")]:
            out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0", *flags],
                                 env={**clean, **variables}, capture_output=True, text=True, timeout=60)
            assert out.returncode == 64 and expected in out.stderr, (variables, flags, out.stderr)
        assert not os.path.exists(os.path.join(data, "credentials")), "no key was generated"


def test_credentials_beside_allow_anonymous_are_said_to_go_unchecked():
    from conftest import serving
    with serving("--allow-anonymous") as server:  # the harness gives every server --credentials
        warning, deadline = "the keys in", time.monotonic() + 10
        while warning not in server.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # written before the ready line, read by a thread since
        assert "--allow-anonymous accepts every request: the keys in" in server.stderr_text()
