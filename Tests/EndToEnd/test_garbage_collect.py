"""`upload-coordinator garbage-collect`: the blobs no repository names are removed while serve runs,
and nothing a repository names, or a command is about to name, ever is. Both backends."""
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, DATABASES, POSTGRES, Server, database, serving, stop_signals_at_their_defaults, tool
from test_operations import client, push_layer
from test_registry_api import Registry, push_blob

LOGO = b"\x89PNG\r\n\x1a\n"


def collect(data_dir, *flags):
    out = tool("upload-coordinator", "garbage-collect", "--data-dir", data_dir, "--json", *flags)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def blob_file(data_dir, digest):
    return os.path.join(data_dir, "blobs", *digest.split(":"))


def last_used_long_ago(data_dir, *digests):
    """Past the minute every collection keeps what was used in (a commit may be in flight that names it)."""
    long_ago = time.time() - 300
    for digest in digests:
        os.utime(blob_file(data_dir, digest), (long_ago, long_ago))


def test_a_deleted_repositorys_blobs_are_collected_and_what_others_name_is_kept():
    with serving("--allow-anonymous") as server:
        data = server.data_dir
        ecr = client(server)
        ecr.create_repository(repositoryName="gc/kept")
        logo = LOGO + os.urandom(200)
        ecr.create_repository(repositoryName="gc/gone", catalogData={"logoImageBlob": logo})
        shared, only = os.urandom(70_000), os.urandom(50_000)
        shared_digest = push_layer(ecr, "gc/kept", shared)
        assert push_layer(ecr, "gc/gone", shared) == shared_digest
        only_digest = push_layer(ecr, "gc/gone", only)
        # A blob pushed through the registry too, then its repository deleted.
        registry_digest = push_blob(Registry(server), "gc/gone", os.urandom(30_000))
        logo_digest = "sha256:" + hashlib.sha256(logo).hexdigest()
        garbage = sorted([only_digest, registry_digest, logo_digest])
        # Pushed days ago: the deletion marks them used, and the default minimum age (a day) keeps them.
        days_ago = time.time() - 3 * 86400
        for digest in garbage + [shared_digest]:
            os.utime(blob_file(data, digest), (days_ago, days_ago))
        ecr.delete_repository(repositoryName="gc/gone", force=True)
        waiting = collect(data)
        assert waiting["removed"] == [] and waiting["recentBlobs"] == 3 and waiting["namedBlobs"] == 1, waiting
        # No minimum age still keeps what was used within the minute (a commit naming it may be in flight).
        assert collect(data, "--min-age", "0")["recentBlobs"] == 3
        last_used_long_ago(data, *garbage)

        dry = collect(data, "--min-age", "0", "--dry-run")
        assert sorted(dry["removed"]) == garbage and dry["dryRun"], dry
        assert all(os.path.exists(blob_file(data, d)) for d in garbage)

        done = collect(data, "--min-age", "0")
        assert sorted(done["removed"]) == garbage and done["namedBlobs"] == 1, done
        assert done["removedBytes"] == len(only) + 30_000 + len(logo)
        assert not any(os.path.exists(blob_file(data, d)) for d in garbage)
        assert os.path.exists(blob_file(data, shared_digest))
        assert collect(data, "--min-age", "0")["removed"] == []

        # A layer removed is pushed again as new: kept, named, and left alone by the next collection.
        assert push_layer(ecr, "gc/kept", only) == only_digest
        assert os.path.exists(blob_file(data, only_digest))
        again = collect(data, "--min-age", "0")
        assert again["removed"] == [] and again["namedBlobs"] == 2, again
        available = ecr.batch_check_layer_availability(repositoryName="gc/kept", layerDigests=[shared_digest, only_digest])
        assert [layer["layerAvailability"] for layer in available["layers"]] == ["AVAILABLE", "AVAILABLE"]

        text = tool("upload-coordinator", "garbage-collect", "--data-dir", data, "--min-age", "0")
        assert text.returncode == 0 and "removed 0 blobs" in text.stdout, text.stdout + text.stderr
        # What the kept repository names is served whole.
        for content in (shared, only):
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            assert Registry(server)("GET", f"/v2/gc/kept/blobs/{digest}").content == content


def test_a_delete_whose_blobs_cannot_be_marked_used_is_refused_and_deletes_nothing():
    """A deleted repository's blobs are marked used, so that no collection removes them within its
    minimum age while a backup taken before may still name them. A mark (or the read of what to
    mark) that failed was passed over, and the delete went ahead unmarked; now it refuses the call,
    which the SDK retries. Here the blob is made immutable (chattr +i), which even root may not touch."""
    with serving("--allow-anonymous") as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="gc/marked")
        digest = push_layer(ecr, "gc/marked", os.urandom(10_000))
        blob = blob_file(server.data_dir, digest)
        if subprocess.run(["chattr", "+i", blob], capture_output=True).returncode != 0:
            pytest.skip("this file system does not take chattr +i")
        try:
            with pytest.raises(ClientError) as refused:
                ecr.delete_repository(repositoryName="gc/marked", force=True)
            assert refused.value.response["Error"]["Code"] == "ServerException", refused.value.response
        finally:
            subprocess.run(["chattr", "-i", blob], check=True)
        assert ecr.describe_repositories(repositoryNames=["gc/marked"])["repositories"], "nothing was deleted"
        ecr.delete_repository(repositoryName="gc/marked", force=True)


def test_a_blob_a_killed_collection_left_moved_aside_is_put_back_by_the_next_collection_and_by_serves_start(tmp_path):
    """A collection moves a blob aside before removing it; one killed in between leaves it under
    the moved-aside name, where no read finds it. The next collection puts it back (and keeps it,
    named), and so does serve's start: a blob is never lost to a crash."""
    data = str(tmp_path)
    content = os.urandom(40_000)

    def move_aside(digest):
        path = blob_file(data, digest)
        aside = os.path.join(os.path.dirname(path), f".collected-{digest.split(':')[1]}.{uuid.uuid4()}")
        os.rename(path, aside)
        return aside

    def served_whole(server, digest):
        with open(blob_file(data, digest), "rb") as f:
            assert f.read() == content
        assert Registry(server)("GET", f"/v2/gc/aside/blobs/{digest}").content == content

    with (database() if POSTGRES else contextlib.nullcontext()) as url:
        server = Server(data, "--allow-anonymous", database_url=url)
        try:
            ecr = client(server)
            ecr.create_repository(repositoryName="gc/aside")
            digest = push_layer(ecr, "gc/aside", content)
            aside = move_aside(digest)
            # Named, its file gone: the server's fault (500, which clients retry), never a body.
            assert Registry(server)("GET", f"/v2/gc/aside/blobs/{digest}").status_code == 500
            report = collect(data, "--min-age", "0")
            assert report["removed"] == [] and report["namedBlobs"] == 1 and report["failed"] == [], report
            assert not os.path.exists(aside)
            served_whole(server, digest)
            aside = move_aside(digest)
        finally:
            assert server.stop() == 0
        server = Server(data, "--allow-anonymous", database_url=url)
        try:
            assert not os.path.exists(aside)
            served_whole(server, digest)
        finally:
            assert server.stop() == 0
        replay = server.tool("upload-replay", "--data-dir", data, "--blobs", "contents")
        assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_store_that_names_no_blob_is_collected_only_when_forced():
    """Every repository deleted: nothing named, which looks like another store's folder."""
    with serving("--allow-anonymous") as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="gc/only")
        digest = push_layer(ecr, "gc/only", os.urandom(10_000))
        ecr.delete_repository(repositoryName="gc/only", force=True)
        # A folder of an algorithm not there holds no blob (made before sha512 was taken).
        os.rmdir(os.path.join(server.data_dir, "blobs", "sha512"))
        last_used_long_ago(server.data_dir, digest)
        refused = tool("upload-coordinator", "garbage-collect", "--data-dir", server.data_dir, "--min-age", "0")
        assert refused.returncode != 0 and "--force" in refused.stderr, refused.stdout + refused.stderr
        assert os.path.exists(blob_file(server.data_dir, digest))
        assert collect(server.data_dir, "--min-age", "0", "--force")["removed"] == [digest]


@pytest.fixture
def empty_folder(tmp_path):
    """A data folder laid out as serve lays it out, with an LMDB store of no events."""
    data = str(tmp_path / "data")
    migrated = subprocess.run([str(BIN / "upload-coordinator"), "migrate", "--data-dir", data],
                              capture_output=True, text=True, env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=""))
    assert migrated.returncode == 0, migrated.stderr
    for folder in ("blobs/sha256", "staging"):
        os.makedirs(os.path.join(data, folder), exist_ok=True)
    return data


def test_a_database_url_with_a_folder_of_an_lmdb_store_is_refused(empty_folder):
    """The folder's blobs are its LMDB store's: a database's store would name none of them (an
    LMDB store with no events names nothing, and is no reason to refuse)."""
    data = empty_folder
    made = subprocess.run([str(BIN / "upload-coordinator"), "create-repository", "--data-dir", data, "--repository-name", "gc/app"],
                          capture_output=True, text=True, env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=""))
    assert made.returncode == 0, made.stderr
    out = subprocess.run([str(BIN / "upload-coordinator"), "garbage-collect", "--data-dir", data, "--database-url", "postgres://gc@127.0.0.1:1/none"],
                         capture_output=True, text=True, env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=""))
    assert out.returncode != 0 and "holds an LMDB store" in out.stderr, out.stdout + out.stderr


def test_a_store_that_names_nothing_is_refused_and_keeps_every_blob(empty_folder):
    """An empty store (or, on PostgreSQL, a database that is not the folder's) names no blob: a
    collection would take them all, so it is refused."""
    data = empty_folder
    digest = "sha256:" + hashlib.sha256(b"a blob").hexdigest()
    with open(blob_file(data, digest), "wb") as f:
        f.write(b"a blob")
    hours_ago = time.time() - 7200
    os.utime(blob_file(data, digest), (hours_ago, hours_ago))
    out = tool("upload-coordinator", "garbage-collect", "--data-dir", data, "--min-age", "0")
    assert out.returncode != 0 and "holds no events" in out.stderr, out.stdout + out.stderr
    assert os.path.exists(blob_file(data, digest))
    negative = tool("upload-coordinator", "garbage-collect", "--data-dir", data, "--min-age=-1")
    assert negative.returncode != 0 and "--min-age must be 0 or more" in negative.stderr, negative.stderr


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL's commits in flight")
def test_a_transaction_in_flight_on_the_database_server_holds_a_collection_off():
    """A commit waiting on a synchronous standby is invisible until it ends, yet it lands: while
    a transaction begun before the collection is open, nothing is removed, and it says why."""
    with serving("--allow-anonymous") as server:
        ecr = client(server)
        ecr.create_repository(repositoryName="gc/kept")
        push_layer(ecr, "gc/kept", os.urandom(1000))
        ecr.create_repository(repositoryName="gc/gone")
        digest = push_layer(ecr, "gc/gone", os.urandom(1000))
        ecr.delete_repository(repositoryName="gc/gone", force=True)
        last_used_long_ago(server.data_dir, digest)
        holder = subprocess.Popen(["psql", server.database_url, "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("BEGIN;\nSELECT txid_current();\n\\echo begun\n")
            holder.stdin.flush()
            while (line := holder.stdout.readline()) != "begun\n":  # its xid taken
                assert line, "psql ended before its transaction began"
            started = time.monotonic()
            held = tool("upload-coordinator", "garbage-collect", "--data-dir", server.data_dir, "--min-age", "0")
            assert held.returncode != 0 and "has not ended" in held.stderr, held.stdout + held.stderr
            assert time.monotonic() - started >= 9
            assert os.path.exists(blob_file(server.data_dir, digest))
        finally:
            holder.stdin.write("ROLLBACK;\n\\q\n")
            holder.stdin.close()
            holder.wait(timeout=30)
        assert collect(server.data_dir, "--min-age", "0")["removed"] == [digest]


def test_a_collection_stopped_by_a_signal_finishes_its_blob_and_a_killed_ones_is_put_back_while_serve_runs(tmp_path):
    """A collection moves a blob aside, looks at it again, then removes it or puts it back. Stopped
    by a signal in between (Ctrl-C, SIGTERM, a closed ssh session's SIGHUP) it ended there, and a
    blob claimed by a push just before the rename stayed missing under its name, served as 500,
    until the next collection or a restart. Now it finishes that blob first; and what a SIGKILLed
    one leaves is put back by serve's sweeper within a sweep, and by a backup, which holds
    collections off."""
    data = str(tmp_path / "data")
    os.mkdir(data)

    def unnamed_old_blob(ecr, repo):
        ecr.create_repository(repositoryName=repo)
        digest = push_layer(ecr, repo, os.urandom(20_000))
        ecr.delete_repository(repositoryName=repo, force=True)
        last_used_long_ago(data, digest)
        return digest

    def paused_collection(pause):
        process = subprocess.Popen(
            [str(BIN / "upload-coordinator"), "garbage-collect", "--data-dir", data, "--min-age", "60", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=stop_signals_at_their_defaults,
            env=dict(os.environ, UPLOAD_COORDINATOR_DATABASE_URL=DATABASES.get(data, ""),
                     UPLOAD_COORDINATOR_TEST_COLLECTION_PAUSE_FILE=str(pause)))
        deadline = time.monotonic() + 60
        while not pause.exists():
            assert process.poll() is None and time.monotonic() < deadline, (process.kill(), process.communicate(timeout=30))
            time.sleep(0.01)
        return process

    def moved_aside():
        return sorted(name for name in os.listdir(os.path.join(data, "blobs", "sha256")) if name.startswith(".collected-"))

    with (database() if POSTGRES else contextlib.nullcontext()) as url:
        server = Server(data, "--allow-anonymous", "--sweep-interval", "1", database_url=url)
        try:
            ecr = client(server)
            ecr.create_repository(repositoryName="gc/kept")
            push_layer(ecr, "gc/kept", os.urandom(10_000))  # a store that names nothing is refused
            stopped = unnamed_old_blob(ecr, "gc/stopped")
            pause = tmp_path / "stopped.paused"
            process = paused_collection(pause)
            assert len(moved_aside()) == 1 and not os.path.exists(blob_file(data, stopped))
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert process.poll() is None, "it waits for the blob it is removing"
            pause.unlink()
            _, err = process.communicate(timeout=60)
            assert process.returncode == 128 + signal.SIGTERM, (process.returncode, err)
            assert moved_aside() == [] and not os.path.exists(blob_file(data, stopped)), "removed, as it was unnamed and old"

            killed = unnamed_old_blob(ecr, "gc/killed")
            process = paused_collection(tmp_path / "killed.paused")
            # Looked at while it holds the folder: once killed, a sweep (every second) may come at once.
            assert len(moved_aside()) == 1 and not os.path.exists(blob_file(data, killed))
            process.kill()
            process.communicate()
            deadline = time.monotonic() + 30
            while moved_aside() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert moved_aside() == [] and os.path.exists(blob_file(data, killed)), "put back by the sweeper"
        finally:
            assert server.stop() == 0
        if POSTGRES:
            return  # backup is LMDB's
        process = paused_collection(tmp_path / "before-backup.paused")
        process.kill()
        process.communicate()
        assert len(moved_aside()) == 1 and not os.path.exists(blob_file(data, killed))
        backup = tool("upload-coordinator", "backup", "--data-dir", data, "--to", str(tmp_path / "backup"))
        assert backup.returncode == 0, backup.stdout + backup.stderr
        assert moved_aside() == [] and os.path.exists(blob_file(data, killed)), "put back by the backup"
