"""Faults: a full disk, and reader slots left by killed processes."""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BIN, ROOT, Server

MIB = 1024 * 1024


def client(server):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def small_disk():
    """A 24 MiB tmpfs of the test's own, so that filling it harms nothing else."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run the end-to-end tests as root (CI runs them as root)")
    mount = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)
        os.rmdir(mount)


def fill(path):
    """Writes zeros until the disk says no; returns the file, to delete when space should return."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (256 * 1024))
        except OSError:
            pass
    return filler


def test_full_disk_answers_server_exception_corrupts_nothing_and_recovers(small_disk):
    # No reserve (--reserved-disk-bytes, tested on its own): the disk itself must fill here.
    server = Server(small_disk, "--reserved-disk-bytes", "0")
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="disk/app")
        upload_id = ecr.initiate_layer_upload(repositoryName="disk/app")["uploadId"]
        before = len(server.events())
        filler = fill(small_disk)
        part = os.urandom(MIB)
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName="disk/app", uploadId=upload_id, partFirstByte=0, partLastByte=MIB - 1, layerPartBlob=part)
        assert e.value.response["Error"]["Code"] == "ServerException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        # initiations keep being answered, with success or ServerException, never anything else
        refusals = []
        for _ in range(50):
            try:
                ecr.initiate_layer_upload(repositoryName="disk/app")
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ServerException"
                refusals.append(error.response["Error"]["Message"])
        # A full disk is named as one (LMDB's ENOSPC or EIO alone sends an operator elsewhere).
        assert refusals and all("the data folder's disk has" in message and "bytes free" in message for message in refusals), refusals
        os.remove(filler)  # space returns
        ecr.upload_layer_part(repositoryName="disk/app", uploadId=upload_id, partFirstByte=0, partLastByte=MIB - 1, layerPartBlob=part)
        import hashlib
        digest = "sha256:" + hashlib.sha256(part).hexdigest()
        assert ecr.complete_layer_upload(repositoryName="disk/app", uploadId=upload_id, layerDigests=[digest])["layerDigest"] == digest
        log = server.events()
        assert [e["position"] for e in log] == list(range(1, len(log) + 1))
        assert [e["type"] for e in log if e["data"].get("uploadId") == upload_id] == ["UploadInitiated", "LayerPartUploaded", "LayerUploadCompleted"]
        assert len(log) > before
    finally:
        assert server.stop() == 0
    replay = subprocess.run([str(BIN / "upload-replay"), "--data-dir", small_disk], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_disk_that_fills_while_a_store_migrates_is_named_and_the_store_migrates_once_space_returns(small_disk):
    """Opening an old store writes (its migrations, its projections' rebuild): a full disk there is
    said to be one, as the write path says it, and costs the store nothing."""
    store = os.path.join(small_disk, "data")
    shutil.copytree(ROOT / "Tests" / "Fixtures" / "stores" / "layout-0002", store)
    filler = fill(small_disk)
    migrate = [str(BIN / "upload-coordinator"), "migrate", "--data-dir", store]
    refused = subprocess.run(migrate, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "the data folder's disk has" in refused.stderr and "bytes free" in refused.stderr, refused.stderr
    assert "the store could not be opened" in refused.stderr, "the open's own write, not a command's: " + refused.stderr
    os.remove(filler)
    migrated = subprocess.run(migrate, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    replay = subprocess.run([str(BIN / "upload-replay"), "--data-dir", store, "--blobs", "none"], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_reader_slots_of_killed_processes_are_cleared_at_open():
    with tempfile.TemporaryDirectory() as data:
        subprocess.run([str(BIN / "upload-coordinator"), "migrate", "--data-dir", data], check=True, capture_output=True)
        # LMDB resets the reader table when the first process opens the environment, so a stale
        # slot only matters while some process keeps it open: the last holder here stays alive.
        holders = []
        try:
            for _ in range(4):
                holder = subprocess.Popen([str(BIN / "upload-coordinator"), "debug", "hold-read-transaction", "--data-dir", data],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                holders.append(holder)
                assert holder.stdout.readline().startswith("holding")
            for holder in holders[:3]:
                holder.send_signal(signal.SIGKILL)
                holder.wait()
            server = Server(data, "--log-level", "notice")
            status = server.stop()
            log = server.stderr_text()
        finally:
            for holder in holders:  # never left holding past the test, whatever failed
                holder.kill()
                holder.wait()
        assert status == 0
        assert "readers.cleared=6" in log, log  # each holder read the log and the projections: a slot in each


def test_the_disk_reserve_stops_a_chunk_part_way_on_a_real_small_disk(small_disk):
    """With 16 MiB of the 24 MiB disk reserved, a 12 MiB chunk is refused part way (429
    TOOMANYREQUESTS), its bytes cut back and nothing recorded; a chunk that fits is taken."""
    from test_registry_api import Registry, assert_error, login_password, patch, start_upload
    server = Server(small_disk, "--reserved-disk-bytes", str(16 * MIB))
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="disk/app")
        reg = Registry(server, auth=("AWS", login_password(ecr)))
        location = start_upload(reg, "disk/app")
        before = len(server.events())
        assert_error(patch(reg, location, os.urandom(12 * MIB), 0), 429, "TOOMANYREQUESTS")
        assert len(server.events()) == before, "nothing recorded"
        staging = os.path.join(small_disk, "staging")
        assert all(os.path.getsize(os.path.join(staging, name)) == 0 for name in os.listdir(staging) if not name.startswith(".")), \
            "what was staged before the reserve was reached is cut back"
        assert patch(reg, location, os.urandom(MIB), 0).status_code == 202
    finally:
        assert server.stop() == 0


def test_upload_replay_reports_a_damaged_page_in_its_own_words_and_always_returns(tmp_path):
    """LMDB keeps no checksums: a page damaged on disk can stop it on an assertion or a fault, not
    an error. The checker must still report it and return, with its output piped (cron, CI,
    `$(…)`), where a crashing check used to hang on Swift's backtracer. Each page of a committed
    store's two files is damaged in turn (its header flipped): every run ends, by an exit code
    the README names, and those LMDB stopped on say so."""
    import pathlib
    import shutil
    source = pathlib.Path(__file__).parent.parent / "Fixtures" / "stores" / "layout-0011-p9-every-event"
    stopped = 0
    for name in ("data.mdb", "projections/data.mdb"):
        pages = (source / name).stat().st_size // 4096
        for page in range(2, pages):  # the two meta pages are LMDB's own check
            store = tmp_path / f"{name.replace('/', '-')}-{page}"
            shutil.copytree(source, store)
            with open(store / name, "r+b") as f:
                f.seek(page * 4096)
                header = f.read(16)
                f.seek(page * 4096)
                f.write(bytes(b ^ 0x5A for b in header))
            run = subprocess.run([str(BIN / "upload-replay"), "--data-dir", str(store)], capture_output=True, text=True, timeout=120)
            assert run.returncode in (0, 2, 3), (name, page, run.returncode, run.stderr[-500:])
            if "LMDB stopped on signal" in run.stderr:
                stopped += 1
                assert run.returncode == 3 and run.stdout.startswith("store:"), (name, page, run.stdout, run.stderr[-500:])
    assert stopped > 0, "some damaged page stops LMDB itself (in this store, two of data.mdb's)"


def test_a_servers_fault_is_answered_without_naming_its_files_and_logged_with_them(tmp_path):
    """A failure of the server's own (here a staging file the server cannot open) is its
    operator's to read, in the log under the answer's request id; the caller is told only that the
    server failed, never the server's paths."""
    server = Server(str(tmp_path))
    try:
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))  # one request, one log line
        ecr.create_repository(repositoryName="fault/app")
        upload_id = ecr.initiate_layer_upload(repositoryName="fault/app")["uploadId"]
        staged = os.path.join(str(tmp_path), "staging", upload_id)
        if os.path.exists(staged):
            os.remove(staged)
        os.mkdir(staged)  # a folder where the upload's bytes go
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName="fault/app", uploadId=upload_id, partFirstByte=0, partLastByte=MIB - 1, layerPartBlob=os.urandom(MIB))
        answer = e.value.response
        assert answer["Error"]["Code"] == "ServerException" and answer["ResponseMetadata"]["HTTPStatusCode"] == 500, answer
        assert str(tmp_path) not in answer["Error"]["Message"] and "staging" not in answer["Error"]["Message"], answer["Error"]["Message"]
        request_id = answer["ResponseMetadata"]["RequestId"]
        # The log is written by a thread of its own: its line may follow the answer.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [line for line in server.stderr_text().splitlines() if request_id in line]:
            time.sleep(0.1)
        logged = [line for line in server.stderr_text().splitlines() if request_id in line]
        assert logged and staged in logged[0], (request_id, server.stderr_text()[-2000:])
    finally:
        assert server.stop() == 0


def test_upload_replays_check_ends_with_the_checker_that_started_it(tmp_path):
    """The check runs in a child of `upload-replay`: when the parent is killed (SIGKILL, which it
    cannot pass on), the child must not run on orphaned. Its output is a pipe filled beforehand and
    never read, so the child is held writing its report until it notices its parent is gone."""
    import pathlib
    import shutil
    import time
    store = tmp_path / "store"  # a copy: a check makes the store's lock file
    shutil.copytree(pathlib.Path(__file__).parent.parent / "Fixtures" / "stores" / "layout-0011-p9-every-event", store)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    parent = subprocess.Popen([str(BIN / "upload-replay"), "--data-dir", str(store)], stdout=write_end, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        children = []
        for _ in range(100):
            children = [int(pid) for task in os.listdir(f"/proc/{parent.pid}/task")
                        for pid in open(f"/proc/{parent.pid}/task/{task}/children").read().split()]
            if children:
                break
            time.sleep(0.05)
        assert len(children) == 1, children
        time.sleep(1)  # the child has checked the small store, and waits to write its report
        assert os.path.exists(f"/proc/{children[0]}") and parent.poll() is None, "the check ended with its output full"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        def alive():
            try:
                return open(f"/proc/{children[0]}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        orphaned = alive()
        if orphaned:
            os.kill(children[0], signal.SIGKILL)
        assert not orphaned, "the check ran on after its parent was killed"
    finally:
        os.close(read_end)


def test_a_copy_onto_a_full_disk_says_how_full_it_is(small_disk, tmp_path):
    """LMDB reports a disk that filled under its pages as "Input/output error": copy-store, as
    serve does, says how full the destination's disk is, and leaves nothing behind."""
    source = tmp_path / "source"
    for args in (("migrate",), ("create-repository", "--repository-name", "team/app")):
        subprocess.run([str(BIN / "upload-coordinator"), args[0], "--data-dir", str(source), *args[1:]], check=True, capture_output=True)
    filler = fill(small_disk)
    try:
        copy = os.path.join(small_disk, "copy")
        out = subprocess.run([str(BIN / "upload-coordinator"), "copy-store", "--from-data-dir", str(source),
                              "--to-data-dir", copy], capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "bytes free" in out.stderr, out.stderr
        assert f"error: the copy to {copy} did not finish, and nothing of it is kept:" in out.stderr, "which copy failed, and what is left of it"
        assert [name for name in os.listdir(small_disk) if name != "filler"] == [], os.listdir(small_disk)
    finally:
        os.unlink(filler)


def test_a_copy_that_fills_the_disk_part_way_says_only_that_it_failed(small_disk, tmp_path):
    """Room to open the copy's store, not to take the log: the copy fails at a commit, and its
    store, closed as its folder is removed, said its projections were "rebuilt after the machine
    next restarts", of a copy that no longer exists."""
    source = tmp_path / "source"
    source.mkdir()
    server = Server(str(source))
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="disk/app")
        for n in range(40):  # about 20 KB of log each
            ecr.put_repository_catalog_data(repositoryName="disk/app", catalogData={"aboutText": f"{n} " + "a" * 10_000, "usageText": "u" * 10_000})
    finally:
        assert server.stop() == 0
    # Room for the copy's log, not its projections, which it builds from the log once copied.
    def used_bytes(folder):
        return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(folder) for f in files)
    roomy = tmp_path / "roomy"
    subprocess.run([str(BIN / "upload-coordinator"), "copy-store", "--from-data-dir", str(source), "--to-data-dir", str(roomy)], check=True, capture_output=True)
    room = used_bytes(roomy) - used_bytes(roomy / "projections") // 2
    filler = fill(small_disk)
    try:
        os.truncate(filler, os.path.getsize(filler) - room)
        copy = os.path.join(small_disk, "copy")
        out = subprocess.run([str(BIN / "upload-coordinator"), "copy-store", "--from-data-dir", str(source),
                              "--to-data-dir", copy], capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and f"error: the copy to {copy} did not finish, and nothing of it is kept:" in out.stderr, out.stderr
        assert "mdb_txn_commit" in out.stderr, "failed at a commit, its store open: " + out.stderr
        assert "rebuilt after" not in out.stderr and "projections" not in out.stderr, out.stderr
        assert [name for name in os.listdir(small_disk) if name != "filler"] == [], os.listdir(small_disk)
    finally:
        os.unlink(filler)


def test_ids_and_keys_come_from_the_kernel_not_a_descriptor_on_dev_urandom(tmp_path):
    """Out of descriptors, Foundation's UUID() (which opens /dev/urandom, unchecked) gave every
    caller the same all-zero id: a server starting so made the key pair AKUC0000000000004000 and a
    secret of zeros, and logos written at once met in one temporary file, stored under digests not
    their own. With every open of /dev/urandom failing, the key pair made at start is random, and
    logos written together each keep their own bytes."""
    data = tmp_path / "data"
    data.mkdir()
    failing_urandom = ("strace", "-f", "-qq", "-o", "/dev/null", "-P", "/dev/urandom",
                       "-e", "trace=open,openat", "-e", "inject=open,openat:error=EMFILE")
    server = Server(str(data), credentials=None, wrapper=failing_urandom)
    try:
        key_id, secret = (data / "credentials").read_text().split()
        assert re.fullmatch(r"AKUC[0-9A-F]{16}", key_id) and re.fullmatch(r"[0-9A-F]{64}", secret), (key_id, secret)
        assert "0000000000" not in key_id + secret, (key_id, secret)
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                           aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))
        repositories = [f"logos/r{n}" for n in range(8)]
        for name in repositories:
            ecr.create_repository(repositoryName=name)

        def put_logos(name):
            for _ in range(25):
                ecr.put_repository_catalog_data(repositoryName=name, catalogData={"logoImageBlob": b"\x89PNG\r\n\x1a\n" + os.urandom(200)})

        with concurrent.futures.ThreadPoolExecutor(len(repositories)) as pool:
            list(pool.map(put_logos, repositories))
    finally:
        # serve is strace's child: stopped itself, whose status strace then exits with.
        with open(f"/proc/{server.process.pid}/task/{server.process.pid}/children") as children:
            serve = children.read().split()
        try:
            assert serve, "serve ended before it was stopped"
            os.kill(int(serve[0]), signal.SIGTERM)
            assert server.process.wait(timeout=60) == 0
        finally:
            server.kill()
    replay = server.tool("upload-replay", "--data-dir", str(data), "--blobs", "contents")
    assert replay.returncode == 0, "every logo under its own digest: " + replay.stdout + replay.stderr
