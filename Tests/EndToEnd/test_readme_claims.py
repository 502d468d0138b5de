"""README claims that no other end-to-end test guarded, each checked against a real `serve`.

- `serve --registry-id` and `--registry-alias`: the id is the one ECR's answers, ARNs and the log
  name; the alias is taken wherever the API model allows RegistryIdOrAlias and is listed by
  DescribeRegistries; any other registryId is RegistryNotFoundException where the operation's
  model lists it (the layer operations, PutImage), InvalidParameterException elsewhere.
- Access keys from the environment: `UPLOAD_COORDINATOR_CREDENTIALS` names the credentials file
  when `--credentials` is not given ("Security").
- `GET /v2/<name>/tags/list`: at most 1,000 tags a page, with a `Link` to the next ("The registry API").
- The open-file limit: `serve` raises its soft RLIMIT_NOFILE to three times `--max-connections` plus 256,
  and warns when the hard limit is lower ("What a client can hold", connections).
- The spool budget: `--max-spooled-bytes` bounds the request bodies all connections together hold
  before their signatures are checked (ThrottlingException beyond); honest calls go on ("What a
  client can hold", memory per connection before the signature holds). One client address may
  hold only `--max-spooled-bytes-per-address` of it, so others' large calls still fit.

Servers the tests start with flags of their own come from conftest's `serving()`, so that they are
stopped with SIGTERM, must exit 0 and replay cleanly. The two claims about how the process itself
is started (its environment without `--credentials`, its resource limits) start conftest's
`Server` without its credentials flag, with an environment and limits of their own (`launched`),
on LMDB, and check them the same way.
"""
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import socket
import string
import tempfile
import threading
import time
import urllib.parse
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, serving
from test_attacks import KEY_A, TARGET, address, connect, read_response, signed_head
from test_registry_api import Registry, image_manifest, login_password, push_blob, push_config, push_manifest

TARGET = "SpencerFrontendService."
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
# conftest's `Server` writes these two keys into every server's --credentials file.
CONFTEST_KEYS = [("test", "test"), ("AKIDOTHER", "othersecret")]


# ---------------------------------------------------------------------------------------------
# Helpers


def ecr_client(server, key=("test", "test")):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60))


def error_code(call):
    """The botocore error code `call` fails with (the test fails if it succeeds)."""
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def unique(prefix="readme"):
    return f"{prefix}/app-{uuid.uuid4().hex[:12]}"


def serve_environment(**variables):
    """This process's environment without any UPLOAD_COORDINATOR_ variable (so that none the run
    happens to carry changes what is tested), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOAD_COORDINATOR_")}
    env.update(variables)
    return env


@contextlib.contextmanager
def launched(*flags, env, preexec_fn=None, data_dir=None, credentials=None):
    """A server with exactly `env` (LMDB only), without conftest's --credentials unless
    `credentials` are given, on a data directory of its own (or `data_dir`); stopped with SIGTERM,
    which must exit 0, and then replayed."""
    with (contextlib.nullcontext(data_dir) if data_dir else tempfile.TemporaryDirectory()) as directory:
        server = Server(directory, *flags, credentials=credentials, env=env, preexec_fn=preexec_fn)
        try:
            yield server
        finally:
            status = server.stop()
        assert status == 0, f"serve must exit cleanly on SIGTERM: {server.stderr_text()[-2000:]}"
        replay = server.tool("upload-replay", "--data-dir", directory)
        assert replay.returncode == 0, replay.stdout + replay.stderr


def launched_with_keys(*flags, preexec_fn):
    """A `launched` server with conftest's keys."""
    return launched(*flags, env=serve_environment(), preexec_fn=preexec_fn,
                    credentials="".join(f"{k} {s}\n" for k, s in CONFTEST_KEYS))


def nofile_limits(pid):
    """(soft, hard) of "Max open files" in /proc/<pid>/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return tuple(resource.RLIM_INFINITY if value == "unlimited" else int(value) for value in line.split()[3:5])
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def with_nofile(soft, hard):
    """A preexec_fn that sets the child's RLIMIT_NOFILE before it executes serve."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


OPEN_FILE_WARNING = "the open-file limit is below --max-connections plus headroom"


# ---------------------------------------------------------------------------------------------
# 1. --registry-id and --registry-alias


REGISTRY_ID = "123456789012"
ALIAS = "my-registry"


@pytest.fixture(scope="module")
def registry_server():
    with serving("--registry-id", REGISTRY_ID, "--registry-alias", ALIAS) as server:
        yield server


def test_registry_id_is_the_one_ecr_answers_and_the_log_records(registry_server):
    """`serve --registry-id ID`: ID (not the default 000000000000) is the registryId of every
    repository in CreateRepository's and DescribeRepositories' answers and in its ARN
    (`arn:aws:ecr-public::<registry>:repository/<name>`), DescribeRegistries' registryId and
    registryArn, and the registry the log records; a repositoryUri stays `HOST:PORT/<name>` of this
    server ("The HTTP API"), and a registry push lands in the same registry."""
    server = registry_server
    ecr = ecr_client(server)
    name = unique()
    created = ecr.create_repository(repositoryName=name)["repository"]
    host = f"127.0.0.1:{server.port}"
    expected = {"registryId": REGISTRY_ID, "repositoryName": name,
                "repositoryArn": f"arn:aws:ecr-public::{REGISTRY_ID}:repository/{name}",
                "repositoryUri": f"{host}/{name}"}
    assert {k: created[k] for k in expected} == expected, created
    [described] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert {k: described[k] for k in expected} == expected, described
    listed = [r for r in ecr.describe_repositories(registryId=REGISTRY_ID)["repositories"] if r["repositoryName"] == name]
    assert [r["registryId"] for r in listed] == [REGISTRY_ID]
    assert ecr.list_tags_for_resource(resourceArn=expected["repositoryArn"])["tags"] == []

    [registry] = ecr.describe_registries()["registries"]
    assert registry["registryId"] == REGISTRY_ID
    assert registry["registryArn"] == f"arn:aws:ecr-public::{REGISTRY_ID}:registry/{REGISTRY_ID}"
    assert registry["registryUri"] == host

    # A registry client's push lands in the served registry too, and DescribeImages says so.
    reg = Registry(server, auth=("AWS", login_password(ecr)))
    config, layer = push_config(reg, name), os.urandom(64)
    push_blob(reg, name, layer)
    push_manifest(reg, name, "v1", image_manifest(config, [layer]))
    [image] = ecr.describe_images(repositoryName=name)["imageDetails"]
    assert image["registryId"] == REGISTRY_ID and image["imageTags"] == ["v1"]

    recorded = [e for e in server.events() if e["data"].get("repositoryName") == name]
    assert {"RepositoryCreated", "UploadInitiated", "ImagePushed"} <= {e["type"] for e in recorded}, [e["type"] for e in recorded]
    assert {e["data"].get("registryId") for e in recorded} == {REGISTRY_ID}, [e["data"] for e in recorded][:3]


def test_registry_alias_is_answered_to_as_registry_id(registry_server):
    """`serve --registry-alias NAME` ("Another name the registry answers to as registryId"): the
    operations whose registryId the API model types RegistryIdOrAlias (InitiateLayerUpload,
    UploadLayerPart, CompleteLayerUpload, BatchCheckLayerAvailability, PutImage, BatchDeleteImage)
    take NAME as well as the id, and answer with the id; DescribeRegistries lists NAME as the
    registry's primary and default alias. NAME replaces the default alias `r<registry id>`."""
    ecr = ecr_client(registry_server)
    name = unique()
    ecr.create_repository(repositoryName=name)
    [registry] = ecr.describe_registries()["registries"]
    assert registry["aliases"] == [{"name": ALIAS, "status": "ACTIVE", "primaryRegistryAlias": True, "defaultRegistryAlias": True}]

    for registry_id in (ALIAS, REGISTRY_ID):
        layer = os.urandom(100)
        upload_id = ecr.initiate_layer_upload(registryId=registry_id, repositoryName=name)["uploadId"]
        part = ecr.upload_layer_part(registryId=registry_id, repositoryName=name, uploadId=upload_id,
                                     partFirstByte=0, partLastByte=len(layer) - 1, layerPartBlob=layer)
        assert part["registryId"] == REGISTRY_ID, part
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        done = ecr.complete_layer_upload(registryId=registry_id, repositoryName=name, uploadId=upload_id, layerDigests=[digest])
        assert done["registryId"] == REGISTRY_ID and done["layerDigest"] == digest, done
        checked = ecr.batch_check_layer_availability(registryId=registry_id, repositoryName=name, layerDigests=[digest])
        assert [(found["layerDigest"], found["layerAvailability"]) for found in checked["layers"]] == [(digest, "AVAILABLE")], checked
        tag = f"t-{registry_id}"
        pushed = ecr.put_image(registryId=registry_id, repositoryName=name, imageManifest=EMPTY_INDEX, imageTag=tag)["image"]
        assert pushed["registryId"] == REGISTRY_ID, pushed
        deleted = ecr.batch_delete_image(registryId=registry_id, repositoryName=name, imageIds=[{"imageTag": tag}])
        assert [i.get("imageTag") for i in deleted["imageIds"]] == [tag] and deleted["failures"] == [], deleted

    # The default alias r<id> is not one this registry answers to once another is configured.
    assert error_code(lambda: ecr.initiate_layer_upload(registryId="r" + REGISTRY_ID, repositoryName=name)) == "RegistryNotFoundException"


def test_a_registry_id_other_than_the_served_one_is_registry_not_found(registry_server):
    """A request naming another registry (the default 000000000000 this server does not serve, its
    default alias, an unknown alias) is refused with RegistryNotFoundException, as ECR refuses a
    registry that does not exist, on reads and writes alike, and writes nothing; operations whose
    model does not list that error (an SDK typing errors by operation matches only those it lists)
    refuse it with InvalidParameterException, the message the same."""
    server = registry_server
    ecr = ecr_client(server)
    name = unique()
    ecr.create_repository(repositoryName=name)
    before = server.events()[-1]["position"]
    for other in ("000000000000", "210987654321"):
        for call in (lambda: ecr.describe_repositories(registryId=other),
                     lambda: ecr.describe_repositories(registryId=other, repositoryNames=[name]),
                     lambda: ecr.describe_images(registryId=other, repositoryName=name),
                     lambda: ecr.describe_image_tags(registryId=other, repositoryName=name),
                     lambda: ecr.get_repository_catalog_data(registryId=other, repositoryName=name),
                     lambda: ecr.delete_repository(registryId=other, repositoryName=name)):
            assert error_code(call) == "InvalidParameterException", other
        for call in (lambda: ecr.initiate_layer_upload(registryId=other, repositoryName=name),
                     lambda: ecr.put_image(registryId=other, repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="x")):
            assert error_code(call) == "RegistryNotFoundException", other
    for alias in ("r000000000000", "other-alias"):
        assert error_code(lambda: ecr.initiate_layer_upload(registryId=alias, repositoryName=name)) == "RegistryNotFoundException"
        assert error_code(lambda: ecr.put_image(registryId=alias, repositoryName=name, imageManifest=EMPTY_INDEX,
                                                imageTag="x")) == "RegistryNotFoundException"
    assert server.events()[-1]["position"] == before, "a refused request wrote to the log"
    assert [r["repositoryName"] for r in ecr.describe_repositories(repositoryNames=[name])["repositories"]] == [name]


# ---------------------------------------------------------------------------------------------
# 2. Access keys from UPLOAD_COORDINATOR_CREDENTIALS


ENV_KEY = ("AKIDFROMENVIRONMENT", "secret-from-the-environment")
ENV_NAMED_KEY = ("AKIDNAMEDINFILE", "another-secret", "000000000000", "carol")  # with its registry and user name


def test_credentials_file_named_by_the_environment_is_used_without_the_flag(tmp_path):
    """`UPLOAD_COORDINATOR_CREDENTIALS` (with no `--credentials` flag) names the credentials file:
    requests signed by its keys are served and recorded under their key id, requests signed by any
    other key (conftest's usual `test` key included) or with a wrong secret are refused with AWS's
    names, and no key is generated into DATA/credentials in its place."""
    credentials = tmp_path / "from-environment"
    credentials.write_text(f"{ENV_KEY[0]} {ENV_KEY[1]}\n{' '.join(ENV_NAMED_KEY)}\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with launched(env=serve_environment(UPLOAD_COORDINATOR_CREDENTIALS=str(credentials)), data_dir=str(data_dir)) as server:
        ecr = ecr_client(server, ENV_KEY)
        name = unique()
        ecr.create_repository(repositoryName=name)
        assert ecr.describe_registries()["registries"]
        named = ecr_client(server, ENV_NAMED_KEY[:2])
        assert named.initiate_layer_upload(repositoryName=name)["uploadId"]
        for key in CONFTEST_KEYS + [("AKIDNOBODY", "nothing")]:
            assert error_code(lambda: ecr_client(server, key).describe_registries()) == "UnrecognizedClientException", key
        assert error_code(lambda: ecr_client(server, (ENV_KEY[0], "wrong")).describe_registries()) == "InvalidSignatureException"
        # The registry front end takes the same keys: a password for the environment's key works.
        reg = Registry(server, auth=("AWS", login_password(ecr)))
        assert reg("GET", f"/v2/{name}/tags/list").status_code == 200
        assert f"from {credentials}" in server.stderr_text(), server.stderr_text()[-2000:]
        principals = [(e["type"], e["metadata"].get("principal")) for e in server.events()]
        assert principals == [("RepositoryCreated", ENV_KEY[0]), ("UploadInitiated", ENV_NAMED_KEY[0])], principals
    assert not (data_dir / "credentials").exists(), "serve generated a key although the environment named a file"


def test_the_credentials_flag_wins_over_the_environment(tmp_path):
    """Flag over environment: with both `--credentials FILE` and `UPLOAD_COORDINATOR_CREDENTIALS`,
    the flag's file is the one used, and the environment's keys are refused."""
    from_flag, from_env = tmp_path / "from-flag", tmp_path / "from-environment"
    from_flag.write_text("AKIDFROMFLAG secret-from-the-flag\n")
    from_env.write_text(f"{ENV_KEY[0]} {ENV_KEY[1]}\n")
    with launched("--credentials", str(from_flag), env=serve_environment(UPLOAD_COORDINATOR_CREDENTIALS=str(from_env))) as server:
        assert ecr_client(server, ("AKIDFROMFLAG", "secret-from-the-flag")).describe_registries()["registries"]
        assert error_code(lambda: ecr_client(server, ENV_KEY).describe_registries()) == "UnrecognizedClientException"


# ---------------------------------------------------------------------------------------------
# 3. A full page of tags/list


TAG_COUNT = 2345  # three pages: two full ones and a part
TAG_PAGE = 1000   # the README's "at most 1,000 a page"


def random_tags(count, seed=20251205):
    """`count` distinct tags ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) in no particular order, distinct
    ignoring case too (so that an ASCII and a case-insensitive order are both total)."""
    rng = random.Random(seed)
    first, rest = string.ascii_letters + string.digits + "_", string.ascii_letters + string.digits + "._-"
    tags, seen = [], set()
    while len(tags) < count:
        tag = rng.choice(first) + "".join(rng.choice(rest) for _ in range(rng.randint(0, 11)))
        if tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return tags


def next_link(response):
    """The target of a `Link: <…>; rel="next"` header, or None."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link)
    assert match, link
    return match.group(1)


def test_tags_list_pages_hold_at_most_1000_and_link_to_exactly_the_rest(server, ecr):
    """`GET /v2/<name>/tags/list?n=&last=`: "tags in lexical order, at most 1,000 a page, `Link` to
    the next". With 2,345 tags on one manifest, a request without `n` (and one asking for more
    than 1,000) gets at most 1,000 tags and a `Link` whose `last` is the page's own last tag;
    following the links yields every tag exactly once, in order, and the last page has no `Link`."""
    name = unique("tags")
    ecr.create_repository(repositoryName=name)
    password = login_password(ecr)
    reg = Registry(server, auth=("AWS", password))
    config, layer = push_config(reg, name), os.urandom(64)
    push_blob(reg, name, layer)
    body = image_manifest(config, [layer])
    tags = random_tags(TAG_COUNT)

    local = threading.local()

    def tag(t):
        if not hasattr(local, "reg"):
            local.reg = Registry(server, auth=("AWS", password))
        return push_manifest(local.reg, name, t, body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(tag, tags))) == 1

    ascii_order, case_insensitive = sorted(tags), sorted(tags, key=str.lower)
    assert ascii_order != case_insensitive  # the tags tell the two orders apart: the README's is by bytes

    for first_url in (f"/v2/{name}/tags/list", f"/v2/{name}/tags/list?n=5000"):
        listed, pages, url = [], [], first_url
        while url is not None:
            answer = reg("GET", url)
            assert answer.status_code == 200, answer.text
            assert answer.json()["name"] == name
            page = answer.json()["tags"]
            pages.append(len(page))
            assert 0 < len(page) <= TAG_PAGE, (url, len(page))
            url = next_link(answer)
            if url is not None:
                target = urllib.parse.urlsplit(url)
                assert target.path == f"/v2/{name}/tags/list", url
                assert urllib.parse.parse_qs(target.query)["last"] == [page[-1]], (url, page[-1])
            listed += page
            assert len(pages) <= TAG_COUNT, "the links never end"
        assert len(pages) >= 3, pages  # 2,345 tags cannot fit in fewer pages of at most 1,000
        assert len(listed) == len(set(listed)) == TAG_COUNT, (len(listed), len(set(listed)))
        assert listed == ascii_order, "the pages together are not every tag once, in lexical order by bytes (uppercase first)"


# ---------------------------------------------------------------------------------------------
# 4. The open-file limit


@pytest.mark.parametrize("max_connections", [None, 100])
def test_serve_raises_its_soft_open_file_limit_to_three_times_max_connections_plus_256(max_connections):
    """"`serve` raises its open-file limit to three times the cap plus 256": started with a soft
    RLIMIT_NOFILE below that and a hard limit above it, the running server's soft limit
    (/proc/<pid>/limits) is 3 × --max-connections + 256 (3,256 for the default 1,000), its hard
    limit unchanged, and it logs no warning."""
    wanted = 3 * (max_connections or 1000) + 256
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"this process's hard open-file limit ({hard}) is below {wanted}")
    soft = 200  # below what serve wants: it must raise it
    flags = ("--max-connections", str(max_connections)) if max_connections else ()
    with launched_with_keys(*flags, preexec_fn=with_nofile(soft, hard)) as server:
        assert nofile_limits(server.process.pid) == (wanted, hard)
        assert ecr_client(server).describe_registries()["registries"]
        assert OPEN_FILE_WARNING not in server.stderr_text()


def test_serve_warns_when_the_hard_open_file_limit_is_too_low():
    """"(it warns when the hard limit is lower)": started with a hard RLIMIT_NOFILE below
    3 × --max-connections + 256, serve logs a warning naming the limit and what it wanted, raises
    its soft limit as far as the hard limit allows, and still serves."""
    hard_here = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_here != resource.RLIM_INFINITY and hard_here < 1000:
        pytest.skip(f"this process's hard open-file limit ({hard_here}) is below 1000")
    for soft, hard in [(300, 300), (250, 1000)]:
        with launched_with_keys(preexec_fn=with_nofile(soft, hard)) as server:
            assert nofile_limits(server.process.pid) == (hard, hard)
            assert ecr_client(server).describe_registries()["registries"]
            warnings = [line for line in server.stderr_text().splitlines() if OPEN_FILE_WARNING in line]
            assert len(warnings) == 1, server.stderr_text()[-2000:]
            assert "warning" in warnings[0] and f"files.limit={hard}" in warnings[0] and "files.wanted=3256" in warnings[0], warnings


# ---------------------------------------------------------------------------------------------
# 5. The spool budget


SPOOL_BUDGET = 1 << 20  # --max-spooled-bytes for the test: 1 MiB
MEMORY_HEAD = 64 * 1024  # a body's first 64 KiB stay in memory; the rest is spooled 64 KiB at a time


def spool_files(pid):
    """Sizes of the unlinked files under DATA/spool the process holds open."""
    sizes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if "/spool/body-" in target and target.endswith("(deleted)"):
                sizes.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
        except FileNotFoundError:
            pass
    return sizes


def settled_spool(pid, at_least, timeout=30):
    """The total size of the process's spool files, once it is at least `at_least` and has not
    changed for half a second (the server has read what was sent)."""
    deadline = time.monotonic() + timeout
    total, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = sum(spool_files(pid))
        if now != total:
            total, since = now, time.monotonic()
        elif total >= at_least and time.monotonic() - since >= 0.5:
            return total
        time.sleep(0.05)
    raise AssertionError(f"the spool holds {total} bytes, not yet {at_least}")


def test_spooled_bodies_share_max_spooled_bytes_and_past_it_are_throttled():
    """`--max-spooled-bytes`: bodies read before their signature can be checked are spooled (past
    their first 64 KiB) to unlinked files under DATA/spool, and all connections together may spool
    no more than the budget: with most of it held by one sender of a known key id that has not
    finished its body, another client's properly signed large call is refused with
    ThrottlingException and records nothing, small honest calls are answered all along, and once the
    holder goes the same large call succeeds."""
    # --min-body-rate 0: the holder below stalls on purpose, and must not be cut by the rate guard
    # (1,024 B/s over each 10 s window by default) while the test runs on a busy machine.
    with serving("--max-spooled-bytes", str(SPOOL_BUDGET), "--max-spooled-bytes-per-address", str(SPOOL_BUDGET),
                 "--min-body-rate", "0") as server:
        # A share below the largest body (30 MB) refuses a larger body every time: said at start.
        warning, deadline = "less than the largest body (30000000)", time.monotonic() + 10
        while warning not in server.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # written before the ready line, read by a thread since
        assert warning in server.stderr_text()
        ecr = ecr_client(server)
        name = unique("spool")
        ecr.create_repository(repositoryName=name)
        upload_id = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
        # 375,000 bytes: 500,000 of base64 in the body, so more than 370,000 of it spooled.
        part = os.urandom(375_000)

        def large_call():
            return ecr.upload_layer_part(repositoryName=name, uploadId=upload_id, partFirstByte=0,
                                         partLastByte=len(part) - 1, layerPartBlob=part)

        # Alone, the large call fits the budget: spooling it is not what refuses it below.
        probe = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
        assert ecr.upload_layer_part(repositoryName=name, uploadId=probe, partFirstByte=0, partLastByte=len(part) - 1,
                                     layerPartBlob=part)["lastByteReceived"] == len(part) - 1

        # The holder: signed with a known key id for a 3 MB body, of which it sends 1,000,000 bytes
        # and then nothing: all but its in-memory head and an unflushed remainder (each under
        # 64 KiB) is spooled, more than 868,000 of the 1,048,576 bytes of the budget.
        holder = connect(server, timeout=30)
        sent = 1_000_000
        holder.sendall(signed_head(server, "POST", "/", b"", {"X-Amz-Target": TARGET + "UploadLayerPart"},
                                   key=KEY_A, content_length=3_000_000) + b"A" * sent)
        held = settled_spool(server.process.pid, sent - 2 * MEMORY_HEAD)
        assert held <= sent and len(spool_files(server.process.pid)) == 1, f"the holder's spooled bytes: {held}"
        assert os.listdir(os.path.join(server.data_dir, "spool")) == [], "a spool file kept its name"
        try:
            position = server.events()[-1]["position"]
            for _ in range(2):
                with pytest.raises(ClientError) as refused:
                    large_call()
                assert refused.value.response["Error"]["Code"] == "ThrottlingException", refused.value.response
                assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                # Small calls keep their bodies in memory: they are answered while the budget is spent.
                assert ecr.describe_registries()["registries"]
                assert ecr.describe_repositories(repositoryNames=[name])["repositories"]
            assert server.events()[-1]["position"] == position, "a throttled call wrote to the log"
            assert spool_files(server.process.pid) == [held], "a refused body's spool file was kept"
        finally:
            holder.close()
        # The holder gone, its share is given back: the large call is accepted again.
        deadline = time.monotonic() + 20
        while True:
            try:
                answered = large_call()
                break
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ThrottlingException", error.response
                assert time.monotonic() < deadline, "the spool budget was not given back when its holder left"
                time.sleep(0.2)
        assert answered["lastByteReceived"] == len(part) - 1 and answered["uploadId"] == upload_id
        deadline = time.monotonic() + 10
        while spool_files(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool_files(server.process.pid) == [], "spool files outlived their requests"
        parts = [e for e in server.events() if e["type"] == "LayerPartUploaded" and e["data"]["uploadId"] == upload_id]
        assert len(parts) == 1, parts


def test_one_address_spools_at_most_its_share_and_another_address_still_fits():
    """`--max-spooled-bytes-per-address`: a sender of a known key id holding most of its address's
    share with a body it never finishes leaves room only for its own address's bodies to be
    throttled: the same large call, signed properly, is refused from that address and answered
    from another, while the budget as a whole has room for both."""
    with serving("--max-spooled-bytes", str(8 * SPOOL_BUDGET), "--max-spooled-bytes-per-address", str(SPOOL_BUDGET),
                 "--min-body-rate", "0") as server:
        ecr = ecr_client(server)
        name = unique("spool-share")
        ecr.create_repository(repositoryName=name)
        upload_id = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
        part = os.urandom(375_000)  # 500,000 bytes of base64: more than 370,000 of it spooled

        def from_address(source):
            """The part, sent signed from `source`: its status and answer."""
            body = json.dumps({"repositoryName": name, "uploadId": upload_id, "partFirstByte": 0, "partLastByte": len(part) - 1,
                               "layerPartBlob": base64.b64encode(part).decode()}).encode()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(30)
                sock.bind((source, 0))
                sock.connect(address(server))
                sock.sendall(signed_head(server, "POST", "/", body, {"X-Amz-Target": TARGET + "UploadLayerPart"}) + body)
                status, _, answer = read_response(sock, timeout=30)
                return status, json.loads(answer or b"{}")
            finally:
                sock.close()

        holder = connect(server, timeout=30)  # from 127.0.0.1
        sent = 1_000_000
        holder.sendall(signed_head(server, "POST", "/", b"", {"X-Amz-Target": TARGET + "UploadLayerPart"},
                                   key=KEY_A, content_length=3_000_000) + b"A" * sent)
        settled_spool(server.process.pid, sent - 2 * MEMORY_HEAD)
        try:
            status, answer = from_address("127.0.0.1")
            assert (status, answer.get("__type")) == (400, "ThrottlingException"), (status, answer)
            status, answer = from_address("127.0.0.2")
            assert status == 200 and answer["lastByteReceived"] == len(part) - 1, (status, answer)
        finally:
            holder.close()
