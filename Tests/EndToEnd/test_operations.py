"""Operating it: `backup` while `serve` takes writes (wrk driving InitiateLayerUpload), restored and
served, replayed and audited against the root it printed; refusals and interruptions that leave no
folder that looks complete; and `stats`, checked against a store whose contents the test knows.
Backups copy an LMDB folder, so these servers are LMDB in both passes of the suite."""
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from conftest import BIN, Server, anonymous_pull, stop_signals_at_their_defaults, tool

ROOT = Path(__file__).resolve().parents[2]
WRK_SCRIPT = ROOT / "Tools" / "Benchmarks" / "reference" / "initiate-ecr.lua"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def client(server):
    return boto3.client(
        "ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def push_layer(ecr, repo, content):
    upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(content) - 1, layerPartBlob=content)
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[digest])
    return digest


def push_image(ecr, repo, layer, tag):
    config = push_layer(ecr, repo, CONFIG)
    digest = push_layer(ecr, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(layer)}]})
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    return config, digest


def stage_part(ecr, repo, content):
    """An upload left in progress with one part: its bytes live in staging."""
    upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(content) - 1, layerPartBlob=content)
    return upload


def json_of(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def events_of(data_dir):
    out = tool("upload-coordinator", "events", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def live(tmp_path):
    """A store with an image, a second repository, and an upload in progress."""
    data = tmp_path / "live"
    data.mkdir()
    # wrk's six seconds of InitiateLayerUpload can pass the default 10,000 uploads in progress per
    # repository on a fast run (LimitExceededException); the limit is not what these tests are about.
    server = Server(str(data), "--allow-anonymous", "--max-active-uploads", "1000000")
    ecr = client(server)
    for name in ("ops/app", "bench/app"):
        ecr.create_repository(repositoryName=name)
    layer = os.urandom(300_000)
    config, digest = push_image(ecr, "ops/app", layer, "v1")
    staged = os.urandom(6_000_000)
    upload = stage_part(ecr, "ops/app", staged)
    try:
        yield dict(server=server, ecr=ecr, data=data, layer=layer, digest=digest, config=config, staged=staged, upload=upload)
    finally:
        if server.process.poll() is None:
            assert server.stop() == 0


def test_a_backup_taken_under_wrk_replays_serves_and_has_the_root_it_printed(live, tmp_path):
    server, data, backup = live["server"], live["data"], tmp_path / "backup"
    wrk = subprocess.Popen(
        ["wrk", "-t1", "-c8", "-d10s", "--timeout", "5s", "-s", str(WRK_SCRIPT), server.endpoint + "/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # writes before the backup, and (wrk runs 10 s) after its snapshot, however slow the machine
    key = data / "transparency-log.key"
    os.chmod(key, 0o640)  # an operator loosened the live key: the backup's copy is private anyway
    try:
        report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(backup), "--json"))
    finally:
        os.chmod(key, 0o600)
    out, _ = wrk.communicate(timeout=60)
    result = dict(re.findall(r"(\w+)=([\d.]+)", out.splitlines()[-1]))
    assert int(result["status200"]) > 0 and int(result["other_status"]) == 0, out
    assert report["stagedUploads"] == 1 and report["stagedBytes"] == len(live["staged"])
    assert report["blobs"] == 2 and report["copiedBlobs"] == 0 and report["missingBlobs"] == []
    assert server.stop() == 0

    # Writes went on while the backup ran, and the backup is the live log's prefix at its position.
    live_events, backup_events = events_of(data), events_of(backup)
    assert len(live_events) > report["position"] == len(backup_events) > 10
    assert backup_events == live_events[:report["position"]]

    root = json_of(tool("upload-coordinator", "audit", "root", "--data-dir", str(backup)))
    assert (root["treeSize"], root["rootHash"]) == (report["treeSize"], report["rootHash"])
    replay = tool("upload-replay", "--data-dir", str(backup), "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert json.loads(replay.stdout)["merkleRoot"] == report["rootHash"]
    assert not list(tmp_path.glob(".backup.partial-*")), "no partial folder is left behind"

    # The backup serves as it is: the image, its blobs, the upload in progress with its bytes,
    # and the log's signing identity, which it keeps.
    restored = Server(str(backup))
    try:
        ecr = client(restored)
        images = ecr.describe_images(repositoryName="ops/app")["imageDetails"]
        assert [i.get("imageTags") for i in images] == [["v1"]]
        layers = ecr.batch_check_layer_availability(repositoryName="ops/app", layerDigests=[live["digest"], live["config"]])["layers"]
        assert {l["layerAvailability"] for l in layers} == {"AVAILABLE"}
        more = os.urandom(1000)
        ecr.upload_layer_part(repositoryName="ops/app", uploadId=live["upload"], partFirstByte=len(live["staged"]),
                              partLastByte=len(live["staged"]) + len(more) - 1, layerPartBlob=more)
        whole = hashlib.sha256(live["staged"] + more).hexdigest()
        done = ecr.complete_layer_upload(repositoryName="ops/app", uploadId=live["upload"], layerDigests=["sha256:" + whole])
        assert done["layerDigest"] == "sha256:" + whole
        with open(backup / "blobs" / "sha256" / whole, "rb") as f:
            assert f.read() == live["staged"] + more
        assert open(backup / "transparency-log.key", "rb").read() == open(data / "transparency-log.key", "rb").read()
        assert os.stat(backup / "transparency-log.key").st_mode & 0o077 == 0, "the key stays private"
    finally:
        assert restored.stop() == 0
    assert tool("upload-replay", "--data-dir", str(backup)).returncode == 0


def test_uploads_that_end_or_grow_while_a_backup_copies_keep_the_bytes_its_position_records(live, tmp_path):
    """The backup holds still right after its snapshot while one upload completes, one is aborted
    (its repository deleted), one takes another part, and one starts: each must be in the backup
    exactly as the log recorded it at the backup's position, in files of the backup's own."""
    ecr, data = live["ecr"], live["data"]
    ecr.create_repository(repositoryName="ops/doomed")
    first = {name: os.urandom(5_300_000) for name in ("completes", "aborted", "grows")}
    uploads = {name: stage_part(ecr, "ops/doomed" if name == "aborted" else "ops/app", content) for name, content in first.items()}
    pause = tmp_path / "paused"
    backup = tmp_path / "backup"
    process = subprocess.Popen(
        [str(BIN / "upload-coordinator"), "backup", "--data-dir", str(data), "--to", str(backup), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, UPLOAD_COORDINATOR_TEST_BACKUP_PAUSE_FILE=str(pause)))
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    whole = first["completes"]
    ecr.complete_layer_upload(repositoryName="ops/app", uploadId=uploads["completes"], layerDigests=["sha256:" + hashlib.sha256(whole).hexdigest()])
    ecr.delete_repository(repositoryName="ops/doomed", force=True)
    more = os.urandom(1000)
    ecr.upload_layer_part(repositoryName="ops/app", uploadId=uploads["grows"], partFirstByte=len(first["grows"]),
                          partLastByte=len(first["grows"]) + len(more) - 1, layerPartBlob=more)
    later = stage_part(ecr, "ops/app", b"after the snapshot")
    for name in uploads:
        assert not (data / "staging" / uploads[name]).exists() or name == "grows"
    pause.unlink()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    report = json.loads(out)
    assert report["stagedUploads"] == 4, "the three, and the one from before"
    for name, content in first.items():
        staged = backup / "staging" / uploads[name]
        assert staged.read_bytes() == content, name
        assert os.stat(staged).st_ino != os.stat(data / "blobs" / "sha256" / hashlib.sha256(whole).hexdigest()).st_ino
    assert not (backup / "staging" / later).exists()
    assert (data / "staging" / uploads["grows"]).read_bytes() == first["grows"] + more, "the live upload is untouched"
    assert oct(os.stat(backup / "data.mdb").st_mode & 0o777) == "0o600"
    assert oct(os.stat(backup / "projections" / "data.mdb").st_mode & 0o777) == "0o600"
    for folder in [backup / "projections", backup / "staging", backup / "blobs" / "sha256", data / "blobs", data / "spool"]:
        assert oct(os.stat(folder).st_mode & 0o777) == "0o700", folder

    # Served, the backup is the store at its position: the aborted repository is back with its
    # upload, which completes from the backup's bytes; the live store's files are untouched.
    restored = Server(str(backup))
    try:
        again = client(restored)
        digest = "sha256:" + hashlib.sha256(first["aborted"]).hexdigest()
        done = again.complete_layer_upload(repositoryName="ops/doomed", uploadId=uploads["aborted"], layerDigests=[digest])
        assert done["layerDigest"] == digest
        again.upload_layer_part(repositoryName="ops/app", uploadId=uploads["grows"], partFirstByte=len(first["grows"]),
                                partLastByte=len(first["grows"]) + 9, layerPartBlob=b"0123456789")
    finally:
        assert restored.stop() == 0
    assert (data / "staging" / uploads["grows"]).read_bytes() == first["grows"] + more
    assert tool("upload-replay", "--data-dir", str(backup)).returncode == 0


def test_stats_and_backup_only_read_the_live_store(live, tmp_path):
    data = live["data"]
    assert live["server"].stop() == 0  # nothing else writes now
    before = {p: p.stat().st_mtime_ns for p in (data / "data.mdb", data / "projections" / "data.mdb")}
    assert json_of(tool("upload-coordinator", "stats", "--data-dir", str(data), "--json"))["events"] > 0
    json_of(tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "b"), "--json"))
    assert {p: p.stat().st_mtime_ns for p in before} == before, "neither wrote to the live store"
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    out = tool("upload-coordinator", "stats", "--data-dir", str(empty))
    assert out.returncode == 1 and "holds no store" in out.stderr and list(empty.iterdir()) == []
    # With a database the folder holds the blobs alone: a missing one is no empty blob store.
    missing = tool("upload-coordinator", "stats", "--data-dir", str(tmp_path / "typo"), "--database-url", "postgres://u@127.0.0.1:1/db")
    assert missing.returncode == 1 and "there is no folder" in missing.stderr, missing.stderr
    inside = tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(data / "staging" / "b"))
    assert inside.returncode != 0 and "inside the data folder" in inside.stderr
    link = tmp_path / "link"
    (tmp_path / "target").mkdir()
    link.symlink_to(tmp_path / "target")
    assert tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(link)).returncode != 0
    pg = tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "c"), "--database-url", "postgres://u@127.0.0.1:1/db")
    assert pg.returncode != 0 and "pg_basebackup" in pg.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root (CI runs as root)")
@pytest.mark.parametrize("mount", ["tmpfs", "bind"])
def test_a_backup_into_a_mount_point_is_refused_and_writes_nothing(live, tmp_path, mount):
    """The backup is built beside DEST and renamed into place: a mount point cannot take its
    place, and what the mounted file system holds is not the backup's to replace. A bind mount of
    the same file system too (its device number is its parent's), refused before the copy, not
    at the rename after it; and a name with a space, which the kernel's list of mounts escapes."""
    mounted = tmp_path / "mounted here"
    mounted.mkdir()
    if mount == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mounted)], check=True)
    else:
        (tmp_path / "elsewhere").mkdir()
        if subprocess.run(["mount", "--bind", str(tmp_path / "elsewhere"), str(mounted)], capture_output=True).returncode != 0:
            pytest.skip("no bind mounts here")
    try:
        out = tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(mounted))
        assert out.returncode != 0 and "is a mount point" in out.stderr, out.stderr
        assert list(mounted.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_a_backup_into_a_folder_that_is_not_empty_is_refused_and_writes_nothing(live, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "precious").write_text("keep me")
    out = tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(taken))
    assert out.returncode != 0 and "not an empty folder" in out.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["precious"] and (taken / "precious").read_text() == "keep me"
    file = tmp_path / "a-file"
    file.write_text("x")
    assert tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(file)).returncode != 0
    missing = tool("upload-coordinator", "backup", "--data-dir", str(tmp_path / "nothing"), "--to", str(tmp_path / "b"))
    assert missing.returncode != 0 and "holds no store" in missing.stderr
    # A destination that cannot be made, or names no new folder, is refused before any copy, in words.
    no_parent = tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(tmp_path / "no" / "such" / "b"))
    assert no_parent.returncode == 64 and "does not exist" in no_parent.stderr and "NSCocoaErrorDomain" not in no_parent.stderr, no_parent.stderr
    empty = tmp_path / "a-working-folder"
    empty.mkdir()
    for unnamed in (".", ""):
        out = subprocess.run([str(BIN / "upload-coordinator"), "backup", "--data-dir", str(live["data"]), "--to", unnamed],
                             cwd=empty, capture_output=True, text=True, timeout=120)
        assert out.returncode == 64 and "names no new folder" in out.stderr, (unnamed, out.stderr)
    assert list(empty.iterdir()) == [] and not list(tmp_path.glob(".*partial*"))
    # Another program's LMDB store is none to migrate or serve: nothing is added to it.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    import lmdb
    with lmdb.open(str(foreign), max_dbs=4) as env:
        with env.begin(write=True, db=env.open_db(b"mine")) as txn:
            txn.put(b"k", b"v")
    size = os.path.getsize(foreign / "data.mdb")
    for command in (("serve", "--port", "0"), ("migrate",), ("stats",)):
        refused = tool("upload-coordinator", command[0], "--data-dir", str(foreign), *command[1:])
        assert refused.returncode != 0 and "another program" in refused.stderr, (command, refused.stderr)
    with lmdb.open(str(foreign), max_dbs=4, readonly=True) as env, env.begin() as txn:
        assert [key for key, _ in txn.cursor()] == [b"mine"]
    assert os.path.getsize(foreign / "data.mdb") == size and sorted(p.name for p in foreign.iterdir()) == ["data.mdb", "lock.mdb"]
    # A data folder named by a file, or under one, is said to be that (not Foundation's error code).
    for data_dir in (file, file / "sub"):
        served = tool("upload-coordinator", "serve", "--data-dir", str(data_dir), "--port", "0")
        why = "is not a folder" if data_dir == file else "Not a directory"
        assert served.returncode != 0 and why in served.stderr and "NSCocoaErrorDomain" not in served.stderr, served.stderr
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "b").exists()
    # An empty folder is a fine destination.
    empty = tmp_path / "empty"
    empty.mkdir()
    report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(empty), "--json"))
    assert json_of(tool("upload-coordinator", "audit", "root", "--data-dir", str(empty)))["rootHash"] == report["rootHash"]
    # So is a one-character name where the command runs (Foundation's path parsing crashed on it).
    for name in ("X", "Z/"):
        short = json_of(tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", name, "--json", cwd=tmp_path))
        assert json_of(tool("upload-coordinator", "audit", "root", "--data-dir", str(tmp_path / name.rstrip("/"))))["treeSize"] == short["treeSize"]


def test_an_interrupted_backup_leaves_no_folder_that_looks_complete(live, tmp_path):
    interrupted = 0
    for i, delay in enumerate([0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8]):
        destination = tmp_path / f"b{i}"
        process = subprocess.Popen([str(BIN / "upload-coordinator"), "backup", "--data-dir", str(live["data"]), "--to", str(destination)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if destination.exists():
            replay = tool("upload-replay", "--data-dir", str(destination))
            assert replay.returncode == 0, f"a backup folder under its own name is complete: {replay.stdout}{replay.stderr}"
        else:
            interrupted += 1
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".b{i}.")]
            assert all(name.startswith(f".b{i}.partial-") for name in leftovers), leftovers
    assert interrupted > 0, "at least the immediate kill interrupts a backup"


def test_a_reader_slot_left_by_a_killed_process_is_released_while_serve_runs(live):
    """A backup killed mid-copy left its snapshot's reader slot in the live store's lock.mdb, and
    LMDB reuses no page freed after a standing slot's snapshot: the live file grew with every write
    (10 MB to 256 MB in 30 s of load) until some process next opened the store. serve releases
    such slots as it runs (every 10 s), and says so."""
    import lmdb
    holder = subprocess.Popen([sys.executable, "-c", (
        "import lmdb, sys, time\n"
        "env = lmdb.open(sys.argv[1], readonly=True, max_dbs=32)\n"
        "txn = env.begin()\n"
        "print('holding', flush=True)\n"
        "time.sleep(600)\n"), str(live["data"])], stdout=subprocess.PIPE, text=True)

    def readers():
        with lmdb.open(str(live["data"]), readonly=True, max_dbs=32) as env:
            return [line.split()[0] for line in env.readers().splitlines()[1:]]
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert str(holder.pid) in readers()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 60
    while str(holder.pid) in readers():
        assert time.monotonic() < deadline, "serve never released the dead reader's slot"
        time.sleep(0.5)
    assert "cleared stale reader slots" in live["server"].stderr_text()
    live["ecr"].create_repository(repositoryName="ops/after")  # and the store still takes writes


def test_a_backup_killed_after_its_snapshot_leaves_only_its_partial_folder_which_the_next_removes(live, tmp_path):
    pause, destination = tmp_path / "paused", tmp_path / "b"
    process = subprocess.Popen([str(BIN / "upload-coordinator"), "backup", "--data-dir", str(live["data"]), "--to", str(destination)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, UPLOAD_COORDINATOR_TEST_BACKUP_PAUSE_FILE=str(pause)))
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = [p for p in tmp_path.glob(".b.partial-*") if p.is_dir()]
    assert not destination.exists() and len(partial) == 1
    assert Path(str(partial[0]) + ".lock").exists(), "beside it, the lock its builder held"
    assert (partial[0] / "data.mdb").exists(), "killed after the snapshot: the log was copied, under no name a store goes by"
    assert os.stat(partial[0]).st_mode & 0o077 == 0, "the partial folder is private"

    # The next backup to that destination removes it: its builder is dead (its lock is free).
    second_pause, second_log = tmp_path / "paused-again", tmp_path / "second.log"
    with open(second_log, "wb") as log:
        second = subprocess.Popen([str(BIN / "upload-coordinator"), "backup", "--data-dir", str(live["data"]), "--to", str(destination)],
                                  stdout=log, stderr=log, env=dict(os.environ, UPLOAD_COORDINATOR_TEST_BACKUP_PAUSE_FILE=str(second_pause)))
    while not second_pause.exists():
        assert second.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    assert not partial[0].exists(), "the killed backup's copy is removed"
    assert "removed an interrupted backup's folder" in second_log.read_text()
    [building] = [p for p in tmp_path.glob(".b.partial-*") if p.is_dir()]
    # One that is still being built is not: a third backup, run whole meanwhile, leaves it be.
    third = tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(destination))
    assert third.returncode == 0, third.stderr
    assert building.exists() and "removed" not in third.stderr
    second_pause.unlink()
    assert second.wait(timeout=60) != 0, "the destination was taken meanwhile"
    assert list(tmp_path.glob(".b.partial-*")) == [], "neither folders nor their lock files are left"
    assert tool("upload-replay", "--data-dir", str(destination)).returncode == 0


def backup_pausing(live, destination, pause, sighup=signal.SIG_DFL):
    """A backup of the live store that pauses once its snapshot is taken (writing `pause`, and
    waiting for it to go), started as from a terminal (SIGHUP's disposition `sighup`)."""
    def dispositions():
        stop_signals_at_their_defaults()
        signal.signal(signal.SIGHUP, sighup)
    return subprocess.Popen([str(BIN / "upload-coordinator"), "backup", "--data-dir", str(live["data"]), "--to", str(destination)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=dispositions,
                            env=dict(os.environ, UPLOAD_COORDINATOR_TEST_BACKUP_PAUSE_FILE=str(pause)))


def wait_until_paused(process, pause):
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert process.poll() is None and time.monotonic() < deadline, (process.kill(), process.communicate(timeout=30))
        time.sleep(0.005)


def stopped_while_paused_leaves_nothing(process, stop, destination, paused_with):
    """`process`, paused with its partial folder beside `destination` holding a store, stopped by
    `stop`: it ends 128 + the signal, its folder removed, nothing published."""
    folder = destination.parent
    assert any((p / "data.mdb").exists() for p in folder.glob(f".{destination.name}.partial-*")), paused_with
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, (process.returncode, err)
    assert "interrupted: removed" in err and list(folder.glob(f".{destination.name}*")) == [] and not destination.exists(), \
        (err, list(folder.iterdir()))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_backup_stopped_by_a_signal_removes_its_partial_folder_and_publishes_nothing_part_way(live, tmp_path, stop):
    """Ctrl-C (or an init system's SIGTERM, or a closed ssh session's SIGHUP) on a backup: its copy of the whole store went on taking
    the disk, hidden, until the next backup to the same place. The signal is sent while it is
    paused after its snapshot, then at moments spread over the rest of its work (hard links,
    syncs, the rename into place): each ends with no folder at all, or a whole backup published."""
    def backup(destination, pause):
        return backup_pausing(live, destination, pause)

    paused = wait_until_paused
    pause, destination = tmp_path / "paused", tmp_path / "b"
    process = backup(destination, pause)
    paused(process, pause)
    stopped_while_paused_leaves_nothing(process, stop, destination, "paused after its snapshot was copied")

    outcomes = set()
    for attempt in range(12):
        destination, pause = tmp_path / f"r{attempt}", tmp_path / f"r{attempt}.paused"
        process = backup(destination, pause)
        paused(process, pause)
        pause.unlink()
        time.sleep(attempt * 0.004)
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
        left = list(tmp_path.glob(f".r{attempt}.*"))
        if destination.exists():
            # Interrupted once it was renamed into place: whole, and durable.
            assert process.returncode in (0, 128 + stop) and left == [], (attempt, process.returncode, err, left)
            assert tool("upload-replay", "--data-dir", str(destination)).returncode == 0
            outcomes.add("whole")
        else:
            assert process.returncode == 128 + stop and "interrupted: removed" in err and left == [], (attempt, process.returncode, err, left)
            outcomes.add("removed")
    assert "removed" in outcomes, outcomes
    assert tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(tmp_path / "b")).returncode == 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_copy_stopped_by_a_signal_removes_its_partial_folder_and_publishes_nothing(live, tmp_path, stop):
    """copy-store stopped while paused with its destination's store open (its partial folder
    holds a new store): it ends 128 + the signal, with no folder left and nothing published, and a
    copy to the same place then succeeds."""
    pause, destination = tmp_path / "copy.paused", tmp_path / "copy"
    command = [str(BIN / "upload-coordinator"), "copy-store", "--from-data-dir", str(live["data"]), "--to-data-dir", str(destination)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=stop_signals_at_their_defaults,
                               env=dict(os.environ, UPLOAD_COORDINATOR_TEST_COPY_PAUSE_FILE=str(pause)))
    wait_until_paused(process, pause)
    stopped_while_paused_leaves_nothing(process, stop, destination, "paused with the destination's store open")
    copied = tool("upload-coordinator", *command[1:])
    assert copied.returncode == 0, copied.stderr
    assert tool("upload-replay", "--data-dir", str(destination), "--blobs", "none").returncode == 0, "a copy takes the log alone"


def test_a_backup_started_under_nohup_outlives_hangups_and_the_second_hangup_of_a_closed_terminal_too(live, tmp_path):
    """`nohup upload-coordinator backup …` asks to outlive the terminal: the hangup is ignored, as
    it was started. Started from a terminal, the first SIGHUP stops it (its partial folder removed)
    and a second one, which a closed terminal's kernel sends after its shell's, does not cut that
    short."""
    backup, paused = backup_pausing, wait_until_paused

    pause = tmp_path / "nohup.paused"
    process = backup(live, tmp_path / "kept", pause, sighup=signal.SIG_IGN)
    paused(process, pause)
    process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert process.poll() is None, "a backup under nohup ignores the hangup"
    pause.unlink()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and (tmp_path / "kept").exists(), err

    pause = tmp_path / "hung-up.paused"
    process = backup(live, tmp_path / "hung-up", pause)
    paused(process, pause)
    process.send_signal(signal.SIGHUP)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGHUP and "interrupted: removed" in err, (process.returncode, err)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hung-up")] == [], list(tmp_path.iterdir())


def test_blobs_the_store_names_come_with_it_and_missing_ones_are_refused(live, tmp_path):
    ecr, data = live["ecr"], live["data"]
    logo = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    ecr.put_repository_catalog_data(repositoryName="ops/app", catalogData={"logoImageBlob": logo})
    report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "with-logo"), "--json"))
    assert report["blobs"] == 3, "the config, the layer and the logo"
    assert (tmp_path / "with-logo" / "blobs" / "sha256" / hashlib.sha256(logo).hexdigest()).read_bytes() == logo
    (data / "blobs" / "sha256" / live["digest"].split(":")[1]).unlink()
    refused = tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "b"))
    assert refused.returncode == 1 and live["digest"] in refused.stderr and not (tmp_path / "b").exists()
    assert "lacks 1 of the blobs it names" in refused.stderr, refused.stderr
    allowed = json_of(tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "c"), "--json", "--allow-missing-blobs"))
    assert allowed["missingBlobs"] == [live["digest"]] and allowed["blobs"] == 2


def test_upload_replay_finds_the_blobs_the_store_names_missing_cut_short_or_altered(live):
    """The log and the projections can pass while the folder has lost what they name (a restore
    without blobs, a copy-store without its folder's blobs, a damaged disk): every pull of those
    layers would fail. upload-replay looks at each named blob (exit 4), its bytes too when asked."""
    ecr, data = live["ecr"], live["data"]
    logo = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    ecr.put_repository_catalog_data(repositoryName="ops/app", catalogData={"logoImageBlob": logo})
    ecr.create_repository(repositoryName="ops/other")
    push_layer(ecr, "ops/other", live["layer"])  # a second repository naming the same blob: looked at once
    assert live["server"].stop() == 0

    def replay(*options):
        result = tool("upload-replay", "--data-dir", str(data), "--json", *options)
        return result.returncode, json.loads(result.stdout)

    def blob(digest):
        return data / "blobs" / "sha256" / digest.split(":")[1]

    status, report = replay()
    assert status == 0 and report["ok"], report
    assert report["blobs"]["checked"] and report["blobs"]["named"] == 3, "the config, the layer and the logo, each once"
    status, report = replay("--blobs", "contents")
    assert status == 0 and report["blobs"]["bytesHashed"] == len(CONFIG) + len(live["layer"]) + len(logo), report

    layer = blob(live["digest"])
    layer.write_bytes(live["layer"][:-1])
    status, report = replay()
    assert status == 4 and not report["ok"] and "failure" not in report, report
    assert report["blobs"]["wrongSize"] == 1 and len(report["blobs"]["problems"]) == 2, "both layers that name it record its size"
    assert all(live["digest"] in p and "recorded as 300000 bytes, its file holds 299999" in p for p in report["blobs"]["problems"]), report

    layer.write_bytes(live["layer"][:-1] + bytes([live["layer"][-1] ^ 1]))
    assert replay()[0] == 0, "the same size: only hashing tells"
    status, report = replay("--blobs", "contents")
    assert status == 4 and report["blobs"]["wrongContents"] == 1, report

    layer.write_bytes(live["layer"])
    blob("sha256:" + hashlib.sha256(logo).hexdigest()).unlink()
    text = tool("upload-replay", "--data-dir", str(data))
    assert text.returncode == 4, text.stdout + text.stderr
    assert "logo sha256:" + hashlib.sha256(logo).hexdigest() in text.stderr and "1 missing or unreadable" in text.stderr, text.stderr
    assert "OK:" not in text.stdout
    status, report = replay("--blobs", "none")
    assert status == 0 and report["ok"] and not report["blobs"]["checked"], report


def test_a_read_only_snapshot_of_a_folder_is_backed_up(live, tmp_path):
    """A file-system snapshot mounted read-only: the lock a backup takes to keep collections off
    cannot be made there, and need not be (nothing can change its blobs)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root: run the end-to-end tests as root (CI runs them as root)")
    assert live["server"].stop() == 0
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(snapshot)], check=True)
    try:
        shutil.copytree(live["data"], snapshot / "data", ignore=shutil.ignore_patterns("*lock*"))
        subprocess.run(["mount", "-o", "remount,ro", str(snapshot)], check=True)
        report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(snapshot / "data"), "--to", str(tmp_path / "b"), "--json"))
        assert report["blobs"] == 2 and report["stagedUploads"] == 1, report
        assert tool("upload-replay", "--data-dir", str(tmp_path / "b"), "--blobs", "contents").returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(snapshot)], check=False)


def test_a_backup_that_fails_part_way_cleans_up(live, tmp_path):
    # Staged bytes the log records but the disk lacks: the backup must fail, not copy a hole,
    # unless told to back the store up as it is (the upload without its bytes, reported).
    staging = live["data"] / "staging" / live["upload"]
    os.truncate(staging, 10)
    out = tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(tmp_path / "b"))
    assert out.returncode == 1 and live["upload"] in out.stderr and "staged bytes of 1 uploads" in out.stderr, out.stderr
    assert "--allow-missing-blobs" in out.stderr
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial-*"))
    allowed = json_of(tool("upload-coordinator", "backup", "--data-dir", str(live["data"]), "--to", str(tmp_path / "c"), "--json", "--allow-missing-blobs"))
    assert allowed["missingStaging"] == [live["upload"]] and allowed["stagedUploads"] == 0, allowed
    assert not (tmp_path / "c" / "staging" / live["upload"]).exists()


def test_a_backup_of_a_log_with_a_damaged_record_fails_and_names_it(tmp_path):
    """LMDB keeps no checksums: a byte changed in a log page on disk (a failing disk, a stray
    write) was copied into the backup beside a root it no longer proves. The backup computes its
    Merkle tree again from the events, refuses, and leaves nothing that looks like a backup."""
    data = tmp_path / "data"
    data.mkdir()
    server = Server(str(data))
    try:
        client(server).create_repository(repositoryName="ops/damaged-zq7")
        client(server).create_repository(repositoryName="ops/intact")
    finally:
        assert server.stop() == 0
    log = data / "data.mdb"
    pages = log.read_bytes()
    assert pages.count(b"ops/damaged-zq7") >= 1, "the name is in a log record"
    log.write_bytes(pages.replace(b"ops/damaged-zq7", b"ops/damaged-zq8"))
    out = tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(tmp_path / "b"))
    assert out.returncode == 1 and "the log does not hash to its Merkle tree" in out.stderr, out.stderr
    assert "position 1" in out.stderr or "positions 1" in out.stderr, out.stderr
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial-*"))


def test_stats_reports_what_the_store_holds(live):
    server, data, ecr = live["server"], live["data"], live["ecr"]
    stats = json_of(tool("upload-coordinator", "stats", "--data-dir", str(data), "--json"))
    events = events_of(data)
    assert stats["events"] == stats["logPosition"] == len(events) == json.loads(events[-1])["position"]
    assert (stats["repositories"], stats["images"], stats["activeUploads"]) == (2, 1, 1)
    assert (stats["blobs"], stats["blobBytes"]) == (2, len(live["layer"]) + len(CONFIG))
    assert (stats["stagedUploads"], stats["stagingBytes"]) == (1, len(live["staged"]))
    assert 0 < stats["mapUsedBytes"] <= stats["mapSizeBytes"] and 0 < stats["projectionsMapUsedBytes"]
    assert 1 <= stats["readerSlots"] <= stats["maxReaderSlots"] == 256, "the server's and stats' own"
    assert stats["checkpointLag"] == 0
    assert 0 < stats["diskFreeBytes"] <= stats["diskBytes"]
    # The figures follow the store: one more repository, one more upload.
    ecr.create_repository(repositoryName="ops/more")
    ecr.initiate_layer_upload(repositoryName="ops/more")
    after = json_of(tool("upload-coordinator", "stats", "--data-dir", str(data), "--json"))
    assert (after["events"], after["repositories"], after["activeUploads"]) == (stats["events"] + 2, 3, 2)
    text = tool("upload-coordinator", "stats", "--data-dir", str(data))
    assert text.returncode == 0 and re.search(r"^repositories:\s+3$", text.stdout, re.M), text.stdout
    assert re.search(r"^reader slots:\s+\d+ of 256 held \(this read.s among them\)$", text.stdout, re.M), text.stdout


def test_both_executables_print_one_version():
    versions = [subprocess.run([str(BIN / name), "--version"], capture_output=True, text=True, timeout=60) for name in ("upload-coordinator", "upload-replay")]
    assert [v.returncode for v in versions] == [0, 0], [v.stderr for v in versions]
    assert versions[0].stdout == versions[1].stdout and re.fullmatch(r"\d+\.\d+\.\d+\n", versions[0].stdout), versions[0].stdout


def test_stats_on_the_shared_server_matches_its_log(server):
    stats = json_of(server.tool("upload-coordinator", "stats", "--data-dir", server.data_dir, "--json"))
    assert stats["events"] == len(server.events())


def test_a_debug_log_line_carries_the_request_loggers_metadata_and_its_own(tmp_path):
    """`serve --log-level debug` logs each answer with its request's metadata: what Hummingbird
    sets on the request's logger (`hb.request.id`) and what the line adds (`request.id`, the
    `x-amzn-RequestId` the client got). The handler formats metadata only when a line is written,
    so both must still reach the line."""
    server = Server(str(tmp_path), "--log-level", "debug")
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="logged/app")
        answer = ecr.initiate_layer_upload(repositoryName="logged/app")
        request_id = answer["ResponseMetadata"]["RequestId"]
        assert requests.get(f"{server.endpoint}/v2/logged/app/tags/list?n=1", headers=anonymous_pull(server.endpoint, "logged/app")).status_code == 200
        # A member an operation does not take is not logged as what it names: its text could
        # forge fields (`key=value` after the real ones) or fill the line.
        from test_protocol import post
        forged = json.dumps({"uploadId": "x request.outcome=AccessDenied " + "A" * 100_000}).encode()
        status, headers, _ = post(server, "SpencerFrontendService.DescribeRepositories", forged)
        assert status == 200
        forged_id = headers["x-amzn-RequestId"]
        upload_id = answer["uploadId"]
        ecr.upload_layer_part(repositoryName="logged/app", uploadId=upload_id.upper(), partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    finally:
        assert server.stop() == 0
    forged_lines = [line for line in server.stderr_text().splitlines() if forged_id in line and "answered" in line]
    assert len(forged_lines) == 1 and "upload.id" not in forged_lines[0] and "AccessDenied" not in forged_lines[0], forged_lines
    part_lines = [line for line in server.stderr_text().splitlines() if "request.operation=UploadLayerPart" in line and "answered" in line]
    assert len(part_lines) == 1 and f"upload.id={upload_id}" in part_lines[0], "an upload id the operation takes is logged as it is kept"
    # Every request is logged once answered, whichever route took it; its query is not logged.
    answered = [line for line in server.stderr_text().splitlines() if line.endswith("] request") and "hb.request.path=" in line]
    registry = [line for line in answered if "hb.request.path=/v2/logged/app/tags/list" in line]
    assert len(registry) == 1 and "http.response.status=200" in registry[0] and "hb.request.method=GET" in registry[0], answered
    assert "n=1" not in registry[0] and re.search(r"duration\.ms=[0-9.]+", registry[0]), registry[0]
    assert sum("hb.request.method=POST" in line and "http.response.status=200" in line for line in answered) == 4, answered
    lines = [line for line in server.stderr_text().splitlines() if "answered" in line and request_id in line]
    assert len(lines) == 1, lines
    assert re.search(r"\bhb\.request\.id=\S+", lines[0]), lines[0]
    assert f"request.id={request_id}" in lines[0] and "request.operation=InitiateLayerUpload" in lines[0], lines[0]
    assert lines[0].split()[1] == "debug", lines[0]


def test_a_backup_after_an_upgrade_rebuilds_the_projections_it_cannot_read(tmp_path):
    """A store whose projections are of the layout before this binary's (upgraded, not yet served):
    the backup leaves them out and rebuilds them from the log in its copy; the store is left as it
    was. (The fixture holds no blobs or staging: its active upload's recorded bytes are put back.)"""
    def files(folder):
        # Lock files are made by readers too: LMDB's, and the one a backup holds collections off with.
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                if p.is_file() and p.name not in ("lock.mdb", ".blob-collection-lock")}

    upgraded = tmp_path / "upgraded"
    shutil.copytree(ROOT / "Tests" / "Fixtures" / "stores" / "layout-0011-p8", upgraded)
    events = [json.loads(line) for line in events_of(upgraded)]
    ended = {e["data"]["uploadId"] for e in events if e["type"] in ("LayerUploadCompleted", "UploadAborted")}
    recorded = {e["data"]["uploadId"]: e["data"]["partLastByte"] + 1 for e in events if e["type"] == "LayerPartUploaded"}
    active = {e["data"]["uploadId"] for e in events if e["type"] == "UploadInitiated"} - ended
    assert len(active) == 1
    (upgraded / "staging").mkdir(mode=0o700)
    for upload in active:
        (upgraded / "staging" / upload).write_bytes(b"s" * recorded[upload])
    before = files(upgraded)

    report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(upgraded), "--to", str(tmp_path / "b"), "--json", "--allow-missing-blobs"))
    assert files(upgraded) == before, "the store was left as it was"
    assert report["position"] == events[-1]["position"] and report["stagedUploads"] == 1
    assert sorted(report["missingBlobs"]) == sorted(e["data"]["layerDigest"] for e in events if e["type"] == "LayerUploadCompleted")
    replayed = tool("upload-replay", "--data-dir", str(tmp_path / "b"), "--json")
    assert replayed.returncode == 4, replayed.stdout + replayed.stderr
    blobs = json.loads(replayed.stdout)["blobs"]
    assert blobs["missing"] == blobs["named"] == len(report["missingBlobs"]), "the store passes; the blobs it lacks are named"
    stats = json_of(tool("upload-coordinator", "stats", "--data-dir", str(tmp_path / "b"), "--json"))
    assert (stats["events"], stats["activeUploads"], stats["repositories"]) == (len(events), 1, 1), "the projections rebuilt at the backup's position"


def test_the_audit_commands_only_read_the_store(live, tmp_path):
    """An auditor's commands open the store read-only: they never migrate one an older binary may
    still serve (its files stay byte for byte as they were), and they read a live store without
    counting as its writer."""
    def files(folder):  # LMDB's lock files hold the readers' table, which readers write by design
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "lock.mdb"}

    commands = (["audit", "root"], ["audit", "initiations"], ["audit", "consistency", "--from", "1", "--to", "2"], ["events"])
    fixtures = ROOT / "Tests" / "Fixtures" / "stores"
    old = tmp_path / "old"
    shutil.copytree(fixtures / "layout-0008", old)
    before = files(old)
    for command in commands:
        out = tool("upload-coordinator", *command, "--data-dir", str(old))
        assert out.returncode == 1 and "migrat" in out.stderr, (command, out.stdout, out.stderr)
    # copy-store's source too: a copy of a store that needs migrating is refused, and nothing made.
    refused = tool("upload-coordinator", "copy-store", "--from-data-dir", str(old), "--to-data-dir", str(tmp_path / "old-copy"))
    assert refused.returncode == 1 and "migrat" in refused.stderr, (refused.stdout, refused.stderr)
    assert not (tmp_path / "old-copy").exists()
    assert files(old) == before and "data.mdb" in before, "the old store was left as it was"

    # A store of the current layout is read, and left byte for byte as it was: opening it for
    # writing would have counted a writer in its data.mdb.
    current = tmp_path / "current"
    shutil.copytree(fixtures / "layout-0011-p9", current)
    before = files(current)
    for command in commands:
        out = tool("upload-coordinator", *command, "--data-dir", str(current))
        assert out.returncode == 0, (command, out.stdout, out.stderr)
    copied = tool("upload-coordinator", "copy-store", "--from-data-dir", str(current), "--to-data-dir", str(tmp_path / "current-copy"))
    assert copied.returncode == 0 and json.loads(copied.stdout)["events"] > 0, copied.stderr
    assert files(current) == before and "projections/data.mdb" in before

    # Projections of the layout before this binary's, as during an upgrade before the store is
    # next served: the audit commands read the log alone, and leave the store as it was.
    upgraded = tmp_path / "upgraded"
    shutil.copytree(fixtures / "layout-0011-p8", upgraded)
    before = files(upgraded)
    listed = tool("upload-coordinator", "audit", "initiations", "--json", "--data-dir", str(upgraded))
    assert listed.returncode == 0, listed.stderr
    events = tool("upload-coordinator", "events", "--data-dir", str(upgraded))
    initiated = [json.loads(line) for line in events.stdout.splitlines() if json.loads(line)["type"] == "UploadInitiated"]
    assert [json.loads(line)["position"] for line in listed.stdout.splitlines()] == [e["position"] for e in initiated] != []
    proof = tool("upload-coordinator", "audit", "proof", "--upload-id", initiated[-1]["data"]["uploadId"], "--data-dir", str(upgraded))
    assert proof.returncode == 0 and json.loads(proof.stdout)["position"] == initiated[-1]["position"], proof.stderr
    assert files(upgraded) == before
    refused = tool("upload-coordinator", "stats", "--data-dir", str(upgraded))
    assert refused.returncode == 1 and "referrers" in refused.stderr, refused.stderr
    # `migrate` then rebuilds them, and says so: the step that stops the older binary's writes.
    migrated = tool("upload-coordinator", "migrate", "--data-dir", str(upgraded))
    assert migrated.returncode == 0 and "rebuilt the projections from layout 8 to " in migrated.stdout, migrated.stdout + migrated.stderr
    assert "rebuilt" not in tool("upload-coordinator", "migrate", "--data-dir", str(upgraded)).stdout, "once"

    # On the live store, while `serve` writes: what the server's own log says.
    data = str(live["data"])

    def lines_of(*command):
        out = tool("upload-coordinator", *command, "--data-dir", data)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    initiations = lines_of("audit", "initiations", "--json")
    events = lines_of("events")
    assert [i["position"] for i in initiations] == [e["position"] for e in events if e["type"] == "UploadInitiated"] != []
    assert json_of(tool("upload-coordinator", "audit", "root", "--data-dir", data))["treeSize"] >= events[-1]["position"]
    proof = json_of(tool("upload-coordinator", "audit", "proof", "--upload-id", initiations[0]["uploadId"], "--data-dir", data))
    assert proof["position"] == initiations[0]["position"]


def test_delete_repository_on_the_command_line_needs_force_for_images_and_ends_uploads_either_way(tmp_path):
    """`upload-coordinator delete-repository`: refused (exit 1, nothing written) while images
    remain, unless --force; with it, its images go, then every upload in progress ends, then the
    repository, in the log's order (uploads never block a delete); and the store replays."""
    server = Server(str(tmp_path))
    try:
        ecr = client(server)
        for name in ("cli/full", "cli/uploads"):
            ecr.create_repository(repositoryName=name)
        push_image(ecr, "cli/full", b"a layer", "v1")
        in_progress = [stage_part(ecr, name, b"staged") for name in ("cli/full", "cli/uploads")]
    finally:
        assert server.stop() == 0
    before = server.events()

    refused = server.tool("upload-coordinator", "delete-repository", "--data-dir", str(tmp_path), "--repository-name", "cli/full")
    assert refused.returncode == 1 and refused.stderr.startswith("RepositoryNotEmptyException:"), (refused.returncode, refused.stderr)
    assert server.events() == before, "a refused delete writes nothing"

    # Uploads in progress never block a delete, with or without --force.
    plain = server.tool("upload-coordinator", "delete-repository", "--data-dir", str(tmp_path), "--repository-name", "cli/uploads")
    assert plain.returncode == 0, plain.stderr
    forced = server.tool("upload-coordinator", "delete-repository", "--data-dir", str(tmp_path), "--repository-name", "cli/full", "--force")
    assert forced.returncode == 0, forced.stderr
    after = server.events()[len(before):]
    assert [(e["type"], e["data"]["repositoryName"]) for e in after] == [
        ("UploadAborted", "cli/uploads"), ("RepositoryDeleted", "cli/uploads"),
        ("ImageDeleted", "cli/full"), ("UploadAborted", "cli/full"), ("RepositoryDeleted", "cli/full"),
    ], after
    assert {e["data"]["uploadId"] for e in after if e["type"] == "UploadAborted"} == set(in_progress)
    assert all(e["data"]["reason"] == "repositoryDeleted" for e in after if e["type"] == "UploadAborted")
    assert [e["data"]["force"] for e in after if e["type"] == "RepositoryDeleted"] == [False, True]
    replay = server.tool("upload-replay", "--data-dir", str(tmp_path))
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_backup_keeps_the_generated_key_and_the_token_key_so_logins_outlive_a_restore(tmp_path):
    """A server that made its own access key (no --credentials) and its registry token key: the
    backup holds both, private, byte for byte, so that a server restored from it takes the same
    AWS key and the registry passwords already given."""
    data, backup = tmp_path / "data", tmp_path / "backup"
    data.mkdir()

    def serve(folder):
        process = subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", str(folder), "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = process.stdout.readline()
        assert "listening on http://" in line, line
        return process, line.split()[3]

    process, endpoint = serve(data)
    try:
        key_id, secret = (data / "credentials").read_text().split()[:2]
        ecr = boto3.client("ecr-public", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                           aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        ecr.create_repository(repositoryName="kept/app")
        token = ecr.get_authorization_token()["authorizationData"]["authorizationToken"]
        # A page session ended before the backup stays ended in the restored folder.
        pages = requests.Session()
        signed = pages.post(f"{endpoint}/gallery/sign-in", data={"accessKeyId": key_id, "secretAccessKey": secret}, allow_redirects=False)
        assert signed.status_code == 303, signed.text
        ended = dict(pages.cookies)
        assert pages.post(f"{endpoint}/gallery/sign-out", allow_redirects=False).status_code == 303
        report = json_of(tool("upload-coordinator", "backup", "--data-dir", str(data), "--to", str(backup), "--json"))
        assert report["position"] >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    for name in ("credentials", "registry-token.key", "page-sign-outs"):
        assert (backup / name).read_bytes() == (data / name).read_bytes(), name
        assert (backup / name).stat().st_mode & 0o777 == 0o600, name

    restored, endpoint = serve(backup)
    try:
        ecr = boto3.client("ecr-public", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                           aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["kept/app"]
        ping = requests.get(f"{endpoint}/v2/", headers={"Authorization": "Basic " + token}, timeout=30)
        assert ping.status_code == 200, (ping.status_code, ping.text)
        assert requests.get(f"{endpoint}/gallery/audit", cookies=ended, allow_redirects=False).status_code == 303
    finally:
        restored.send_signal(signal.SIGTERM)
        assert restored.wait(timeout=60) == 0


def test_sigterm_finishes_a_request_whose_body_is_still_arriving(tmp_path):
    """A shutdown stops taking connections but finishes the requests in flight: a part whose body
    is half sent when SIGTERM arrives is answered, recorded and staged, and serve exits 0."""
    import socket
    from conftest import signed_headers
    server = Server(str(tmp_path))
    ecr = client(server)
    ecr.create_repository(repositoryName="term/app")
    upload_id = ecr.initiate_layer_upload(repositoryName="term/app")["uploadId"]
    data = os.urandom(6 * 1024 * 1024)
    body = json.dumps({"repositoryName": "term/app", "uploadId": upload_id, "partFirstByte": 0, "partLastByte": len(data) - 1,
                       "layerPartBlob": base64.b64encode(data).decode()}).encode()
    headers = signed_headers("POST", server.endpoint + "/", body, {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.UploadLayerPart"})
    head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Host: 127.0.0.1:{server.port}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    try:
        sock.sendall(head.encode() + body[:len(body) // 2])
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[len(body) // 2:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"closed before an answer: {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    finally:
        sock.close()
    assert server.process.wait(timeout=60) == 0
    parts = [e for e in server.events() if e["type"] == "LayerPartUploaded"]
    assert [(p["data"]["uploadId"], p["data"]["partLastByte"]) for p in parts] == [(upload_id, len(data) - 1)]
    with open(tmp_path / "staging" / upload_id, "rb") as staged:
        assert staged.read() == data


def test_a_start_logs_a_completed_layer_whose_blob_is_gone(tmp_path):
    """After start-up, every completed layer's blob is checked on a thread of its own (the whole
    history, a page at a time), and one the disk lacks is logged: there should be none."""
    data = str(tmp_path / "data")
    os.makedirs(data)
    server = Server(data)
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="team/gone")
        layer = os.urandom(1000)
        upload_id = ecr.initiate_layer_upload(repositoryName="team/gone")["uploadId"]
        ecr.upload_layer_part(repositoryName="team/gone", uploadId=upload_id, partFirstByte=0, partLastByte=len(layer) - 1, layerPartBlob=layer)
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        ecr.complete_layer_upload(repositoryName="team/gone", uploadId=upload_id, layerDigests=[digest])
    finally:
        assert server.stop() == 0
    os.unlink(os.path.join(data, "blobs", "sha256", digest.split(":")[1]))
    server = Server(data)
    try:
        deadline = time.monotonic() + 30
        while f"layer {digest}: recorded, no blob" not in server.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"layer {digest}: recorded, no blob" in server.stderr_text(), server.stderr_text()[-2000:]
        assert client(server).describe_repositories(repositoryNames=["team/gone"])["repositories"], "and it serves"
    finally:
        assert server.stop() == 0


@contextlib.contextmanager
def slow_chunk_under_way(server):
    """A registry chunk of 1 MB that a slow client has begun to send, on a socket of its own: the
    request the server is reading when it is told to stop."""
    base = f"http://127.0.0.1:{server.port}"
    created = requests.post(base + "/", data=b'{"repositoryName":"slow/app"}', timeout=30, headers={
        "X-Amz-Target": "SpencerFrontendService.CreateRepository", "Content-Type": "application/x-amz-json-1.1"})
    assert created.status_code == 200, created.text
    location = requests.post(base + "/v2/slow/app/blobs/uploads/", timeout=30).headers["Location"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 1000000\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n" % (location.encode(), server.port))
        for _ in range(5):  # arriving slowly: the server is reading it
            sock.sendall(b"x" * 100)
            time.sleep(0.1)
        yield sock


def test_a_request_that_never_ends_holds_the_shutdown_no_longer_than_its_timeout():
    """A chunk dribbled by a slow client would hold SIGTERM's graceful stop for as long as it lasts:
    past --shutdown-timeout the request is cancelled, the store closes as always, and serve exits 0."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, "--allow-anonymous", "--shutdown-timeout", "2", "--idle-timeout", "600", "--min-body-rate", "0",
                        credentials=None)
        with slow_chunk_under_way(server) as sock:
            asked = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            while server.process.poll() is None and time.monotonic() - asked < 25:
                try:
                    sock.sendall(b"x" * 100)  # still dribbling while the server stops
                except OSError:
                    pass
                time.sleep(0.1)
            took = time.monotonic() - asked
        status = server.stop()
        assert status == 0 and 1.5 < took < 2 + 15, (status, took, server.stderr_text()[-2000:])
        replay = server.tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        # The rest stopped in its order: the last checkpoint signed covers every event.
        note = server.tool("upload-coordinator", "audit", "checkpoint", "--data-dir", data_dir)
        assert note.returncode == 0 and int(note.stdout.splitlines()[1]) == len(server.events()), note.stdout + note.stderr


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_cuts_off_the_requests_that_hold_the_shutdown_and_stops_in_order(second):
    """An operator's second Ctrl-C, or an init system's second SIGTERM, need not wait out
    --shutdown-timeout: the requests in flight are cut off at once, and the rest stops in its order
    (the log signed last, the store closed), so nothing answered is lost and serve exits 0."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, "--allow-anonymous", "--shutdown-timeout", "120", "--idle-timeout", "600", "--min-body-rate", "0",
                        credentials=None)
        with slow_chunk_under_way(server):
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while "stopping: no new connections" not in server.stderr_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
            assert server.process.poll() is None, "the first signal waits for the request in flight"
            asked = time.monotonic()
            server.process.send_signal(second)
            while server.process.poll() is None and time.monotonic() - asked < 60:
                time.sleep(0.1)
            took = time.monotonic() - asked
        status = server.stop()
        assert status == 0 and took < 15, (status, took, server.stderr_text()[-2000:])
        assert "a second signal: requests still running are cut off" in server.stderr_text(), server.stderr_text()[-2000:]
        replay = server.tool("upload-replay", "--data-dir", data_dir)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        note = server.tool("upload-coordinator", "audit", "checkpoint", "--data-dir", data_dir)
        assert note.returncode == 0 and int(note.stdout.splitlines()[1]) == len(server.events()), note.stdout + note.stderr


def test_a_store_whose_last_commit_freed_a_large_record_opens_again_after_a_clean_stop(tmp_path):
    """LMDB may leave a file shorter than its last page when a commit's last pages were allocated
    and freed within it (a manifest of 4 MiB written into a projection and deleted with its image):
    the next start refused the store as cut short, after a clean stop. Each commit covers its last
    page now, so the server starts again and the store replays."""
    data = tmp_path / "data"
    data.mkdir()
    server = Server(str(data))
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="ops/large")
        digests = []
        for blob in (CONFIG, os.urandom(100)):
            upload = ecr.initiate_layer_upload(repositoryName="ops/large")["uploadId"]
            ecr.upload_layer_part(repositoryName="ops/large", uploadId=upload, partFirstByte=0, partLastByte=len(blob) - 1, layerPartBlob=blob)
            digests.append("sha256:" + hashlib.sha256(blob).hexdigest())
            ecr.complete_layer_upload(repositoryName="ops/large", uploadId=upload, layerDigests=[digests[-1]])
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0], "size": len(CONFIG)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1], "size": 100}],
            "annotations": {"pad": "x" * (4_194_304 - 600)}}, separators=(",", ":"))
        ecr.put_image(repositoryName="ops/large", imageManifest=manifest, imageTag="t1")
        ecr.batch_delete_image(repositoryName="ops/large", imageIds=[{"imageTag": "t1"}])
    finally:
        assert server.stop() == 0
    out = tool("upload-coordinator", "stats", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr[-400:]
    replay = tool("upload-replay", "--data-dir", str(data))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    again = Server(str(data))
    try:
        assert client(again).describe_images(repositoryName="ops/large")["imageDetails"] == []
    finally:
        assert again.stop() == 0


def peak_anonymous_memory(command, env=None):
    """Runs `command`, sampling the anonymous memory (RssAnon: not the store's memory map) of it
    and its children (upload-replay checks in a child) every 10 ms: (its exit status, its output,
    the peak in MiB)."""
    def processes(pid):
        found = [pid]
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found += [child for c in f.read().split() for child in processes(int(c))]
        return found

    def anonymous(pid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("RssAnon:")), 0)
        return 0

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = 0
    while process.poll() is None:
        peak = max(peak, sum(anonymous(pid) for pid in processes(process.pid)))
        time.sleep(0.01)
    return process.returncode, process.stdout.read(), peak // 1024


def test_replay_holds_a_bounded_share_of_a_log_of_large_records(tmp_path):
    """A rebuild decodes the log in chunks of 1,024 events, folded on another thread with up to
    four waiting: each ImagePushed holds its manifest (a tag pushed again records it again), so a
    chunk of them was a chunk of up to 4 GiB, held twice (the record and its text); 300 of 4 MB
    took upload-replay to 3 GB, and these 60 to 496 MiB. Chunks are now also cut at 16 MiB of
    records, and a record decoded whole is not kept beside its text."""
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data)
    try:
        ecr = client(server)
        ecr.create_repository(repositoryName="replay/large")
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [],
                               "annotations": {"pad": "x" * 4_000_000}})
        for n in range(60):  # 240 MB of log
            ecr.put_image(repositoryName="replay/large", imageManifest=manifest, imageTag=f"t{n}")
    finally:
        assert server.stop() == 0
    status, output, peak = peak_anonymous_memory([str(BIN / "upload-replay"), "--data-dir", str(data)])
    assert status == 0, output
    assert peak < 160, f"upload-replay held {peak} MiB for a log of 60 records of 4 MB"
