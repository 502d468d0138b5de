"""The whole push flow, and every mistake a client can make in it, through boto3 unchanged."""
import base64
import hashlib
import json
import os

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(ecr, repo, data, part_size=None):
    """Uploads `data` in parts of `part_size` (one part when None); returns (uploadId, digest)."""
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    step = part_size or max(len(data), 1)
    for first in range(0, len(data), step):
        part = data[first:first + step]
        answer = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=first,
                                       partLastByte=first + len(part) - 1, layerPartBlob=part)
        assert answer["lastByteReceived"] == first + len(part) - 1
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha(data)])
    assert done["layerDigest"] == sha(data)
    return upload_id, sha(data)


def manifest(config, layers):
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s} for d, s in layers],
    }, separators=(",", ":"))


def test_whole_flow_create_initiate_three_parts_complete_put_describe_delete(ecr, server, repo):
    layer = os.urandom(5 * MIB) + os.urandom(5 * MIB) + b"tail of the layer"
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)
    assert upload_id["partSize"] == 10485760
    upload_id = upload_id["uploadId"]
    parts = [(0, 5 * MIB), (5 * MIB, 10 * MIB), (10 * MIB, len(layer))]
    for first, end in parts:
        answer = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=first,
                                       partLastByte=end - 1, layerPartBlob=layer[first:end])
        assert answer["lastByteReceived"] == end - 1
        assert answer["registryId"] == "000000000000" and answer["uploadId"] == upload_id
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha(layer)])
    assert done["layerDigest"] == sha(layer)

    config = b'{"architecture":"amd64","os":"linux"}'
    upload(ecr, repo, config)
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(layer), sha(b"absent")])
    assert checked["layers"][0] == {"layerDigest": sha(layer), "layerAvailability": "AVAILABLE", "layerSize": len(layer)}
    assert checked["layers"][1]["layerAvailability"] == "UNAVAILABLE"

    body = manifest((sha(config), len(config)), [(sha(layer), len(layer))])
    image = ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="v1")["image"]
    assert image["imageId"] == {"imageDigest": sha(body.encode()), "imageTag": "v1"}
    assert image["imageManifest"] == body
    assert image["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"

    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(details) == 1 and details[0]["imageTags"] == ["v1"] and details[0]["imageSizeInBytes"] == len(layer)
    tags = ecr.describe_image_tags(repositoryName=repo)["imageTagDetails"]
    assert [t["imageTag"] for t in tags] == ["v1"]

    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert deleted["imageIds"] == [{"imageDigest": sha(body.encode()), "imageTag": "v1"}] and deleted["failures"] == []
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []
    ecr.delete_repository(repositoryName=repo)

    types = [e["type"] for e in server.events() if e["data"].get("repositoryName") == repo]
    assert types == ["RepositoryCreated", "UploadInitiated"] + ["LayerPartUploaded"] * 3 + [
        "LayerUploadCompleted", "UploadInitiated", "LayerPartUploaded", "LayerUploadCompleted",
        "ImagePushed", "ImageUntagged", "ImageDeleted", "RepositoryDeleted"]
    # layer bytes live in the blob store, content-addressed
    blob = os.path.join(server.data_dir, "blobs", "sha256", sha(layer)[7:])
    assert open(blob, "rb").read() == layer


def test_initiate_errors(ecr, repo):
    with pytest.raises(ClientError) as e:
        ecr.initiate_layer_upload(repositoryName="team/missing")
    assert code(e) == "RepositoryNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.initiate_layer_upload(repositoryName="Team/App")
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.initiate_layer_upload(repositoryName=repo, registryId="999999999999")
    assert code(e) == "RegistryNotFoundException"
    assert ecr.initiate_layer_upload(repositoryName=repo, registryId="000000000000")["partSize"] == 10485760
    assert ecr.initiate_layer_upload(repositoryName=repo, registryId="r000000000000")["partSize"] == 10485760


def test_upload_part_errors_carry_last_valid_byte(ecr, repo):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId="00000000-0000-4000-8000-000000000000",
                              partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    assert code(e) == "UploadNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId="not-a-uuid", partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    assert code(e) == "InvalidParameterException"

    ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=9, layerPartBlob=b"0123456789")
    # an exact retry of the last part is answered as before (SDKs retry)
    again = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=9, layerPartBlob=b"0123456789")
    assert again["lastByteReceived"] == 9
    # not contiguous
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=20, partLastByte=29, layerPartBlob=b"0123456789")
    assert code(e) == "InvalidLayerPartException"
    assert e.value.response["lastValidByteReceived"] == 9
    assert e.value.response["uploadId"] == upload_id and e.value.response["repositoryName"] == repo
    # blob length does not match the range
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=10, partLastByte=19, layerPartBlob=b"short")
    assert code(e) == "InvalidLayerPartException" and e.value.response["lastValidByteReceived"] == 9
    # larger than 20 MiB: the model's LayerPartBlob bound, refused as every model bound is, before
    # the upload is looked at (so a part for an unknown upload gets the same answer)
    big = b"\0" * (20 * MIB + 1)
    for target in (upload_id, "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName=repo, uploadId=target, partFirstByte=10, partLastByte=10 + len(big) - 1, layerPartBlob=big)
        assert code(e) == "InvalidParameterException" and "layerPartBlob" in e.value.response["Error"]["Message"]
    # the upload belongs to another repository
    other = repo + "-other"
    ecr.create_repository(repositoryName=other)
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=other, uploadId=upload_id, partFirstByte=10, partLastByte=10, layerPartBlob=b"x")
    assert code(e) == "UploadNotFoundException"
    # still whole: the refused parts wrote nothing
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha(b"0123456789")])
    assert done["layerDigest"] == sha(b"0123456789")


def test_complete_errors(ecr, repo):
    empty = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=empty, layerDigests=[sha(b"")])
    assert code(e) == "EmptyUploadException"

    small = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=small, partFirstByte=0, partLastByte=2, layerPartBlob=b"abc")
    ecr.upload_layer_part(repositoryName=repo, uploadId=small, partFirstByte=3, partLastByte=5, layerPartBlob=b"def")
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=small, layerDigests=[sha(b"abcdef")])
    assert code(e) == "LayerPartTooSmallException"

    wrong = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=wrong, partFirstByte=0, partLastByte=2, layerPartBlob=b"xyz")
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=wrong, layerDigests=[sha(b"not xyz")])
    assert code(e) == "InvalidLayerException"
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=wrong, layerDigests=[sha(b"not xyz"), sha(b"xyz")])["layerDigest"] == sha(b"xyz")
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=wrong, layerDigests=[sha(b"xyz")])
    assert code(e) == "UploadNotFoundException", "a completed upload is gone"

    again = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=again, partFirstByte=0, partLastByte=2, layerPartBlob=b"xyz")
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=again, layerDigests=[sha(b"xyz")])
    assert code(e) == "LayerAlreadyExistsException"


def test_batch_check_failures(ecr, repo):
    answer = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=["notadigest", "sha256:abc"])
    assert answer["failures"] == [{"layerDigest": "notadigest", "failureCode": "InvalidLayerDigest",
                                   "failureReason": "The layer digest is not of the form algorithm:hex"}]
    assert answer["layers"] == [{"layerDigest": "sha256:abc", "layerAvailability": "UNAVAILABLE"}]
    with pytest.raises(ClientError) as e:
        ecr.batch_check_layer_availability(repositoryName="team/none", layerDigests=["sha256:abc"])
    assert code(e) == "RepositoryNotFoundException"
    # Past the model's 1,000 characters (code points: combining marks count one each), the whole
    # call is refused, as every length bound refuses it; at 1,000 the digest is only malformed.
    at_bound = "sha256:" + "a" * 993
    assert ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[at_bound])["layers"][0]["layerAvailability"] == "UNAVAILABLE"
    for long in ("sha256:" + "a" * 994, "a" + "\u0301" * 1000):
        with pytest.raises(ClientError) as e:
            ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=["sha256:abc", long])
        assert code(e) == "InvalidParameterException" and "layerDigests.2.member" in str(e.value)


def test_images_and_their_errors(ecr, repo):
    _, layer = upload(ecr, repo, b"layer bytes")
    _, config = upload(ecr, repo, b"{}")
    body = manifest((config, 2), [(layer, 11)])
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest((config, 2), [(sha(b"never uploaded"), 1)]), imageTag="x")
    assert code(e) == "LayersNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="v1", imageDigest=sha(b"other"))
    assert code(e) == "ImageDigestDoesNotMatchException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest='{"schemaVersion":2}', imageTag="v1")
    assert code(e) == "InvalidParameterException"

    ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="v1", imageDigest=sha(body.encode()))
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="v1")
    assert code(e) == "ImageAlreadyExistsException"
    ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="latest")
    # a tag moves to the newest image that claims it
    other = body.replace('"schemaVersion":2', '"schemaVersion":2,"annotations":{"x":"y"}')
    ecr.put_image(repositoryName=repo, imageManifest=other, imageTag="latest")
    by_digest = {d["imageDigest"]: d.get("imageTags", []) for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert by_digest == {sha(body.encode()): ["v1"], sha(other.encode()): ["latest"]}

    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    assert code(e) == "ImageNotFoundException"
    result = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "nope"}, {"imageDigest": "bad"}, {}])
    assert [f["failureCode"] for f in result["failures"]] == ["ImageNotFound", "InvalidImageDigest", "MissingDigestAndTag"]

    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=repo)
    assert code(e) == "RepositoryNotEmptyException"
    gone = ecr.delete_repository(repositoryName=repo, force=True)["repository"]
    assert gone["repositoryName"] == repo
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo)
    assert code(e) == "RepositoryNotFoundException"


def test_repositories_paginate_and_refuse_duplicates(ecr, repo):
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=repo)
    assert code(e) == "RepositoryAlreadyExistsException"
    names = [f"{repo}/page{i}" for i in range(5)]
    for name in names:
        ecr.create_repository(repositoryName=name)
    seen, pages = [], 0
    for page in ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["repositories"]) <= 2, page["repositories"]
        seen += [r["repositoryName"] for r in page["repositories"]]
        pages += 1
    assert all(n in seen for n in names) and len(seen) == len(set(seen))
    assert pages >= 3, pages  # six repositories at least, two a page
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(maxResults=5000)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[repo, "team/nothere"])
    assert code(e) == "RepositoryNotFoundException"
    registries = ecr.describe_registries()["registries"]
    assert registries[0]["registryId"] == "000000000000" and registries[0]["aliases"][0]["status"] == "ACTIVE"


def test_delete_answers_each_image_id_and_repository_delete_clears_staging(ecr, server, repo):
    _, layer = upload(ecr, repo, b"L")
    _, config = upload(ecr, repo, b"C")
    body = manifest((config, 1), [(layer, 1)])
    ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="a")
    ecr.put_image(repositoryName=repo, imageManifest=body, imageTag="b")
    digest = sha(body.encode())
    result = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}, {"imageDigest": digest}])
    assert result["imageIds"] == [{"imageDigest": digest, "imageTag": "a"}, {"imageDigest": digest}]
    assert result["failures"] == []

    pending = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=pending, partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    staging = os.path.join(server.data_dir, "staging", pending)
    assert os.path.exists(staging)
    ecr.delete_repository(repositoryName=repo)  # no images left, so no force needed; the upload is aborted
    assert not os.path.exists(staging)
    aborted = [e for e in server.events() if e["type"] == "UploadAborted" and e["data"]["uploadId"] == pending]
    assert len(aborted) == 1
