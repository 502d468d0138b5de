"""Catalog data, resource tags and the model's finer points, against a real `serve`, through boto3,
raw signed HTTP (where botocore's own checks would stop a request first), awscli and skopeo.

Repository catalog data (Create/Get/PutRepositoryCatalogData) and registry catalog data are stored
and answered as the ecr-public model shapes them; tags are addressed by the repository's ARN. The
rest checks details of the model: registryId bounds, DescribeImages' argument rules, the default page
size of 100, manifest lists (deletion and size), layer media types, and repositoryUri naming this
server. Each test uses repositories of its own, named with a uuid.
"""
import base64
import hashlib
import json
import os
import subprocess
import urllib.parse
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import CREDENTIALS, serving
from test_protocol import post
from test_registry_clients import write_oci_layout

REGISTRY_ID = "000000000000"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
PUBLIC_ENDPOINT = "registry.example:1234"
# A valid manifest that needs no blobs: an index listing nothing.
EMPTY_INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})


# ---------------------------------------------------------------------------------------------
# Helpers


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(prefix="catalog"):
    return f"{prefix}/app-{uuid.uuid4().hex[:12]}"


def arn(name, registry=REGISTRY_ID):
    return f"arn:aws:ecr-public::{registry}:repository/{name}"


def tag_list(pairs):
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def listed(ecr, name):
    """ListTagsForResource of the repository `name`, as {key: value}, checking the list is sorted by key."""
    tags = ecr.list_tags_for_resource(resourceArn=arn(name))["tags"]
    keys = [t["Key"] for t in tags]
    assert keys == sorted(keys), keys
    return {t["Key"]: t["Value"] for t in tags}


def call(server, operation, **body):
    """A raw, signed AWS JSON 1.1 request: (status, headers, answer)."""
    return post(server, f"SpencerFrontendService.{operation}", json.dumps(body).encode())


def client(server):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def served_addresses(server):
    """The HOST:PORT a client reaches `server` by: its own, and in the PostgreSQL pass each node's behind the proxy."""
    return {s.endpoint.removeprefix("http://") for s in [server, *getattr(server, "nodes", [])]}


def assert_catalog(answered, given):
    """`answered` (a catalogData out) is `given` (a catalogData in) without the logo's bytes, and names
    a logoUrl exactly when `given` has a logo; returns the logoUrl (or None)."""
    assert {k: v for k, v in answered.items() if k != "logoUrl"} == {k: v for k, v in given.items() if k != "logoImageBlob"}
    assert ("logoUrl" in answered) == ("logoImageBlob" in given), answered
    return answered.get("logoUrl")


def aws(server, *args):
    """The real awscli against `server`: (exit code, parsed JSON output or {}, stderr)."""
    out = subprocess.run(["aws", "ecr-public", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **CREDENTIALS})
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}, out.stderr


def push_blob(ecr, repo, data):
    """Uploads `data` in one part unless the repository has it; its digest."""
    [layer] = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha256(data)])["layers"]
    if layer["layerAvailability"] != "AVAILABLE":
        upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(data)])
    return sha256(data)


CONFIG = b'{"architecture":"amd64","os":"linux"}'


def image_manifest(layers, **fields):
    """An OCI image manifest (str) of CONFIG and `layers` (bytes each), with any further top-level fields."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)} for layer in layers],
        **fields}, separators=(",", ":"))


def push_image(ecr, repo, layers, tag=None, **fields):
    """Uploads CONFIG and `layers`, then PutImage of a manifest of them; the manifest (str)."""
    for blob in (CONFIG, *layers):
        push_blob(ecr, repo, blob)
    body = image_manifest(layers, **fields)
    ecr.put_image(repositoryName=repo, imageManifest=body, **({"imageTag": tag} if tag else {}))
    return body


def push_index(ecr, repo, manifests, tag=None):
    """PutImage of an OCI image index listing `manifests` (str each); the index (str)."""
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(m.encode()), "size": len(m.encode())} for m in manifests]})
    ecr.put_image(repositoryName=repo, imageManifest=body, **({"imageTag": tag} if tag else {}))
    return body


def digest_of(body):
    return sha256(body.encode())


def image_exists(ecr, repo, digest):
    try:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])
        return True
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ImageNotFoundException", error.response
        return False


@pytest.fixture(scope="module")
def elsewhere():
    """A server of its own, started with --public-endpoint registry.example:1234, and a boto3 client of it.
    No test here puts registry catalog data on it but the one that checks it is empty first."""
    with serving("--public-endpoint", PUBLIC_ENDPOINT) as server:
        yield server, client(server)


LOGO = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
FULL_CATALOG = {
    "description": "A small image for tests",
    "architectures": ["x86-64", "ARM 64"],
    "operatingSystems": ["Linux"],
    "aboutText": "# About\n\nIt is *small*.",
    "usageText": "# Usage\n\n    docker pull it",
    "logoImageBlob": LOGO,
}


# ---------------------------------------------------------------------------------------------
# Repository catalog data


def test_create_repository_keeps_catalog_data_and_serves_the_logo(server, ecr):
    name = unique()
    created = ecr.create_repository(repositoryName=name, catalogData=FULL_CATALOG)
    logo_url = assert_catalog(created["catalogData"], FULL_CATALOG)
    got = ecr.get_repository_catalog_data(repositoryName=name)["catalogData"]
    assert got == created["catalogData"]
    url = urllib.parse.urlparse(logo_url)
    assert url.scheme == "http" and url.netloc in served_addresses(server), logo_url
    answer = requests.get(logo_url, timeout=60)  # no credentials: the logo is public
    assert answer.status_code == 200 and answer.content == LOGO


def test_a_refused_request_keeps_no_logo(server, ecr):
    def kept(logo):
        return os.path.exists(os.path.join(server.data_dir, "blobs", "sha256", hashlib.sha256(logo).hexdigest()))
    name = unique()
    first, again, elsewhere = (b"\x89PNG\r\n\x1a\n" + os.urandom(2000) for _ in range(3))
    ecr.create_repository(repositoryName=name, catalogData={"logoImageBlob": first})
    assert kept(first)
    with pytest.raises(ClientError, match="RepositoryAlreadyExistsException"):
        ecr.create_repository(repositoryName=name, catalogData={"logoImageBlob": again})
    with pytest.raises(ClientError, match="RepositoryNotFoundException"):
        ecr.put_repository_catalog_data(repositoryName=unique(), catalogData={"logoImageBlob": elsewhere})
    assert not kept(again) and not kept(elsewhere)
    # The same, sent as an SDK sends it (with an invocation id): the retry window still answers
    # first, so reusing the first call's id with another logo is a mismatch, and keeps no logo.
    invocation = str(uuid.uuid4())
    target = "SpencerFrontendService.CreateRepository"
    def create(logo):
        body = json.dumps({"repositoryName": name + "-sdk", "catalogData": {"logoImageBlob": base64.b64encode(logo).decode()}}).encode()
        return post(server, target, body, {"amz-sdk-invocation-id": invocation})
    assert create(first)[0] == 200
    status, _, answer = create(again)
    assert status == 400 and answer["__type"] == "IdempotentParameterMismatchException", answer
    assert not kept(again)


def test_repository_without_catalog_data_has_empty_catalog_data(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {}
    created = ecr.create_repository(repositoryName=unique(), catalogData={"description": "no logo"})
    assert created["catalogData"] == {"description": "no logo"}


def test_put_repository_catalog_data_replaces_all_of_it(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name, catalogData=FULL_CATALOG)
    answer = ecr.put_repository_catalog_data(repositoryName=name, catalogData={"description": "only this"})
    assert answer["catalogData"] == {"description": "only this"}, "members left out (the logo too) are gone"
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {"description": "only this"}

    # A new logo is served at the URL answered, with its new bytes.
    logo = b"second logo " + os.urandom(100)
    given = {"architectures": ["ARM"], "logoImageBlob": logo}
    answer = ecr.put_repository_catalog_data(repositoryName=name, catalogData=given)["catalogData"]
    logo_url = assert_catalog(answer, given)
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == answer
    assert requests.get(logo_url, timeout=60).content == logo

    assert ecr.put_repository_catalog_data(repositoryName=name, catalogData={})["catalogData"] == {}
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {}


def test_catalog_data_at_its_bounds_is_accepted(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    given = {
        "description": "é" * 1024,  # 1024 characters (2048 UTF-8 bytes)
        "aboutText": "a" * 25600,
        "usageText": "u" * 25600,
        "architectures": [f"{i:02d}".ljust(50, "a") for i in range(50)],
        "operatingSystems": [f"os{i}" for i in range(50)],
        "logoImageBlob": os.urandom(512000),
    }
    answer = ecr.put_repository_catalog_data(repositoryName=name, catalogData=given)["catalogData"]
    logo_url = assert_catalog(answer, given)
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == answer
    assert requests.get(logo_url, timeout=60).content == given["logoImageBlob"]


BEYOND_BOUNDS = {
    "description of 1025": {"description": "d" * 1025},
    "aboutText of 25601": {"aboutText": "a" * 25601},
    "usageText of 25601": {"usageText": "u" * 25601},
    "51 architectures": {"architectures": [f"arch{i}" for i in range(51)]},
    "51 operatingSystems": {"operatingSystems": [f"os{i}" for i in range(51)]},
    "architecture of 51": {"architectures": ["x" * 51]},
    "operatingSystem of 51": {"operatingSystems": ["x" * 51]},
    "logo of 512001 bytes": {"logoImageBlob": b"\0" * 512001},
}


@pytest.mark.parametrize("catalog", BEYOND_BOUNDS.values(), ids=BEYOND_BOUNDS.keys())
def test_catalog_data_beyond_its_bounds_is_refused_and_changes_nothing(ecr, catalog):
    name = unique()
    ecr.create_repository(repositoryName=name, catalogData={"description": "kept"})
    with pytest.raises(ClientError) as e:
        ecr.put_repository_catalog_data(repositoryName=name, catalogData=catalog)
    assert code(e) == "InvalidParameterException"
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {"description": "kept"}
    # CreateRepository takes the same shape, and creates nothing when it is out of bounds.
    other = unique()
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=other, catalogData=catalog)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[other])
    assert code(e) == "RepositoryNotFoundException"


@pytest.mark.parametrize("member", ["architectures", "operatingSystems"])
def test_an_empty_architecture_or_operating_system_is_refused(server, ecr, member):
    # botocore refuses these itself (min length 1), so they go raw.
    name = unique()
    ecr.create_repository(repositoryName=name)
    status, _, answer = call(server, "PutRepositoryCatalogData", repositoryName=name, catalogData={member: ["Linux", ""]})
    assert status == 400 and answer["__type"] == "InvalidParameterException", answer
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {}


def test_catalog_data_of_a_missing_repository(ecr):
    name = unique()
    with pytest.raises(ClientError) as e:
        ecr.get_repository_catalog_data(repositoryName=name)
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.put_repository_catalog_data(repositoryName=name, catalogData={"description": "x"})
    assert code(e) == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert code(e) == "RepositoryNotFoundException", "a refused put creates no repository"


# ---------------------------------------------------------------------------------------------
# Registry catalog data


def test_registry_catalog_data_is_empty_until_put(elsewhere):
    server, ecr = elsewhere
    status, _, answer = call(server, "GetRegistryCatalogData")
    assert status == 200 and answer == {"registryCatalogData": {}}
    put = ecr.put_registry_catalog_data(displayName="My registry")
    assert put["registryCatalogData"] == {"displayName": "My registry"}
    assert ecr.get_registry_catalog_data()["registryCatalogData"] == {"displayName": "My registry"}


def test_registry_display_name_is_kept_and_bounded(ecr):
    # The shared server's registry is shared by every test: each Get follows this test's own Put.
    for name in ("My registry", "r" * 100, f"Registry {uuid.uuid4().hex}"):
        assert ecr.put_registry_catalog_data(displayName=name)["registryCatalogData"] == {"displayName": name}
        assert ecr.get_registry_catalog_data()["registryCatalogData"] == {"displayName": name}
    with pytest.raises(ClientError) as e:
        ecr.put_registry_catalog_data(displayName="x" * 101)
    assert code(e) == "InvalidParameterException"
    assert ecr.get_registry_catalog_data()["registryCatalogData"] == {"displayName": name}


# ---------------------------------------------------------------------------------------------
# Tags


def test_tags_given_at_creation_are_kept_and_listed_by_key(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name, tags=tag_list({"zeta": "1", "alpha": "2", "mid": "3"}))
    [repository] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert repository["repositoryArn"] == arn(name)
    assert ecr.list_tags_for_resource(resourceArn=arn(name))["tags"] == tag_list({"alpha": "2", "mid": "3", "zeta": "1"})


def test_tag_resource_adds_and_overwrites_and_untag_resource_removes(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    assert listed(ecr, name) == {}
    ecr.tag_resource(resourceArn=arn(name), tags=tag_list({"team": "infra", "env": "dev"}))
    assert listed(ecr, name) == {"env": "dev", "team": "infra"}
    ecr.tag_resource(resourceArn=arn(name), tags=tag_list({"env": "prod", "cost": "42"}))
    assert listed(ecr, name) == {"cost": "42", "env": "prod", "team": "infra"}
    ecr.untag_resource(resourceArn=arn(name), tagKeys=["team", "never-set"])
    assert listed(ecr, name) == {"cost": "42", "env": "prod"}
    ecr.untag_resource(resourceArn=arn(name), tagKeys=["cost", "env"])
    assert listed(ecr, name) == {}


def test_more_than_50_tags_in_all_is_too_many_and_writes_nothing(server, ecr):
    name = unique()
    ecr.create_repository(repositoryName=name, tags=tag_list({f"k{i:02d}": "old" for i in range(45)}))
    # 5 overwritten and 5 new: 50 in all after merging, the most allowed.
    ecr.tag_resource(resourceArn=arn(name), tags=tag_list({**{f"k{i:02d}": "new" for i in range(5)},
                                                           **{f"n{i}": "v" for i in range(5)}}))
    fifty = listed(ecr, name)
    assert len(fifty) == 50 and fifty["k00"] == "new" and fifty["k44"] == "old"
    before = len(server.events())
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn(name), tags=tag_list({"k00": "newer", "one-more": "v"}))
    assert code(e) == "TooManyTagsException"
    assert listed(ecr, name) == fifty and len(server.events()) == before
    # Overwriting alone keeps it at 50.
    ecr.tag_resource(resourceArn=arn(name), tags=tag_list({"k39": "newer"}))
    assert listed(ecr, name) == {**fifty, "k39": "newer"}


def test_tag_keys_and_values_are_bounded_and_aws_keys_reserved(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    longest = {"k" * 128: "v" * 256}
    ecr.tag_resource(resourceArn=arn(name), tags=tag_list(longest))
    assert listed(ecr, name) == longest
    for bad in ({"k" * 129: "v"}, {"key": "v" * 257}, {"aws:owner": "me"}, {"fine": "v", "aws:x": "v"}):
        with pytest.raises(ClientError) as e:
            ecr.tag_resource(resourceArn=arn(name), tags=tag_list(bad))
        assert code(e) == "InvalidTagParameterException", bad
        assert listed(ecr, name) == longest, f"{bad} wrote something"


BAD_ARNS = {
    "another registry": lambda name: arn(name, registry="999999999999"),
    "malformed": lambda name: "not-an-arn",
    "repository missing": lambda name: f"arn:aws:ecr-public::{REGISTRY_ID}:repository",
    "the registry": lambda name: f"arn:aws:ecr-public::{REGISTRY_ID}:registry/{REGISTRY_ID}",
    "another service": lambda name: f"arn:aws:ecr:us-east-1:{REGISTRY_ID}:repository/{name}",
}
TAG_OPERATIONS = {
    "ListTagsForResource": lambda ecr, resource: ecr.list_tags_for_resource(resourceArn=resource),
    "TagResource": lambda ecr, resource: ecr.tag_resource(resourceArn=resource, tags=tag_list({"k": "v"})),
    "UntagResource": lambda ecr, resource: ecr.untag_resource(resourceArn=resource, tagKeys=["k"]),
}


@pytest.mark.parametrize("operation", TAG_OPERATIONS.values(), ids=TAG_OPERATIONS.keys())
@pytest.mark.parametrize("bad_arn", BAD_ARNS.values(), ids=BAD_ARNS.keys())
def test_an_arn_not_of_a_repository_here_is_an_invalid_parameter(ecr, operation, bad_arn):
    name = unique()
    ecr.create_repository(repositoryName=name, tags=tag_list({"k": "kept"}))
    with pytest.raises(ClientError) as e:
        operation(ecr, bad_arn(name))
    assert code(e) == "InvalidParameterException"
    assert listed(ecr, name) == {"k": "kept"}


@pytest.mark.parametrize("operation", TAG_OPERATIONS.values(), ids=TAG_OPERATIONS.keys())
def test_the_arn_of_a_missing_repository_is_repository_not_found(ecr, operation):
    with pytest.raises(ClientError) as e:
        operation(ecr, arn(unique()))
    assert code(e) == "RepositoryNotFoundException"


CREATE_WITH_BAD_TAGS = {
    "51 tags": (tag_list({f"k{i}": "v" for i in range(51)}), "TooManyTagsException"),
    "an aws: key": (tag_list({"aws:owner": "me"}), "InvalidTagParameterException"),
    "a key of 129": (tag_list({"k" * 129: "v"}), "InvalidTagParameterException"),
}


@pytest.mark.parametrize("tags,expected", CREATE_WITH_BAD_TAGS.values(), ids=CREATE_WITH_BAD_TAGS.keys())
def test_create_repository_with_bad_tags_creates_nothing(ecr, tags, expected):
    name = unique()
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, tags=tags)
    assert code(e) == expected
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert code(e) == "RepositoryNotFoundException"
    ecr.create_repository(repositoryName=name, tags=tags[:50] if expected == "TooManyTagsException" else [])
    assert len(listed(ecr, name)) == (50 if expected == "TooManyTagsException" else 0)


def test_a_deleted_repository_takes_its_tags_and_catalog_data_with_it(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name, catalogData={"description": "old"}, tags=tag_list({"old": "yes"}))
    ecr.delete_repository(repositoryName=name)
    with pytest.raises(ClientError) as e:
        ecr.list_tags_for_resource(resourceArn=arn(name))
    assert code(e) == "RepositoryNotFoundException"
    ecr.create_repository(repositoryName=name)
    assert listed(ecr, name) == {}
    assert ecr.get_repository_catalog_data(repositoryName=name)["catalogData"] == {}


def test_awscli_reads_catalog_data_and_tags(server, ecr):
    name = unique()
    catalog = {"description": "from the CLI", "architectures": ["ARM"], "usageText": "run it"}
    ecr.create_repository(repositoryName=name, catalogData=catalog, tags=tag_list({"b": "2", "a": "1"}))
    status, answer, stderr = aws(server, "get-repository-catalog-data", "--repository-name", name)
    assert status == 0, stderr
    assert answer == {"catalogData": catalog}
    status, _, stderr = aws(server, "tag-resource", "--resource-arn", arn(name), "--tags", "Key=c,Value=3")
    assert status == 0, stderr
    status, answer, stderr = aws(server, "list-tags-for-resource", "--resource-arn", arn(name))
    assert status == 0, stderr
    assert answer == {"tags": tag_list({"a": "1", "b": "2", "c": "3"})}
    status, _, stderr = aws(server, "list-tags-for-resource", "--resource-arn", arn(unique()))
    assert status == 255
    assert "An error occurred (RepositoryNotFoundException) when calling the ListTagsForResource operation" in stderr


# ---------------------------------------------------------------------------------------------
# registryId (RegistryIdOrAlias: 2 to 50 characters)


# Each operation's arguments besides registryId; `n` tells apart the requests that must succeed.
REGISTRY_ID_OPERATIONS = {
    "InitiateLayerUpload": ("initiate_layer_upload", lambda repo, n=0: {"repositoryName": repo}),
    "BatchCheckLayerAvailability": ("batch_check_layer_availability",
                                    lambda repo, n=0: {"repositoryName": repo, "layerDigests": [sha256(b"absent")]}),
    "PutImage": ("put_image", lambda repo, n=0: {"repositoryName": repo, "imageManifest": EMPTY_INDEX, "imageTag": f"t{n}"}),
    "BatchDeleteImage": ("batch_delete_image", lambda repo, n=0: {"repositoryName": repo, "imageIds": [{"imageTag": "none"}]}),
}


@pytest.mark.parametrize("operation", REGISTRY_ID_OPERATIONS.keys())
def test_registry_id_bounds_and_unknown_alias(server, ecr, operation):
    method, body = REGISTRY_ID_OPERATIONS[operation]
    name = unique()
    ecr.create_repository(repositoryName=name)
    # One character: botocore refuses it itself (min 2), so it goes raw.
    status, _, answer = call(server, operation, registryId="r", **body(name))
    assert status == 400 and answer["__type"] == "InvalidParameterException", answer
    with pytest.raises(ClientError) as e:
        getattr(ecr, method)(registryId="r" * 51, **body(name))
    assert code(e) == "InvalidParameterException"
    for alias in ("nosuchalias", "n" * 50):
        with pytest.raises(ClientError) as e:
            getattr(ecr, method)(registryId=alias, **body(name))
        # As the operation's model lists it (BatchDeleteImage's lists no RegistryNotFoundException).
        assert code(e) == ("InvalidParameterException" if operation == "BatchDeleteImage" else "RegistryNotFoundException"), alias
    # The registry's own id and alias are served.
    getattr(ecr, method)(registryId=REGISTRY_ID, **body(name, 1))
    getattr(ecr, method)(registryId="r" + REGISTRY_ID, **body(name, 2))


# ---------------------------------------------------------------------------------------------
# Images: argument rules, pages, manifest lists, layer media types


def test_describe_images_refuses_image_ids_with_max_results_or_next_token(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    layer = os.urandom(64)
    first = push_image(ecr, name, [layer], tag="a")
    push_image(ecr, name, [layer], tag="b", annotations={"n": "2"})
    page = ecr.describe_images(repositoryName=name, maxResults=1)
    assert len(page["imageDetails"]) == 1 and page["nextToken"]
    assert len(ecr.describe_images(repositoryName=name, nextToken=page["nextToken"])["imageDetails"]) == 1
    ids = [{"imageDigest": digest_of(first)}]
    assert len(ecr.describe_images(repositoryName=name, imageIds=ids)["imageDetails"]) == 1
    for extra in ({"maxResults": 1}, {"nextToken": page["nextToken"]}):
        with pytest.raises(ClientError) as e:
            ecr.describe_images(repositoryName=name, imageIds=ids, **extra)
        assert code(e) == "InvalidParameterException", extra


def test_describe_images_answers_many_ids_by_tag_and_by_digest_in_the_order_asked(ecr):
    """The ids' tags, images and their images' tags are each read for all ids at once; the answer
    still follows the ids, an image named twice is answered twice, and one id that names nothing
    refuses the whole request."""
    name = unique()
    ecr.create_repository(repositoryName=name)
    layer = os.urandom(64)
    first = push_image(ecr, name, [layer], tag="a")
    ecr.put_image(repositoryName=name, imageManifest=first, imageTag="a2")
    second = push_image(ecr, name, [layer], tag="b", annotations={"n": "2"})
    untagged = push_image(ecr, name, [layer], annotations={"n": "3"})
    ids = [{"imageTag": "b"}, {"imageDigest": digest_of(untagged)}, {"imageTag": "a2"},
           {"imageDigest": digest_of(first), "imageTag": "a"}, {"imageDigest": digest_of(second).upper().replace("SHA256", "sha256")}]
    details = ecr.describe_images(repositoryName=name, imageIds=ids)["imageDetails"]
    assert [(d["imageDigest"], sorted(d.get("imageTags", []))) for d in details] == [
        (digest_of(second), ["b"]), (digest_of(untagged), []), (digest_of(first), ["a", "a2"]),
        (digest_of(first), ["a", "a2"]), (digest_of(second), ["b"])]
    for missing in ({"imageTag": "gone"}, {"imageDigest": digest_of(first), "imageTag": "b"},
                    {"imageDigest": "sha256:" + "0" * 64}):
        with pytest.raises(ClientError) as e:
            ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "b"}, missing])
        assert code(e) == "ImageNotFoundException", missing


def test_image_calls_refuse_wrong_input_as_such_whether_or_not_the_repository_exists(server, ecr):
    """Inputs are judged before the repository is looked up (DescribeImages looked first, and
    answered RepositoryNotFoundException); a tag past the model's 300 characters refuses the
    whole BatchDeleteImage (it was a failure in a 200 answer)."""
    name = unique()
    ecr.create_repository(repositoryName=name)
    long_tag = "t" * 301
    wrong = [
        ("DescribeImages", {"imageIds": []}), ("DescribeImages", {"imageIds": [{"imageTag": "a"}] * 101}),
        ("DescribeImages", {"imageIds": [{"imageTag": ""}]}), ("DescribeImages", {"imageIds": [{"imageTag": long_tag}]}),
        ("DescribeImages", {"imageIds": [{"imageTag": "a"}], "maxResults": 5}), ("DescribeImages", {"nextToken": "garbage"}),
        ("BatchDeleteImage", {"imageIds": [{"imageTag": long_tag}]}), ("BatchDeleteImage", {"imageIds": [{"imageTag": ""}]}),
    ]
    for repository in (name, name + "-missing"):
        for operation, body in wrong:
            status, _, answer = call(server, operation, repositoryName=repository, **body)
            assert status == 400 and answer["__type"] == "InvalidParameterException", (repository, operation, body, answer)


def test_describe_images_and_image_tags_pages_hold_100_by_default(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    layer = os.urandom(64)
    push_blob(ecr, name, CONFIG)
    push_blob(ecr, name, layer)
    tags = [f"t{i:03d}" for i in range(101)]
    for tag in tags:  # 101 images, each its own tag: the manifests differ by an annotation
        ecr.put_image(repositoryName=name, imageManifest=image_manifest([layer], annotations={"n": tag}), imageTag=tag)

    first = ecr.describe_image_tags(repositoryName=name)
    assert len(first["imageTagDetails"]) == 100 and first["nextToken"]
    second = ecr.describe_image_tags(repositoryName=name, nextToken=first["nextToken"])
    assert len(second["imageTagDetails"]) == 1 and "nextToken" not in second
    assert sorted(t["imageTag"] for t in first["imageTagDetails"] + second["imageTagDetails"]) == tags

    first = ecr.describe_images(repositoryName=name)
    assert len(first["imageDetails"]) == 100 and first["nextToken"]
    second = ecr.describe_images(repositoryName=name, nextToken=first["nextToken"])
    assert len(second["imageDetails"]) == 1 and "nextToken" not in second
    assert sorted(t for d in first["imageDetails"] + second["imageDetails"] for t in d["imageTags"]) == tags

    # A token is taken only by the listing that issued it: not by another operation, nor for
    # another repository (each would start a page at a name from elsewhere).
    other = unique()
    ecr.create_repository(repositoryName=other)
    tags_token = ecr.describe_image_tags(repositoryName=name)["nextToken"]
    for call in (lambda: ecr.describe_images(repositoryName=name, nextToken=tags_token),
                 lambda: ecr.describe_images(repositoryName=other, nextToken=first["nextToken"]),
                 lambda: ecr.describe_repositories(nextToken=first["nextToken"])):
        with pytest.raises(ecr.exceptions.InvalidParameterException, match="not one this service issued"):
            call()


def three_images_and_an_index(ecr, name):
    """Three image manifests of different sizes, the largest listed in the middle, and an index of them."""
    small, large, medium = (push_image(ecr, name, [os.urandom(size)]) for size in (1000, 5000, 3000))
    index = push_index(ecr, name, [small, large, medium], tag="multi")
    return [small, large, medium], index


def test_an_image_an_index_lists_is_not_deleted_until_the_index_is(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    images, index = three_images_and_an_index(ecr, name)
    child = digest_of(images[0])
    answer = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": child}])
    assert answer["imageIds"] == []
    [failure] = answer["failures"]
    assert failure["imageId"]["imageDigest"] == child and failure["failureCode"] == "ImageReferencedByManifestList"
    assert image_exists(ecr, name, child)

    answer = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "multi"}])
    assert answer["failures"] == [] and answer["imageIds"] == [{"imageDigest": digest_of(index), "imageTag": "multi"}]
    assert not image_exists(ecr, name, digest_of(index))
    assert all(image_exists(ecr, name, digest_of(image)) for image in images), "deleting an index keeps its images"
    answer = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": child}])
    assert answer["failures"] == [] and answer["imageIds"] == [{"imageDigest": child}]


def test_an_index_and_then_its_images_are_deleted_in_one_request(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    images, index = three_images_and_an_index(ecr, name)
    ids = [{"imageDigest": digest_of(body)} for body in (index, *images)]
    answer = ecr.batch_delete_image(repositoryName=name, imageIds=ids)
    assert answer["failures"] == [] and answer["imageIds"] == ids
    assert ecr.describe_images(repositoryName=name)["imageDetails"] == []


def test_an_index_is_as_large_as_its_largest_image(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    images, index = three_images_and_an_index(ecr, name)
    sizes = [ecr.describe_images(repositoryName=name, imageIds=[{"imageDigest": digest_of(body)}])["imageDetails"][0]["imageSizeInBytes"]
             for body in images]
    assert sizes[0] < sizes[2] < sizes[1], sizes
    [detail] = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "multi"}])["imageDetails"]
    assert detail["imageDigest"] == digest_of(index) and detail["imageSizeInBytes"] == max(sizes)


def test_batch_check_layer_availability_names_a_layer_media_type_once_a_manifest_does(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    layer = os.urandom(200)
    push_blob(ecr, name, layer)
    [before] = ecr.batch_check_layer_availability(repositoryName=name, layerDigests=[sha256(layer)])["layers"]
    assert before["layerAvailability"] == "AVAILABLE" and "mediaType" not in before
    push_image(ecr, name, [layer], tag="v1")
    [after] = ecr.batch_check_layer_availability(repositoryName=name, layerDigests=[sha256(layer)])["layers"]
    assert after == {"layerDigest": sha256(layer), "layerAvailability": "AVAILABLE", "layerSize": 200, "mediaType": OCI_LAYER_GZIP}


# ---------------------------------------------------------------------------------------------
# repositoryUri


def test_repository_uri_names_this_server_and_skopeo_pushes_to_it(server, ecr, tmp_path):
    name = unique()
    uri = ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
    host, _, path = uri.partition("/")
    assert host in served_addresses(server) and path == name, uri
    [described] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described["repositoryUri"] == uri

    token = ecr.get_authorization_token()["authorizationData"]["authorizationToken"]
    source = tmp_path / "source"
    manifest_digest, _ = write_oci_layout(source, "v1", os.urandom(2048))
    out = subprocess.run(
        ["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-creds", base64.b64decode(token).decode(), f"oci:{source}:v1", f"docker://{uri}:v1"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")})
    assert out.returncode == 0, out.stderr
    details = ecr.describe_images(repositoryName=name)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(manifest_digest, ["v1"])]


def test_public_endpoint_names_repository_uri_and_logo_url(elsewhere):
    server, ecr = elsewhere
    name = unique()
    created = ecr.create_repository(repositoryName=name, catalogData={"logoImageBlob": LOGO})
    assert created["repository"]["repositoryUri"] == f"{PUBLIC_ENDPOINT}/{name}"
    [described] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described["repositoryUri"] == f"{PUBLIC_ENDPOINT}/{name}"
    assert ecr.describe_registries()["registries"][0]["registryUri"] == PUBLIC_ENDPOINT
    url = urllib.parse.urlparse(created["catalogData"]["logoUrl"])
    assert url.netloc == PUBLIC_ENDPOINT, url
    # What stands at registry.example:1234 is this server: the same path here serves the logo.
    here = server.endpoint + url.path + (f"?{url.query}" if url.query else "")
    assert requests.get(here, timeout=60).content == LOGO


def test_describe_repositories_pages_hold_100_by_default(elsewhere):
    _, ecr = elsewhere
    names = {unique("paged") for _ in range(101)}
    for name in names:
        ecr.create_repository(repositoryName=name)
    page = ecr.describe_repositories()
    assert len(page["repositories"]) == 100 and page["nextToken"]
    seen = [r["repositoryName"] for r in page["repositories"]]
    while "nextToken" in page:
        page = ecr.describe_repositories(nextToken=page["nextToken"])
        assert 1 <= len(page["repositories"]) <= 100
        seen += [r["repositoryName"] for r in page["repositories"]]
    assert len(seen) == len(set(seen)) and names <= set(seen)
