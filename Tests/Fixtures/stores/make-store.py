"""Writes a small store through a real `serve` and signed requests, for the layout fixtures beside it.

Usage: python3 Tests/Fixtures/stores/make-store.py DIR   (then `mdb_copy -c DIR layout-NNNN`).
Run it with the binary of the layout being frozen; the store it made is committed, the script only
says how."""
import json, os, subprocess, sys, tempfile, hashlib, base64, urllib.request, signal
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "EndToEnd"))
from conftest import signed_headers
BIN = os.path.join(HERE, "..", "..", "..", ".build", "debug", "upload-coordinator")
data = sys.argv[1]
os.makedirs(data, exist_ok=True)
cred = os.path.join(data, "operator-credentials")
open(cred, "w").write("test test\n")
p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--port", "0", "--credentials", cred], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
line = p.stdout.readline(); endpoint = line.split()[3]
def call(op, body, inv):
    raw = json.dumps(body).encode()
    h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SpencerFrontendService.{op}", "amz-sdk-invocation-id": inv, "User-Agent": "aws-cli/2.fixture"}
    h = signed_headers("POST", endpoint + "/", raw, h)
    req = urllib.request.Request(endpoint + "/", data=raw, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req) as r: return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{op}: {e.code} {e.read()}")
def blob(repo, content, tag):
    u = call("InitiateLayerUpload", {"repositoryName": repo}, f"inv-init-{tag}")["uploadId"]
    call("UploadLayerPart", {"repositoryName": repo, "uploadId": u, "partFirstByte": 0, "partLastByte": len(content)-1, "layerPartBlob": base64.b64encode(content).decode()}, f"inv-part-{tag}")
    d = "sha256:" + hashlib.sha256(content).hexdigest()
    call("CompleteLayerUpload", {"repositoryName": repo, "uploadId": u, "layerDigests": [d]}, f"inv-complete-{tag}")
    return d
call("CreateRepository", {"repositoryName": "fixture/app"}, "inv-create-app")
config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
cd = blob("fixture/app", config, "config")
ld = blob("fixture/app", b"layer bytes of the fixture store\n" * 10, "layer")
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": 330}]})
call("PutImage", {"repositoryName": "fixture/app", "imageManifest": manifest, "imageTag": "v1"}, "inv-put-v1")
u2 = call("InitiateLayerUpload", {"repositoryName": "fixture/app"}, "inv-init-active")["uploadId"]
call("UploadLayerPart", {"repositoryName": "fixture/app", "uploadId": u2, "partFirstByte": 0, "partLastByte": 9, "layerPartBlob": base64.b64encode(b"0123456789").decode()}, "inv-part-active")
call("CreateRepository", {"repositoryName": "fixture/gone"}, "inv-create-gone")
call("InitiateLayerUpload", {"repositoryName": "fixture/gone"}, "inv-init-gone")
call("DeleteRepository", {"repositoryName": "fixture/gone", "force": True}, "inv-delete-gone")
p.send_signal(signal.SIGTERM); print("serve exit", p.wait())
