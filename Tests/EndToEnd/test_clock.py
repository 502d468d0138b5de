"""The server's wall clock stepping under it, as libfaketime steps it (its wall clock only: the
monotonic clock, which no step moves, stays the machine's)."""
import datetime
import os
import subprocess
import time

import boto3
import pytest
from botocore.config import Config

from conftest import BIN, Server, serving

LIBFAKETIME_MT = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def test_an_hour_ahead_for_seconds_expires_nothing_and_stops_no_time(tmp_path):
    """A step an hour ahead, put right five seconds later: the sweeper expired every upload idle
    for less than the hour at once, and (recorded times never going back) every event for the
    next hour was stamped at the hour ahead, and nothing expired meanwhile. Now a step is held off
    until it has lasted five minutes, and said so in the log."""
    if not os.path.exists(LIBFAKETIME_MT):
        pytest.fail("libfaketime is not installed (Tools/ensure-dependencies --tests installs it)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    # Read again at every call (NO_CACHE), so that writing the file steps the running server.
    # `timeout` runs serve from a process under the same preload: exec'd straight, it is given no
    # arguments.
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME_MT, FAKETIME_TIMESTAMP_FILE=str(offset), FAKETIME_NO_CACHE="1",
               FAKETIME_DONT_FAKE_MONOTONIC="1")
    with serving("--upload-expiry", "20", "--sweep-interval", "1", wrapper=("timeout", "0"), env=env) as server:
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        ecr.create_repository(repositoryName="clock/app")
        uploads = [ecr.initiate_layer_upload(repositoryName="clock/app")["uploadId"] for _ in range(2)]
        offset.write_text("+1h\n")
        time.sleep(5)  # five sweeps
        offset.write_text("+0\n")
        time.sleep(2)
        later = ecr.initiate_layer_upload(repositoryName="clock/app")["uploadId"]
        for upload in uploads + [later]:
            ecr.upload_layer_part(repositoryName="clock/app", uploadId=upload, partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
        events = server.events()
        assert [e for e in events if e["type"] == "UploadExpired"] == [], "idle for seconds, not for the hour"
        last = datetime.datetime.fromisoformat(events[-1]["recordedAt"].replace("Z", "+00:00")).timestamp()
        assert abs(last - time.time()) < 60, f"recorded at {events[-1]['recordedAt']}: the hour ahead stuck"
        assert "the system clock stepped" in server.stderr_text()


def test_a_log_written_under_a_clock_set_ahead_is_said_at_start(tmp_path):
    """Recorded times never go back: a log last written by a process whose clock was years ahead
    stamps every later event at that time, and idle uploads expire only as it moves. serve said
    nothing of it."""
    if not os.path.exists(LIBFAKETIME_MT):
        pytest.fail("libfaketime is not installed (Tools/ensure-dependencies --tests installs it)")
    data = tmp_path / "data"
    made = subprocess.run([str(BIN / "upload-coordinator"), "migrate", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # `timeout` runs the tool from a process under the same preload: exec'd straight, it is given
    # no arguments.
    ahead = dict(os.environ, LD_PRELOAD=LIBFAKETIME_MT, FAKETIME="+3650d", FAKETIME_DONT_FAKE_MONOTONIC="1")
    made = subprocess.run(["timeout", "60", str(BIN / "upload-coordinator"), "create-repository", "--data-dir", str(data),
                           "--repository-name", "clock/ahead"], env=ahead, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    server = Server(str(data))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "recorded later than this machine's clock" not in server.stderr_text():
            time.sleep(0.2)
        assert "recorded later than this machine's clock" in server.stderr_text(), server.stderr_text()[-2000:]
    finally:
        assert server.stop() == 0
