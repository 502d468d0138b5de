"""The registry clients people push with, against a real `serve`: skopeo, podman and containerd's `ctr`
(Debian's), oras (PyPI's SDK) and docker's login (where its CLI is), logged in the ECR way (`aws ecr-public
get-login-password | … login -u AWS --password-stdin`).

Each round trip must be byte-exact, every push must be an audited event that the AWS API sees, and
`upload-replay` must pass afterwards (the `server` fixture checks that when the session ends).
"""
import base64
import hashlib
import json
import os
import io
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import time

import oras.oci
import oras.provider
import pytest
import requests

from conftest import CREDENTIALS, POSTGRES


def run(*args, stdin=None, env=None):
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def login_password(server):
    """The password awscli's get-login-password prints (GetAuthorizationToken's token, decoded)."""
    out = run("aws", "ecr-public", "get-login-password", "--endpoint-url", server.endpoint, env={**os.environ, **CREDENTIALS})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def skopeo(server, tmp_path):
    """skopeo with its own auth file, logged in to the server with the password from awscli."""
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    host = f"127.0.0.1:{server.port}"
    out = run("skopeo", "login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host, stdin=login_password(server), env=env)
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out.stdout + out.stderr

    def skopeo(*args):
        result = run("skopeo", *args, env=env)
        assert result.returncode == 0, result.stderr
        return result
    skopeo.host = host
    return skopeo


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_layout(directory, tag, layer_bytes):
    """An OCI image layout holding one image: a config and one layer of `layer_bytes`."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
        return {"digest": sha256(data), "size": len(data)}
    layer = put(layer_bytes)
    config = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    # Unusual spacing and key order: only a byte-exact registry gives the same digest back.
    manifest_bytes = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    }, indent=3).encode()
    manifest = put(manifest_bytes)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return manifest["digest"], [layer["digest"], config["digest"], manifest["digest"]]


def test_skopeo_copies_an_image_with_a_layer_over_20_mib_in_and_out_byte_for_byte(server, ecr, repo, skopeo, tmp_path):
    source, back = tmp_path / "source", tmp_path / "back"
    manifest_digest, digests = write_oci_layout(source, "v1", os.urandom(21 * 1024 * 1024 + 17))
    image = f"docker://{skopeo.host}/{repo}:v1"
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1", image)
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", image, f"oci:{back}:v1")
    for digest in digests:
        name = digest.split(":")[1]
        assert (back / "blobs" / "sha256" / name).read_bytes() == (source / "blobs" / "sha256" / name).read_bytes(), digest
    # One state: the AWS API shows what skopeo pushed.
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(manifest_digest, ["v1"])]
    # Audited: every upload initiation, with the registry as its source and the key that logged in.
    initiations = [e for e in server.events() if e["type"] == "UploadInitiated" and e["data"]["repositoryName"] == repo]
    assert len(initiations) == 2 and all(e["metadata"]["source"] == "oci" and e["metadata"]["principal"] == "test" for e in initiations)
    audit = server.tool("upload-coordinator", "audit", "initiations", "--data-dir", server.data_dir, "--repository", repo, "--json")
    assert audit.returncode == 0, audit.stderr
    assert sorted((json.loads(line)["metadata"]["source"], json.loads(line)["principal"]) for line in audit.stdout.splitlines()) == [("oci", "test")] * 2


def test_an_image_pushed_through_the_aws_api_is_pulled_by_skopeo(ecr, repo, skopeo, tmp_path):
    layer = os.urandom(4096)
    config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
    for blob in (layer, config):
        upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(blob) - 1, layerPartBlob=blob)
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(blob)])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(layer), "size": len(layer)}]})
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="from-aws")
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"docker://{skopeo.host}/{repo}:from-aws", f"dir:{tmp_path / 'out'}")
    assert (tmp_path / "out" / "manifest.json").read_bytes() == manifest.encode()
    assert (tmp_path / "out" / sha256(layer).split(":")[1]).read_bytes() == layer


def test_login_refuses_a_forged_password_and_push_without_login_is_unauthorized(server, repo, tmp_path):
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    host = f"127.0.0.1:{server.port}"
    password = login_password(server)
    forged = password[:-2] + ("AA" if not password.endswith("AA") else "BB")
    out = run("skopeo", "login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host, stdin=forged, env=env)
    assert out.returncode != 0 and "invalid username/password" in out.stderr, out.stdout + out.stderr
    source = tmp_path / "source"
    write_oci_layout(source, "v1", b"layer bytes")
    out = run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{source}:v1", f"docker://{host}/{repo}:v1", env=env)
    assert out.returncode != 0 and "unauthorized" in out.stderr.lower(), out.stderr


def layer_tar(size):
    """A layer as podman needs it to unpack into its storage: a tar of one file of `size` random bytes."""
    data, out = os.urandom(size), io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entry = tarfile.TarInfo("data.bin")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def podman(server, tmp_path):
    """podman with storage of its own (vfs: no kernel overlay needed, no engine: podman has none)
    and its own auth file; `podman.login(password)` logs in the ECR way."""
    storage = pathlib.Path(tempfile.mkdtemp(prefix="uc-podman-"))  # podman takes a run root of 50 characters at most
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "podman-auth.json")}
    base = ("podman", "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs", "--events-backend", "none")

    def podman(*args, stdin=None):
        return run(*base, *args, stdin=stdin, env=env)
    podman.host = f"127.0.0.1:{server.port}"
    yield podman
    shutil.rmtree(storage, ignore_errors=True)


def test_podman_logs_in_pushes_and_pulls_back_an_image_the_aws_api_then_describes(server, ecr, repo, podman, tmp_path):
    forged = login_password(server)[:-2] + "AA"
    out = podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", podman.host, stdin=forged)
    assert out.returncode != 0 and "invalid username/password" in out.stderr, out.stdout + out.stderr
    out = podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", podman.host, stdin=login_password(server))
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out.stdout + out.stderr
    source = tmp_path / "source"
    write_oci_layout(source, "v1", layer_tar(5 * 1024 * 1024 + 3))
    out = podman("pull", f"oci:{source}:v1")  # into podman's own storage, as a build would leave it
    assert out.returncode == 0, out.stderr
    image_id = out.stdout.strip().splitlines()[-1]
    out = podman("push", "--tls-verify=false", "--digestfile", str(tmp_path / "digest"), image_id, f"docker://{podman.host}/{repo}:v1")
    assert out.returncode == 0, out.stderr
    pushed = (tmp_path / "digest").read_text().strip()
    # One state: the AWS API describes what podman pushed; every initiation is audited as the registry's.
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(pushed, ["v1"])]
    initiations = [e for e in server.events() if e["type"] == "UploadInitiated" and e["data"]["repositoryName"] == repo]
    assert initiations and all(e["metadata"]["source"] == "oci" and e["metadata"]["principal"] == "test" for e in initiations)
    # Pulled back by tag after the local copy is gone: the same image, under the digest pushed.
    assert podman("rmi", "--force", image_id).returncode == 0
    out = podman("pull", "--tls-verify=false", f"{podman.host}/{repo}:v1")
    assert out.returncode == 0, out.stderr
    out = podman("image", "inspect", "--format", "{{.Id}} {{.Digest}}", f"{podman.host}/{repo}:v1")
    assert out.stdout.split() == [image_id, pushed], out.stdout + out.stderr


@pytest.fixture
def ctr():
    """containerd (Debian's: what Kubernetes nodes, nerdctl and BuildKit push and pull through) in a
    folder of its own, and its `ctr` against it; the native snapshotter, so that no kernel overlay is needed."""
    if os.geteuid() != 0:
        pytest.skip("containerd's daemon runs as root (CI runs as root)")
    base = pathlib.Path(tempfile.mkdtemp(prefix="uc-ctrd-"))  # its socket's path must fit in 108 bytes
    (base / "config.toml").write_text(
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{base}/containerd.sock"\n')
    with open(base / "log", "w") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=log, stderr=subprocess.STDOUT)

    def ctr(*args):
        return subprocess.run(["ctr", "--address", str(base / "containerd.sock"), *args], capture_output=True, text=True, timeout=120)
    try:
        deadline = time.monotonic() + 60
        while ctr("version").returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (base / "log").read_text()[-3000:]
            time.sleep(0.2)
        yield ctr
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a slow host's containerd: never left running, nor failing the test
            daemon.kill()
            daemon.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_containerd_pulls_anonymously_and_pushes_a_tag_anew_and_to_another_repository(server, ecr, repo, skopeo, ctr, tmp_path):
    """containerd pulls through the anonymous token flow, and pushes a new tag of an image whose blobs
    the repository holds: its pusher cannot send a manifest's body twice, and, answered without a
    challenge until that `PUT`, sent it again without its body and hung (a registry that challenges
    every call without credentials, as ECR Public does, never lets it get that far unauthenticated)."""
    source = tmp_path / "source"
    manifest_digest, _ = write_oci_layout(source, "v1", layer_tar(300_000))
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1", f"docker://{skopeo.host}/{repo}:v1")
    image = f"{skopeo.host}/{repo}"
    out = ctr("images", "pull", "--plain-http", "--snapshotter", "native", f"{image}:v1")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert manifest_digest in ctr("images", "ls").stdout

    def token_answers():
        rows = requests.get(server.endpoint + "/metrics", timeout=30).text.splitlines()
        prefix = 'upload_coordinator_registry_requests_total{endpoint="token",outcome="'
        return {row[len(prefix):].split('"')[0]: float(row.split()[-1]) for row in rows if row.startswith(prefix)}
    before = token_answers()
    password = login_password(server)
    other = f"{repo}-copy"
    ecr.create_repository(repositoryName=other)
    for target in (f"{image}:v2", f"{skopeo.host}/{other}:v1"):
        assert ctr("images", "tag", f"{image}:v1", target).returncode == 0
        out = ctr("images", "push", "--plain-http", "--user", f"AWS:{password}", target)
        assert out.returncode == 0, (target, out.stdout[-2000:] + out.stderr)
    # Holding credentials, containerd asks for its tokens by an OAuth2 POST first, taken at once:
    # no refusal sent it back to GET. (One process's counters: behind the PostgreSQL pass's proxy
    # the requests reach two nodes.)
    if not POSTGRES:
        answered = token_answers()
        grew = {outcome: answered.get(outcome, 0) - before.get(outcome, 0) for outcome in answered}
        assert grew.get("ok", 0) >= 2 and all(n == 0 for outcome, n in grew.items() if outcome != "ok"), grew
    tags = lambda name: {d["imageTag"]: d["imageDetail"]["imageDigest"] for d in ecr.describe_image_tags(repositoryName=name)["imageTagDetails"]}
    assert tags(repo) == {"v1": manifest_digest, "v2": manifest_digest}
    assert tags(other) == {"v1": manifest_digest}
    pushes = [e for e in server.events() if e["type"] == "ImagePushed" and e["data"].get("imageTag") in ("v1", "v2")
              and e["data"]["repositoryName"] in (repo, other)]
    assert [(e["data"]["repositoryName"], e["data"]["imageTag"], e["metadata"]["source"], e["metadata"]["principal"]) for e in pushes] == [
        (repo, "v1", "oci", "test"), (repo, "v2", "oci", "test"), (other, "v1", "oci", "test")]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI here (Debian ships it only with its engine)")
def test_docker_login_takes_the_ecr_password_without_an_engine_and_refuses_a_forged_one(server, tmp_path):
    host = f"127.0.0.1:{server.port}"
    password = login_password(server)
    out = run("docker", "--config", str(tmp_path / "forged"), "login", "-u", "AWS", "--password-stdin", host, stdin=password[:-2] + "AA")
    assert out.returncode != 0 and "unauthorized" in out.stderr, out.stdout + out.stderr
    out = run("docker", "--config", str(tmp_path / "docker"), "login", "-u", "AWS", "--password-stdin", host, stdin=password)
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out.stdout + out.stderr
    saved = json.loads((tmp_path / "docker" / "config.json").read_text())["auths"][host]["auth"]
    assert base64.b64decode(saved).decode() == f"AWS:{password}"


class ArtifactRegistry(oras.provider.Registry):
    """The oras SDK, with the one thing its `push` does not take yet: the manifest's artifactType."""
    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest["artifactType"] = self.artifact_type
        return super().upload_manifest(manifest, container)


def test_oras_pushes_and_pulls_an_artifact_found_through_the_referrers_api(server, repo, tmp_path, monkeypatch):
    host = f"127.0.0.1:{server.port}"
    client = ArtifactRegistry(hostname=host, insecure=True)
    client.login(username="AWS", password=login_password(server), hostname=host, tls_verify=False, config_path=str(tmp_path / "config.json"))
    monkeypatch.chdir(tmp_path)  # oras pushes files named relative to the working directory
    pathlib.Path("sbom.json").write_bytes(b'{"packages": ["a", "b"]}\n')
    pathlib.Path("signature.bin").write_bytes(os.urandom(512))

    client.artifact_type = "application/vnd.example.sbom.v1"
    client.push(target=f"{host}/{repo}:sbom", files=["sbom.json:application/json"], quiet=True)
    base = client.get_manifest(f"{host}/{repo}:sbom")
    assert base["artifactType"] == "application/vnd.example.sbom.v1"

    client.artifact_type = "application/vnd.example.signature.v1"
    response = client.push(
        target=f"{host}/{repo}:signature", files=["signature.bin"], subject=oras.oci.Subject.from_manifest(base), quiet=True)
    assert response.headers["OCI-Subject"] == oras.oci.Subject.from_manifest(base).digest

    (tmp_path / "pulled").mkdir()
    pulled = client.pull(target=f"{host}/{repo}:sbom", outdir=str(tmp_path / "pulled"))
    assert [pathlib.Path(p).read_bytes() for p in pulled] == [b'{"packages": ["a", "b"]}\n']

    # The referrers API, anonymously (pulls are open): the signature, and only it under its type's filter.
    subject = oras.oci.Subject.from_manifest(base).digest
    token = requests.get(f"http://{host}/token", params={"scope": f"repository:{repo}:pull"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    index = requests.get(f"http://{host}/v2/{repo}/referrers/{subject}", headers=headers)
    assert index.status_code == 200 and index.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    assert [m["artifactType"] for m in index.json()["manifests"]] == ["application/vnd.example.signature.v1"]
    filtered = requests.get(f"http://{host}/v2/{repo}/referrers/{subject}", headers=headers, params={"artifactType": "application/vnd.other"})
    assert filtered.json()["manifests"] == [] and filtered.headers["OCI-Filters-Applied"] == "artifactType"
