"""SDK retries are answered from the log's recent window, by whichever process shares the store."""
import json
import tempfile

from test_attacks import TARGET, Served, error_of, post


def test_a_retry_sent_to_another_process_on_the_same_store_gets_the_original_answer():
    with tempfile.TemporaryDirectory() as data_dir:
        a, b = Served(data_dir), Served(data_dir)
        try:
            # b writes first, so its retry window is valid at a position that a then moves past.
            status, _, _ = post(b, TARGET + "CreateRepository", json.dumps({"repositoryName": "shared/app"}).encode())
            assert status == 200
            invocation = {"amz-sdk-invocation-id": "5b0e2a4c-6f1d-4e8a-9c3b-7d2f1e0a9b8c"}
            initiate = json.dumps({"repositoryName": "shared/app"}).encode()
            status, _, first = post(a, TARGET + "InitiateLayerUpload", initiate, invocation)
            assert status == 200, first
            status, _, again = post(b, TARGET + "InitiateLayerUpload", initiate, invocation)
            assert status == 200 and again == first, (again, first)
            # The same id with another body, sent to the process that did not record it, is refused.
            other = json.dumps({"repositoryName": "shared/app", "registryId": "000000000000"}).encode()
            status, headers, body = post(b, TARGET + "InitiateLayerUpload", other, invocation)
            error_of(status, headers, body, 400, "IdempotentParameterMismatchException")
            initiations = [e for e in a.events() if e["type"] == "UploadInitiated"]
            assert [e["data"]["uploadId"] for e in initiations] == [first["uploadId"]]
        finally:
            statuses = (a.stop(), b.stop())
            assert statuses == (0, 0), statuses


def test_a_process_decides_from_what_another_process_wrote_since_its_own_last_batch():
    with tempfile.TemporaryDirectory() as data_dir:
        a, b = Served(data_dir), Served(data_dir)
        try:
            initiate = json.dumps({"repositoryName": "late/app"}).encode()
            # a's writer reads the repository as absent, and refuses.
            status, headers, body = post(a, TARGET + "InitiateLayerUpload", initiate)
            error_of(status, headers, body, 400, "RepositoryNotFoundException")
            # b creates it, projections and all, in its own transactions.
            status, _, _ = post(b, TARGET + "CreateRepository", json.dumps({"repositoryName": "late/app"}).encode())
            assert status == 200
            # a's next batch must not decide from what its last one read.
            status, _, started = post(a, TARGET + "InitiateLayerUpload", initiate)
            assert status == 200, started
        finally:
            statuses = (a.stop(), b.stop())
            assert statuses == (0, 0), statuses


def test_a_call_that_changed_nothing_is_answered_as_it_was_after_a_restart_and_keeps_its_id():
    """A BatchDeleteImage whose every id was refused and an UntagResource of a key not there record
    CallAnswered: their retries, after a restart and after the tag and the key were put there, are
    answered as the first attempts were and take nothing away."""
    with tempfile.TemporaryDirectory() as data_dir:
        first = Served(data_dir)
        try:
            status, _, created = post(first, TARGET + "CreateRepository", json.dumps({"repositoryName": "quiet/app"}).encode())
            assert status == 200, created
            arn = created["repository"]["repositoryArn"]
            delete = json.dumps({"repositoryName": "quiet/app", "imageIds": [{"imageTag": "v1"}]}).encode()
            untag = json.dumps({"resourceArn": arn, "tagKeys": ["env"]}).encode()
            delete_id = {"amz-sdk-invocation-id": "9e1f4b2a-3c5d-4e6f-8a7b-0c1d2e3f4a5b"}
            untag_id = {"amz-sdk-invocation-id": "9e1f4b2a-3c5d-4e6f-8a7b-untag"}
            status, _, refused = post(first, TARGET + "BatchDeleteImage", delete, delete_id)
            assert status == 200 and [f["failureCode"] for f in refused["failures"]] == ["ImageNotFound"], refused
            status, _, untagged = post(first, TARGET + "UntagResource", untag, untag_id)
            assert status == 200, untagged
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
            status, _, pushed = post(first, TARGET + "PutImage", json.dumps({"repositoryName": "quiet/app", "imageManifest": index, "imageTag": "v1"}).encode())
            assert status == 200, pushed
            status, _, _ = post(first, TARGET + "TagResource", json.dumps({"resourceArn": arn, "tags": [{"Key": "env", "Value": "prod"}]}).encode())
            assert status == 200
        finally:
            assert first.stop() == 0
        again = Served(data_dir)
        try:
            before = again.events()
            answered = [(e["data"]["operation"], e["metadata"]["invocationId"]) for e in before if e["type"] == "CallAnswered"]
            assert answered == [("BatchDeleteImage", delete_id["amz-sdk-invocation-id"]), ("UntagResource", untag_id["amz-sdk-invocation-id"])], answered
            status, _, refused_again = post(again, TARGET + "BatchDeleteImage", delete, delete_id)
            assert status == 200 and refused_again == refused, (refused_again, refused)
            status, _, untagged_again = post(again, TARGET + "UntagResource", untag, untag_id)
            assert status == 200 and untagged_again == untagged
            status, headers, body = post(again, TARGET + "BatchDeleteImage", json.dumps({"repositoryName": "quiet/app", "imageIds": [{"imageTag": "v2"}]}).encode(), delete_id)
            error_of(status, headers, body, 400, "IdempotentParameterMismatchException")
            assert again.events() == before, "the retries and the refusal wrote nothing"
            status, _, images = post(again, TARGET + "DescribeImages", json.dumps({"repositoryName": "quiet/app"}).encode())
            assert [d.get("imageTags") for d in images["imageDetails"]] == [["v1"]], images
            status, _, tags = post(again, TARGET + "ListTagsForResource", json.dumps({"resourceArn": arn}).encode())
            assert tags["tags"] == [{"Key": "env", "Value": "prod"}], tags
        finally:
            assert again.stop() == 0


def test_a_batch_delete_that_deleted_some_ids_answers_its_refusals_as_they_were_after_a_restart():
    """A multi-arch clean-up naming an image's tag before its list deletes the list and refuses the
    tag for it; each id's outcome is recorded (CallAnswered, after the deletion), so its retry,
    after a restart and with the tag moved to another image since, answers it again, not as a tag
    that was not there."""
    with tempfile.TemporaryDirectory() as data_dir:
        first = Served(data_dir)
        try:
            status, _, _ = post(first, TARGET + "CreateRepository", json.dumps({"repositoryName": "multi/app"}).encode())
            assert status == 200

            def push(manifest, tag):
                status, _, pushed = post(first, TARGET + "PutImage", json.dumps({"repositoryName": "multi/app", "imageManifest": manifest, "imageTag": tag}).encode())
                assert status == 200, pushed
                return pushed["image"]["imageId"]["imageDigest"]

            child = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
            child_digest = push(child, "c")
            listed = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": child_digest, "size": len(child)}]})
            list_digest = push(listed, "all")
            clean_up = json.dumps({"repositoryName": "multi/app", "imageIds": [{"imageTag": "c"}, {"imageDigest": list_digest}]}).encode()
            clean_up_id = {"amz-sdk-invocation-id": "7c6d5e4f-3a2b-4c1d-8e9f-multi"}
            status, _, cleaned = post(first, TARGET + "BatchDeleteImage", clean_up, clean_up_id)
            assert status == 200, cleaned
            assert [i["imageDigest"] for i in cleaned["imageIds"]] == [list_digest]
            assert [f["failureCode"] for f in cleaned["failures"]] == ["ImageReferencedByManifestList"], cleaned
            push(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [], "annotations": {"n": "moved"}}), "c")
        finally:
            assert first.stop() == 0
        again = Served(data_dir)
        try:
            before = again.events()
            call = [e for e in before if e["metadata"].get("invocationId") == clean_up_id["amz-sdk-invocation-id"]]
            assert [e["type"] for e in call] == ["ImageDeleted", "CallAnswered"], call
            assert call[-1]["data"]["failureCodes"] == ["ImageReferencedByManifestList", ""], call[-1]
            status, _, cleaned_again = post(again, TARGET + "BatchDeleteImage", clean_up, clean_up_id)
            assert status == 200, cleaned_again
            assert cleaned_again["imageIds"] == cleaned["imageIds"]
            assert [f["failureCode"] for f in cleaned_again["failures"]] == ["ImageReferencedByManifestList"], cleaned_again
            assert again.events() == before, "the retry wrote nothing"
            status, _, images = post(again, TARGET + "DescribeImages", json.dumps({"repositoryName": "multi/app"}).encode())
            assert sorted(d.get("imageTags", []) for d in images["imageDetails"]) == [[], ["c"]], images
        finally:
            assert again.stop() == 0
