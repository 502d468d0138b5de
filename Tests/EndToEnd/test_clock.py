"""The server's wall clock stepping under it, as libfaketime steps it (its wall clock only: the
monotonic clock, which no step moves, stays the machine's)."""
import datetime
import os
import time

import boto3
import pytest
from botocore.config import Config

from conftest import serving

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
