"""Repository policies (Set/Get/DeleteRepositoryPolicy) and how every call is judged by them, against
a real `serve`, through boto3, raw HTTP, awscli and skopeo.

Most tests run on a server of their own (the module's `keyed`), started with a credentials file of
four keys, each line `ACCESS_KEY_ID SECRET [REGISTRY_ID [NAME]]`: alice and bob of the registry served,
carol of another registry (111111111111), and dave given with neither (this registry, named by his key
id). A key is the user `arn:aws:iam::<registry>:user/<name>`. Keys of the registry served may do
anything a policy does not deny them; a key of another registry may act only where a policy allows it,
and never on the registry itself. An explicit Deny always wins. Each test uses repositories of its own.
"""
import base64
import hashlib
import json
import os
import re
import subprocess
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import serving, signed_headers
from test_protocol import post
from test_registry_clients import write_oci_layout

REGISTRY_ID = "000000000000"  # the served registry's id (serve's default, which `serving` keeps)
OTHER_REGISTRY = "111111111111"
# who: (access key id, secret, registry id and name as the credentials line gives them)
KEYS = {
    "alice": ("AKIDALICE", "alice-secret", REGISTRY_ID, "alice"),
    "bob": ("AKIDBOB", "bob-secret", REGISTRY_ID, "bob"),
    "carol": ("AKIDCAROL", "carol-secret", OTHER_REGISTRY, "carol"),
    "dave": ("AKIDDAVE", "dave-secret"),
}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})  # a manifest that needs no blobs
DENIED = "AccessDeniedException"


# ---------------------------------------------------------------------------------------------
# Helpers


def user(name, registry=REGISTRY_ID):
    return f"arn:aws:iam::{registry}:user/{name}"


ALICE, BOB, CAROL, DAVE = user("alice"), user("bob"), user("carol", OTHER_REGISTRY), user("AKIDDAVE")


def arn(name):
    return f"arn:aws:ecr-public::{REGISTRY_ID}:repository/{name}"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(prefix="policy"):
    return f"{prefix}/app-{uuid.uuid4().hex[:12]}"


def statement(effect, principal, action, **extra):
    return {"Effect": effect, "Principal": principal, "Action": action, **extra}


def deny(principal, *actions):
    return statement("Deny", principal, list(actions))


def allow(principal, *actions):
    return statement("Allow", principal, list(actions))


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def error_code(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def answered(response):
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def client(server, key_id, secret):
    return boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def new_repo(ecr):
    name = unique()
    ecr.create_repository(repositoryName=name)
    return name


def upload(ecr, repo, data):
    """InitiateLayerUpload, one UploadLayerPart and CompleteLayerUpload of `data`; its digest."""
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)
    ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(data)])
    return sha256(data)


def push_image(ecr, repo, tag):
    """A fresh config and layer uploaded, and PutImage of an OCI manifest of them under `tag`; the manifest (str)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "id": uuid.uuid4().hex}).encode()
    layer = os.urandom(256)
    upload(ecr, repo, config)
    upload(ecr, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer), "size": len(layer)}]})
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    return manifest


def password(ecr):
    """The registry password GetAuthorizationToken hands this client's key."""
    token = ecr.get_authorization_token()["authorizationData"]["authorizationToken"]
    user_name, secret = base64.b64decode(token).decode().split(":", 1)
    assert user_name == "AWS"
    return secret


def registry(server, method, path, pw=None, **kwargs):
    """A raw registry request, with Basic credentials `AWS:<pw>` when given."""
    return requests.request(method, server.endpoint + path, auth=("AWS", pw) if pw else None,
                            allow_redirects=False, timeout=120, **kwargs)


def anonymous_pull(server, method, path, **kwargs):
    """A registry request as a client without credentials makes it: challenged without a token
    (as ECR Public challenges it), then again with the token the challenge's realm gives anonymously."""
    challenged = registry(server, method, path, **kwargs)
    assert challenged.status_code == 401, (challenged.status_code, challenged.text)
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenged.headers["WWW-Authenticate"]))
    token = requests.get(params["realm"], params={"service": params["service"], "scope": params["scope"]}, timeout=60).json()["token"]
    return registry(server, method, path, headers={**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}, **kwargs)


def assert_registry_denied(response):
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.json()["errors"][0]["code"] == "DENIED", response.text


def skopeo_push(server, pw, source, repo, tag, tmp_path):
    """skopeo copy of the OCI layout `source` (tag v1) to `repo:tag` as AWS:<pw>; the finished process."""
    return subprocess.run(
        ["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", f"AWS:{pw}",
         f"oci:{source}:v1", f"docker://127.0.0.1:{server.port}/{repo}:{tag}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")})


def aws(server, key, *args):
    """The real awscli against `server` with the key `key`: (exit code, parsed JSON output or {}, stderr)."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1], "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(["aws", "ecr-public", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         capture_output=True, text=True, timeout=120, env=env)
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}, out.stderr


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server of its own whose credentials file holds the four KEYS (given after `serving`'s own
    --credentials, so that this one is the one used)."""
    path = tmp_path_factory.mktemp("policy-keys") / "credentials"
    path.write_text("".join(" ".join(key) + "\n" for key in KEYS.values()))
    with serving("--credentials", str(path)) as server:
        yield server


@pytest.fixture(scope="module")
def alice(keyed):
    return client(keyed, *KEYS["alice"][:2])


@pytest.fixture(scope="module")
def bob(keyed):
    return client(keyed, *KEYS["bob"][:2])


@pytest.fixture(scope="module")
def carol(keyed):
    return client(keyed, *KEYS["carol"][:2])


@pytest.fixture(scope="module")
def dave(keyed):
    return client(keyed, *KEYS["dave"][:2])


# ---------------------------------------------------------------------------------------------
# Set, Get, Delete


def test_set_get_and_delete_round_trip_the_text_exactly(ecr):
    name = new_repo(ecr)
    assert error_code(lambda: ecr.get_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"
    assert error_code(lambda: ecr.delete_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"
    # Odd spacing, key order and a trailing newline: the text is kept as sent, not re-serialized.
    text = json.dumps({"Statement": [{"Sid": "NoBob", "Action": ["ecr-public:PutImage"], "Principal": {"AWS": BOB},
                                      "Effect": "Deny"}], "Version": "2012-10-17"}, indent=3) + "\n"
    expected = {"registryId": REGISTRY_ID, "repositoryName": name, "policyText": text}
    assert answered(ecr.set_repository_policy(repositoryName=name, policyText=text)) == expected
    assert answered(ecr.get_repository_policy(repositoryName=name)) == expected
    assert answered(ecr.get_repository_policy(registryId=REGISTRY_ID, repositoryName=name)) == expected
    assert answered(ecr.delete_repository_policy(repositoryName=name)) == expected
    assert error_code(lambda: ecr.get_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"
    assert error_code(lambda: ecr.delete_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"


def test_set_replaces_the_policy(ecr):
    name = new_repo(ecr)
    first, second = policy(deny({"AWS": BOB}, "ecr-public:PutImage")), policy(deny({"AWS": BOB}, "ecr-public:DescribeImages"))
    ecr.set_repository_policy(repositoryName=name, policyText=first)
    assert ecr.set_repository_policy(repositoryName=name, policyText=second)["policyText"] == second
    assert ecr.get_repository_policy(repositoryName=name)["policyText"] == second
    assert ecr.delete_repository_policy(repositoryName=name)["policyText"] == second


def test_policy_operations_are_served_not_unsupported(server):
    for operation in ("SetRepositoryPolicy", "GetRepositoryPolicy", "DeleteRepositoryPolicy"):
        status, _, answer = post(server, f"SpencerFrontendService.{operation}", b"{}")
        assert answer.get("__type") != "UnsupportedCommandException", operation
        assert status == 400 and answer["__type"] == "InvalidParameterException", (operation, answer)


POLICY_OPERATIONS = {
    "SetRepositoryPolicy": lambda ecr, name: ecr.set_repository_policy(repositoryName=name, policyText=policy(deny("*", "ecr-public:PutImage"))),
    "GetRepositoryPolicy": lambda ecr, name: ecr.get_repository_policy(repositoryName=name),
    "DeleteRepositoryPolicy": lambda ecr, name: ecr.delete_repository_policy(repositoryName=name),
}


@pytest.mark.parametrize("operation", POLICY_OPERATIONS.values(), ids=POLICY_OPERATIONS.keys())
def test_a_missing_repository_is_repository_not_found(ecr, operation):
    name = unique()
    assert error_code(lambda: operation(ecr, name)) == "RepositoryNotFoundException"
    assert error_code(lambda: ecr.describe_repositories(repositoryNames=[name])) == "RepositoryNotFoundException"


def test_awscli_sets_gets_and_deletes_a_policy(keyed, alice):
    name = new_repo(alice)
    text = policy(deny({"AWS": BOB}, "ecr-public:PutImage"))
    expected = {"registryId": REGISTRY_ID, "repositoryName": name, "policyText": text}
    key = KEYS["alice"][:2]
    status, answer, stderr = aws(keyed, key, "set-repository-policy", "--repository-name", name, "--policy-text", text)
    assert status == 0, stderr
    assert answer == expected
    status, answer, stderr = aws(keyed, key, "get-repository-policy", "--repository-name", name)
    assert status == 0 and answer == expected, stderr
    status, answer, stderr = aws(keyed, key, "delete-repository-policy", "--repository-name", name)
    assert status == 0 and answer == expected, stderr
    status, _, stderr = aws(keyed, key, "get-repository-policy", "--repository-name", name)
    assert status != 0
    assert "An error occurred (RepositoryPolicyNotFoundException) when calling the GetRepositoryPolicy operation" in stderr


# ---------------------------------------------------------------------------------------------
# Validation


KEPT = policy(deny({"AWS": BOB}, "ecr-public:PutImage"))
GOOD = {"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "ecr-public:PutImage"}
INVALID = {
    "not JSON": "{not json",
    "empty": "",
    "a JSON list": json.dumps([GOOD]),
    "no Statement": json.dumps({"Version": "2012-10-17"}),
    "Effect Maybe": policy({**GOOD, "Effect": "Maybe"}),
    "no Effect": policy({k: v for k, v in GOOD.items() if k != "Effect"}),
    "no Principal": policy({k: v for k, v in GOOD.items() if k != "Principal"}),
    "no Action": policy({k: v for k, v in GOOD.items() if k != "Action"}),
    "an s3 action": policy({**GOOD, "Action": "s3:GetObject"}),
    "an s3 action in a list": policy({**GOOD, "Action": ["ecr-public:PutImage", "s3:GetObject"]}),
    "a Condition": policy({**GOOD, "Condition": {"StringEquals": {"aws:username": "bob"}}}),
    "NotAction": policy({"Effect": "Deny", "Principal": {"AWS": BOB}, "NotAction": "ecr-public:PutImage"}),
    "a principal not an ARN": policy({**GOOD, "Principal": {"AWS": "not-an-arn"}}),
    "an account of 5 digits": policy({**GOOD, "Principal": {"AWS": "arn:aws:iam::12345:user/bob"}}),
    "longer than 10240": KEPT + " " * (10241 - len(KEPT)),
}


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_policy_is_refused_and_nothing_is_stored(keyed, alice, text):
    name = new_repo(alice)
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=text)) == "InvalidParameterException"
    assert error_code(lambda: alice.get_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"
    alice.set_repository_policy(repositoryName=name, policyText=KEPT)
    before = len(keyed.events())
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=text, force=True)) == "InvalidParameterException"
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == KEPT
    assert len(keyed.events()) == before


def test_a_policy_of_exactly_10240_characters_is_accepted(alice):
    name = new_repo(alice)
    text = KEPT + " " * (10240 - len(KEPT))
    assert alice.set_repository_policy(repositoryName=name, policyText=text)["policyText"] == text
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == text


# Forms a policy may take, each denying DescribeImages to some of alice and bob: (document of the
# repository's name, who is denied).
FORMS = {
    "one Statement object": (lambda name: json.dumps({"Version": "2012-10-17", "Statement": {
        "Sid": "NoBob", "Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "ecr-public:DescribeImages"}}), {"bob"}),
    "an action with *": (lambda name: policy(deny({"AWS": BOB}, "ecr-public:Describe*")), {"bob"}),
    "an action with ?": (lambda name: policy(deny({"AWS": BOB}, "ecr-public:DescribeImage?")), {"bob"}),
    "ecr-public:*": (lambda name: policy(deny({"AWS": BOB}, "ecr-public:*")), {"bob"}),
    "a list of principals": (lambda name: policy(deny({"AWS": [BOB, f"arn:aws:iam::{OTHER_REGISTRY}:root"]}, "ecr-public:DescribeImages")), {"bob"}),
    "Principal *": (lambda name: policy(deny("*", "ecr-public:DescribeImages")), {"alice", "bob"}),
    "a 12-digit account": (lambda name: policy(deny({"AWS": REGISTRY_ID}, "ecr-public:DescribeImages")), {"alice", "bob"}),
    "an account's root": (lambda name: policy(deny({"AWS": f"arn:aws:iam::{REGISTRY_ID}:root"}, "ecr-public:DescribeImages")), {"alice", "bob"}),
    "another account's root": (lambda name: policy(deny({"AWS": f"arn:aws:iam::{OTHER_REGISTRY}:root"}, "ecr-public:DescribeImages")), set()),
    "Resource the repository": (lambda name: policy(statement("Deny", {"AWS": BOB}, "ecr-public:DescribeImages", Resource=arn(name))), {"bob"}),
    "Resource *": (lambda name: policy(statement("Deny", {"AWS": BOB}, "ecr-public:DescribeImages", Resource="*")), {"bob"}),
    "an Allow and a Deny": (lambda name: policy(allow({"AWS": CAROL}, "ecr-public:*"), deny({"AWS": BOB}, "ecr-public:DescribeImages")), {"bob"}),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_each_form_of_policy_is_accepted_and_enforced_as_written(alice, bob, form):
    document, denied = form
    name = new_repo(alice)
    text = document(name)
    assert alice.set_repository_policy(repositoryName=name, policyText=text)["policyText"] == text
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == text
    for who, ecr in (("alice", alice), ("bob", bob)):
        if who in denied:
            assert error_code(lambda: ecr.describe_images(repositoryName=name)) == DENIED, who
        else:
            assert ecr.describe_images(repositoryName=name)["imageDetails"] == [], who
    # Only what the policy names is denied: alice may still start an upload.
    assert alice.initiate_layer_upload(repositoryName=name)["uploadId"]


# ---------------------------------------------------------------------------------------------
# Lockout


LOCKOUTS = {
    "the caller's ARN": ({"AWS": ALICE}, "ecr-public:SetRepositoryPolicy"),
    "the caller's account": ({"AWS": REGISTRY_ID}, "ecr-public:Set*"),
    "everyone": ("*", "ecr-public:SetRepositoryPolicy"),
}


@pytest.mark.parametrize("principal,action", LOCKOUTS.values(), ids=LOCKOUTS.keys())
def test_a_policy_that_would_lock_the_caller_out_needs_force(keyed, alice, principal, action):
    name = new_repo(alice)
    text = policy(deny(principal, action))
    before = len(keyed.events())
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=text)) == "InvalidParameterException"
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=text, force=False)) == "InvalidParameterException"
    assert len(keyed.events()) == before
    assert error_code(lambda: alice.get_repository_policy(repositoryName=name)) == "RepositoryPolicyNotFoundException"

    assert alice.set_repository_policy(repositoryName=name, policyText=text, force=True)["policyText"] == text
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == text
    # Locked out as promised: no other policy may be set, but the policy may still be deleted.
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=KEPT)) == DENIED
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == text
    assert alice.delete_repository_policy(repositoryName=name)["policyText"] == text
    assert alice.set_repository_policy(repositoryName=name, policyText=KEPT)["policyText"] == KEPT


def test_a_policy_that_denies_someone_else_needs_no_force(keyed, alice, bob, carol):
    name = new_repo(alice)
    text = policy(deny({"AWS": ALICE}, "ecr-public:SetRepositoryPolicy"))
    assert bob.set_repository_policy(repositoryName=name, policyText=text)["policyText"] == text
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=KEPT)) == DENIED
    # A caller denied the action is told so, whatever the policy it sent would do to it (boto3
    # sends an invocation id, so the call goes on as a possible retry): not invited to force it.
    before = len(keyed.events())
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=text)) == DENIED
    for repository in (name, "no/such-repository"):
        assert error_code(lambda: carol.set_repository_policy(repositoryName=repository, policyText=text, registryId=REGISTRY_ID)) == DENIED
    assert len(keyed.events()) == before
    assert bob.set_repository_policy(repositoryName=name, policyText=KEPT)["policyText"] == KEPT
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == KEPT


# ---------------------------------------------------------------------------------------------
# Enforcement on keys of this registry, through the AWS API


@pytest.mark.parametrize("resource", [None, "repository", "*"])
def test_a_deny_for_bob_refuses_him_those_actions_there_only(keyed, alice, bob, resource):
    name, elsewhere = new_repo(alice), new_repo(alice)
    extra = {} if resource is None else {"Resource": arn(name) if resource == "repository" else "*"}
    text = policy(statement("Deny", {"AWS": BOB}, ["ecr-public:InitiateLayerUpload", "ecr-public:PutImage", "ecr-public:DescribeImages"], **extra))
    alice.set_repository_policy(repositoryName=name, policyText=text)

    before = len(keyed.events())
    assert error_code(lambda: bob.initiate_layer_upload(repositoryName=name)) == DENIED
    assert error_code(lambda: bob.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="bob")) == DENIED
    assert error_code(lambda: bob.describe_images(repositoryName=name)) == DENIED
    assert len(keyed.events()) == before, "a denied call writes nothing"
    # Actions the policy does not name, and repositories without a policy, are bob's as before.
    [layer] = bob.batch_check_layer_availability(repositoryName=name, layerDigests=[sha256(b"absent")])["layers"]
    assert layer["layerAvailability"] == "UNAVAILABLE"
    assert bob.initiate_layer_upload(repositoryName=elsewhere)["uploadId"]
    bob.put_image(repositoryName=elsewhere, imageManifest=EMPTY_INDEX, imageTag="bob")
    # alice is not named: she pushes and reads there.
    manifest = push_image(alice, name, "v1")
    [detail] = alice.describe_images(repositoryName=name)["imageDetails"]
    assert detail["imageDigest"] == sha256(manifest.encode()) and detail["imageTags"] == ["v1"]

    # Deleting the policy lifts the deny.
    alice.delete_repository_policy(repositoryName=name)
    assert bob.initiate_layer_upload(repositoryName=name)["uploadId"]
    bob.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="bob")
    assert len(bob.describe_images(repositoryName=name)["imageDetails"]) == 2


def test_a_deny_for_everyone_denies_the_repositorys_own_registry_too(alice, bob):
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(deny("*", "ecr-public:InitiateLayerUpload")))
    assert error_code(lambda: alice.initiate_layer_upload(repositoryName=name)) == DENIED
    assert error_code(lambda: bob.initiate_layer_upload(repositoryName=name)) == DENIED
    alice.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="still")
    alice.delete_repository_policy(repositoryName=name)
    assert alice.initiate_layer_upload(repositoryName=name)["uploadId"]


def test_a_key_without_registry_or_name_is_this_registrys_user_named_by_its_key_id(alice, dave):
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(deny({"AWS": DAVE}, "ecr-public:InitiateLayerUpload")))
    assert error_code(lambda: dave.initiate_layer_upload(repositoryName=name)) == DENIED
    assert alice.initiate_layer_upload(repositoryName=name)["uploadId"]
    # Of this registry: the registry's own operations are dave's, and so are repositories without a policy.
    other = unique()
    dave.create_repository(repositoryName=other)
    assert dave.initiate_layer_upload(repositoryName=other)["uploadId"]
    # Named by his key id, not "dave".
    alice.set_repository_policy(repositoryName=other, policyText=policy(deny({"AWS": user("dave")}, "ecr-public:InitiateLayerUpload")))
    assert dave.initiate_layer_upload(repositoryName=other)["uploadId"]


# ---------------------------------------------------------------------------------------------
# Keys of another registry


def test_a_key_of_another_registry_may_log_in_but_not_use_the_registry_or_unnamed_repositories(keyed, alice, carol):
    name, existing = unique(), new_repo(alice)
    before = len(keyed.events())
    assert error_code(lambda: carol.create_repository(repositoryName=name)) == DENIED
    assert error_code(lambda: alice.describe_repositories(repositoryNames=[name])) == "RepositoryNotFoundException"
    assert error_code(lambda: carol.describe_repositories()) == DENIED
    assert error_code(lambda: carol.describe_repositories(repositoryNames=[existing])) == DENIED
    assert error_code(lambda: carol.initiate_layer_upload(repositoryName=existing)) == DENIED
    assert error_code(lambda: carol.describe_images(repositoryName=existing)) == DENIED
    # The registry's own operations are its keys' alone: nothing of it is read or renamed.
    shown = alice.get_registry_catalog_data()["registryCatalogData"]
    assert error_code(lambda: carol.put_registry_catalog_data(displayName="taken over")) == DENIED
    assert error_code(lambda: carol.get_registry_catalog_data()) == DENIED
    assert error_code(lambda: carol.describe_registries()) == DENIED
    assert alice.get_registry_catalog_data()["registryCatalogData"] == shown
    assert len(keyed.events()) == before
    assert password(carol), "GetAuthorizationToken is a login: it answers a key of another registry"


def test_a_denied_delete_of_a_repository_touches_none_of_its_blobs(keyed, alice, carol):
    """A denied DeleteRepository that carries an SDK invocation id still goes to the writer, to be
    answered as a retry if it is one; it marked every blob of the repository used on its way
    there (a file's times touched per blob, at will, by a key with no rights on it)."""
    name = new_repo(alice)
    digest = upload(alice, name, os.urandom(256))
    blob = os.path.join(keyed.data_dir, "blobs", "sha256", digest.split(":")[1])
    os.utime(blob, (1_577_836_800, 1_577_836_800))  # 2020-01-01
    assert error_code(lambda: carol.delete_repository(repositoryName=name, force=True)) == DENIED
    assert os.stat(blob).st_mtime == 1_577_836_800
    alice.describe_repositories(repositoryNames=[name])


def test_a_stranger_cannot_tell_a_repository_it_may_not_read_from_a_missing_one(keyed, alice, carol):
    """Anonymous pullers and keys of another registry: a repository whose policy denies them reads as one
    that does not exist, on the registry and in the API's words; the registry's own keys are told why."""
    hidden, missing = new_repo(alice), unique()
    pulls = ["ecr-public:BatchGetImage", "ecr-public:GetDownloadUrlForLayer", "ecr-public:DescribeImageTags", "ecr-public:DescribeImages"]
    alice.set_repository_policy(repositoryName=hidden, policyText=policy(deny("*", *pulls)))
    for name in (hidden, missing):
        answer = anonymous_pull(keyed, "GET", f"/v2/{name}/tags/list")
        assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "NAME_UNKNOWN", answer.text
    shapes = {name: anonymous_pull(keyed, "GET", f"/v2/{name}/manifests/latest").json()["errors"][0]["message"].replace(name, "NAME")
              for name in (hidden, missing)}
    assert shapes[hidden] == shapes[missing], shapes
    # Referrers are never a 404 (the spec's rule): both list none, alike.
    subject = "sha256:" + hashlib.sha256(b"subject").hexdigest()
    lists = {name: anonymous_pull(keyed, "GET", f"/v2/{name}/referrers/{subject}") for name in (hidden, missing)}
    assert {name: (answer.status_code, answer.json()) for name, answer in lists.items()} == {
        name: (200, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}) for name in (hidden, missing)}
    assert_registry_denied(registry(keyed, "GET", f"/v2/{hidden}/tags/list", pw=password(alice)))
    def denial(ecr, name):
        with pytest.raises(ClientError) as caught:
            ecr.describe_images(repositoryName=name)
        return caught.value.response["Error"]["Message"].replace(name, "NAME")
    assert denial(carol, hidden) == denial(carol, missing) and "policy" not in denial(carol, hidden)
    assert "because of the repository's policy" in denial(alice, hidden)


ALLOWS_FOR_CAROL = {
    "her user ARN": {"AWS": CAROL},
    "her account id": {"AWS": OTHER_REGISTRY},
    "her account's root": {"AWS": f"arn:aws:iam::{OTHER_REGISTRY}:root"},
    "a list naming her": {"AWS": [BOB, CAROL]},
}


@pytest.mark.parametrize("principal", ALLOWS_FOR_CAROL.values(), ids=ALLOWS_FOR_CAROL.keys())
def test_an_allow_naming_a_key_of_another_registry_lets_it_push_there(alice, carol, principal):
    name, elsewhere = new_repo(alice), new_repo(alice)
    text = policy(allow(principal, "ecr-public:*"))
    assert alice.set_repository_policy(repositoryName=name, policyText=text)["policyText"] == text
    manifest = push_image(carol, name, "from-carol")
    [detail] = alice.describe_images(repositoryName=name)["imageDetails"]
    assert detail["imageDigest"] == sha256(manifest.encode()) and detail["imageTags"] == ["from-carol"]
    # Only where the policy says, and never the registry itself.
    assert error_code(lambda: carol.initiate_layer_upload(repositoryName=elsewhere)) == DENIED
    assert error_code(lambda: carol.create_repository(repositoryName=unique())) == DENIED


def test_an_allow_naming_someone_else_does_not_let_a_key_of_another_registry_in(alice, carol):
    name = new_repo(alice)
    for principal in ({"AWS": user("mallory", OTHER_REGISTRY)}, {"AWS": REGISTRY_ID}, {"AWS": [ALICE, BOB]}):
        alice.set_repository_policy(repositoryName=name, policyText=policy(allow(principal, "ecr-public:*")))
        assert error_code(lambda: carol.initiate_layer_upload(repositoryName=name)) == DENIED, principal
    # An Allow of other actions only.
    alice.set_repository_policy(repositoryName=name, policyText=policy(allow({"AWS": CAROL}, "ecr-public:Describe*")))
    assert carol.describe_images(repositoryName=name)["imageDetails"] == []
    assert error_code(lambda: carol.initiate_layer_upload(repositoryName=name)) == DENIED


def test_an_explicit_deny_wins_over_an_allow(keyed, alice, carol):
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(
        allow({"AWS": CAROL}, "ecr-public:*"), deny({"AWS": CAROL}, "ecr-public:PutImage")))
    layer = upload(carol, name, os.urandom(128))
    assert alice.batch_check_layer_availability(repositoryName=name, layerDigests=[layer])["layers"][0]["layerAvailability"] == "AVAILABLE"
    before = len(keyed.events())
    assert error_code(lambda: carol.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="carol")) == DENIED
    assert len(keyed.events()) == before
    alice.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="alice")
    assert [d["imageTags"] for d in alice.describe_images(repositoryName=name)["imageDetails"]] == [["alice"]]


# ---------------------------------------------------------------------------------------------
# Enforcement through the registry front end (/v2/)


def test_registry_pushes_are_judged_by_the_policy(keyed, alice, bob, tmp_path):
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(
        deny({"AWS": BOB}, "ecr-public:InitiateLayerUpload", "ecr-public:PutImage")))
    source = tmp_path / "source"
    manifest_digest, _ = write_oci_layout(source, "v1", os.urandom(2048))
    bob_password = password(bob)

    before = len(keyed.events())
    assert_registry_denied(registry(keyed, "POST", f"/v2/{name}/blobs/uploads/", bob_password, headers={"Content-Length": "0"}))
    out = skopeo_push(keyed, bob_password, source, name, "v1", tmp_path)
    assert out.returncode != 0, out.stdout
    assert "denied" in out.stderr.lower(), out.stderr
    assert len(keyed.events()) == before, "a denied push writes nothing"
    assert alice.describe_images(repositoryName=name)["imageDetails"] == []

    out = skopeo_push(keyed, password(alice), source, name, "v1", tmp_path)
    assert out.returncode == 0, out.stderr
    [detail] = alice.describe_images(repositoryName=name)["imageDetails"]
    assert detail["imageDigest"] == manifest_digest and detail["imageTags"] == ["v1"]
    # bob may not put that same manifest under a tag of his either (its blobs are all there now).
    body = (source / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_bytes()
    assert_registry_denied(registry(keyed, "PUT", f"/v2/{name}/manifests/bob", bob_password, data=body,
                                    headers={"Content-Type": OCI_MANIFEST}))
    assert [d["imageTags"] for d in alice.describe_images(repositoryName=name)["imageDetails"]] == [["v1"]]


def test_registry_pulls_are_judged_by_the_policy(keyed, alice, bob):
    name = new_repo(alice)
    alice.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="v1")
    blob = os.urandom(512)
    digest = upload(alice, name, blob)
    alice.set_repository_policy(repositoryName=name, policyText=policy(deny({"AWS": BOB}, "ecr-public:BatchGetImage")))
    bob_password, alice_password = password(bob), password(alice)
    accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}

    assert_registry_denied(registry(keyed, "GET", f"/v2/{name}/manifests/v1", bob_password, headers=accept))
    mine = registry(keyed, "GET", f"/v2/{name}/manifests/v1", alice_password, headers=accept)
    assert mine.status_code == 200 and mine.content == EMPTY_INDEX.encode(), mine.text
    anonymous = anonymous_pull(keyed, "GET", f"/v2/{name}/manifests/v1", headers=accept)
    assert anonymous.status_code == 200 and anonymous.content == EMPTY_INDEX.encode(), "only * names an anonymous puller"
    # Blobs are GetDownloadUrlForLayer, which the policy does not deny bob.
    layer = registry(keyed, "GET", f"/v2/{name}/blobs/{digest}", bob_password)
    assert layer.status_code == 200 and layer.content == blob, layer.text

    alice.delete_repository_policy(repositoryName=name)
    lifted = registry(keyed, "GET", f"/v2/{name}/manifests/v1", bob_password, headers=accept)
    assert lifted.status_code == 200 and lifted.content == EMPTY_INDEX.encode(), lifted.text


def test_registry_deletes_and_blob_pulls_are_judged_as_the_ecr_actions_they_are(keyed, alice, bob):
    """A registry DELETE of a manifest is BatchDeleteImage, by tag or by digest; a blob GET is
    GetDownloadUrlForLayer: a policy that denies bob those refuses him those, and nothing else."""
    name = new_repo(alice)
    alice.put_image(repositoryName=name, imageManifest=EMPTY_INDEX, imageTag="v1")
    image_digest = sha256(EMPTY_INDEX.encode())
    blob = os.urandom(512)
    digest = upload(alice, name, blob)
    alice.set_repository_policy(repositoryName=name, policyText=policy(
        deny({"AWS": BOB}, "ecr-public:BatchDeleteImage", "ecr-public:GetDownloadUrlForLayer")))
    bob_password, alice_password = password(bob), password(alice)
    before = len(keyed.events())
    for reference in ("v1", image_digest):
        assert_registry_denied(registry(keyed, "DELETE", f"/v2/{name}/manifests/{reference}", bob_password))
    assert_registry_denied(registry(keyed, "GET", f"/v2/{name}/blobs/{digest}", bob_password))
    assert len(keyed.events()) == before, "nothing recorded for a denied delete"
    assert [i["imageDigest"] for i in alice.describe_images(repositoryName=name)["imageDetails"]] == [image_digest]
    # What the policy does not deny him, and what it does not deny alice, still works.
    accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
    assert registry(keyed, "GET", f"/v2/{name}/manifests/v1", bob_password, headers=accept).status_code == 200
    mine = registry(keyed, "GET", f"/v2/{name}/blobs/{digest}", alice_password)
    assert mine.status_code == 200 and mine.content == blob
    assert registry(keyed, "DELETE", f"/v2/{name}/manifests/{image_digest}", alice_password).status_code == 202
    assert alice.describe_images(repositoryName=name)["imageDetails"] == []


def test_registry_pushes_by_a_key_of_another_registry_need_an_allow(keyed, alice, carol):
    name = new_repo(alice)
    carol_password = password(carol)
    start = {"headers": {"Content-Length": "0"}}
    assert_registry_denied(registry(keyed, "POST", f"/v2/{name}/blobs/uploads/", carol_password, **start))
    alice.set_repository_policy(repositoryName=name, policyText=policy(allow({"AWS": CAROL}, "ecr-public:*")))
    answer = registry(keyed, "POST", f"/v2/{name}/blobs/uploads/", carol_password, **start)
    assert answer.status_code == 202, answer.text


def test_a_key_of_another_registry_reads_no_feed(keyed, carol):
    """Feeds and projections show every repository: keys of another registry get none of them."""
    for path in ("/events?limit=1", "/projections/sessions/00000000-0000-4000-8000-000000000000"):
        key_id, secret = KEYS["carol"][:2]
        response = requests.get(keyed.endpoint + path, headers=signed_headers("GET", keyed.endpoint + path, key=(key_id, secret)), timeout=30)
        assert response.status_code == 403 and response.json()["__type"] == DENIED, (path, response.text)
    alice_id, alice_secret = KEYS["alice"][:2]
    mine = requests.get(keyed.endpoint + "/events?limit=1", headers=signed_headers("GET", keyed.endpoint + "/events?limit=1", key=(alice_id, alice_secret)), timeout=30)
    assert mine.status_code == 200, mine.text


def test_a_monolithic_registry_upload_is_judged_as_every_operation_it_records(keyed, alice, bob):
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(deny({"AWS": BOB}, "ecr-public:CompleteLayerUpload")))
    blob = os.urandom(300)
    before = len(keyed.events())
    assert_registry_denied(registry(keyed, "POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", password(bob), data=blob,
                                    headers={"Content-Type": "application/octet-stream"}))
    assert len(keyed.events()) == before, "a denied monolithic upload writes nothing"
    mine = registry(keyed, "POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", password(alice), data=blob,
                    headers={"Content-Type": "application/octet-stream"})
    assert mine.status_code == 201, mine.text


def test_a_mount_without_from_reaches_no_blob_the_caller_may_not_pull(keyed, alice, bob):
    """Without `from`, a mount takes the blob store's copy only when the caller may pull it from a
    repository holding it; otherwise the client is sent to upload the bytes (202)."""
    held, target = new_repo(alice), new_repo(alice)
    digest = upload(alice, held, os.urandom(400))
    alice.set_repository_policy(repositoryName=held, policyText=policy(deny({"AWS": BOB}, "ecr-public:GetDownloadUrlForLayer")))
    refused = registry(keyed, "POST", f"/v2/{target}/blobs/uploads/?mount={digest}", password(bob), headers={"Content-Length": "0"})
    assert refused.status_code == 202, refused.text
    assert alice.batch_check_layer_availability(repositoryName=target, layerDigests=[digest])["layers"][0]["layerAvailability"] == "UNAVAILABLE"
    mounted = registry(keyed, "POST", f"/v2/{target}/blobs/uploads/?mount={digest}", password(alice), headers={"Content-Length": "0"})
    assert mounted.status_code == 201, mounted.text
    assert alice.batch_check_layer_availability(repositoryName=target, layerDigests=[digest])["layers"][0]["layerAvailability"] == "AVAILABLE"


def test_a_registry_delete_of_a_manifest_a_list_names_is_refused_not_unknown(keyed, alice):
    """Refused as the spec lets this endpoint refuse (400; it was 403 DENIED, a permission to clients)."""
    name = new_repo(alice)
    child = push_image(alice, name, "child")
    child_digest = sha256(child.encode())
    alice.put_image(repositoryName=name, imageManifest=json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child)}]}), imageTag="all")
    refused = registry(keyed, "DELETE", f"/v2/{name}/manifests/{child_digest}", password(alice))
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "UNSUPPORTED", refused.text
    assert alice.describe_images(repositoryName=name, imageIds=[{"imageDigest": child_digest}])["imageDetails"]


def test_an_action_no_repository_takes_is_refused_in_a_policy(keyed, alice):
    """A policy naming DescribeRepositories (the registry's, never a repository's) would be stored and never applied."""
    name = new_repo(alice)
    for action in ("ecr-public:DescribeRepositories", "ecr-public:CreateRepository", "ecr-public:Nothing*"):
        assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=policy(deny("*", action)))) == "InvalidParameterException", action
    assert error_code(lambda: alice.set_repository_policy(repositoryName=name, policyText=policy(
        deny({"AWS": user("*")}, "ecr-public:PutImage")))) == "InvalidParameterException", "no wildcard in a principal"


# ---------------------------------------------------------------------------------------------
# Retries of calls that took away what allowed them


def post_as(server, who, operation, body, invocation):
    """A raw signed call by KEYS[who] carrying the SDK invocation id `invocation`: (status, body)."""
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode()
    headers = signed_headers("POST", server.endpoint + "/", data, {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SpencerFrontendService." + operation,
    }, key=KEYS[who][:2])
    headers["amz-sdk-invocation-id"] = invocation
    request = urllib.request.Request(server.endpoint + "/", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_retry_is_answered_as_its_first_attempt_though_that_attempt_took_away_what_allowed_it(keyed, alice):
    """An SDK sends a call again, with the same invocation id, when its answer was lost. A
    DeleteRepository allowed only by the repository's policy took that policy with it, and a
    SetRepositoryPolicy may deny its own caller: their retries are still answered as the first
    attempts were, and nothing else is let through."""
    name = new_repo(alice)
    alice.set_repository_policy(repositoryName=name, policyText=policy(allow({"AWS": CAROL}, "ecr-public:DeleteRepository")))
    invocation = str(uuid.uuid4())
    first = post_as(keyed, "carol", "DeleteRepository", {"repositoryName": name}, invocation)
    assert first[0] == 200, first
    assert first[1]["repository"]["repositoryName"] == name and "createdAt" in first[1]["repository"], first
    assert post_as(keyed, "carol", "DeleteRepository", {"repositoryName": name}, invocation) == first
    # Not its retry: another body with the id, or the same body with a new id, is denied as before.
    other = post_as(keyed, "carol", "DeleteRepository", {"repositoryName": name + "-other"}, invocation)
    assert other[0] == 403 and other[1]["__type"] == DENIED, other
    again = post_as(keyed, "carol", "DeleteRepository", {"repositoryName": name}, str(uuid.uuid4()))
    assert again[0] == 403 and again[1]["__type"] == DENIED, again

    name = new_repo(alice)
    locked = policy(deny({"AWS": ALICE}, "ecr-public:SetRepositoryPolicy"))
    invocation = str(uuid.uuid4())
    body = {"repositoryName": name, "policyText": locked, "force": True}
    first = post_as(keyed, "alice", "SetRepositoryPolicy", body, invocation)
    assert first[0] == 200 and first[1]["policyText"] == locked, first
    assert post_as(keyed, "alice", "SetRepositoryPolicy", body, invocation) == first
    unlocked = post_as(keyed, "alice", "SetRepositoryPolicy", {**body, "policyText": policy(allow({"AWS": BOB}, "ecr-public:*"))}, str(uuid.uuid4()))
    assert unlocked[0] == 403 and unlocked[1]["__type"] == DENIED, unlocked
    assert alice.get_repository_policy(repositoryName=name)["policyText"] == locked
