"""serve as an init system runs it: standard streams closed, full, broken or unread, signals other
than SIGTERM, a port taken. Each of these crashed the server, hung it, or lost its last checkpoint."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, tool


def listening_port(process, seconds=120):
    """The port a serve started with `--port 0` listens on, from the kernel's table: these tests
    send its output where no one reads the ready line. (A port probed free and then handed to
    serve could be taken meanwhile by the other worker's servers.)"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve ended with {process.returncode}"
        sockets, rows = set(), []
        with contextlib.suppress(OSError):  # gone since: the next turn says how it ended
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                with contextlib.suppress(OSError):
                    sockets.add(os.readlink(f"/proc/{process.pid}/fd/{fd}"))
            with open(f"/proc/{process.pid}/net/tcp") as table:  # serve's network namespace
                rows = [row.split() for row in table.readlines()[1:]]
        for fields in rows:
            if fields[3] == "0A" and f"socket:[{fields[9]}]" in sockets:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
        time.sleep(0.1)
    raise AssertionError("serve never listened")


def ping(port, timeout=5):
    """`GET /v2/`'s status, or None when nothing answers within `timeout`."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=timeout)
        return 200
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_until_answering(port, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve ended with {process.returncode}"
        if ping(port, timeout=2) is not None:
            return
        time.sleep(0.1)
    raise AssertionError("serve never answered")


def serve(data, *flags, **popen):
    """serve on a port of the kernel's choosing, once it answers, and that port."""
    process = subprocess.Popen([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0", *flags], **popen)
    try:
        port = listening_port(process)
        wait_until_answering(port, process)
    except BaseException:
        process.kill()
        raise
    return process, port


def test_serve_runs_with_its_standard_streams_full_or_closed():
    """Its output on /dev/full, or closed: Foundation's write trapped (SIGILL) just after the server
    listened. With every standard stream closed, the log went into the next file opened, lock.mdb."""
    with tempfile.TemporaryDirectory() as data, open("/dev/full", "w") as full:
        for streams in ({"stdout": full, "stderr": full}, {"stdout": subprocess.DEVNULL, "stderr": full}):
            process, port = serve(data, **streams)
            try:
                assert ping(port) == 401
            finally:
                process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        process, port = serve(data, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: [os.close(fd) for fd in (0, 1, 2)])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        with open(os.path.join(data, "lock.mdb"), "rb") as lock:
            assert b"authentication" not in lock.read(), "no log line was written into LMDB's lock file"


def test_a_standard_error_no_one_reads_stops_neither_requests_nor_the_shutdown():
    """A pipe that fills (a log collector stuck) blocked the event loops once its 64 KiB were
    written: the API stopped answering, SIGTERM too. Log lines past the room held are dropped,
    and counted once the stream is read again."""
    with tempfile.TemporaryDirectory() as data:
        read_end, write_end = os.pipe()
        try:
            process, port = serve(data, "--log-level", "trace", "--allow-anonymous", stdout=subprocess.DEVNULL, stderr=write_end)
        finally:
            os.close(write_end)
        try:
            for answered in range(600):  # far more than a pipe's 64 KiB of trace lines
                assert ping(port) == 200, f"no answer after {answered} requests"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, "stopped with standard error still unread"
        finally:
            if process.poll() is None:
                process.kill()
            os.close(read_end)


def test_events_to_a_full_disk_is_a_failure_not_an_export():
    """`events > file` on a full disk exited 0 with the file cut short."""
    with tempfile.TemporaryDirectory() as data:
        made = tool("upload-coordinator", "create-repository", "--data-dir", data, "--repository-name", "life/app")
        assert made.returncode == 0, made.stderr
        with open("/dev/full", "w") as full:
            out = subprocess.run([str(BIN / "upload-coordinator"), "events", "--data-dir", data], stdout=full, stderr=subprocess.PIPE,
                                 text=True, timeout=120)
        assert out.returncode == 1 and "standard output could not take everything printed: No space left on device" in out.stderr, out.stderr
        with open("/dev/full", "w") as full:
            out = subprocess.run([str(BIN / "upload-replay"), "--data-dir", data], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        assert out.returncode == 3 and "could not take the report: No space left on device" in out.stderr, (out.returncode, out.stderr)


def answering_with_sighup(data, action):
    """An anonymous serve started with SIGHUP's disposition `action`, whatever the suite inherited
    (`nohup Tools/test` hands its ignoring down, and serve then keeps ignoring SIGHUP, as it
    should), once it answers, and its port."""
    return serve(data, "--allow-anonymous", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                 preexec_fn=lambda: signal.signal(signal.SIGHUP, action))


def test_sighup_stops_serve_as_sigterm_does_with_the_log_signed_to_its_end():
    """SIGHUP (a terminal closing, a reload by `kill -HUP`) killed serve without its shutdown: no
    final checkpoint, no line saying every command was committed."""
    with tempfile.TemporaryDirectory() as data:
        process, port = answering_with_sighup(data, signal.SIG_DFL)
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b'{"repositoryName": "life/hup"}', method="POST", headers={
                "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.CreateRepository"})
            assert urllib.request.urlopen(request, timeout=30).status == 200
        finally:
            process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0 and "stopping: no new connections" in err and "every accepted command is committed" in err, err
        assert "cut off" not in err.split("stopping: no new connections", 1)[1], "nothing was running to cut off: " + err
        report = json.loads(tool("upload-replay", "--data-dir", data, "--json").stdout)
        assert report["ok"] and report["signedUpTo"] == report["events"] == 1, report


def test_serve_started_ignoring_sighup_keeps_ignoring_it():
    """As under `nohup`: the hang-up its starter chose to survive does not stop it."""
    with tempfile.TemporaryDirectory() as data:
        process, port = answering_with_sighup(data, signal.SIG_IGN)
        try:
            process.send_signal(signal.SIGHUP)
            time.sleep(1)
            assert process.poll() is None and ping(port, timeout=5) is not None
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        assert process.returncode == 0 and "stopping: no new connections" in err, err


@pytest.mark.parametrize("limit", [17, 40])
def test_an_open_file_limit_too_low_to_serve_is_refused_before_anything_is_made(limit):
    """Below about 20 descriptors NIO's event loops trapped as they were made (SIGILL, exit 132),
    after the data folder and its credentials were: a limit serve cannot reach 64 with is refused
    first, naming the limit."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with tempfile.TemporaryDirectory() as parent:
        data = os.path.join(parent, "data")
        out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", "0"],
                             capture_output=True, text=True, timeout=120, preexec_fn=low_limit)
        assert out.returncode == 1 and f"error: the open-file limit is {limit} (hard limit {limit}); serve needs at least 64" in out.stderr, \
            (out.returncode, out.stderr[-2000:])
        assert not os.path.exists(data), "nothing made"


def test_a_port_taken_is_named_with_its_cause():
    with tempfile.TemporaryDirectory() as data, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--port", str(port)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr, out.stderr
    # An IPv6 address is bracketed, as in a URL: `::1:5080` names no port.
    with tempfile.TemporaryDirectory() as data, socket.socket(socket.AF_INET6) as taken:
        try:
            taken.bind(("::1", 0))
        except OSError:
            pytest.skip("this machine has no IPv6 loopback")
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", data, "--host", "::1", "--port", str(port)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and f"error: cannot listen on [::1]:{port}: Address already in use" in out.stderr, out.stderr
