"""The wire protocol itself: raw HTTP where boto3 would not send it, and awscli as a person runs it."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import requests

from conftest import CREDENTIALS, serving, signed_headers


def post(server, target, body, headers=None, sign=True, path="/"):
    """A raw POST, signed like awscli's unless `sign` is false; `headers` are added after signing."""
    base = {"Content-Type": "application/x-amz-json-1.1", **({"X-Amz-Target": target} if target else {})}
    if sign:
        base = signed_headers("POST", server.endpoint + path, body, base)
    request = urllib.request.Request(server.endpoint + path, data=body, method="POST", headers={**base, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def test_unknown_and_missing_targets_get_aws_shaped_errors(server):
    status, headers, body = post(server, "SpencerFrontendService.NoSuchOperation", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException" and headers["x-amzn-ErrorType"] == "UnknownOperationException"
    # Authentication comes first, and a POST must sign its X-Amz-Target: without one it is incomplete.
    status, _, body = post(server, None, b"{}")
    assert status == 400 and body["__type"] == "IncompleteSignatureException"
    # Every operation of the model is served: an empty body is the caller's mistake, not an unsupported command.
    for operation in ("TagResource", "SetRepositoryPolicy", "GetRepositoryCatalogData"):
        status, _, body = post(server, f"SpencerFrontendService.{operation}", b"{}")
        assert status == 400 and body["__type"] == "InvalidParameterException", operation


def test_malformed_bodies(server):
    status, _, body = post(server, "SpencerFrontendService.InitiateLayerUpload", b"{not json")
    assert status == 400 and body["__type"] == "SerializationException"
    status, _, body = post(server, "SpencerFrontendService.InitiateLayerUpload", b'{"repositoryName": 5}')
    assert status == 400 and body["__type"] == "SerializationException"
    status, _, body = post(server, "SpencerFrontendService.DescribeRegistries", b"")
    assert status == 200 and "registries" in body, "an empty body counts as {}"
    status, headers, _ = post(server, "SpencerFrontendService.DescribeRegistries", b"{}")
    assert headers["Content-Type"] == "application/x-amz-json-1.1" and len(headers["x-amzn-RequestId"]) == 36


def test_oversized_body_is_refused_with_a_4xx(server):
    status, _, body = post(server, "SpencerFrontendService.UploadLayerPart", b"x" * 31_000_000)
    assert status == 413 and body["__type"] == "RequestEntityTooLargeException"
    # Declared too large: refused unread, and the connection ends, rather than take, and drop,
    # whatever the client goes on sending for as long as it sends.
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.UploadLayerPart"}
    signed = "".join(f"{k}: {v}\r\n" for k, v in signed_headers("POST", server.endpoint + "/", b"{}", base).items()).encode()
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: 9223372036854775807\r\n\r\n" % (server.port, signed)
    found = answers(read_until_closed(server.port, head, send_after=b"x" * 65536))
    assert [(line, fields.get("connection")) for line, fields, _ in found] == [("HTTP/1.1 413 Payload Too Large", "close")], found


def test_an_answer_before_the_body_reaches_a_client_that_sends_its_whole_body_first(server):
    """urllib sends `Connection: close` and its whole body before it reads: a refusal answered
    before the body was read (an unsigned request; a body declared too large) must still reach it,
    not leave it blocked on a full socket until the idle timeout (60 s)."""
    import time
    for target, body, expected, expected_status in (
            ("SpencerFrontendService.UploadLayerPart", b"x" * 20_000_000, "MissingAuthenticationTokenException", 403),
            ("SpencerFrontendService.UploadLayerPart", b"x" * 40_000_000, "RequestEntityTooLargeException", 413)):
        started = time.monotonic()
        status, _, answer = post(server, target, body, sign=expected != "MissingAuthenticationTokenException")
        assert answer["__type"] == expected and status == expected_status, (status, answer)
        assert time.monotonic() - started < 20, f"{expected} took {time.monotonic() - started:.1f} s"


def test_the_get_routes_answer_head_with_their_headers_and_no_body():
    """Monitors and load balancers probe with HEAD (RFC 9110 §9.3.2): each GET route answers it
    with the GET's status and framing, and sends no body, so the next answer on the same
    connection is read whole. They answered 404."""
    import http.client
    import time
    with serving() as server:
        status, _, _ = post(server, "SpencerFrontendService.CreateRepository", b'{"repositoryName":"head/probe"}')
        assert status == 200  # an event for the feed to hold
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def exchange(method, path, signed):
            headers = signed_headers(method, server.endpoint + path) if signed else {}
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), response.getheader("Content-Length"), response.read()

        for path, signed in (("/log/checkpoint", False), ("/gallery/assets/style.css", False), ("/events?after=0", True),
                             ("/metrics", False), ("/gallery", False)):
            status, kind, length, body = exchange("GET", path, signed)
            assert status == 200 and body, (path, status)
            head = exchange("HEAD", path, signed)
            assert head[:2] == (200, kind), (path, head)
            if path in ("/log/checkpoint", "/gallery/assets/style.css"):  # the same bytes twice
                assert head[2] == length == str(len(body)), (path, head[2], length, len(body))
            if path == "/events?after=0":  # streamed: no length, for GET or HEAD
                assert head[2] is None and length is None, (head[2], length)
        # HEAD asks no more than GET may: a feed still needs its signature.
        assert exchange("HEAD", "/events?after=0", False)[0] == 403
        # Nothing of a body was left on the connection: the next answer is read as itself.
        assert exchange("GET", "/log/checkpoint", False)[0] == 200
        # And leaves no answer unfinished: the server stops at once, the connection still open (a
        # HEAD answer that never ended kept its shutdown waiting).
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        connection.close()


def test_a_body_sent_after_expect_100_continue_is_asked_for_only_once_it_is_read(server):
    """`100 Continue` comes when the server reads the body, not before a refusal decided unread:
    a request signed by an unknown key is refused with its body never sent."""
    from conftest import send_expecting_continue
    body = json.dumps({"repositoryName": f"expect/r{os.getpid()}"}).encode()
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.CreateRepository"}
    interim, status, _, answer = send_expecting_continue(server.port, "POST", "/", signed_headers("POST", server.endpoint + "/", body, base), body)
    assert (interim, status) == ([100], 200), (interim, status, answer)
    assert json.loads(answer)["repository"]["repositoryName"] == f"expect/r{os.getpid()}"
    # Refused unread: no 100, and the connection closes after the answer, its body never sent.
    unknown = signed_headers("POST", server.endpoint + "/", body, base, key=("AKIDUNKNOWNKEY", "secret"))
    interim, status, fields, answer = send_expecting_continue(server.port, "POST", "/", unknown, body)
    assert interim == [] and status == 403 and fields.get("connection") == "close", (interim, status, fields, answer)


def test_awscli_get_login_password(server):
    env = {**os.environ, **CREDENTIALS}
    out = subprocess.run(["aws", "ecr-public", "get-login-password", "--endpoint-url", server.endpoint],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) >= 32


def test_awscli_initiate_layer_upload_as_in_the_readme(server, ecr):
    ecr.create_repository(repositoryName="cli/app")
    env = {**os.environ, **CREDENTIALS}
    out = subprocess.run(["aws", "ecr-public", "initiate-layer-upload", "--repository-name", "cli/app",
                          "--endpoint-url", server.endpoint], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["partSize"] == 10485760
    event = [e for e in server.events() if e["data"].get("uploadId") == answer["uploadId"]]
    assert len(event) == 1 and event[0]["type"] == "UploadInitiated"
    assert event[0]["metadata"]["userAgent"].startswith("aws-cli/")
    assert event[0]["metadata"]["source"] == "http" and event[0]["metadata"]["sourceAddress"].startswith("127.0.0.1:")

    out = subprocess.run(["aws", "ecr-public", "initiate-layer-upload", "--repository-name", "cli/none",
                          "--endpoint-url", server.endpoint], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 255
    assert "An error occurred (RepositoryNotFoundException) when calling the InitiateLayerUpload operation" in out.stderr


def read_until_closed(port, raw, send_after=None, timeout=10):
    """Sends `raw` on a new connection (then `send_after`, without waiting for anything) and reads
    until the server closes it. - Returns: what was read, or fails if the connection is still open
    after `timeout` seconds (a client that reads to the close would hang)."""
    import socket
    import time
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(raw)
        if send_after:
            time.sleep(0.2)  # so that it arrives in a read of its own
            connection.sendall(send_after)
        received, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = connection.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"the connection was still open after {timeout} s: {received[:300]!r}")


def answers(received):
    """The answers in `received`, in order: (status line, lower-cased header fields, body); a body
    without Content-Length runs to the end."""
    found = []
    while received:
        head, _, received = received.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(fields["content-length"]) if "content-length" in fields else len(received)
        found.append((lines[0], fields, received[:length]))
        received = received[length:]
    return found


def test_a_connection_ends_after_the_request_that_says_so_in_any_case_and_after_http_1_0(server):
    """`Connection: Close` is a token, compared without case (RFC 9110 §5.6.2), and an HTTP/1.0
    request without keep-alive ends its connection (RFC 9112 §9.3): a client that reads its answer
    to the close waited for the idle timeout (60 s). Nothing pipelined after such a request is
    answered (§9.6)."""
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    get = b"GET /log/checkpoint HTTP/1.1\r\n" + host
    # `CLOSE` and a tab (optional whitespace, RFC 9110 §5.6.3): NIO's reading missed it, and
    # the requests pipelined after it were answered.
    for closing in (b"Connection: Close\r\n", b"Connection: keep-alive, CLOSE\r\n", b"Connection: CLOSE\t\r\n"):
        found = answers(read_until_closed(server.port, get + closing + b"\r\n" + get + b"\r\n"))
        assert [line for line, _, _ in found] == ["HTTP/1.1 200 OK"], found
        assert found[0][1]["connection"] == "close" and found[0][2].startswith(b"upload-coordinator/"), found
    # A request asking to upgrade (as `curl --http2` sends every one): none is served, and NIO's
    # decoder reads nothing after one, so its answer ends the connection, saying so. The next
    # request waited unanswered for the header timeout (10 s).
    upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    started = time.monotonic()
    found = answers(read_until_closed(server.port, get + upgrade + b"\r\n" + get + b"\r\n"))
    assert [(line, fields["connection"]) for line, fields, _ in found] == [("HTTP/1.1 200 OK", "close")], found
    assert time.monotonic() - started < 5, "closed after the answer, not by a timeout"
    # HTTP/1.0, even with keep-alive: answered in HTTP/1.0, said to close, and closed.
    for keep in (b"", b"Connection: keep-alive\r\n"):
        found = answers(read_until_closed(server.port, b"GET /log/checkpoint HTTP/1.0\r\n" + host + keep + b"\r\n"))
        assert [(line, fields["connection"]) for line, fields, _ in found] == [("HTTP/1.0 200 OK", "close")], found
    # A streamed answer (a feed, no length) to HTTP/1.0 is framed by the close: never chunked,
    # which an HTTP/1.0 client cannot read (RFC 9112 §7.1).
    status, _, _ = post(server, "SpencerFrontendService.CreateRepository", json.dumps({"repositoryName": f"close/r{os.getpid()}"}).encode())
    assert status == 200  # so that the log has an event
    signed = "".join(f"{name}: {value}\r\n" for name, value in signed_headers("GET", server.endpoint + "/events?after=0&limit=1").items())
    found = answers(read_until_closed(server.port, b"GET /events?after=0&limit=1 HTTP/1.0\r\n" + host + signed.encode() + b"\r\n"))
    (line, fields, body), = found
    assert line == "HTTP/1.0 200 OK" and "transfer-encoding" not in fields, found
    assert [json.loads(event)["position"] for event in body.splitlines()] == [1], body[:300]


def framing_refusals(server):
    """Connections ended by their framing, summed over every node (the PostgreSQL pass spreads
    connections over two, each counting its own)."""
    line = 'upload_coordinator_connections_closed_total{reason="framing_refused"} '
    total = 0.0
    for node in getattr(server, "nodes", [server]):
        metrics = urllib.request.urlopen(node.endpoint + "/metrics", timeout=30).read().decode()
        total += sum(float(row[len(line):]) for row in metrics.splitlines() if row.startswith(line))
    return total


def test_requests_whose_framing_the_server_cannot_trust_are_refused_unread(server):
    """An HTTP/1.1 request without Host is 400 (RFC 9112 §3.2), an HTTP/1.0 one with
    Transfer-Encoding is 400 (§6.1), codings not ending with chunked are 400 (§6.3), and another
    coding before chunked is 501: the body was read still gzip-encoded, and acted on. Each refusal closes its connection, after the
    answers before it, and reaches a client that sends its whole body before reading."""
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    name = f"framing/r{os.getpid()}"
    body = json.dumps({"repositoryName": name}).encode()
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.CreateRepository"}
    signed = "".join(f"{k}: {v}\r\n" for k, v in signed_headers("POST", server.endpoint + "/", body, base).items()).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    counted_before = framing_refusals(server)
    for version, coding, expected in ((b"1.1", b"gzip, chunked", "HTTP/1.1 501 Not Implemented"),
                                      (b"1.1", b"gzip\r\nTransfer-Encoding: chunked", "HTTP/1.1 501 Not Implemented"),
                                      (b"1.0", b"chunked", "HTTP/1.0 400 Bad Request")):
        request = b"POST / HTTP/" + version + b"\r\n" + host + signed + b"Transfer-Encoding: " + coding + b"\r\n\r\n" + chunked
        found = answers(read_until_closed(server.port, request))
        assert [(line, fields.get("connection")) for line, fields, _ in found] == [(expected, "close")], (coding, found)
    # Codings not ending with chunked leave the body's length unknown: 400 (RFC 9112 §6.3). A
    # refused request whose body then fails to parse, at once or in a later read, is answered
    # once, and the answer reaches a client still sending: neither a second answer nor a reset.
    for coding, chunks, expected in ((b"gzip, chunked", b"zz\r\n{}\r\n0\r\n\r\n", "HTTP/1.1 501 Not Implemented"),
                                     (b"gzip", b"{}", "HTTP/1.1 400 Bad Request"),
                                     (b"gzip", b"x" * (8 * 1024 * 1024), "HTTP/1.1 400 Bad Request")):
        found = answers(read_until_closed(server.port, b"POST / HTTP/1.1\r\n" + host + b"Transfer-Encoding: " + coding + b"\r\n\r\n",
                                          send_after=chunks, timeout=30))
        assert [line for line, _, _ in found] == [expected], (coding, found)
    status, _, answer = post(server, "SpencerFrontendService.DescribeRepositories", json.dumps({"repositoryNames": [name]}).encode())
    assert status == 400 and answer["__type"] == "RepositoryNotFoundException", "a refused request was acted on"
    # No Host: refused after the pipelined answer before it, with the connection's end.
    get = b"GET /log/checkpoint HTTP/1.1\r\n"
    found = answers(read_until_closed(server.port, get + host + b"\r\n" + get + b"\r\n" + get + host + b"\r\n"))
    assert [line for line, _, _ in found] == ["HTTP/1.1 200 OK", "HTTP/1.1 400 Bad Request"], found
    assert found[1][1]["connection"] == "close", found
    # CONNECT: a tunnel is a proxy's to make. Its answer was a 404 framed by nothing, and the
    # connection then waited for the idle timeout.
    found = answers(read_until_closed(server.port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + host + b"\r\n" + get + host + b"\r\n"))
    assert [(line, fields.get("connection")) for line, fields, _ in found] == [("HTTP/1.1 501 Not Implemented", "close")], found
    # A large body sent whole before the answer is read: the refusal still arrives, not a reset.
    large = b"x" * (8 * 1024 * 1024)
    found = answers(read_until_closed(server.port, b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(large), send_after=large, timeout=30))
    assert [line for line, _, _ in found] == ["HTTP/1.1 400 Bad Request"], found
    assert framing_refusals(server) - counted_before == 9, "each refusal is counted for the operator"


def test_a_body_that_fails_to_parse_after_its_request_was_answered_gets_no_second_answer(server):
    """A request refused before its body is read (405, 401), whose chunked body then fails to
    parse, got its answer and then a second one, `400 Bad Request`, which a client pipelining
    reads as the answer to its next request (RFC 9112: one final answer a request). The
    connection ends after the one answer, and is counted as ended by its framing, as a request
    the parser refuses outright is (those went uncounted)."""
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    counted_before = framing_refusals(server)
    for head, expected in ((b"POST /v2/ HTTP/1.1\r\n", "HTTP/1.1 405 Method Not Allowed"),
                           (b"PUT /v2/framing/app/manifests/x HTTP/1.1\r\n", "HTTP/1.1 401 Unauthorized")):
        found = answers(read_until_closed(server.port, head + host + b"Transfer-Encoding: chunked\r\n\r\n",
                                          send_after=b"1\r\nAXX0\r\n\r\nGET /log/checkpoint HTTP/1.1\r\n" + host + b"\r\n"))
        assert [status for status, _, _ in found] == [expected], found
    # Two Content-Length lines: NIO's parser refuses the request itself (400), and is counted.
    found = answers(read_until_closed(server.port, b"POST / HTTP/1.1\r\n" + host + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"))
    assert [status for status, _, _ in found] == ["HTTP/1.1 400 Bad Request"], found
    assert framing_refusals(server) - counted_before == 3


def test_a_page_feed_or_log_path_is_served_only_as_written(server):
    """The router skipped empty segments and a trailing `/`: `//metrics`, `/metrics/` and
    `/gallery//audit` were served, past a proxy in front that denies `/metrics` or `/gallery/audit`
    (haproxy, Envoy and Traefik do not merge slashes). They are other paths (RFC 3986): 404. The
    AWS API, which serves any path, still does."""
    # With the paths no route serves, each says why (the router's own 404 had no body or type).
    for path in ("//metrics", "/metrics/", "/metrics//", "//gallery/audit", "/gallery//audit", "/log/checkpoint/", "//events",
                 "/log/tile/0/004/", "/log/proof/other", "/log/", "/nothing/here"):
        found = answers(read_until_closed(server.port, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path.encode(), server.port)))
        assert [status for status, _, _ in found] == ["HTTP/1.1 404 Not Found"], (path, found)
        assert found[0][1]["content-type"].startswith("text/plain") and found[0][2].startswith(b"Not found: "), (path, found)
    for path in ("/metrics", "/gallery/", "/gallery", "/log/checkpoint"):
        assert urllib.request.urlopen(server.endpoint + path, timeout=30).status == 200, path
    status, _, answer = post(server, "SpencerFrontendService.DescribeRegistries", b"{}", path="/any/path/")
    assert status == 200 and "registries" in answer, answer
    # Also at a path whose route is another method's: it was an empty 404, which botocore read as
    # an error without a code.
    for path in ("/events", "/metrics", "/gallery/", "/log/checkpoint"):
        status, _, answer = post(server, "SpencerFrontendService.DescribeRegistries", b"{}", path=path)
        assert status == 200 and "registries" in answer, (path, status, answer)


def test_an_http_1_0_request_expecting_100_continue_gets_none(server):
    """A server must ignore `Expect: 100-continue` from HTTP/1.0 (RFC 9110 §10.1.1): its client
    does not know the status, and sends its body anyway. It got `HTTP/1.1 100 Continue` when the
    body was read."""
    base = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.DescribeRegistries"}
    signed = "".join(f"{k}: {v}\r\n" for k, v in signed_headers("POST", server.endpoint + "/", b"{}", base).items()).encode()
    head = b"POST / HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n%sExpect: 100-continue\r\nContent-Length: 2\r\n\r\n" % (server.port, signed)
    found = answers(read_until_closed(server.port, head, send_after=b"{}"))
    assert [line for line, _, _ in found] == ["HTTP/1.0 200 OK"], found
    assert "registries" in json.loads(found[0][2]), found


def test_awscli_given_the_registrys_path_as_its_endpoint_reaches_the_aws_api(server):
    """`--endpoint-url http://host/v2/` (the registry's address, as `docker login` takes it): the
    registry answered awscli's POST in its own JSON, and awscli printed `An error occurred (405)`
    and nothing more. A call of the AWS API is the AWS API's, whatever its path."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run(["aws", "ecr-public", "describe-registries", "--endpoint-url", server.endpoint + "/v2/", "--output", "json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "registries" in json.loads(out.stdout), out.stderr


def test_a_browser_at_the_root_is_sent_to_the_gallery_whatever_the_case_of_its_accept(server):
    """Media types ignore case (RFC 9110 §8.3.1): `Accept: TEXT/HTML` was a 404."""
    for accept in ("text/html", "TEXT/HTML", "Text/Html;q=0.9, */*;q=0.8"):
        answer = requests.get(server.endpoint + "/", headers={"Accept": accept}, allow_redirects=False, timeout=30)
        assert answer.status_code == 303 and answer.headers["Location"] == "/gallery/", (accept, answer.status_code)
    assert requests.get(server.endpoint + "/", headers={"Accept": "application/json"}, allow_redirects=False, timeout=30).status_code == 404
