"""Writes the small stores of the layout fixtures beside it: the same calls, made through whatever
the binary of a past layout offered, so that one script makes every fixture.

Usage (from the repository's root):

  python3 Tests/Fixtures/stores/make-store.py --binary BIN --made-by COMMIT --fixture NAME
      Writes a store with BIN (the upload-coordinator built at COMMIT) in a scratch folder, keeps
      its LMDB data files compacted with `mdb_copy -c` in NAME/ beside this script (data.mdb, and
      projections/data.mdb where the layout has that environment: 0010 on), and writes
      NAME/expected.json (see --expected). Refuses a NAME that exists: fixtures are never
      regenerated.
  python3 Tests/Fixtures/stores/make-store.py --expected NAME [--made-by COMMIT]
      (Re)computes NAME/expected.json with the current binaries, on a scratch copy of the fixture:
      `upload-coordinator migrate`, then `upload-replay --json` and `audit root`. Kept from an
      expected.json already there: madeBy, migrations, projectionLayout, rootWhenWritten; and the
      event count, Merkle root, tree size and signed checkpoints must come out as recorded (they
      never change). Run it when a change bumps `Projector.version` or changes what a projection
      holds. --made-by is needed only where there is no expected.json yet.

expected.json (pretty, sorted keys): madeBy; migrations and projectionLayout, read from the fixture
itself (its `__migrations` and its projection checkpoint's version); from the current binaries:
events, rebuildDigest (both rebuilds must agree), liveDigest, merkleRoot and treeSize (`audit root`
and `upload-replay` must agree), signedCheckpoints where the store holds any (0011 on); and
rootWhenWritten where BIN had `audit root`, which must equal merkleRoot or nothing is written.
  python3 Tests/Fixtures/stores/make-store.py [--binary BIN] DIR
      Only writes a store into DIR (new or empty), as the first form does in its scratch folder.

BIN defaults to this checkout's .build/debug/upload-coordinator; `--current DIR` names the folder
of the current upload-coordinator and upload-replay used for expected.json (default: the same).
Needs `mdb_copy` and `mdb_dump` (Debian's lmdb-utils) and, for the signed era, what
Tests/EndToEnd/conftest.py imports (boto3, pytest): its `signed_headers` signs the calls.

The era is told from BIN's own help (or given with --era), and each era makes the calls it can,
in this order:
  CreateRepository fixture/app; for the config and for a layer: InitiateLayerUpload,
  UploadLayerPart (one part), CompleteLayerUpload; PutImage tag v1 (an OCI manifest of both);
  InitiateLayerUpload and UploadLayerPart of 10 bytes, left active; CreateRepository
  fixture/gone; InitiateLayerUpload there; DeleteRepository fixture/gone with force (one call,
  UploadAborted then RepositoryDeleted). 14 events where every call can be made.
  registry  `serve` has the registry front end (--create-repositories-on-push, 5abe106 on;
            the era was added at 6754206, and the fixtures made before it by binaries that
            already had the front end were made with the signed era's calls: `--era signed`
            makes those again): first an upload expired by the sweeper (a `serve` of its
            own with --upload-expiry 1: CreateRepository fixture/idle, InitiateLayerUpload there,
            UploadExpired), then the signed era's 14 calls, then: CreateRepository fixture/other;
            through the registry (Basic credentials from GetAuthorizationToken, `source: oci`) a
            mount of the layer from fixture/app, a blob in two chunks, a session cancelled, an
            artifact whose subject is v1 (a referrer), an image tagged `scratch` pushed and
            deleted; through the API PutImage tag v2 then BatchDeleteImage of it,
            PutRepositoryCatalogData, TagResource, UntagResource, PutRegistryCatalogData,
            SetRepositoryPolicy and DeleteRepositoryPolicy on fixture/other, SetRepositoryPolicy
            on fixture/app; then two calls that change nothing: BatchDeleteImage of a tag
            fixture/app does not have and UntagResource of a key it does not have (from 9a54960
            on, CallAnswered each, the first with its refusal's code from e229237 on; earlier
            binaries record nothing for them). Every type the log has: 37 events at 6754206, 38
            with a manifest list (9278cc8), 40 with two (68e73de), 42 from 9a54960 on.
  signed    `serve` takes --credentials (a0ac8b1 on): every call SigV4-signed by botocore with
            key `test`/`test` and sent with an `amz-sdk-invocation-id` (`inv-…`); the events
            record the principal (`test`) and the invocation id, and from 52688c9 on the request
            digest. 14 events. (Also the calls of cd07e83, 4a89404 and fa5f86a, made before the
            registry era existed: give them `--era signed`.)
  unsigned  `serve` with no authentication (12562b0, 2bdfe64): the same 14 events, sent
            unsigned with the same invocation ids; no principal is recorded.
  cli       no `serve` (3eda32e, 61eedcf): only the CLI's create-repository,
            initiate-layer-upload and delete-repository --force, one process per call, in the
            same order (three initiations in fixture/app: the config's, the layer's and the
            active one); parts, completions and the image are skipped: 8 events, with the CLI's
            metadata (no invocation id, no principal).
Where BIN has `audit root` (2bdfe64 on; 12562b0 has the Merkle tree but no command to print it),
the root it prints right after writing is kept as rootWhenWritten. Only the LMDB data files are
kept: no lock files, blobs, staging, spool, credentials, nor the keys serve makes (the log's
transparency-log.key from 0011 on, registry-token.key).
"""
import argparse, base64, contextlib, hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.error, urllib.parse, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_BIN_DIR = os.path.join(ROOT, ".build", "debug")
KEY = ("test", "test")


def run(*args, check=True):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def subcommands(binary, *path):
    """The subcommand names the binary's help lists (under `path`)."""
    text = run(binary, *path, "--help").stdout
    if "SUBCOMMANDS:" not in text:
        return set()
    block = text.split("SUBCOMMANDS:", 1)[1]
    return set(re.findall(r"^  ([a-z][a-z0-9-]*)\s", block, re.M))


def era_of(binary):
    if "serve" not in subcommands(binary):
        return "cli"
    serve_help = run(binary, "serve", "--help").stdout
    if "--create-repositories-on-push" in serve_help:
        return "registry"
    return "signed" if "--credentials" in serve_help else "unsigned"


def has_audit_root(binary):
    return "audit" in subcommands(binary) and "root" in subcommands(binary, "audit")


# The calls, in order. Each is (operation, body or a function of the earlier answers, invocation id).
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes of the fixture store\n" * 10


def digest(content):
    return "sha256:" + hashlib.sha256(content).hexdigest()


def manifest():
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(LAYER), "size": 330}]})


@contextlib.contextmanager
def serving(binary, data, signed, *extra):
    """Runs `serve` on a free loopback port; yields (endpoint, call), `call(op, body, inv)` making
    one API call (SigV4-signed when `signed`) and returning its answer. Stops it with SIGTERM."""
    scratch = tempfile.mkdtemp(prefix="make-store-")
    args = [binary, "serve", "--data-dir", data, "--port", "0", *extra]
    if signed:
        sys.path.insert(0, os.path.join(HERE, "..", "..", "EndToEnd"))
        from conftest import signed_headers
        cred = os.path.join(scratch, "operator-credentials")
        with open(cred, "w") as f:
            f.write(" ".join(KEY) + "\n")
        args += ["--credentials", cred]
    log = open(os.path.join(scratch, "serve.log"), "w+")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        seen = ""
        for line in p.stdout:  # the ready line: "upload-coordinator listening on http://HOST:PORT (…)"
            seen += line
            if " listening on http" in line:
                break
        else:
            log.seek(0)
            raise SystemExit(f"serve did not start:\n{seen}{log.read()}")
        endpoint = line.split()[3]

        def call(op, body, inv):
            raw = json.dumps(body).encode()
            h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SpencerFrontendService.{op}",
                 "amz-sdk-invocation-id": inv, "User-Agent": "aws-cli/2.fixture"}
            if signed:
                h = signed_headers("POST", endpoint + "/", raw, h, key=KEY)
            req = urllib.request.Request(endpoint + "/", data=raw, headers=h, method="POST")
            try:
                with urllib.request.urlopen(req) as r:
                    return json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                raise SystemExit(f"{op}: {e.code} {e.read()}")

        yield endpoint, call
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=60)
        log.seek(0)
        output = log.read()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if code != 0:
        raise SystemExit(f"serve exited {code}:\n{output}")


def write_through_api(binary, data, era):
    """Makes every call through the API: the expiry first where the era has the registry (its
    own `serve`, whose sweeper ends an upload idle a second), then the 14 calls, then the
    registry era's."""
    signed = era != "unsigned"
    if era == "registry":
        with serving(binary, data, signed, "--upload-expiry", "1", "--sweep-interval", "1") as (_, call):
            call("CreateRepository", {"repositoryName": "fixture/idle"}, "inv-create-idle")
            call("InitiateLayerUpload", {"repositoryName": "fixture/idle"}, "inv-init-idle")
            for _ in range(300):
                if '"UploadExpired"' in run(binary, "events", "--data-dir", data).stdout:
                    break
                time.sleep(0.1)
            else:
                raise SystemExit("the sweeper did not expire the idle upload within 30 s")
    with serving(binary, data, signed) as (endpoint, call):
        def blob(repo, content, tag):
            u = call("InitiateLayerUpload", {"repositoryName": repo}, f"inv-init-{tag}")["uploadId"]
            call("UploadLayerPart", {"repositoryName": repo, "uploadId": u, "partFirstByte": 0, "partLastByte": len(content) - 1,
                                     "layerPartBlob": base64.b64encode(content).decode()}, f"inv-part-{tag}")
            call("CompleteLayerUpload", {"repositoryName": repo, "uploadId": u, "layerDigests": [digest(content)]}, f"inv-complete-{tag}")

        call("CreateRepository", {"repositoryName": "fixture/app"}, "inv-create-app")
        blob("fixture/app", CONFIG, "config")
        blob("fixture/app", LAYER, "layer")
        call("PutImage", {"repositoryName": "fixture/app", "imageManifest": manifest(), "imageTag": "v1"}, "inv-put-v1")
        u2 = call("InitiateLayerUpload", {"repositoryName": "fixture/app"}, "inv-init-active")["uploadId"]
        call("UploadLayerPart", {"repositoryName": "fixture/app", "uploadId": u2, "partFirstByte": 0, "partLastByte": 9,
                                 "layerPartBlob": base64.b64encode(b"0123456789").decode()}, "inv-part-active")
        call("CreateRepository", {"repositoryName": "fixture/gone"}, "inv-create-gone")
        call("InitiateLayerUpload", {"repositoryName": "fixture/gone"}, "inv-init-gone")
        call("DeleteRepository", {"repositoryName": "fixture/gone", "force": True}, "inv-delete-gone")
        if era == "registry":
            registry_calls(endpoint, call)


REGISTRY_ID = "000000000000"
CHUNKED = b"a registry blob, pushed in two chunks\n" * 8
ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"


def artifact():
    """An artifact whose subject is v1's manifest: a referrer."""
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": ARTIFACT_TYPE, "digest": digest(LAYER), "size": len(LAYER)}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest().encode()), "size": len(manifest())}})


def scratch_image():
    """An image of fixture/other's two blobs (the mounted layer and the chunked one), pushed then deleted."""
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(CHUNKED), "size": len(CHUNKED)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(LAYER), "size": len(LAYER)}]})


def registry_calls(endpoint, call):
    """The registry era's calls, after the 14: registry pushes (their metadata says `source: oci`),
    a mount, a referrer, a manifest list, a manifest deleted, a tag untagged, and the catalog, tag and policy events:
    with the expiry before the 14, every event type the log has."""
    token = call("GetAuthorizationToken", {}, "inv-token")["authorizationData"]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def registry(method, path, body=None, **headers):
        """One registry request (Basic credentials, as `docker login` keeps them); its status and headers."""
        url = urllib.parse.urljoin(endpoint + "/", path)
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": auth, "User-Agent": "fixture-registry-client", **headers})
        try:
            with urllib.request.urlopen(req) as r:
                r.read()
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{method} {path}: {e.code} {e.read()}")

    def with_digest(location, content):
        return location + ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(digest(content))

    call("CreateRepository", {"repositoryName": "fixture/other"}, "inv-create-other")
    status, _ = registry("POST", f"/v2/fixture/other/blobs/uploads/?mount={digest(LAYER)}&from=fixture/app")
    assert status == 201, status
    half = len(CHUNKED) // 2
    status, headers = registry("POST", "/v2/fixture/other/blobs/uploads/")
    assert status == 202, status
    status, headers = registry("PATCH", headers["Location"], CHUNKED[:half], **{
        "Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"})
    assert status == 202, status
    status, _ = registry("PUT", with_digest(headers["Location"], CHUNKED), CHUNKED[half:], **{
        "Content-Type": "application/octet-stream", "Content-Range": f"{half}-{len(CHUNKED) - 1}"})
    assert status == 201, status
    status, headers = registry("POST", "/v2/fixture/other/blobs/uploads/")
    status, _ = registry("DELETE", headers["Location"])
    assert status == 204, status
    oci = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    status, headers = registry("PUT", f"/v2/fixture/app/manifests/{digest(artifact().encode())}", artifact().encode(), **oci)
    assert status == 201 and headers.get("OCI-Subject") == digest(manifest().encode()), (status, dict(headers))
    # A manifest list naming v1's manifest (since 9278cc8's layout 10, which keys the lists naming each image).
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest().encode()), "size": len(manifest())}]})
    status, _ = registry("PUT", "/v2/fixture/app/manifests/multi", index.encode(), **{"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert status == 201, status
    # And a second list, deleted (since layout 11's stores): a deleted list names nothing any more.
    gone = json.dumps({**json.loads(index), "annotations": {"fixture": "deleted"}})
    status, _ = registry("PUT", "/v2/fixture/app/manifests/multi-old", gone.encode(), **{"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert status == 201, status
    status, _ = registry("DELETE", f"/v2/fixture/app/manifests/{digest(gone.encode())}")
    assert status == 202, status
    status, _ = registry("PUT", "/v2/fixture/other/manifests/scratch", scratch_image().encode(), **oci)
    assert status == 201, status
    status, _ = registry("DELETE", f"/v2/fixture/other/manifests/{digest(scratch_image().encode())}")
    assert status == 202, status
    call("PutImage", {"repositoryName": "fixture/app", "imageManifest": manifest(), "imageTag": "v2"}, "inv-put-v2")
    call("BatchDeleteImage", {"repositoryName": "fixture/app", "imageIds": [{"imageTag": "v2"}]}, "inv-untag-v2")
    arn = f"arn:aws:ecr-public::{REGISTRY_ID}:repository/fixture/app"
    call("PutRepositoryCatalogData", {"repositoryName": "fixture/app", "catalogData": {
        "description": "The fixture's repository", "architectures": ["x86-64"], "aboutText": "# About\nA fixture."}}, "inv-catalog-app")
    call("TagResource", {"resourceArn": arn, "tags": [{"Key": "team", "Value": "fixtures"}, {"Key": "keep", "Value": "yes"}]}, "inv-tag-app")
    call("UntagResource", {"resourceArn": arn, "tagKeys": ["team"]}, "inv-untag-app")
    call("PutRegistryCatalogData", {"displayName": "fixture-registry"}, "inv-registry-catalog")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "NoBob", "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::123456789012:user/bob"},
                                                                   "Action": ["ecr-public:PutImage"]}]})
    call("SetRepositoryPolicy", {"repositoryName": "fixture/other", "policyText": policy}, "inv-policy-other")
    call("DeleteRepositoryPolicy", {"repositoryName": "fixture/other"}, "inv-unpolicy-other")
    call("SetRepositoryPolicy", {"repositoryName": "fixture/app", "policyText": policy}, "inv-policy-app")
    # Calls that change nothing: CallAnswered, from 9a54960 on (nothing before it).
    call("BatchDeleteImage", {"repositoryName": "fixture/app", "imageIds": [{"imageTag": "never"}]}, "inv-delete-never")
    call("UntagResource", {"resourceArn": arn, "tagKeys": ["never"]}, "inv-untag-never")


def write_through_cli(binary, data):
    """The CLI's commands only, one process each: the calls of the API that it can make."""
    def cli(*args):
        run(binary, *args, "--data-dir", data)
    cli("create-repository", "--repository-name", "fixture/app")
    for _ in ("config", "layer", "active"):
        cli("initiate-layer-upload", "--repository-name", "fixture/app")
    cli("create-repository", "--repository-name", "fixture/gone")
    cli("initiate-layer-upload", "--repository-name", "fixture/gone")
    cli("delete-repository", "--repository-name", "fixture/gone", "--force")


ERAS = ("cli", "unsigned", "signed", "registry")


def write_store(binary, data, era=None):
    """Writes the store into `data` with the calls of `era` (by default BIN's own, `era_of`);
    returns (era, the root BIN prints for it, or None)."""
    os.makedirs(data, exist_ok=True)
    if os.listdir(data):
        raise SystemExit(f"{data} is not empty")
    era = era or era_of(binary)
    if era == "cli":
        write_through_cli(binary, data)
    else:
        write_through_api(binary, data, era)
    root = json.loads(run(binary, "audit", "root", "--data-dir", data).stdout) if has_audit_root(binary) else None
    return era, root


def lmdb_files(data):
    """The LMDB data files of a store: data.mdb, and projections/data.mdb where there (0010 on)."""
    return [rel for rel in ("data.mdb", os.path.join("projections", "data.mdb")) if os.path.exists(os.path.join(data, rel))]


def compact(src, dest):
    os.makedirs(dest)
    for rel in lmdb_files(src):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        run("mdb_copy", "-c", "-n", os.path.join(src, rel), os.path.join(dest, rel))


def scratch_copy(fixture):
    """A copy of a fixture's data files in a new folder, so that nothing touches the committed ones
    (even reading one with the LMDB tools leaves a lock file beside it)."""
    copy = tempfile.mkdtemp(prefix="fixture-")
    for rel in lmdb_files(fixture):
        os.makedirs(os.path.dirname(os.path.join(copy, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(fixture, rel), os.path.join(copy, rel))
    return copy


def dump(path, db):
    """The keys and values of one named database (mdb_dump -p), as a list of (key, value) bytes; [] if none."""
    r = run("mdb_dump", "-n", "-p", "-s", db, path, check=False)
    if r.returncode != 0:
        return []
    body = r.stdout.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0].splitlines()

    def unescape(line):
        s, out, i = line[1:], bytearray(), 0
        while i < len(s):
            if s[i] == "\\" and s[i + 1] == "\\":
                out.append(0x5C); i += 2
            elif s[i] == "\\":
                out.append(int(s[i + 1:i + 3], 16)); i += 3
            else:
                out += s[i].encode(); i += 1
        return bytes(out)
    return [(unescape(body[i]), unescape(body[i + 1])) for i in range(0, len(body) - 1, 2)]


def layout_of(copy):
    """The migrations a store records as applied, and the projection layout its checkpoint names."""
    applied = dump(os.path.join(copy, "data.mdb"), "__migrations")  # id -> its index, big-endian
    migrations = [k.decode() for k, _ in sorted(applied, key=lambda kv: int.from_bytes(kv[1], "big"))]
    version = None
    for rel in ("data.mdb", os.path.join("projections", "data.mdb")):
        if os.path.exists(os.path.join(copy, rel)):
            for k, v in dump(os.path.join(copy, rel), "projection-state"):
                if k == b"version":
                    version = int.from_bytes(v, "big")
    return migrations, version


def expected(name, current_dir, made_by=None, root_when_written=None):
    """Computes NAME/expected.json with the current binaries on a scratch copy; returns it."""
    fixture = os.path.join(HERE, name)
    path = os.path.join(fixture, "expected.json")
    old = json.load(open(path)) if os.path.exists(path) else {}
    copy = scratch_copy(fixture)
    try:
        migrations, version = layout_of(copy)
        coordinator = os.path.join(current_dir, "upload-coordinator")
        run(coordinator, "migrate", "--data-dir", copy)
        # The fixtures hold stores only, no blobs: the store alone is checked.
        r = run(os.path.join(current_dir, "upload-replay"), "--data-dir", copy, "--json", "--blobs", "none", check=False)
        report = json.loads(r.stdout)
        if r.returncode != 0 or not report.get("ok"):
            raise SystemExit(f"{name}: upload-replay failed (exit {r.returncode}): {r.stdout}{r.stderr}")
        root = json.loads(run(coordinator, "audit", "root", "--data-dir", copy).stdout)
    finally:
        shutil.rmtree(copy)
    rebuilds = set(report["rebuildDigests"])
    if len(rebuilds) != 1:
        raise SystemExit(f"{name}: the rebuild digests differ: {report['rebuildDigests']}")
    if root["rootHash"] != report["merkleRoot"] or root["treeSize"] != report["events"]:
        raise SystemExit(f"{name}: audit root {root} disagrees with upload-replay {report['merkleRoot']} of {report['events']} events")
    result = {
        "madeBy": old.get("madeBy") or made_by,
        "migrations": old.get("migrations") or migrations,
        "projectionLayout": old.get("projectionLayout") or version,
        "events": report["events"],
        "rebuildDigest": rebuilds.pop(),
        "liveDigest": report["liveDigest"],
        "merkleRoot": root["rootHash"],
        "treeSize": root["treeSize"],
    }
    if report.get("signedCheckpoints"):
        result["signedCheckpoints"] = report["signedCheckpoints"]
    if not result["madeBy"]:
        raise SystemExit(f"{name}: say which commit wrote it (--made-by)")
    when_written = old.get("rootWhenWritten") or root_when_written
    if when_written:
        result["rootWhenWritten"] = when_written
    for key in ("events", "merkleRoot", "treeSize", "signedCheckpoints"):
        if key in old and old[key] != result[key]:
            raise SystemExit(f"{name}: {key} was {old[key]}, now {result[key]}: the log of a fixture never changes")
    if when_written and when_written != result["merkleRoot"]:
        raise SystemExit(f"{name}: the root when written ({when_written}) is not the root now ({result['merkleRoot']})")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return result


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--binary", default=os.path.join(DEFAULT_BIN_DIR, "upload-coordinator"))
    a.add_argument("--current", default=DEFAULT_BIN_DIR, help="folder of the current upload-coordinator and upload-replay")
    a.add_argument("--made-by", help="the commit BIN was built from")
    a.add_argument("--era", choices=ERAS, help="the calls to make, when not BIN's own era (see above)")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--fixture", metavar="NAME", help="make NAME/ beside this script")
    g.add_argument("--expected", metavar="NAME", help="(re)compute NAME/expected.json")
    g.add_argument("dir", nargs="?", help="only write a store into DIR")
    o = a.parse_args()
    binary = os.path.abspath(o.binary)
    if o.dir:
        era, root = write_store(binary, o.dir, o.era)
        print(json.dumps({"era": era, "root": root}))
    elif o.expected:
        print(json.dumps(expected(o.expected, o.current, o.made_by), indent=2, sort_keys=True))
    else:
        if not o.made_by:
            raise SystemExit("--fixture needs --made-by COMMIT")
        dest = os.path.join(HERE, o.fixture)
        if os.path.exists(dest):
            raise SystemExit(f"{dest} exists: fixtures are never regenerated")
        raw = tempfile.mkdtemp(prefix="store-")
        try:
            era, root = write_store(binary, os.path.join(raw, "data"), o.era)
            compact(os.path.join(raw, "data"), dest)
        finally:
            shutil.rmtree(raw)
        result = expected(o.fixture, o.current, o.made_by, root and root["rootHash"])
        print(json.dumps({"era": era, "rootWhenWritten": root, **result}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
