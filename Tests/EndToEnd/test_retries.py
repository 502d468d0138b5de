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
