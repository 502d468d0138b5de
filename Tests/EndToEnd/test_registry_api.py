"""The registry front end (OCI Distribution Spec v1.1, under /v2/) of a real `serve`, endpoint by endpoint.

Each test states one behaviour of the spec (opencontainers/distribution-spec, spec.md) or of the token
flow registry clients use, and checks it over plain HTTP with `requests`. Most tests run against the
shared server (conftest's `server`, which has credentials) with Basic credentials `AWS:<password>`, the
password from ecr-public GetAuthorizationToken, as `docker login` would send them; repositories are
created first through the AWS API, as in ECR. Tests that need other flags start a server of their own.
"""
import base64
import hashlib
import json
import os
import pathlib
import random
import re
import socket
import subprocess
import threading
import time
import uuid
from urllib.parse import urljoin

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BIN, Server, serving

MIB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
# The spec's error codes ("The `code` field MUST be one of the following").
SPEC_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
              "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
              "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"}


# ---------------------------------------------------------------------------------------------
# Digests and documents


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data):
    return "sha512:" + hashlib.sha512(data).hexdigest()


def compact(document):
    return json.dumps(document, separators=(",", ":")).encode()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image_manifest(config, layers, config_type=OCI_CONFIG, media_type=OCI_MANIFEST, layer_type=OCI_LAYER, **fields):
    """An image manifest (bytes) of a config blob and layer blobs, with any further top-level fields."""
    return compact({"schemaVersion": 2, "mediaType": media_type, "config": descriptor(config_type, config),
                    "layers": [descriptor(layer_type, layer) for layer in layers], **fields})


def index(manifests, media_type=OCI_INDEX, **fields):
    """An index (bytes) of (media type, manifest bytes) pairs."""
    return compact({"schemaVersion": 2, "mediaType": media_type,
                    "manifests": [descriptor(kind, body) for kind, body in manifests], **fields})


# ---------------------------------------------------------------------------------------------
# Clients


class Registry:
    """HTTP to one server's registry, with one kind of credentials (or none) on every request."""

    def __init__(self, server, auth=None):
        self.endpoint = server.endpoint + "/"
        self.http = requests.Session()
        if isinstance(auth, str):
            self.http.headers["Authorization"] = auth
        else:
            self.http.auth = auth

    def __call__(self, method, path, **kwargs):
        """`path` is relative to the server (as `/v2/...`) or a Location header, relative or absolute."""
        kwargs.setdefault("timeout", 120)
        return self.http.request(method, urljoin(self.endpoint, path), allow_redirects=False, **kwargs)


def basic(password):
    return "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()


def login_password(ecr):
    """The password ecr-public GetAuthorizationToken hands out, as `docker login -u AWS` takes it."""
    token = ecr.get_authorization_token()["authorizationData"]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    assert user == "AWS" and ":" not in password
    return password


def ecr_client(server):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def password(ecr):
    return login_password(ecr)


@pytest.fixture(scope="module")
def reg(server, password):
    """The shared server's registry, with Basic credentials `AWS:<password>`."""
    return Registry(server, auth=("AWS", password))


@pytest.fixture
def other_repo(ecr):
    name = f"team/other-{uuid.uuid4().hex[:12]}"
    ecr.create_repository(repositoryName=name)
    return name


@pytest.fixture(scope="module")
def open_server():
    """A server run with --allow-anonymous and --create-repositories-on-push."""
    with serving("--allow-anonymous", "--create-repositories-on-push") as server:
        yield server


# ---------------------------------------------------------------------------------------------
# Checks and steps


def assert_error(response, status, code=None):
    """An error answer: `status`, and a JSON body `{"errors": [{"code", "message", ...}]}` with a spec code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    errors = response.json()["errors"]
    assert isinstance(errors, list) and errors
    for error in errors:
        assert error["code"] in SPEC_CODES and isinstance(error["message"], str), error
    if code is not None:
        assert errors[0]["code"] == code, errors


def challenge(response):
    """The parameters of a Bearer challenge (`WWW-Authenticate: Bearer realm="…",service="…"…`)."""
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def bearer(server, scope, auth=None):
    """A token from the realm of the server's challenge, for `scope`."""
    params = challenge(Registry(server)("GET", "/v2/"))
    answer = requests.get(params["realm"], params={"service": params["service"], "scope": scope}, auth=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    return f"Bearer {answer.json()['token']}"


def with_digest(location, digest):
    return location + ("&" if "?" in location else "?") + "digest=" + digest


def start_upload(reg, repo):
    """POST …/blobs/uploads/: a new session's Location."""
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert answer.status_code == 202, answer.text
    return answer.headers["Location"]


def patch(reg, location, chunk, first=None):
    """One chunk (with Content-Range when `first` is given); the answer."""
    headers = {"Content-Type": "application/octet-stream"}
    if first is not None:
        headers["Content-Range"] = f"{first}-{first + len(chunk) - 1}"
    return reg("PATCH", location, data=chunk, headers=headers)


def push_blob(reg, repo, data, digest=None):
    """A monolithic POST …/blobs/uploads/?digest=; the digest."""
    digest = digest or sha256(data)
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == digest
    return digest


def put_manifest(reg, repo, reference, body, media_type=OCI_MANIFEST):
    return reg("PUT", f"/v2/{repo}/manifests/{reference}", data=body, headers={"Content-Type": media_type})


def push_manifest(reg, repo, reference, body, media_type=OCI_MANIFEST):
    """A manifest PUT that must succeed; its digest."""
    answer = put_manifest(reg, repo, reference, body, media_type)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == sha256(body)
    return sha256(body)


def push_config(reg, repo, **fields):
    """A fresh image config blob, pushed; its bytes."""
    config = compact({"architecture": "amd64", "os": "linux", "id": uuid.uuid4().hex, **fields})
    push_blob(reg, repo, config)
    return config


def push_image(reg, repo, tag=None, **fields):
    """A fresh config and layer, and an OCI image manifest of them (under `tag`, else its digest): its bytes."""
    config, layer = push_config(reg, repo), os.urandom(64)
    push_blob(reg, repo, layer)
    body = image_manifest(config, [layer], **fields)
    push_manifest(reg, repo, tag or sha256(body), body)
    return body


def artifact(subject, **fields):
    """An artifact manifest (the empty config, no layers) whose subject is the manifest `subject`."""
    return image_manifest(b"{}", [], config_type=OCI_EMPTY, subject=descriptor(OCI_MANIFEST, subject), **fields)


def push_artifact(reg, repo, subject, **fields):
    """An artifact manifest pushed by its digest; its bytes."""
    push_blob(reg, repo, b"{}")
    body = artifact(subject, **fields)
    push_manifest(reg, repo, sha256(body), body)
    return body


# ---------------------------------------------------------------------------------------------
# Ping


def test_ping_without_credentials_is_a_bearer_challenge(server):
    answer = Registry(server)("GET", "/v2/")
    assert_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    realm = re.escape(f"http://127.0.0.1:{server.port}/token")
    assert re.fullmatch(rf'Bearer realm="{realm}",service="[^"]+"', answer.headers["WWW-Authenticate"])


def test_ping_with_credentials_is_200(reg):
    answer = reg("GET", "/v2/")
    assert answer.status_code == 200
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_ping_under_allow_anonymous_is_200(open_server):
    answer = Registry(open_server)("GET", "/v2/")
    assert answer.status_code == 200
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# ---------------------------------------------------------------------------------------------
# Blob uploads


def test_post_opens_a_session_with_location_uuid_and_range(reg, repo):
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert answer.status_code == 202
    session = answer.headers["Docker-Upload-UUID"]
    uuid.UUID(session)
    assert session in answer.headers["Location"], "the Location MUST contain the session's UUID"
    assert answer.headers["Range"] == "0-0"


def test_monolithic_post_with_digest_is_201(reg, repo):
    data = os.urandom(1000)
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, data=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == sha256(data)
    assert reg("GET", answer.headers["Location"]).content == data, "the Location is a pullable blob URL"


def test_chunked_upload_patch_three_chunks_then_put(reg, repo):
    data = os.urandom(3000) + b"end"
    location = start_upload(reg, repo)
    for first, last in [(0, 999), (1000, 2499), (2500, len(data) - 1)]:
        answer = patch(reg, location, data[first:last + 1], first)
        assert answer.status_code == 202, answer.text
        assert answer.headers["Range"] == f"0-{last}"
        location = answer.headers["Location"]
    answer = reg("PUT", with_digest(location, sha256(data)))
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == sha256(data)
    assert reg("GET", answer.headers["Location"]).content == data


def test_a_chunk_sent_after_expect_100_continue_is_asked_for_only_once_it_is_read(server, reg, repo, password):
    """curl sends `Expect: 100-continue` before a body past 1 MiB and waits a second for
    `100 Continue`, each chunk. It comes once the server reads the chunk, never before a refusal
    decided unread (an upload that does not exist, no credentials), whose bytes are then never sent."""
    from urllib.parse import urlsplit
    data = os.urandom(3 << 20)
    location = urlsplit(urljoin(server.endpoint, start_upload(reg, repo)))
    target = location.path + ("?" + location.query if location.query else "")
    auth = {"Authorization": basic(password), "Content-Type": "application/octet-stream"}
    from conftest import send_expecting_continue
    interim, status, _, answer = send_expecting_continue(server.port, "PATCH", target, auth, data)
    assert (interim, status) == ([100], 202), (interim, status, answer)
    # Refused unread: no 100, the bytes never sent, and the connection closes after the answer.
    missing = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    interim, status, fields, answer = send_expecting_continue(server.port, "PATCH", missing, auth, data)
    assert (interim, status) == ([], 404) and json.loads(answer)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", (interim, status, answer)
    assert fields.get("connection") == "close"
    assert send_expecting_continue(server.port, "PATCH", target, {"Content-Type": "application/octet-stream"}, data)[:2] == ([], 401)
    # What the head already says decides too: a chunk whose length is not its range's is refused
    # unread; one whose length is, is asked for.
    ranged = {**auth, "Content-Range": f"{len(data)}-{len(data) + 9}"}
    interim, status, fields, answer = send_expecting_continue(server.port, "PATCH", target, ranged, os.urandom(11))
    assert (interim, status) == ([], 400), (interim, status, answer)
    assert json.loads(answer)["errors"][0]["code"] == "SIZE_INVALID" and b"Content-Length declares" in answer
    assert fields["range"] == f"0-{len(data) - 1}" and fields.get("connection") == "close"
    tail = os.urandom(10)
    interim, status, fields, answer = send_expecting_continue(server.port, "PATCH", target, ranged, tail)
    assert (interim, status) == ([100], 202) and fields["range"] == f"0-{len(data) + 9}", (interim, status, answer)
    data += tail
    # The chunk that was sent is the upload's, whole.
    answer = reg("PUT", with_digest(target, sha256(data)))
    assert answer.status_code == 201, answer.text
    assert reg("GET", answer.headers["Location"]).content == data


def test_streamed_patch_of_more_than_20_mib_without_content_range(reg, repo):
    pieces = [os.urandom(MIB) for _ in range(21)] + [b"the last few bytes"]
    data = b"".join(pieces)
    location = start_upload(reg, repo)
    answer = reg("PATCH", location, data=iter(pieces), headers={"Content-Type": "application/octet-stream"})
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 202, answer.text
    assert answer.headers["Range"] == f"0-{len(data) - 1}"
    answer = reg("PUT", with_digest(answer.headers["Location"], sha256(data)))
    assert answer.status_code == 201, answer.text
    head = reg("HEAD", f"/v2/{repo}/blobs/{sha256(data)}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)


def test_out_of_order_chunk_is_416_with_the_current_range(reg, repo):
    location = start_upload(reg, repo)
    location = patch(reg, location, b"0123456789", 0).headers["Location"]
    answer = patch(reg, location, b"abcdefghij", 20)
    assert_error(answer, 416)
    assert answer.headers["Range"] == "0-9"
    # the session goes on from where it was
    assert patch(reg, location, b"abcdefghij", 10).status_code == 202
    assert reg("PUT", with_digest(location, sha256(b"0123456789abcdefghij"))).status_code == 201


def test_out_of_order_final_chunk_in_put_is_416(reg, repo):
    location = start_upload(reg, repo)
    location = patch(reg, location, b"0123456789", 0).headers["Location"]
    answer = reg("PUT", with_digest(location, sha256(b"0123456789tail")), data=b"tail",
                 headers={"Content-Range": "12-15", "Content-Type": "application/octet-stream"})
    assert_error(answer, 416)


@pytest.mark.parametrize("content_range,status", [
    ("0-9223372036854775807", 400), ("0-18446744073709551615", 400), ("0-0", 400), ("9-0", 416), ("bytes=x-y", 416), ("-4095", 416)],
    ids=["int64-max", "uint64-max", "shorter-than-the-body", "backwards", "not-numbers", "no-first"])
def test_content_range_other_than_the_body_is_refused_and_stages_nothing(reg, repo, content_range, status):
    """A range that starts where the upload is, but is not the body's length, is SIZE_INVALID (400:
    sent again it would be refused again); one that is no range is 416, to resume at `Range`."""
    location = start_upload(reg, repo)
    answer = reg("PATCH", location, data=b"x" * 4096,
                 headers={"Content-Range": content_range, "Content-Type": "application/octet-stream"})
    assert_error(answer, status, "SIZE_INVALID" if status == 400 else "BLOB_UPLOAD_INVALID")
    assert answer.headers["Range"] == "0-0"
    # the server is still up, and the session goes on from where it was
    status = reg("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == "0-0"
    assert patch(reg, location, b"0123456789", 0).status_code == 202
    assert reg("PUT", with_digest(location, sha256(b"0123456789"))).status_code == 201


def test_upload_resumes_after_the_client_drops_mid_chunk(server, password, reg, repo):
    data = os.urandom(3 * MIB)
    location = patch(reg, start_upload(reg, repo), data[:MIB], 0).headers["Location"]
    with socket.create_connection(("127.0.0.1", server.port)) as dropped:
        dropped.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: {basic(password)}\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n".encode() + b"%x\r\n" % MIB + data[MIB:2 * MIB] + b"\r\n")
        time.sleep(0.5)
    answer = reg("GET", location)
    assert answer.status_code == 204
    received = int(answer.headers["Range"].split("-")[1]) + 1
    assert received in (MIB, 2 * MIB), "the upload holds the chunks it took whole"
    assert patch(reg, location, data[received:], received).status_code == 202
    assert reg("PUT", with_digest(location, sha256(data))).status_code == 201
    assert reg("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_get_of_a_session_is_204_with_its_range(reg, repo):
    location = start_upload(reg, repo)
    location = patch(reg, location, b"x" * 42, 0).headers["Location"]
    answer = reg("GET", location)
    assert answer.status_code == 204
    assert answer.headers["Range"] == "0-41"
    assert answer.headers["Location"] and answer.headers["Docker-Upload-UUID"] in location
    # HEAD answers as GET does, as on every GET route.
    head = reg("HEAD", location)
    assert head.status_code == 204 and head.content == b"", (head.status_code, head.text)
    assert {k: head.headers.get(k) for k in ("Range", "Location", "Docker-Upload-UUID")} == \
        {k: answer.headers.get(k) for k in ("Range", "Location", "Docker-Upload-UUID")}
    assert reg("POST", location).headers.get("Allow") == "GET, HEAD, PATCH, PUT, DELETE"


def test_put_carries_the_final_chunk(reg, repo):
    data = b"first chunk|" + b"final chunk in the PUT"
    location = start_upload(reg, repo)
    location = patch(reg, location, data[:12], 0).headers["Location"]
    answer = reg("PUT", with_digest(location, sha256(data)), data=data[12:],
                 headers={"Content-Range": f"12-{len(data) - 1}", "Content-Type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    assert reg("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_put_without_patch_is_a_monolithic_upload(reg, repo):
    data = os.urandom(777)
    answer = reg("PUT", with_digest(start_upload(reg, repo), sha256(data)), data=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    assert reg("GET", answer.headers["Location"]).content == data


def test_delete_of_a_session_is_204_then_it_is_unknown(reg, repo):
    location = start_upload(reg, repo)
    patch(reg, location, b"partial", 0)
    answer = reg("DELETE", location)
    assert answer.status_code == 204
    assert_error(reg("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch(reg, location, b"more", 7), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(reg("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_an_ended_upload_takes_the_copy_a_crashed_completion_left(server, reg, repo):
    """A completion copies the staged bytes beside the blobs (`.tmp-<upload id>`) before they
    become the blob; a process killed there leaves that copy, a layer's bytes under no name the
    log gives. When the upload ends (here cancelled), the copy goes with its staged bytes."""
    location = patch(reg, start_upload(reg, repo), b"c" * 4096, 0).headers["Location"]
    upload_id = reg("GET", location).headers["Docker-Upload-UUID"]
    left = os.path.join(server.data_dir, "blobs", "sha256", ".tmp-" + upload_id)
    with open(left, "wb") as f:
        f.write(b"c" * 1000)  # as a completion killed part way leaves it
    assert reg("DELETE", location).status_code == 204
    assert not os.path.exists(left), os.listdir(os.path.dirname(left))


def test_a_completed_session_is_unknown(reg, repo):
    location = start_upload(reg, repo)
    assert reg("PUT", with_digest(location, sha256(b"done")), data=b"done").status_code == 201
    assert_error(reg("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(reg("PUT", with_digest(location, sha256(b"done")), data=b"done"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_a_session_is_unknown_under_another_repository(reg, repo, other_repo):
    location = start_upload(reg, repo)
    elsewhere = location.replace(f"/v2/{repo}/", f"/v2/{other_repo}/")
    assert elsewhere != location
    assert_error(reg("GET", elsewhere), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch(reg, elsewhere, b"x", 0), 404, "BLOB_UPLOAD_UNKNOWN")


def test_empty_blob(reg, repo):
    empty = sha256(b"")
    answer = reg("PUT", with_digest(start_upload(reg, repo), empty))
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == empty
    head = reg("HEAD", f"/v2/{repo}/blobs/{empty}")
    assert head.status_code == 200 and head.headers["Content-Length"] == "0"
    got = reg("GET", f"/v2/{repo}/blobs/{empty}")
    assert got.status_code == 200 and got.content == b""


def test_sha512_blob_is_stored_and_served_under_its_digest(reg, repo):
    assert reg("GET", f"/v2/{repo}/blobs/{push_blob(reg, repo, b'', sha512(b''))}").content == b""
    data = os.urandom(5000)
    digest = push_blob(reg, repo, data, sha512(data))
    head = reg("HEAD", f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    assert head.headers["Docker-Content-Digest"] == digest
    got = reg("GET", f"/v2/{repo}/blobs/{digest}")
    assert got.status_code == 200 and got.content == data


def test_sha512_chunked_upload(reg, repo):
    data = os.urandom(2048)
    location = patch(reg, start_upload(reg, repo), data[:1024], 0).headers["Location"]
    answer = reg("PUT", with_digest(location, sha512(data)), data=data[1024:],
                 headers={"Content-Range": f"1024-{len(data) - 1}"})
    assert answer.status_code == 201, answer.text
    assert reg("GET", f"/v2/{repo}/blobs/{sha512(data)}").content == data


def test_wrong_digest_is_400_digest_invalid(server, reg, repo):
    answer = reg("PUT", with_digest(start_upload(reg, repo), sha256(b"other bytes")), data=b"these bytes")
    assert_error(answer, 400, "DIGEST_INVALID")
    # A monolithic push's bytes are checked before anything is recorded: no upload is started,
    # and nothing is left in staging.
    events = len(server.events())
    for body in (b"these bytes", b"", os.urandom(3 * 1024 * 1024)):
        for digest in (sha256(b"other bytes"), sha512(b"other bytes")):
            answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=body)
            assert_error(answer, 400, "DIGEST_INVALID")
    assert len(server.events()) == events
    staging = os.path.join(server.data_dir, "staging")
    assert not [name for name in os.listdir(staging) if name.startswith(".whole-")], os.listdir(staging)


def test_a_final_put_whose_chunk_is_recorded_but_refused_ends_the_upload(reg, repo):
    """Its chunk committed before the completion was refused: the same PUT again would add it a
    second time, so the upload ends (as distribution's does) and the client starts again. A refused
    PUT with no chunk leaves the upload open for the right digest."""
    location = start_upload(reg, repo)
    answer = reg("PATCH", location, data=b"abc", headers={"Content-Range": "0-2", "Content-Type": "application/octet-stream"})
    assert answer.status_code == 202, answer.text
    location = answer.headers["Location"]
    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    assert_error(reg("PUT", with_digest(location, wrong)), 400, "DIGEST_INVALID")
    assert reg("GET", location).headers["Range"] == "0-2", "no chunk: the upload is as it was"
    assert_error(reg("PUT", with_digest(location, wrong), data=b"def"), 400, "DIGEST_INVALID")
    assert_error(reg("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(reg("PUT", with_digest(location, wrong), data=b"def"), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("digest", ["sha256:xyz", "sha256:" + "A" * 64, "sha256:" + "a" * 63, "md5:" + "a" * 32, "nodigest"])
def test_malformed_digest_is_400_digest_invalid(reg, repo, digest):
    assert_error(reg("PUT", with_digest(start_upload(reg, repo), digest), data=b"bytes"), 400, "DIGEST_INVALID")
    assert_error(reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=b"bytes"), 400, "DIGEST_INVALID")


def test_pushing_a_blob_the_repository_holds_is_201_again(reg, repo):
    data = os.urandom(300)
    push_blob(reg, repo, data)
    push_blob(reg, repo, data)
    answer = reg("PUT", with_digest(start_upload(reg, repo), sha256(data)), data=data)
    assert answer.status_code == 201, answer.text
    assert reg("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data


# ---------------------------------------------------------------------------------------------
# Mounts


def test_mount_from_another_repository_is_201(reg, repo, other_repo):
    data = os.urandom(400)
    digest = push_blob(reg, other_repo, data)
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": other_repo})
    assert answer.status_code == 201, answer.text
    assert reg("GET", answer.headers["Location"]).content == data
    assert reg("GET", f"/v2/{repo}/blobs/{digest}").content == data


@pytest.mark.parametrize("mount", ["sha256:XYZ", "md5:abc", ""])
def test_a_mount_of_a_digest_that_is_none_is_answered_with_a_session(reg, repo, other_repo, mount):
    """As any blob the registry cannot mount (the spec: it SHOULD answer 202 with a session)."""
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": mount, "from": other_repo})
    assert answer.status_code == 202 and "Location" in answer.headers, answer.text


def test_mount_without_from_of_a_blob_the_server_holds_is_201(reg, repo, other_repo):
    data = os.urandom(400)
    digest = push_blob(reg, other_repo, data)
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest})
    assert answer.status_code == 201, answer.text
    assert reg("GET", f"/v2/{repo}/blobs/{digest}").content == data


def test_a_refused_monolithic_push_after_a_failed_mount_makes_no_repository(open_server):
    """A mount that does not land falls back to the request's monolithic push; bytes that are not
    its digest are refused, and nothing is written: no repository made on push either."""
    anonymous = Registry(open_server)
    push_blob(anonymous, "mount/source", b"kept")
    unknown = sha256(b"never pushed")
    answer = anonymous("POST", "/v2/mount/refused-new/blobs/uploads/", params={"mount": unknown, "from": "mount/source", "digest": sha256(b"abc")},
                       data=b"abd", headers={"Content-Type": "application/octet-stream"})
    assert_error(answer, 400, "DIGEST_INVALID")
    assert_error(anonymous("GET", "/v2/mount/refused-new/tags/list"), 404, "NAME_UNKNOWN")


def test_mount_without_from_under_allow_anonymous_is_201(open_server):
    anonymous = Registry(open_server)
    data = os.urandom(400)
    digest = push_blob(anonymous, "open/source", data)
    answer = anonymous("POST", "/v2/open/target/blobs/uploads/", params={"mount": digest})
    assert answer.status_code == 201, answer.text
    assert anonymous("GET", f"/v2/open/target/blobs/{digest}").content == data


def test_a_mount_the_repository_needs_not_is_201_whatever_the_source_holds(server, reg, repo, other_repo):
    """A repository that holds the blob already is answered 201, from any source (nothing is recorded)."""
    digest = push_blob(reg, repo, os.urandom(400))
    before = len(server.events())
    for params in ({"mount": digest, "from": other_repo}, {"mount": digest}):
        answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params=params)
        assert answer.status_code == 201, (params, answer.text)
    assert len(server.events()) == before, "a mount the repository needs not records nothing"


def test_a_mount_whose_blob_file_is_gone_falls_back_to_a_session(server, reg, repo, other_repo):
    """A blob that cannot be claimed (its file gone) is not mounted: the client uploads it, which
    puts its file back."""
    data = os.urandom(400)
    digest = push_blob(reg, other_repo, data)
    os.unlink(os.path.join(server.data_dir, "blobs", *digest.split(":")))
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": other_repo})
    assert answer.status_code == 202, answer.text
    done = reg("PUT", with_digest(answer.headers["Location"], digest), data=data)
    assert done.status_code == 201, done.text
    assert reg("GET", f"/v2/{other_repo}/blobs/{digest}").content == data


def test_mount_of_an_unknown_blob_falls_back_to_a_session(reg, repo, other_repo):
    data = os.urandom(400)
    answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": sha256(data), "from": other_repo})
    assert answer.status_code == 202, answer.text
    assert reg("GET", answer.headers["Location"]).status_code == 204
    done = reg("PUT", with_digest(answer.headers["Location"], sha256(data)), data=data)
    assert done.status_code == 201, done.text
    assert_error(reg("GET", f"/v2/{other_repo}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


# ---------------------------------------------------------------------------------------------
# Blobs


@pytest.fixture
def blob(reg, repo):
    data = os.urandom(100)
    return data, push_blob(reg, repo, data)


def test_head_of_a_blob_is_200_with_length_and_digest_and_no_body(reg, repo, blob):
    data, digest = blob
    answer = reg("HEAD", f"/v2/{repo}/blobs/{digest}")
    assert answer.status_code == 200
    assert answer.headers["Content-Length"] == str(len(data))
    assert answer.headers["Docker-Content-Digest"] == digest
    assert answer.content == b""


def test_get_of_a_blob_is_its_bytes(reg, repo, blob):
    data, digest = blob
    answer = reg("GET", f"/v2/{repo}/blobs/{digest}")
    assert answer.status_code == 200
    assert answer.content == data and answer.headers["Docker-Content-Digest"] == digest


def test_get_of_a_range_is_206_with_exactly_those_bytes(reg, repo, blob):
    data, digest = blob
    answer = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert answer.status_code == 206
    assert answer.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert answer.content == data[10:20]


@pytest.mark.parametrize("ranges", ["bytes={size}-{beyond}", "bytes=50-0", "bytes=abc"])
def test_unsatisfiable_or_invalid_range_is_416(reg, repo, blob, ranges):
    """Past the end, or no range at all (RFC 9110 14.2 allows rejecting an invalid range-spec; the
    distribution spec's conformance suite asks 416 of `bytes=500-0`)."""
    data, digest = blob
    answer = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": ranges.format(size=len(data), beyond=len(data) + 10)})
    assert answer.status_code == 416
    assert answer.headers["Content-Range"] == f"bytes */{len(data)}"


def test_the_range_unit_is_case_insensitive(reg, repo, blob):
    data, digest = blob
    answer = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": "Bytes=0-4"})
    assert answer.status_code == 206 and answer.content == data[:5]


@pytest.mark.parametrize("ranges", [
    pytest.param("items=0-5", id="unknown-unit"),  # RFC 9110 14.2: MUST ignore a unit it does not understand
    pytest.param("bytes=0-1,3-4", id="two-ranges"),  # this server sends no multipart 206: it ignores them, never 416
])
def test_range_the_server_does_not_serve_is_ignored(reg, repo, blob, ranges):
    data, digest = blob
    answer = reg("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": ranges})
    assert answer.status_code == 200, (answer.status_code, answer.text)
    assert answer.content == data
    assert "Content-Range" not in answer.headers


def test_unknown_blob_is_404_blob_unknown(reg, repo, other_repo):
    digest = push_blob(reg, other_repo, os.urandom(10))  # held by the server, not by this repository
    for unknown in (sha256(b"never pushed"), digest):
        assert_error(reg("GET", f"/v2/{repo}/blobs/{unknown}"), 404, "BLOB_UNKNOWN")
        assert reg("HEAD", f"/v2/{repo}/blobs/{unknown}").status_code == 404


def test_delete_of_a_blob_is_405_unsupported(reg, repo, blob):
    _, digest = blob
    assert_error(reg("DELETE", f"/v2/{repo}/blobs/{digest}"), 405, "UNSUPPORTED")
    assert reg("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200


@pytest.mark.parametrize("damage", ["removed", "a-folder", "truncated"])
def test_a_blob_file_lost_or_damaged_on_disk_is_500_for_head_and_get_alike(server, reg, repo, blob, damage):
    """The record says the repository holds the blob, so its file gone, replaced or short is the
    server's fault: HEAD must not promise what GET cannot serve (200 against 500), nor a folder in
    the file's place be served as an empty 200."""
    data, digest = blob
    path = pathlib.Path(server.data_dir, "blobs", "sha256", digest.split(":", 1)[1])
    kept = path.read_bytes()
    path.unlink()
    try:
        if damage == "a-folder":
            path.mkdir()
        elif damage == "truncated":
            path.write_bytes(kept[:-1])
        for method in ("HEAD", "GET"):
            answer = reg(method, f"/v2/{repo}/blobs/{digest}")
            assert answer.status_code == 500, (method, answer.status_code, answer.content[:100])
            if method == "GET":
                assert answer.json()["errors"][0]["code"] == "UNKNOWN"
                assert server.data_dir not in answer.text  # the store's words name its files
    finally:
        path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        path.write_bytes(kept)
    assert reg("GET", f"/v2/{repo}/blobs/{digest}").content == data


# ---------------------------------------------------------------------------------------------
# Manifests


def odd_manifest(reg, repo):
    """An OCI image manifest whose whitespace, key order and escapes no serializer would reproduce."""
    config, layer = push_config(reg, repo), os.urandom(32)
    push_blob(reg, repo, layer)
    return ('{\n   "layers" : [ {"size":%d ,\t"mediaType":"%s",\n "digest":"%s"} ],\r\n'
            '\t"schemaVersion":2,"config":{"digest":"%s","size":%d,"mediaType":"%s"},\n'
            '  "annotations": {"caf\\u00e9": "café", "z": "a"},  "mediaType"  :  "%s"  }\n\n'
            % (len(layer), OCI_LAYER, sha256(layer), sha256(config), len(config), OCI_CONFIG, OCI_MANIFEST)).encode()


def test_manifest_is_served_byte_for_byte_by_tag_and_digest(reg, repo):
    body = odd_manifest(reg, repo)
    answer = put_manifest(reg, repo, "v1", body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == sha256(body)
    assert reg("GET", answer.headers["Location"]).content == body, "the Location is a pullable manifest URL"
    for reference in ("v1", sha256(body)):
        got = reg("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == sha256(body)


def test_head_of_a_manifest_is_200_with_length_and_digest(reg, repo):
    body = odd_manifest(reg, repo)
    push_manifest(reg, repo, "v1", body)
    for reference in ("v1", sha256(body)):
        answer = reg("HEAD", f"/v2/{repo}/manifests/{reference}")
        assert answer.status_code == 200
        assert answer.headers["Content-Length"] == str(len(body))
        assert answer.headers["Docker-Content-Digest"] == sha256(body)
        assert answer.headers["Content-Type"] == OCI_MANIFEST
        assert answer.content == b""
    assert reg("HEAD", f"/v2/{repo}/manifests/v2").status_code == 404


def test_manifest_put_by_digest_is_201_and_untagged(reg, repo):
    body = push_image(reg, repo)
    assert reg("GET", f"/v2/{repo}/manifests/{sha256(body)}").content == body
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == []


def test_manifest_put_by_sha512_digest_is_served_under_it(reg, repo):
    config = push_config(reg, repo)
    body = image_manifest(config, [], annotations={"algorithm": "sha512"})
    answer = put_manifest(reg, repo, sha512(body), body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Docker-Content-Digest"] == sha512(body)
    got = reg("GET", f"/v2/{repo}/manifests/{sha512(body)}")
    assert got.content == body and got.headers["Docker-Content-Digest"] == sha512(body)


def test_a_push_by_digest_with_tag_parameters_tags_it_and_names_each_in_oci_tag(reg, ecr, repo, server):
    """distribution-spec 1.1.1's `?tag=` on a push by digest: each tag, once, is recorded as a
    PutImage of its own (what describe-image-tags then shows), and `OCI-Tag` names them."""
    config = push_config(reg, repo)
    body = image_manifest(config, [], annotations={"tagged": "by parameters"})
    digest = sha256(body)
    answer = reg("PUT", f"/v2/{repo}/manifests/{digest}", params=[("tag", "v1"), ("tag", "v1.2"), ("tag", "v1")], data=body,
                 headers={"Content-Type": OCI_MANIFEST})
    assert answer.status_code == 201 and answer.headers["Docker-Content-Digest"] == digest, answer.text
    assert answer.headers["OCI-Tag"] == "v1, v1.2"
    pushed = [e["data"].get("imageTag") for e in server.events() if e["type"] == "ImagePushed" and e["data"]["imageDigest"] == digest]
    assert pushed == ["v1", "v1.2"], "the manifest recorded once a tag, under the first tag first"
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v1", "v1.2"]
    assert reg("GET", f"/v2/{repo}/manifests/v1.2").content == body
    described = ecr.describe_image_tags(repositoryName=repo)["imageTagDetails"]
    assert sorted(t["imageTag"] for t in described if t["imageDetail"]["imageDigest"] == digest) == ["v1", "v1.2"]
    again = reg("PUT", f"/v2/{repo}/manifests/{digest}", params=[("tag", "v1"), ("tag", "latest")], data=body, headers={"Content-Type": OCI_MANIFEST})
    assert again.status_code == 201 and again.headers["OCI-Tag"] == "v1, latest", again.text
    # A hundred tags, a repeat not counted.
    hundred = [f"n{n}" for n in range(100)]
    answer = reg("PUT", f"/v2/{repo}/manifests/{digest}", params=[("tag", t) for t in hundred + ["n0"]], data=body,
                 headers={"Content-Type": OCI_MANIFEST})
    assert answer.status_code == 201 and answer.headers["OCI-Tag"].split(", ") == hundred, answer.text
    # Under a SHA-512 digest, the tags name the manifest by it.
    other = image_manifest(config, [], annotations={"algorithm": "sha512"})
    answer = reg("PUT", f"/v2/{repo}/manifests/{sha512(other)}", params={"tag": "long"}, data=other, headers={"Content-Type": OCI_MANIFEST})
    assert answer.status_code == 201 and answer.headers["OCI-Tag"] == "long", answer.text
    assert reg("GET", f"/v2/{repo}/manifests/long").headers["Docker-Content-Digest"] == sha512(other)


@pytest.mark.parametrize("tags, padding, status, code", [
    ([("tag", "v1"), ("tag", "-no")], 0, 400, "MANIFEST_INVALID"),
    ([("tag", f"t{n}") for n in range(101)], 0, 414, "UNSUPPORTED"),
    # Each tag records the manifest again: 17 of a mebibyte pass the 16 MiB one push may record.
    ([("tag", f"t{n}") for n in range(17)], MIB, 413, "MANIFEST_INVALID")])
def test_a_push_by_digest_with_a_bad_tag_parameter_writes_nothing(reg, repo, tags, padding, status, code):
    config = push_config(reg, repo)
    body = image_manifest(config, [], annotations={"refused": "tags", "padding": "x" * padding})
    answer = reg("PUT", f"/v2/{repo}/manifests/{sha256(body)}", params=tags, data=body, headers={"Content-Type": OCI_MANIFEST})
    assert_error(answer, status, code)
    assert_error(reg("GET", f"/v2/{repo}/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == []


def test_manifest_put_by_a_digest_not_its_own_is_400(reg, repo):
    body = push_image(reg, repo)
    assert_error(put_manifest(reg, repo, sha256(body + b" "), body), 400, "DIGEST_INVALID")


def test_manifest_pushed_again_is_201(reg, repo):
    body = push_image(reg, repo, "v1")
    push_manifest(reg, repo, "v1", body)
    push_manifest(reg, repo, "v2", body)
    push_manifest(reg, repo, sha256(body), body)


def test_a_tag_pushed_again_names_the_new_manifest(reg, repo):
    push_image(reg, repo, "latest")
    newer = push_image(reg, repo, "latest")
    assert reg("GET", f"/v2/{repo}/manifests/latest").content == newer


def test_manifest_naming_a_blob_not_in_the_repository_is_manifest_blob_unknown(reg, repo, other_repo):
    config, layer = push_config(reg, repo), os.urandom(16)
    push_blob(reg, other_repo, layer)  # held by the server, in another repository
    answer = put_manifest(reg, repo, "v1", image_manifest(config, [layer]))
    assert_error(answer, 400, "MANIFEST_BLOB_UNKNOWN")
    answer = put_manifest(reg, repo, "v1", image_manifest(compact({"os": "plan9"}), []))
    assert_error(answer, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(reg("GET", f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_manifest_giving_a_blob_or_a_manifest_another_size_is_manifest_invalid_through_either_api(reg, ecr, repo):
    """A descriptor's size is its content's (the image spec's rule): a client that checks what it
    pulls fails on any other, so such a manifest or index is refused, through the registry and
    PutImage alike."""
    config, layer = push_config(reg, repo), os.urandom(16)
    push_blob(reg, repo, layer)
    misstated = json.loads(image_manifest(config, [layer]))
    misstated["layers"][0]["size"] = 17
    answer = put_manifest(reg, repo, "v1", compact(misstated))
    assert_error(answer, 400, "MANIFEST_INVALID")
    message = answer.json()["errors"][0]["message"]
    assert f"gives the blob '{sha256(layer)}' a size of 17 bytes" in message and "holds it with 16 bytes" in message, message
    with pytest.raises(ClientError) as refused:
        ecr.put_image(repositoryName=repo, imageManifest=compact(misstated).decode(), imageTag="v1")
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException", refused.value.response
    assert_error(reg("GET", f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    child = image_manifest(config, [layer])
    push_manifest(reg, repo, "v1", child)
    listed = json.loads(index([(OCI_MANIFEST, child)]))
    listed["manifests"][0]["size"] = len(child) - 1
    answer = put_manifest(reg, repo, "all", compact(listed), OCI_INDEX)
    assert_error(answer, 400, "MANIFEST_INVALID")
    assert f"gives the manifest '{sha256(child)}' a size of {len(child) - 1} bytes" in answer.json()["errors"][0]["message"], answer.text
    push_manifest(reg, repo, "all", index([(OCI_MANIFEST, child)]), OCI_INDEX)


def test_index_naming_a_manifest_not_in_the_repository_is_manifest_blob_unknown(reg, repo, other_repo):
    elsewhere = push_image(reg, other_repo, "v1")
    here = push_image(reg, repo, "v1")
    answer = put_manifest(reg, repo, "multi", index([(OCI_MANIFEST, here), (OCI_MANIFEST, elsewhere)]), OCI_INDEX)
    assert_error(answer, 400, "MANIFEST_BLOB_UNKNOWN")
    body = index([(OCI_MANIFEST, here)])
    push_manifest(reg, repo, "multi", body, OCI_INDEX)
    got = reg("GET", f"/v2/{repo}/manifests/multi")
    assert got.content == body and got.headers["Content-Type"] == OCI_INDEX


def test_a_manifest_an_index_names_is_not_deleted_until_the_index_is_and_the_refusal_is_no_permissions(reg, repo):
    """ECR refuses to delete an image a manifest list names. That was 403 DENIED, which clients
    report as a missing permission, and which the spec does not give this endpoint (202, 404, 400,
    405): it is 400 UNSUPPORTED, naming the index."""
    here = push_image(reg, repo, "v1")
    body = index([(OCI_MANIFEST, here)])
    push_manifest(reg, repo, "multi", body, OCI_INDEX)
    refused = reg("DELETE", f"/v2/{repo}/manifests/{sha256(here)}")
    assert_error(refused, 400, "UNSUPPORTED")
    assert "manifest list" in refused.text, refused.text
    assert reg("GET", f"/v2/{repo}/manifests/{sha256(here)}").status_code == 200
    assert reg("DELETE", f"/v2/{repo}/manifests/{sha256(body)}").status_code == 202
    assert reg("DELETE", f"/v2/{repo}/manifests/{sha256(here)}").status_code == 202


def test_a_manifest_without_a_media_type_tells_a_registry_client_to_send_content_type(reg, repo):
    config = push_config(reg, repo)
    body = json.loads(image_manifest(config, []))
    body.pop("mediaType", None)
    answer = reg("PUT", f"/v2/{repo}/manifests/untyped", data=json.dumps(body).encode())
    assert_error(answer, 400, "MANIFEST_INVALID")
    assert "Content-Type" in answer.text, answer.text


def test_an_upload_for_a_digest_algorithm_not_served_is_refused(reg, repo):
    """The spec: a digest of an algorithm the registry does not serve SHOULD be 400."""
    assert_error(reg("POST", f"/v2/{repo}/blobs/uploads/?digest-algorithm=md5"), 400, "DIGEST_INVALID")
    for algorithm in ("sha256", "sha512"):
        assert reg("POST", f"/v2/{repo}/blobs/uploads/?digest-algorithm={algorithm}").status_code == 202


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}'],
                         ids=["not-json", "empty", "array", "no-config"])
def test_invalid_manifest_is_manifest_invalid(reg, repo, body):
    assert_error(put_manifest(reg, repo, "v1", body), 400, "MANIFEST_INVALID")


def test_manifest_over_the_size_limit_is_413(reg, repo):
    config = push_config(reg, repo)
    body = image_manifest(config, [], annotations={"padding": "x" * (4 * MIB)})
    assert put_manifest(reg, repo, "big", body).status_code == 413


def test_manifest_of_4_megabytes_is_accepted(reg, repo):
    config = push_config(reg, repo)
    body = image_manifest(config, [], annotations={"padding": ""})
    body = image_manifest(config, [], annotations={"padding": "x" * (4_000_000 - len(body))})
    assert len(body) == 4_000_000
    push_manifest(reg, repo, "big", body)
    assert reg("GET", f"/v2/{repo}/manifests/big").content == body


def test_manifest_with_subject_is_201_with_oci_subject(reg, repo):
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    body = artifact(subject, artifactType=SBOM)
    answer = put_manifest(reg, repo, sha256(body), body)
    assert answer.status_code == 201, answer.text
    assert answer.headers["OCI-Subject"] == sha256(subject)


@pytest.mark.parametrize("subject", ["not-a-descriptor", {"mediaType": OCI_MANIFEST, "digest": "../../etc\r\nX: 1", "size": 1},
                                     {"mediaType": OCI_MANIFEST, "size": 1}],
                         ids=["string", "bad-digest", "no-digest"])
def test_manifest_whose_subject_is_not_a_descriptor_is_manifest_invalid(reg, repo, subject):
    push_blob(reg, repo, b"{}")
    body = image_manifest(b"{}", [], config_type=OCI_EMPTY, subject=subject)
    assert_error(put_manifest(reg, repo, sha256(body), body), 400, "MANIFEST_INVALID")
    assert reg("GET", f"/v2/{repo}/manifests/{sha256(body)}").status_code == 404


def test_manifest_whose_subject_is_absent_is_accepted(reg, repo):
    body = push_artifact(reg, repo, b"a manifest never pushed", artifactType=SBOM)
    assert reg("GET", f"/v2/{repo}/manifests/{sha256(body)}").content == body


def test_docker_schema_2_manifest_and_manifest_list(reg, repo):
    config, layer = push_config(reg, repo), os.urandom(48)
    push_blob(reg, repo, layer)
    manifest = image_manifest(config, [layer], config_type=DOCKER_CONFIG, media_type=DOCKER_MANIFEST, layer_type=DOCKER_LAYER)
    push_manifest(reg, repo, "amd64", manifest, DOCKER_MANIFEST)
    listing = index([(DOCKER_MANIFEST, manifest)], media_type=DOCKER_LIST)
    push_manifest(reg, repo, "latest", listing, DOCKER_LIST)
    for reference, body, media_type in [("amd64", manifest, DOCKER_MANIFEST), ("latest", listing, DOCKER_LIST)]:
        got = reg("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
        assert got.status_code == 200
        assert got.content == body and got.headers["Content-Type"] == media_type


def test_a_manifest_content_type_is_read_without_regard_to_case(reg, repo):
    """Media types are case-insensitive (RFC 9110 8.3.1): one sent in capitals is the manifest's
    own, kept and served in the registered lower case."""
    config = push_config(reg, repo)
    body = image_manifest(config, [])
    answer = put_manifest(reg, repo, "shouted", body, "Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8")
    assert answer.status_code == 201, answer.text
    got = reg("GET", f"/v2/{repo}/manifests/shouted", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200 and got.content == body and got.headers["Content-Type"] == OCI_MANIFEST, got.headers


def test_delete_by_tag_is_202_and_the_manifest_stays_by_digest(reg, repo):
    body = push_image(reg, repo, "v1")
    answer = reg("DELETE", f"/v2/{repo}/manifests/v1")
    assert answer.status_code == 202
    assert_error(reg("GET", f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert reg("GET", f"/v2/{repo}/manifests/{sha256(body)}").content == body
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == []


def test_a_tag_longer_than_a_registry_pushes_that_ecr_stored_is_read_and_deleted(ecr, reg, repo):
    """ECR's PutImage stores tags of up to 300 characters, the registry pushes 128 at most: such a
    tag, left out of the tags list (which a client would refuse whole), is pulled and deleted by name."""
    body = push_image(reg, repo, "v1")
    long = "t" * 200
    ecr.put_image(repositoryName=repo, imageManifest=body.decode(), imageTag=long)
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    assert reg("GET", f"/v2/{repo}/manifests/{long}").content == body
    assert reg("HEAD", f"/v2/{repo}/manifests/{long}").status_code == 200
    assert reg("DELETE", f"/v2/{repo}/manifests/{long}").status_code == 202
    assert reg("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    assert_error(reg("PUT", f"/v2/{repo}/manifests/{long}", data=body, headers={"Content-Type": OCI_MANIFEST}), 400, "MANIFEST_INVALID")


def test_delete_by_digest_is_202_then_manifest_unknown(reg, repo):
    body = push_image(reg, repo, "v1")
    answer = reg("DELETE", f"/v2/{repo}/manifests/{sha256(body)}")
    assert answer.status_code == 202
    assert_error(reg("GET", f"/v2/{repo}/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg("GET", f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg("DELETE", f"/v2/{repo}/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")


def test_unknown_manifest_is_404_manifest_unknown(reg, repo):
    assert_error(reg("GET", f"/v2/{repo}/manifests/nothing"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg("GET", f"/v2/{repo}/manifests/{sha256(b'nothing')}"), 404, "MANIFEST_UNKNOWN")
    # What cannot be a tag is not found either (the conformance suite's `.INVALID_MANIFEST_NAME`);
    # pushing it is invalid.
    assert_error(reg("GET", f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME"), 404, "MANIFEST_UNKNOWN")
    assert reg("HEAD", f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME").status_code == 404
    assert_error(reg("PUT", f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME", data=b"{}", headers={"Content-Type": OCI_MANIFEST}),
                 400, "MANIFEST_INVALID")


# ---------------------------------------------------------------------------------------------
# Tags


TAGS = ["v2", "latest", "A1", "v10", "_x", "1.0"]


@pytest.fixture
def tagged(reg, repo):
    body = push_image(reg, repo, TAGS[0])
    for tag in TAGS[1:]:
        push_manifest(reg, repo, tag, body)
    return repo


def assert_lexical(tags):
    """The spec's order: lexical (case-insensitive) or ASCIIbetical."""
    assert tags in (sorted(TAGS), sorted(TAGS, key=str.lower)), tags


def test_tags_are_listed_in_lexical_order(reg, tagged):
    answer = reg("GET", f"/v2/{tagged}/tags/list")
    assert answer.status_code == 200 and "Link" not in answer.headers
    assert answer.json()["name"] == tagged
    assert_lexical(answer.json()["tags"])


def test_tags_page_of_two_links_to_the_rest(reg, tagged):
    pages, url = [], f"/v2/{tagged}/tags/list?n=2"
    while url:
        answer = reg("GET", url)
        assert answer.status_code == 200
        pages.append(answer.json()["tags"])
        link = answer.headers.get("Link")
        url = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link).group(1) if link else None
    assert [len(page) for page in pages] == [2, 2, 2]
    assert_lexical(sum(pages, []))


def test_tags_after_last(reg, tagged):
    every = reg("GET", f"/v2/{tagged}/tags/list").json()["tags"]
    assert reg("GET", f"/v2/{tagged}/tags/list", params={"last": every[2]}).json()["tags"] == every[3:]
    assert reg("GET", f"/v2/{tagged}/tags/list", params={"last": every[2], "n": 1}).json()["tags"] == every[3:4]
    assert reg("GET", f"/v2/{tagged}/tags/list", params={"last": every[-1]}).json()["tags"] == []


def test_tags_past_the_specs_128_characters_are_read_by_name_but_not_listed(reg, tagged, ecr):
    """ECR's PutImage takes tags of 300 characters; the distribution spec's are 128 at most, and a
    client refuses a list that holds a longer one (`skopeo sync` stopped at the whole repository).
    Left out of the list, in every page, and still read by name."""
    manifest = reg("GET", f"/v2/{tagged}/manifests/{TAGS[0]}", headers={"Accept": OCI_MANIFEST})
    long_tags = ["a" + "x" * 199, "v2" + "y" * 127, "_" + "z" * 128]  # 200, 129, 129 characters
    for tag in long_tags:
        ecr.put_image(repositoryName=tagged, imageManifest=manifest.text, imageManifestMediaType=OCI_MANIFEST, imageTag=tag)
    assert_lexical(reg("GET", f"/v2/{tagged}/tags/list").json()["tags"])
    pages, url = [], f"/v2/{tagged}/tags/list?n=1"
    while url:
        answer = reg("GET", url)
        pages.append(answer.json()["tags"])
        link = answer.headers.get("Link")
        url = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link).group(1) if link else None
    assert all(len(page) == 1 for page in pages), pages
    assert_lexical(sum(pages, []))
    for tag in long_tags:
        assert reg("GET", f"/v2/{tagged}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}).content == manifest.content


def test_tags_with_n_zero_is_an_empty_list_without_link(reg, tagged):
    answer = reg("GET", f"/v2/{tagged}/tags/list", params={"n": 0})
    assert answer.status_code == 200 and answer.json()["tags"] == [] and "Link" not in answer.headers


def test_a_path_with_escaped_segments_names_the_same_endpoint(reg, tagged):
    """As distribution decodes a path: `%2F` in a name, `%3A` in a digest (Python's quote() escapes both)."""
    escaped = tagged.replace("/", "%2F")
    assert reg("GET", f"/v2/{escaped}/tags/list").json()["tags"] == reg("GET", f"/v2/{tagged}/tags/list").json()["tags"]
    digest = reg("GET", f"/v2/{tagged}/manifests/{TAGS[0]}", headers={"Accept": OCI_MANIFEST}).headers["Docker-Content-Digest"]
    assert reg("HEAD", f"/v2/{tagged}/manifests/{digest.replace(':', '%3A')}", headers={"Accept": OCI_MANIFEST}).status_code == 200
    assert_error(reg("GET", f"/v2/{tagged}/tags/list%"), 404)


def test_every_answer_says_nosniff(reg, repo, server):
    """A blob of HTML, an error that names its path, an API answer: none is for a browser to guess at."""
    html = b"<html><script>alert(1)</script></html>"
    digest = push_blob(reg, repo, html)
    answers = [reg("GET", f"/v2/{repo}/blobs/{digest}"), reg("GET", f"/v2/{repo}/blobs/sha256:<b>x</b>"),
               requests.get(f"http://127.0.0.1:{server.port}/log/tile/<b>", timeout=30),
               requests.get(f"http://127.0.0.1:{server.port}/no/route/<b>", timeout=30),
               requests.post(server.endpoint, data=b"{}", headers={"X-Amz-Target": "SpencerFrontendService.Nope"}, timeout=30)]
    for answer in answers:
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", (answer.url, answer.status_code, answer.headers)


def test_tags_with_an_n_past_any_integer_is_one_page(reg, tagged):
    every = reg("GET", f"/v2/{tagged}/tags/list").json()["tags"]
    answer = reg("GET", f"/v2/{tagged}/tags/list", params={"n": "9" * 30})
    assert answer.status_code == 200 and answer.json()["tags"] == every


# ---------------------------------------------------------------------------------------------
# Referrers


def referrers(reg, repo, digest, **params):
    answer = reg("GET", f"/v2/{repo}/referrers/{digest}", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == OCI_INDEX
    document = answer.json()
    assert document["schemaVersion"] == 2 and document["mediaType"] == OCI_INDEX
    return answer, {entry["digest"]: entry for entry in document["manifests"]}


def test_referrers_list_the_manifests_whose_subject_is_the_digest(reg, repo, other_repo):
    subject = push_image(reg, repo, "v1")
    sbom = push_artifact(reg, repo, subject, artifactType=SBOM, annotations={"org.example.format": "json"})
    signature = push_artifact(reg, repo, subject)  # no artifactType: the config's media type stands for it
    push_image(reg, repo, "unrelated")
    push_artifact(reg, other_repo, subject, artifactType=SBOM)  # another repository's
    answer, found = referrers(reg, repo, sha256(subject))
    assert "OCI-Filters-Applied" not in answer.headers
    assert found == {
        sha256(sbom): {"mediaType": OCI_MANIFEST, "digest": sha256(sbom), "size": len(sbom), "artifactType": SBOM,
                       "annotations": {"org.example.format": "json"}},
        sha256(signature): {"mediaType": OCI_MANIFEST, "digest": sha256(signature), "size": len(signature),
                            "artifactType": OCI_EMPTY},
    }


def test_referrer_whose_subject_digest_is_written_with_escapes_is_listed(reg, repo):
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    digest = sha256(subject)
    body = artifact(subject, artifactType=SBOM).replace(digest.encode(), digest.replace(":", "\\u003a").encode())
    assert digest.encode() not in body
    push_manifest(reg, repo, sha256(body), body)
    _, found = referrers(reg, repo, digest)
    assert list(found) == [sha256(body)]


def test_referrers_filtered_by_artifact_type(reg, repo):
    subject = push_image(reg, repo, "v1")
    sbom = push_artifact(reg, repo, subject, artifactType=SBOM)
    push_artifact(reg, repo, subject, artifactType=SIGNATURE)
    untyped = push_artifact(reg, repo, subject)
    answer, found = referrers(reg, repo, sha256(subject), artifactType=SBOM)
    assert answer.headers["OCI-Filters-Applied"] == "artifactType"
    assert list(found) == [sha256(sbom)]
    _, found = referrers(reg, repo, sha256(subject), artifactType=OCI_EMPTY)
    assert list(found) == [sha256(untyped)], "a manifest without artifactType is filtered by its config's media type"
    # An empty value filters nothing, as distribution reads it: it filtered everything out.
    answer, found = referrers(reg, repo, sha256(subject), artifactType="")
    assert len(found) == 3 and "OCI-Filters-Applied" not in answer.headers


def test_referrers_beyond_the_first_hundreds_of_manifests_are_listed(reg, repo):
    subject = push_image(reg, repo, "v1")
    made = {sha256(push_artifact(reg, repo, subject, annotations={"n": str(n)})) for n in range(300)}
    _, found = referrers(reg, repo, sha256(subject))
    assert set(found) == made


def test_referrers_past_a_thousand_come_in_pages_linked_to_the_next(reg, repo):
    """A list reads a bounded number of manifests: a thousand at a time, in digest order, with a
    Link to the rest that keeps the filter (its '+' and '/' escaped)."""
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    sbom = SBOM + "+json"
    made = set()
    for n in range(1001):
        body = artifact(subject, artifactType=sbom, annotations={"n": str(n)})
        made.add(push_manifest(reg, repo, sha256(body), body))
    signature = sha256(push_artifact(reg, repo, subject, artifactType=SIGNATURE))  # filtered out
    answer, _ = referrers(reg, repo, sha256(subject), artifactType=sbom)
    link = re.fullmatch(r'<(/v2/[^>]+)>; rel="next"', answer.headers["Link"])
    assert link and "artifactType=application%2Fvnd.example.sbom.v1%2Bjson" in link.group(1), answer.headers["Link"]
    rest = reg("GET", link.group(1))
    assert rest.status_code == 200 and "Link" not in rest.headers
    # Each page is the next thousand referrers in digest order, the filter applied within it.
    every = sorted(made | {signature})
    assert [e["digest"] for e in answer.json()["manifests"]] == [d for d in every[:1000] if d != signature]
    assert [e["digest"] for e in rest.json()["manifests"]] == [d for d in every[1000:] if d != signature]
    assert_error(reg("GET", f"/v2/{repo}/referrers/{sha256(subject)}", params={"last": "sha256:xyz"}), 400, "DIGEST_INVALID")


def test_referrers_whose_manifests_are_large_come_in_pages_of_a_few_mebibytes(reg, repo):
    """Descriptors carry their manifests' annotations: a page ends before its manifests pass
    4 MiB (but for its first), linked to the next, so that no answer grows to gigabytes."""
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    made = set()
    for n in range(7):
        body = artifact(subject, artifactType=SBOM, annotations={"n": str(n), "pad": "x" * (1 << 20)})
        made.add(push_manifest(reg, repo, sha256(body), body))
    pages, path = [], f"/v2/{repo}/referrers/{sha256(subject)}"
    while path:
        answer = reg("GET", path)
        assert answer.status_code == 200, answer.text
        entries = answer.json()["manifests"]
        assert entries and sum(e["size"] for e in entries) <= 4 << 20, [e["size"] for e in entries]
        assert all(e["annotations"]["pad"] == "x" * (1 << 20) for e in entries)
        pages.append([e["digest"] for e in entries])
        link = re.fullmatch(r'<(/v2/[^>]+)>; rel="next"', answer.headers.get("Link", ""))
        path = link and link.group(1)
    assert len(pages) == 3 and sum(pages, []) == sorted(made), pages


def test_a_referrer_whose_annotations_escape_past_the_budget_is_listed_without_them(reg, repo):
    """Escapes make annotations larger written than stored (DEL is `\\u007f`, six bytes): a page is
    sized as written, and a descriptor that alone passes the budget is listed without its
    annotations (its manifest holds them), so that no answer holds 25 MB for a slow reader."""
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    # 800,000 DELs, raw in the manifest (JSON needs no escape for them): 4.8 MB written.
    escaped = artifact(subject, artifactType=SBOM, annotations={"pad": "\x7f" * 800_000}).replace(b"\\u007f", b"\x7f")
    assert len(escaped) < 1 << 20
    plain = artifact(subject, artifactType=SBOM, annotations={"n": "1"})
    for body in (escaped, plain):
        push_manifest(reg, repo, sha256(body), body)
    answer = reg("GET", f"/v2/{repo}/referrers/{sha256(subject)}")
    assert answer.status_code == 200 and len(answer.content) < 4 << 20, len(answer.content)
    entries = {e["digest"]: e for e in answer.json()["manifests"]}
    assert set(entries) == {sha256(escaped), sha256(plain)}, "both listed, in one page"
    assert "annotations" not in entries[sha256(escaped)] and entries[sha256(plain)]["annotations"] == {"n": "1"}


def test_referrers_filtered_by_artifact_type_read_a_bounded_amount_per_page(reg, repo):
    """Referrers the filter leaves out are read too: a page ends, linked to the next, once it has
    read 16 MiB of manifests, however few it lists (an anonymous list could otherwise read a
    thousand manifests of 4 MiB each), and following the links lists exactly the matches."""
    subject = push_image(reg, repo, "v1")
    push_blob(reg, repo, b"{}")
    for n in range(7):  # 24.5 MiB: the page ends before the last of them, wherever the match falls
        body = artifact(subject, artifactType=SBOM, annotations={"n": str(n), "pad": "x" * (7 << 19)})
        push_manifest(reg, repo, sha256(body), body)
    wanted = artifact(subject, artifactType=SIGNATURE)
    push_manifest(reg, repo, sha256(wanted), wanted)
    pages, path = [], f"/v2/{repo}/referrers/{sha256(subject)}?artifactType={SIGNATURE}"
    while path:
        answer = reg("GET", path)
        assert answer.status_code == 200, answer.text
        pages.append([e["digest"] for e in answer.json()["manifests"]])
        link = re.fullmatch(r'<(/v2/[^>]+)>; rel="next"', answer.headers.get("Link", ""))
        path = link and link.group(1)
    assert len(pages) >= 2 and sum(pages, []) == [sha256(wanted)], pages


def test_deleted_referrer_is_no_longer_listed(reg, repo):
    subject = push_image(reg, repo, "v1")
    kept, deleted = push_artifact(reg, repo, subject, artifactType=SBOM), push_artifact(reg, repo, subject, artifactType=SIGNATURE)
    assert reg("DELETE", f"/v2/{repo}/manifests/{sha256(deleted)}").status_code == 202
    _, found = referrers(reg, repo, sha256(subject))
    assert list(found) == [sha256(kept)]


def test_referrer_index_without_artifact_type_omits_it(reg, repo):
    subject = push_image(reg, repo, "v1")
    child = push_image(reg, repo, "child")
    body = index([(OCI_MANIFEST, child)], subject=descriptor(OCI_MANIFEST, subject))
    push_manifest(reg, repo, sha256(body), body, OCI_INDEX)
    _, found = referrers(reg, repo, sha256(subject))
    assert found == {sha256(body): {"mediaType": OCI_INDEX, "digest": sha256(body), "size": len(body)}}


def test_referrer_with_empty_artifact_type_is_listed_with_the_config_media_type(reg, repo):
    subject = push_image(reg, repo, "v1")
    body = push_artifact(reg, repo, subject, artifactType="")
    _, found = referrers(reg, repo, sha256(subject))
    assert found[sha256(body)]["artifactType"] == OCI_EMPTY


def test_referrers_of_a_digest_without_referrers_is_an_empty_index(reg, repo):
    subject = push_image(reg, repo, "v1")
    for digest in (sha256(subject), sha256(b"not a manifest here")):
        answer = reg("GET", f"/v2/{repo}/referrers/{digest}")
        assert answer.status_code == 200 and answer.headers["Content-Type"] == OCI_INDEX
        assert answer.json()["manifests"] == []
    # Nor in a repository that does not exist: a registry that serves referrers never answers
    # them 404 (the spec; the conformance suite asks before its first push).
    answer = reg("GET", f"/v2/{repo}-never-made/referrers/{sha256(subject)}")
    assert answer.status_code == 200 and answer.headers["Content-Type"] == OCI_INDEX
    assert answer.json()["manifests"] == []


def test_referrers_of_an_invalid_digest_is_400(reg, repo):
    assert_error(reg("GET", f"/v2/{repo}/referrers/sha256:xyz"), 400)


# ---------------------------------------------------------------------------------------------
# Repository names


def test_invalid_repository_name_is_name_invalid(reg):
    for method, path in [("POST", "/v2/Team/App/blobs/uploads/"), ("GET", "/v2/Team/App/manifests/latest"),
                         ("GET", "/v2/Team/App/tags/list"), ("GET", f"/v2/team/-app/blobs/{sha256(b'')}")]:
        assert_error(reg(method, path), 400, "NAME_INVALID")


def test_repository_that_does_not_exist_is_name_unknown(reg):
    name, digest = f"team/missing-{uuid.uuid4().hex[:8]}", sha256(b"x")
    for method, path in [("POST", f"/v2/{name}/blobs/uploads/"), ("GET", f"/v2/{name}/blobs/{digest}"),
                         ("GET", f"/v2/{name}/manifests/latest"), ("DELETE", f"/v2/{name}/manifests/{digest}"),
                         ("GET", f"/v2/{name}/tags/list")]:
        assert_error(reg(method, path), 404, "NAME_UNKNOWN")
    # Referrers are never 404: an empty index (test_referrers_of_a_digest_without_referrers_is_an_empty_index).
    assert reg("GET", f"/v2/{name}/referrers/{digest}").status_code == 200
    assert_error(put_manifest(reg, name, "v1", image_manifest(b"{}", [])), 404, "NAME_UNKNOWN")


def test_push_creates_the_repository_under_create_repositories_on_push(open_server):
    reg = Registry(open_server)
    name = f"made/on-push-{uuid.uuid4().hex[:8]}"
    body = push_image(reg, name, "v1")
    names = [r["repositoryName"] for r in ecr_client(open_server).describe_repositories()["repositories"]]
    assert name in names
    assert reg("GET", f"/v2/{name}/manifests/v1").content == body


@pytest.mark.parametrize("refused", ["blob-unknown", "digest-mismatch"])
def test_a_refused_manifest_push_does_not_create_the_repository(open_server, refused):
    reg = Registry(open_server)
    name = f"made/refused-{uuid.uuid4().hex[:8]}"
    body = image_manifest(b"a config never pushed", [])
    if refused == "blob-unknown":
        assert_error(put_manifest(reg, name, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    else:
        assert_error(put_manifest(reg, name, sha256(b"other"), image_manifest(b"{}", [], config_type=OCI_EMPTY)), 400, "DIGEST_INVALID")
    names = [r["repositoryName"] for r in ecr_client(open_server).describe_repositories()["repositories"]]
    assert name not in names
    assert_error(reg("GET", f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("refused", ["declared-too-large", "range-not-the-body", "mount-with-a-bad-digest", "bytes-not-the-digest"])
def test_a_refused_blob_push_does_not_create_the_repository(open_server, refused):
    """What the request alone refuses is refused before the repository, a mount or a session is made."""
    reg = Registry(open_server)
    name = f"made/refused-blob-{uuid.uuid4().hex[:8]}"
    source = f"made/source-{uuid.uuid4().hex[:8]}"
    push_blob(reg, source, b"mountable", sha256(b"mountable"))
    path = f"/v2/{name}/blobs/uploads/"
    if refused == "declared-too-large":
        # Its head alone: the body is never sent (Expect: 100-continue).
        with socket.create_connection(("127.0.0.1", open_server.port), timeout=30) as sock:
            sock.sendall((f"POST {path}?digest={sha256(b'x')} HTTP/1.1\r\nHost: 127.0.0.1:{open_server.port}\r\n"
                          "Content-Length: 99999999999999\r\nExpect: 100-continue\r\n\r\n").encode())
            head = sock.recv(65536).decode("latin-1")
        assert head.startswith("HTTP/1.1 413"), head
    elif refused == "range-not-the-body":
        answer = reg("POST", path, params={"digest": sha256(b"abc")}, data=b"abc",
                     headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"})
        assert_error(answer, 400, "SIZE_INVALID")
    elif refused == "mount-with-a-bad-digest":
        answer = reg("POST", path, params={"mount": sha256(b"never pushed"), "from": source, "digest": "sha256:BAD"})
        assert_error(answer, 400, "DIGEST_INVALID")
    else:
        # Its bytes are checked before the repository is made (or the upload started).
        events = len(open_server.events())
        answer = reg("POST", path, params={"digest": sha256(b"other bytes")}, data=b"these bytes",
                     headers={"Content-Type": "application/octet-stream"})
        assert_error(answer, 400, "DIGEST_INVALID")
        assert sha256(b"these bytes") in answer.text, answer.text
        assert len(open_server.events()) == events
    names = [r["repositoryName"] for r in ecr_client(open_server).describe_repositories()["repositories"]]
    assert name not in names
    assert_error(reg("GET", f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")


# ---------------------------------------------------------------------------------------------
# Authentication and authorization


def test_unsigned_requests_must_name_a_loopback_host_under_allow_anonymous(open_server):
    """A browser page must not drive the API: by DNS rebinding (attacker.example re-pointed at 127.0.0.1 is
    same-origin to its own requests), or by a cross-site form's POST, which a browser sends without asking."""
    base, port = f"http://127.0.0.1:{open_server.port}", open_server.port
    name = f"pwned/{uuid.uuid4().hex[:8]}"
    answer = requests.post(base + "/", data=compact({"repositoryName": name}),
                           headers={"Host": "attacker.example", "Content-Type": "text/plain",
                                    "X-Amz-Target": "SpencerFrontendService.CreateRepository"}, timeout=30)
    assert answer.status_code == 403 and answer.json()["__type"] == "AccessDeniedException", answer.text
    assert_error(requests.get(base + "/v2/", headers={"Host": f"attacker.example:{port}"}, timeout=30), 403, "DENIED")
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.2"]:
        assert requests.get(base + "/v2/", headers={"Host": host}, timeout=30).status_code == 200, host
    # a cross-site form's POST names the right host, but another origin
    answer = requests.post(base + f"/v2/{name}/blobs/uploads/", data=b"x",
                           headers={"Origin": "https://attacker.example", "Content-Type": "text/plain"}, timeout=30)
    assert_error(answer, 403, "DENIED")
    # a page of another server on this machine (another port) is another origin too
    answer = requests.post(base + f"/v2/{name}/blobs/uploads/", data=b"x",
                           headers={"Origin": f"http://localhost:{port + 1}", "Content-Type": "text/plain"}, timeout=30)
    assert_error(answer, 403, "DENIED")
    assert requests.post(base + f"/v2/{name}/blobs/uploads/", headers={"Origin": f"http://localhost:{port}"},
                         timeout=30).status_code == 202
    names = [r["repositoryName"] for r in ecr_client(open_server).describe_repositories()["repositories"]]
    assert name in names, "only the same-origin push created it"
    # A second Host line, which a proxy in front might route by, is refused whichever comes first,
    # and whatever the target names (RFC 9112 §3.2: 400).
    for target in ("/v2/", f"http://127.0.0.1:{port}/v2/"):
        for hosts in ([f"127.0.0.1:{port}", "attacker.example"], ["attacker.example", f"127.0.0.1:{port}"]):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                sock.sendall((f"GET {target} HTTP/1.1\r\n" + "".join(f"Host: {h}\r\n" for h in hosts) + "\r\n").encode())
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400"), (target, hosts, answer[:300])
    # An absolute-form target names the host the server must take, whatever Host says (RFC 9112 §3.2.2).
    for target, allowed in ((f"http://attacker.example:{port}/v2/", False), (f"HTTP://attacker.example/v2/", False),
                            (f"http://127.0.0.1:{port}/v2/", True), ("/v2/", True)):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            answer = sock.recv(65536)
        expected = b"HTTP/1.1 200" if allowed else b"HTTP/1.1 403"
        assert answer.startswith(expected), (target, answer[:300])
    # A proxy on this machine relays every request from loopback, naming the host it is told:
    # one that says it relays another machine's request is refused (a remote client created
    # repositories through a loopback proxy); one relaying this machine's is not.
    for relayed, allowed in (({"X-Forwarded-For": "192.0.2.7"}, False), ({"X-Forwarded-For": "127.0.0.1, 198.51.100.1"}, False),
                             ({"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}, False), ({"Forwarded": "for=unknown"}, False),
                             ({"X-Real-IP": "203.0.113.9"}, False), ({"X-Forwarded-For": "127.0.0.1"}, True),
                             ({"Forwarded": 'for="[::1]:5000", for=127.0.0.1:80'}, True),
                             # IPv4 addresses as a dual-stack proxy writes them, mapped into IPv6.
                             ({"X-Forwarded-For": "::ffff:127.0.0.1"}, True), ({"X-Forwarded-For": "::ffff:192.0.2.7"}, False)):
        answer = requests.post(base + "/", data=compact({"repositoryName": f"{name}-relayed"}), headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService.DescribeRegistries", **relayed}, timeout=30)
        assert answer.status_code == (200 if allowed else 403), (relayed, answer.text)
        if not allowed:
            assert answer.json()["__type"] == "AccessDeniedException" and "relayed by a proxy" in answer.json()["message"], answer.text
            assert_error(requests.get(base + "/v2/", headers=relayed, timeout=30), 403, "DENIED")


def test_a_chunk_longer_than_its_content_range_is_refused_before_the_rest_arrives(open_server):
    reg = Registry(open_server)
    location = start_upload(reg, f"made/early-{uuid.uuid4().hex[:8]}")
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=20) as sock:
        sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{open_server.port}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Range: 0-9\r\nContent-Length: {64 * MIB}\r\n\r\n".encode() + b"x" * (256 * 1024))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b"SIZE_INVALID" in answer, answer[:200]
    assert reg("GET", location).headers["Range"] == "0-0"


def test_push_without_credentials_is_challenged_for_the_repository(server, repo):
    answer = Registry(server)("POST", f"/v2/{repo}/blobs/uploads/")
    assert_error(answer, 401, "UNAUTHORIZED")
    params = challenge(answer)
    assert params["realm"] == f"http://127.0.0.1:{server.port}/token"
    assert params["service"]
    scope = re.fullmatch(rf"repository:{re.escape(repo)}:([a-z,]+)", params["scope"])
    assert scope and "push" in scope.group(1).split(","), params["scope"]


def test_anonymous_writes_are_challenged(server, reg, repo):
    body = push_image(reg, repo, "v1")
    location = start_upload(reg, repo)
    layer = json.loads(body)["layers"][0]["digest"]
    anonymous = Registry(server)
    for method, path, action in [
        ("PUT", f"/v2/{repo}/manifests/v2", "push"), ("DELETE", f"/v2/{repo}/manifests/v1", "delete"),
        ("DELETE", f"/v2/{repo}/manifests/{sha256(body)}", "delete"), ("GET", location, "push"), ("PATCH", location, "push"),
        ("PUT", with_digest(location, sha256(b"")), "push"), ("DELETE", location, "push"),
        ("POST", f"/v2/{repo}/blobs/uploads/?mount={layer}&from={repo}", "push"),
    ]:
        answer = anonymous(method, path, data=body if method == "PUT" else None)
        assert_error(answer, 401, "UNAUTHORIZED")
        assert action in challenge(answer)["scope"].rsplit(":", 1)[1].split(","), (method, path)
    assert reg("GET", f"/v2/{repo}/manifests/v1").content == body
    assert reg("GET", location).status_code == 204


def test_anonymous_pull_with_a_token(server, reg, repo):
    body = push_image(reg, repo, "v1")
    token = bearer(server, f"repository:{repo}:pull")
    anonymous = Registry(server, auth=token)
    assert anonymous("GET", f"/v2/{repo}/manifests/v1").content == body
    layer = json.loads(body)["layers"][0]["digest"]
    assert anonymous("GET", f"/v2/{repo}/blobs/{layer}").status_code == 200
    # Without a token, a public pull is challenged (as ECR Public challenges it) for the token above.
    for method, path in [("GET", f"/v2/{repo}/manifests/v1"), ("HEAD", f"/v2/{repo}/blobs/{layer}"), ("GET", f"/v2/{repo}/tags/list")]:
        answer = Registry(server)(method, path)
        assert answer.status_code == 401 and challenge(answer)["scope"] == f"repository:{repo}:pull", (method, path, answer.headers)


def test_anonymous_token_does_not_allow_push_or_delete(server, reg, repo):
    push_image(reg, repo, "v1")
    token = Registry(server, auth=bearer(server, f"repository:{repo}:pull,push,delete"))
    for method, path in [("POST", f"/v2/{repo}/blobs/uploads/"), ("DELETE", f"/v2/{repo}/manifests/v1")]:
        answer = token(method, path)
        assert_error(answer, 401, "UNAUTHORIZED")
        assert challenge(answer)["error"] == "insufficient_scope"
        assert "an anonymous token: log in first" in answer.json()["errors"][0]["message"], "what a client that never logged in is told"
    assert reg("GET", f"/v2/{repo}/manifests/v1").status_code == 200


def test_token_for_the_login_password_allows_push(server, password, repo):
    token = bearer(server, f"repository:{repo}:pull,push", auth=("AWS", password))
    body = push_image(Registry(server, auth=token), repo, "v1")
    assert Registry(server, auth=token)("GET", f"/v2/{repo}/manifests/v1").content == body


def test_token_for_one_repository_does_not_allow_push_to_another(server, password, repo, other_repo):
    token = bearer(server, f"repository:{repo}:pull,push", auth=("AWS", password))
    assert_error(Registry(server, auth=token)("POST", f"/v2/{other_repo}/blobs/uploads/"), 401, "UNAUTHORIZED")


def oauth_token(server, form, content_type="application/x-www-form-urlencoded; charset=utf-8"):
    """A POST to the token endpoint, as containerd sends one (distribution's oauth.md)."""
    return requests.post(f"http://127.0.0.1:{server.port}/token", data=form, headers={"Content-Type": content_type}, timeout=60)


def test_a_password_grant_posted_as_containerd_sends_it_gives_a_token_that_pushes(server, password, repo, other_repo):
    answer = oauth_token(server, {"grant_type": "password", "username": "AWS", "password": password, "client_id": "containerd-client",
                                  "service": "registry", "scope": f"repository:{repo}:pull,push repository:{other_repo}:pull"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store", answer.text
    granted = answer.json()
    # What was granted, which is more than was asked: a token for credentials carries every action.
    assert granted["scope"] == f"repository:{repo}:pull,push,delete repository:{other_repo}:pull,push,delete", granted["scope"]
    token = Registry(server, auth=f"Bearer {granted['access_token']}")
    body = push_image(token, repo, "posted")
    assert token("GET", f"/v2/{repo}/manifests/posted").content == body
    assert requests.get(f"http://127.0.0.1:{server.port}/token", timeout=60).headers["Cache-Control"] == "no-store"


def test_a_refused_password_grant_is_answered_in_oauth2s_shape_and_gives_nothing(server, password, repo):
    """RFC 6749 §5.2's errors, which containerd reads (it then tries GET, which refuses in the
    registry's shape)."""
    cases = [
        ({"grant_type": "password", "username": "AWS", "password": password + "x"}, None, "invalid_grant", "signature does not hold"),
        ({"grant_type": "password", "username": "root", "password": password}, None, "invalid_grant", "the user must be AWS"),
        ({"grant_type": "refresh_token", "refresh_token": "r"}, None, "unsupported_grant_type", "gives no refresh tokens"),
        ({"username": "AWS", "password": password}, None, "invalid_request", "names no grant_type"),
        ({"grant_type": "password", "username": "AWS"}, None, "invalid_request", "a username and a password"),
        ({"grant_type": "password", "username": "AWS", "password": password}, "application/json", "invalid_request", "x-www-form-urlencoded"),
        ("grant_type=password&password=%zz", None, "invalid_request", "well-formed escapes"),
        ([("grant_type", "password"), ("username", "AWS"), ("password", password), ("password", "other")], None, "invalid_request",
         "'password' more than once"),
    ]
    for form, content_type, code, words in cases:
        answer = oauth_token(server, form, *([content_type] if content_type else []))
        assert answer.status_code == 400 and answer.headers["Cache-Control"] == "no-store", (form, answer.status_code, answer.text)
        refusal = answer.json()
        assert refusal["error"] == code and words in refusal["error_description"], (form, refusal)
        assert "access_token" not in refusal
    answer = requests.put(f"http://127.0.0.1:{server.port}/token", timeout=60)
    assert answer.status_code == 405 and set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}, answer.headers


def test_a_password_grant_with_invalid_credentials_is_anonymous_under_allow_anonymous(open_server):
    """As GET /token takes them there: --allow-anonymous opens everything."""
    answer = oauth_token(open_server, {"grant_type": "password", "username": "AWS", "password": "forged", "scope": "repository:made/x:pull"})
    got = requests.get(f"http://127.0.0.1:{open_server.port}/token", params={"scope": "repository:made/x:pull"}, auth=("AWS", "forged"), timeout=60)
    assert answer.status_code == got.status_code == 200 and answer.json()["scope"] == got.json()["scope"], (answer.text, got.text)


def test_several_scopes_in_one_parameter_are_read_as_a_form_encodes_them(server, password, repo, other_repo):
    """OAuth2's space-separated scopes, with the space sent as %20 or as a form's `+` (Python's
    requests and Go's url.Values send that): a `+` read as part of a name granted nothing."""
    for separator in ("%20", "+"):
        query = f"scope=repository:{repo}:pull,push{separator}repository:{other_repo}:pull,push"
        answer = requests.get(f"{server.endpoint}/token?{query}", auth=("AWS", password), timeout=60)
        assert answer.status_code == 200, answer.text
        token = f"Bearer {answer.json()['token']}"
        for name in (repo, other_repo):
            started = Registry(server, auth=token)("POST", f"/v2/{name}/blobs/uploads/")
            assert started.status_code == 202, (separator, name, started.status_code, started.text)


def test_basic_credentials_work_on_registry_endpoints(server, password, repo):
    direct = Registry(server, auth=basic(password))
    assert direct("GET", "/v2/").status_code == 200
    push_image(direct, repo, "v1")


def test_forged_password_is_401(server, password, repo):
    i = len(password) // 2
    forged = password[:i] + ("A" if password[i] != "A" else "B") + password[i + 1:]
    answer = requests.get(f"{server.endpoint}/token", params={"scope": f"repository:{repo}:pull,push"},
                          auth=("AWS", forged), timeout=60)
    assert_error(answer, 401, "UNAUTHORIZED")
    assert_error(Registry(server, auth=("AWS", forged))("POST", f"/v2/{repo}/blobs/uploads/"), 401, "UNAUTHORIZED")
    assert_error(Registry(server, auth=("someone", password))("POST", f"/v2/{repo}/blobs/uploads/"), 401, "UNAUTHORIZED")


def test_two_authorization_lines_are_refused_not_joined(server, password, repo):
    """Authorization is not a list: NIO joins two lines with a comma, and credentials from both
    would be judged as one. Each valid alone is refused together, on the registry and /token."""
    import http.client
    for method, path in (("POST", f"/v2/{repo}/blobs/uploads/"), ("GET", f"/token?scope=repository:{repo}:pull,push")):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.putrequest(method, path)
        for _ in range(2):
            connection.putheader("Authorization", basic(password))
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        answer = connection.getresponse()
        body = json.loads(answer.read())
        connection.close()
        assert answer.status == 401 and body["errors"][0]["code"] == "UNAUTHORIZED", (path, answer.status, body)
        assert "one Authorization header" in body["errors"][0]["message"], body


def test_token_of_another_server_is_refused(server, open_server, repo):
    answer = requests.get(f"{open_server.endpoint}/token", params={"scope": f"repository:{repo}:pull,push"}, timeout=60)
    token = f"Bearer {answer.json()['token']}"
    assert_error(Registry(server, auth=token)("POST", f"/v2/{repo}/blobs/uploads/"), 401, "UNAUTHORIZED")


def test_a_new_secret_revokes_passwords_and_keys_required_revoke_anonymous_tokens():
    """Passwords and tokens are signed over their key's secret, so a key given a new secret loses
    them (a restart with the same one does not); tokens minted under --allow-anonymous are nothing once
    the server, restarted on the same folder, requires keys."""
    import tempfile
    from conftest import Server
    with tempfile.TemporaryDirectory() as data:
        def run(*flags, credentials="test test\n"):
            server = Server(data, *flags, credentials=credentials)
            return server

        server = run()
        ecr_client(server).create_repository(repositoryName="team/rotated")
        password = login_password(ecr_client(server))
        # A token minted with a leaked password just before the key is given a new secret.
        pushing = requests.get(server.endpoint + "/token", params={"scope": "repository:team/rotated:pull,push"},
                               auth=("AWS", password), timeout=60).json()["token"]
        assert server.stop() == 0
        server = run()
        assert Registry(server, auth=("AWS", password))("GET", "/v2/").status_code == 200, "a restart revokes nothing"
        assert Registry(server, auth=f"Bearer {pushing}")("GET", "/v2/").status_code == 200
        assert server.stop() == 0
        server = run(credentials="test another-secret\n")
        refused = Registry(server, auth=("AWS", password))("GET", "/v2/")
        assert_error(refused, 401, "UNAUTHORIZED")
        assert "given a new secret or removed" in refused.json()["errors"][0]["message"], "the cause, not an expiry: " + refused.text
        before = len(server.events())
        assert_error(Registry(server, auth=f"Bearer {pushing}")("POST", "/v2/team/rotated/blobs/uploads/"), 401, "UNAUTHORIZED")
        assert len(server.events()) == before, "nothing recorded"
        assert server.stop() == 0

        server = run("--allow-anonymous")
        token = requests.get(server.endpoint + "/token", params={"scope": "repository:team/app:pull,push"}, timeout=60).json()["token"]
        assert server.stop() == 0
        server = run()
        try:
            ecr_client(server).create_repository(repositoryName="team/app")
            assert_error(Registry(server, auth=f"Bearer {token}")("POST", "/v2/team/app/blobs/uploads/"), 401, "UNAUTHORIZED")
        finally:
            assert server.stop() == 0


def test_deleting_the_token_key_revokes_every_password_token_and_page_session_at_the_next_start():
    """The registry token key signs passwords, bearer tokens and page cookies: an operator who
    deletes it (a leak) revokes them all by restarting, and a new private key takes its place."""
    import tempfile
    from conftest import Server
    with tempfile.TemporaryDirectory() as data:
        server = Server(data)
        try:
            ecr_client(server).create_repository(repositoryName="team/app")
            password = login_password(ecr_client(server))
            token = requests.get(server.endpoint + "/token", params={"scope": "repository:team/app:pull,push"},
                                 auth=("AWS", password), timeout=60).json()["token"]
            pages = requests.Session()
            signed_in = pages.post(server.endpoint + "/gallery/sign-in", data={"accessKeyId": "test", "secretAccessKey": "test"}, allow_redirects=False)
            assert signed_in.status_code == 303
            assert pages.get(server.endpoint + "/gallery/audit", allow_redirects=False).status_code == 200
            old_key = (pathlib.Path(data) / "registry-token.key").read_bytes()
        finally:
            assert server.stop() == 0
        os.remove(os.path.join(data, "registry-token.key"))
        server = Server(data)
        try:
            assert_error(Registry(server, auth=("AWS", password))("GET", "/v2/"), 401, "UNAUTHORIZED")
            assert_error(Registry(server, auth=f"Bearer {token}")("POST", "/v2/team/app/blobs/uploads/"), 401, "UNAUTHORIZED")
            audit = pages.get(server.endpoint + "/gallery/audit", allow_redirects=False)
            assert audit.status_code == 303 and "/gallery/sign-in" in audit.headers["Location"], audit.status_code
            new_key = pathlib.Path(data) / "registry-token.key"
            assert new_key.read_bytes() != old_key and new_key.stat().st_mode & 0o777 == 0o600
            assert Registry(server, auth=("AWS", login_password(ecr_client(server))))("GET", "/v2/").status_code == 200
        finally:
            assert server.stop() == 0


def test_private_pulls_refuse_anonymous_pulls():
    with serving("--private-pulls") as server:
        ecr = ecr_client(server)
        ecr.create_repository(repositoryName="private/app")
        password = login_password(ecr)
        push_blob(Registry(server, auth=("AWS", password)), "private/app", b"secret")
        path = f"/v2/private/app/blobs/{sha256(b'secret')}"
        answer = Registry(server)("GET", path)
        assert_error(answer, 401, "UNAUTHORIZED")
        assert challenge(answer)["scope"] == "repository:private/app:pull"
        for other in ("/v2/private/app/tags/list", "/v2/private/app/manifests/latest", f"/v2/private/app/referrers/{sha256(b'x')}"):
            assert_error(Registry(server)("GET", other), 401, "UNAUTHORIZED")
        assert_error(Registry(server, auth=bearer(server, "repository:private/app:pull"))("GET", path), 401, "UNAUTHORIZED")
        assert Registry(server, auth=("AWS", password))("GET", path).content == b"secret"


def test_an_anonymous_token_from_before_private_pulls_were_set_pulls_nothing_under_them():
    """A token given anonymously while pulls were public (5 minutes long), or by a node without
    --private-pulls, pulled under them as if public: an anonymous caller is no one there."""
    with serving() as server:
        ecr = ecr_client(server)
        ecr.create_repository(repositoryName="private/app")
        ecr.set_repository_policy(repositoryName="private/app", policyText=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["ecr-public:BatchGetImage", "ecr-public:GetDownloadUrlForLayer"]}]}))
        push_blob(Registry(server, auth=("AWS", login_password(ecr))), "private/app", b"secret")
        path = f"/v2/private/app/blobs/{sha256(b'secret')}"
        stale = bearer(server, "repository:private/app:pull")
        assert Registry(server, auth=stale)("GET", path).content == b"secret"
        assert server.stop() == 0
        private = Server(server.data_dir, "--private-pulls", database_url=server.database_url)
        try:
            answer = Registry(private, auth=stale)("GET", path)
            assert_error(answer, 401, "UNAUTHORIZED")
            assert challenge(answer)["scope"] == "repository:private/app:pull"
            assert Registry(private, auth=("AWS", login_password(ecr_client(private))))("GET", path).content == b"secret"
        finally:
            assert private.stop() == 0


def test_a_mount_without_from_reaches_only_repositories_the_token_may_pull():
    """Under --private-pulls, a Bearer token scoped to one repository mounts no blob of another
    without `from`, though its principal could read it: the client is sent to upload it (202)."""
    with serving("--private-pulls") as server:
        ecr = ecr_client(server)
        for name in ("private/app", "private/other"):
            ecr.create_repository(repositoryName=name)
        basic_auth = ("AWS", login_password(ecr))
        digest = push_blob(Registry(server, auth=basic_auth), "private/other", b"the other's secret")
        scoped = Registry(server, auth=bearer(server, "repository:private/app:pull,push", auth=basic_auth))
        answer = scoped("POST", "/v2/private/app/blobs/uploads/", params={"mount": digest})
        assert answer.status_code == 202, answer.text
        assert_error(scoped("GET", f"/v2/private/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        # with the principal's own credentials, the same mount is allowed
        assert Registry(server, auth=basic_auth)("POST", "/v2/private/app/blobs/uploads/", params={"mount": digest}).status_code == 201


def test_registry_push_is_recorded_as_oci_with_the_principal(server, ecr, reg, repo):
    body = push_image(reg, repo, "v1")
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    layers = sum(layer["size"] for layer in json.loads(body)["layers"])
    assert [(d["imageDigest"], d["imageTags"], d["imageSizeInBytes"]) for d in details] == [(sha256(body), ["v1"], layers)]
    events = [e for e in server.events() if e["data"].get("repositoryName") == repo]
    assert events[0]["type"] == "RepositoryCreated" and events[0]["metadata"]["source"] != "oci"
    pushed = [e for e in events if e["type"] in ("UploadInitiated", "ImagePushed")]
    assert [e["type"] for e in pushed] == ["UploadInitiated", "UploadInitiated", "ImagePushed"]
    for event in pushed:
        assert event["metadata"]["source"] == "oci" and event["metadata"]["principal"] == "test", event


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.fixture(scope="module")
def too_many_uploads():
    """The answer to a second upload session on a server that allows one (--max-active-uploads 1)."""
    with serving("--max-active-uploads", "1") as server:
        ecr = ecr_client(server)
        ecr.create_repository(repositoryName="busy/app")
        reg = Registry(server, auth=("AWS", login_password(ecr)))
        start_upload(reg, "busy/app")
        yield reg("POST", "/v2/busy/app/blobs/uploads/")


def test_too_many_uploads_is_429(too_many_uploads):
    assert too_many_uploads.status_code == 429


def test_too_many_uploads_code_is_toomanyrequests(too_many_uploads):
    assert_error(too_many_uploads, 429, "TOOMANYREQUESTS")
    assert too_many_uploads.headers["Retry-After"] == "1"


def test_error_bodies_have_the_spec_shape(server, reg, repo):
    """Every failure, whatever raised it, answers `{"errors": [{"code", "message"}]}` with a spec code."""
    anonymous = Registry(server)
    for answer, status in [
        (anonymous("GET", "/v2/"), 401),
        (reg("PUT", "/v2/"), 405),
        (reg("GET", f"/v2/{repo}/nothing/here"), 404),
        (reg("POST", f"/v2/{repo}/tags/list"), 405),
        (reg("GET", f"/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000"), 404),
        (reg("PATCH", f"/v2/{repo}/blobs/uploads/not-a-session", data=b"x"), 404),
        (reg("GET", f"/v2/{repo}/manifests/bad%20tag"), 404),
        (reg("PUT", f"/v2/{repo}/manifests/bad%20tag", data=b"{}"), 400),
        (reg("GET", f"/v2/{repo}/tags/list", params={"n": "many"}), 400),
        (requests.get(f"{server.endpoint}/token", headers={"Authorization": "Bearer nonsense"}, timeout=60), 401),
    ]:
        assert_error(answer, status)
        assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        # RFC 9110: a 405 lists the methods the endpoint takes, a 401 carries a challenge.
        if status == 405:
            assert answer.headers["Allow"] == "GET, HEAD", answer.headers
        if status == 401:
            assert answer.headers["WWW-Authenticate"].split()[0] in ("Bearer", "Basic"), answer.headers
    allowed = {"Allow": "GET, HEAD"}
    for method, path in [("POST", f"/v2/{repo}/tags/list"), ("DELETE", f"/v2/{repo}/blobs/{sha256(b'x')}")]:
        assert {k: reg(method, path).headers.get(k) for k in allowed} == allowed, (method, path)
    assert reg("GET", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}).headers.get("Allow") == "POST"
    assert reg("POST", f"/v2/{repo}/manifests/v1").headers.get("Allow") == "GET, HEAD, PUT, DELETE"
    assert reg("PUT", "/token").headers.get("Allow") == "GET, HEAD, POST"


@pytest.mark.one_process
def test_registry_requests_are_counted_by_endpoint_and_outcome(server, reg, repo):
    """`/metrics` counts registry requests under closed label sets: the endpoint and `ok` or the spec's code."""
    def count(endpoint, outcome):
        text = requests.get(server.endpoint + "/metrics").text
        line = f'upload_coordinator_registry_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}}'
        return next((float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)), 0.0)
    ok, unknown = count("blob", "ok"), count("blob", "BLOB_UNKNOWN")
    digest = push_blob(reg, repo, b"counted")
    assert reg("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200
    assert reg("HEAD", f"/v2/{repo}/blobs/{sha256(b'absent')}").status_code == 404
    assert count("blob", "ok") == ok + 1 and count("blob", "BLOB_UNKNOWN") == unknown + 1


def test_a_scope_with_a_line_break_grants_no_push(server, reg, repo):
    """The review's attack: an anonymous token whose scope smuggles a second grant past the pull-only rule."""
    token = bearer(server, f"repository:{repo}:push\nrepository:{repo}x:pull")
    smuggled = Registry(server, token)
    config = push_config(reg, repo)
    body = image_manifest(config, [])
    assert_error(smuggled("PUT", f"/v2/{repo}/manifests/smuggled", data=body, headers={"Content-Type": OCI_MANIFEST}), 401, "UNAUTHORIZED")
    assert_error(smuggled("POST", f"/v2/{repo}/blobs/uploads/"), 401, "UNAUTHORIZED")
    assert reg("GET", f"/v2/{repo}/manifests/smuggled").status_code == 404


def test_a_chunk_shorter_than_its_content_range_is_size_invalid_and_records_nothing(reg, repo):
    location = start_upload(reg, repo)
    # Chunked transfer (a generator body): no Content-Length to check the range against up front.
    answer = reg("PATCH", location, data=iter([b"0123456789"]), headers={"Content-Range": "0-19"})
    assert_error(answer, 400, "SIZE_INVALID")
    assert answer.headers["Range"] == "0-0"
    status = reg("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == "0-0"
    assert patch(reg, location, b"0123456789", first=0).status_code == 202


def test_a_monolithic_push_past_the_uploads_limit_is_refused_before_its_body():
    """What the upload's start would refuse is refused before the bytes it would follow are asked
    for (no `100 Continue`), not after a whole layer has been read and staged."""
    from conftest import send_expecting_continue
    with serving("--allow-anonymous", "--max-active-uploads", "1") as server:
        reg = Registry(server)
        ecr_client(server).create_repository(repositoryName="limited/app")
        start_upload(reg, "limited/app")  # the one upload it may have
        body = os.urandom(64 * 1024)
        interim, status, _, answer = send_expecting_continue(
            server.port, "POST", f"/v2/limited/app/blobs/uploads/?digest={sha256(body)}", {"Content-Type": "application/octet-stream"}, body)
        assert interim == [] and status == 429 and b"TOOMANYREQUESTS" in answer, (interim, status, answer)
        assert not [name for name in os.listdir(os.path.join(server.data_dir, "staging")) if name.startswith(".whole-")]


def test_a_failed_monolithic_push_leaves_no_session_behind(server, reg, repo):
    """A monolithic push's bytes are checked, in its digest's algorithm, before its upload starts:
    nothing is recorded for a wrong one, and a right one's upload is started and completed."""
    for algorithm in (sha256, sha512):
        answer = reg("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": algorithm(b"other bytes")}, data=b"these bytes")
        assert_error(answer, 400, "DIGEST_INVALID")
    assert not [e for e in server.events() if e["data"].get("repositoryName") == repo and e["type"] != "RepositoryCreated"]
    for algorithm in (sha256, sha512):
        data = os.urandom(4000)
        assert push_blob(reg, repo, data, algorithm(data)) == algorithm(data)
        assert reg("GET", f"/v2/{repo}/blobs/{algorithm(data)}").content == data
    kinds = [e["type"] for e in server.events() if e["data"].get("repositoryName") == repo]
    assert kinds.count("UploadInitiated") == 2 and kinds.count("LayerUploadCompleted") == 2 and "UploadAborted" not in kinds, kinds


def test_the_token_realm_is_the_public_url_when_one_is_given():
    """Behind a TLS proxy, clients must be sent to the proxy's https:// realm, never to plain http://."""
    with serving("--public-url", "https://registry.example.com:8443") as proxied:
        params = challenge(Registry(proxied)("GET", "/v2/"))
        assert params["realm"] == "https://registry.example.com:8443/token"
        assert params["service"] == "registry.example.com:8443"


@pytest.mark.parametrize("url", ["ftp://host", "https://", "https://host/path", 'https://ho"st'])
def test_serve_refuses_a_public_url_that_is_not_a_scheme_and_host(tmp_path, url):
    out = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", str(tmp_path), "--public-url", url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--public-url" in out.stderr, out.stderr


def test_a_first_chunk_still_streaming_is_spared_by_the_expiry_sweeper():
    """The sweeper spares an upload a chunk is streaming into (its staging lock is held), as it
    spares one whose staging file exists: a first chunk makes no file before its first mebibyte,
    and a slow one outlasting the expiry was ended under it (404, UploadExpired)."""
    # An expiry long enough that a loaded machine's pauses before the chunk and after it are not
    # taken for idleness; the chunk outlasts it twice.
    with serving("--allow-anonymous", "--create-repositories-on-push", "--upload-expiry", "4", "--sweep-interval", "1") as server:
        reg = Registry(server)
        location = start_upload(reg, "sweep/app")
        data = os.urandom(400_000)
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
            connection.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            for start in range(0, len(data), 8_000):  # about 10 s, more than twice the expiry
                piece = data[start:start + 8_000]
                connection.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                time.sleep(0.2)
            connection.sendall(b"0\r\n\r\n")
            status = connection.recv(4096).split(b"\r\n")[0]
        assert b" 202 " in status, status
        answer = reg("PUT", with_digest(location, sha256(data)))
        assert answer.status_code == 201, answer.text
        assert not [e for e in server.events() if e["type"] == "UploadExpired"]


def racing_its_deletion(ecr, name, request, deletion_delay):
    """`request()`'s answer, sent at once with a forced DeleteRepository of `name` that waits a
    random part of `deletion_delay` seconds first."""
    barrier, answer = threading.Barrier(2), []

    def send():
        barrier.wait()
        answer.append(request())

    def delete():
        barrier.wait()
        time.sleep(random.uniform(0, deletion_delay))
        ecr.delete_repository(repositoryName=name, force=True)

    threads = [threading.Thread(target=send), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answer[0]


def test_a_whole_layer_pushed_while_its_repository_is_deleted_is_name_unknown_not_an_upload_never_seen():
    """A monolithic POST …?digest= starts its upload once the body is in: when the repository's
    deletion ended that upload first (UploadAborted, repositoryDeleted), the client was told
    BLOB_UPLOAD_UNKNOWN of an upload id it never saw. It is told NAME_UNKNOWN, as when the
    deletion came first, or 201."""
    with serving("--allow-anonymous") as server:
        reg, ecr = Registry(server), ecr_client(server)
        answers = []
        for attempt in range(40):
            name, layer = f"race/whole-{attempt}", os.urandom(200_000)
            ecr.create_repository(repositoryName=name)
            answers.append(racing_its_deletion(ecr, name, lambda: reg(
                "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(layer)}, data=layer,
                headers={"Content-Type": "application/octet-stream"}), deletion_delay=0.004))
        for answer in answers:
            if answer.status_code != 201:
                assert_error(answer, 404, "NAME_UNKNOWN")


def test_a_session_started_while_the_repository_is_deleted_is_made_in_it_again_under_create_on_push():
    """Under --create-repositories-on-push, a POST (a session, or a mount) that found the
    repository and then met its deletion makes it again, as a push after the delete would: it was
    answered NAME_UNKNOWN, which no order of the two gives."""
    with serving("--allow-anonymous", "--create-repositories-on-push") as server:
        reg, ecr = Registry(server), ecr_client(server)
        mounted = push_blob(reg, "race/source", os.urandom(1000))
        statuses = []
        for attempt in range(30):
            name = f"race/app-{attempt}"
            ecr.create_repository(repositoryName=name)

            def start():
                time.sleep(random.uniform(0, 0.005))
                params = {"mount": mounted, "from": "race/source"} if attempt % 2 else {}
                return reg("POST", f"/v2/{name}/blobs/uploads/", params=params, headers={"Content-Length": "0"})

            statuses.append((name, racing_its_deletion(ecr, name, start, deletion_delay=0.005)))
        assert all(answer.status_code in (201, 202) for _, answer in statuses), [(a.status_code, a.text[:80]) for _, a in statuses]
        # Each answer is a fact of the log, in one order with the delete: a session (or a mount)
        # recorded before the delete was ended by it; one recorded after it follows the
        # repository made again.
        log = server.events()
        for name, answer in statuses:
            def at(kind, **fields):
                return [i for i, e in enumerate(log) if e["type"] == kind and e["data"]["repositoryName"] == name
                        and all(e["data"].get(k) == v for k, v in fields.items())]
            if answer.status_code == 202:
                upload = answer.headers["Docker-Upload-UUID"]
                recorded = at("UploadInitiated", uploadId=upload)
            else:
                recorded = at("LayerMounted", layerDigest=mounted)
            [deleted] = at("RepositoryDeleted")
            assert len(recorded) == 1, (name, answer.status_code, recorded)
            if recorded[0] < deleted:
                assert answer.status_code == 201 or at("UploadAborted", uploadId=upload), (name, "ended by the delete")
            else:
                assert [i for i in at("RepositoryCreated") if deleted < i < recorded[0]], (name, "made again before it")


def test_a_steady_slow_reader_gets_a_whole_answer_longer_than_the_idle_timeout():
    """An answer is handed down whole long before a slow reader has read it: the time between
    requests runs from when it has gone out, so a reader that keeps taking it (well above the
    floor the README gives) is not cut off mid-answer as idle."""
    with serving("--allow-anonymous", "--create-repositories-on-push", "--idle-timeout", "2") as server:
        reg = Registry(server)
        config = push_config(reg, "slow/reader")
        body = image_manifest(config, [], annotations={"pad": "x" * 1_000_000})
        push_manifest(reg, "slow/reader", "big", body)
        host, port = server.endpoint.split("//")[1].split(":")
        with socket.socket() as reader:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the kernel buffers little of it for us
            reader.connect((host, int(port)))
            reader.sendall(f"GET /v2/slow/reader/manifests/big HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           f"Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n".encode())
            received, started = b"", time.monotonic()
            while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < len(body):
                time.sleep(0.25)  # a 32 KiB buffer taken 4 times a second: 256 KiB per idle timeout
                chunk = reader.recv(128 * 1024)
                if not chunk:
                    break
                received += chunk
        assert time.monotonic() - started > 2, "the reading took longer than the idle timeout"
        assert received.split(b"\r\n\r\n", 1)[1] == body, f"cut off after {len(received)} bytes"


def request_from(source, server, method, path, body=b"", headers=()):
    """One HTTP/1.1 request over a connection from the loopback address `source` (the server counts
    answers held per client address): (status, headers as a lower-cased dict, body)."""
    host, port = server.endpoint.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode() + body)
        received = b""
        while chunk := sock.recv(1 << 20):
            received += chunk
    head, _, content = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, content


def test_answers_held_for_readers_that_do_not_read_are_bounded_per_address_and_in_all():
    """A large answer is held in memory until its client reads it. Clients that do not read may hold
    their address's share of --max-answer-bytes, and all of them the whole: past either, a read is
    answered 429 TOOMANYREQUESTS and its answer dropped, while other addresses are served; and what
    a reader that goes held is given back. (Each endpoint's own 'try again', and writes' answers
    sent all the same: AnswerBudgetTests.)"""
    share, whole = 32 << 20, 48 << 20
    with serving("--allow-anonymous", "--create-repositories-on-push",
                 "--max-answer-bytes", str(whole), "--max-answer-bytes-per-address", str(share)) as server:
        reg = Registry(server)
        config = push_config(reg, "held/answers")
        body = image_manifest(config, [], annotations={"pad": "x" * 3_500_000})
        push_manifest(reg, "held/answers", "big", body)
        path = "/v2/held/answers/manifests/big"
        accept = [("Accept", OCI_MANIFEST)]
        host, port = server.endpoint.split("//")[1].split(":")
        hogs = []

        def hog(source):
            """A client at `source` that asks for the manifest and reads no more than its answer's
            head: the socket, or the refusal's status."""
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((source, 0))
            sock.connect((host, int(port)))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {OCI_MANIFEST}\r\n\r\n".encode())
            sock.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            status = int(head.split()[1])
            if status != 200:
                sock.close()
                return status
            hogs.append(sock)
            time.sleep(0.2)  # its answer queued as far as the connection takes it
            return status

        def hogs_until_refused(source):
            """How many answers `source` is given before one is refused (429, as the registry's try again)."""
            for given in range(40):
                if (status := hog(source)) != 200:
                    assert status == 429, status
                    return given
            raise AssertionError("never refused")

        # Each counts its answer, and the copies of its pieces queued for the socket (some while the
        # answer is held whole), so an address is given between half its share and its share.
        fit = share // len(body)
        try:
            given = hogs_until_refused("127.0.0.2")
            assert fit // 2 <= given <= fit + 1, given  # +1: what the kernel took of each is not held
            status, headers, content = request_from("127.0.0.2", server, "GET", path, headers=accept)
            assert status == 429 and headers.get("retry-after") == "1", (status, content[:300])
            assert json.loads(content)["errors"][0]["code"] == "TOOMANYREQUESTS"
            # Another address is served, whole.
            status, _, content = request_from("127.0.0.1", server, "GET", path, headers=accept)
            assert status == 200 and content == body

            # The whole budget: a second address is refused before its share, and then any other.
            assert hogs_until_refused("127.0.0.3") < given - 1, "the whole budget binds before this address's share"
            assert hog("127.0.0.4") == 429
            assert whole - 2 * len(body) < answer_bytes_held(server) <= whole + len(body), "the gauge shows what is held"
        finally:
            for sock in hogs:
                sock.close()
        # Given back once the readers go (the server sees it at its next write).
        deadline = time.monotonic() + 20
        while (status := request_from("127.0.0.2", server, "GET", path, headers=accept)[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200, "a reader that went no longer holds its answer"
        assert answer_bytes_held(server) < 1 << 20


def answer_bytes_held(server):
    """`upload_coordinator_answer_bytes_held` from /metrics."""
    text = requests.get(server.endpoint + "/metrics", timeout=30).text
    return float(re.search(r"^upload_coordinator_answer_bytes_held (\S+)$", text, re.M).group(1))


def test_every_registry_answer_names_its_request_which_the_events_it_recorded_carry(server, ecr, reg, repo):
    """X-Request-Id on each answer, a refusal's too: the id the request's events record as
    metadata.requestId, so that a client's push can be found in the audit trail, and the id of the
    server's log line when a request failed."""
    config = compact({"architecture": "amd64", "os": "linux", "id": uuid.uuid4().hex})
    start = reg("POST", f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202
    done = reg("PUT", start.headers["Location"], params={"digest": sha256(config)}, data=config)
    assert done.status_code == 201
    body = image_manifest(config, [])
    pushed = reg("PUT", f"/v2/{repo}/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert pushed.status_code == 201
    refused = reg("GET", f"/v2/{repo}/manifests/absent")
    assert refused.status_code == 404
    nowhere = reg("GET", "/v2/nonsense")  # a path no endpoint has
    assert nowhere.status_code == 404
    ids = [answer.headers["X-Request-Id"] for answer in (start, done, pushed, refused, nowhere)]
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids) and len(set(ids)) == 5, ids
    recorded = {(e["type"], e["metadata"]["requestId"]) for e in server.events() if e["data"].get("repositoryName") == repo}
    assert ("UploadInitiated", ids[0]) in recorded
    assert ("ImagePushed", ids[2]) in recorded
    assert ("LayerUploadCompleted", ids[1]) in recorded, recorded
