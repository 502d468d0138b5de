"""Bad input never crashes the server or writes an event: each gets an AWS-shaped 4xx."""
import json
import socket
import time
import urllib.parse

import pytest

from test_protocol import post

CASES = [
    # (target, body, expected __type)
    ("InitiateLayerUpload", b"{", "SerializationException"),
    ("InitiateLayerUpload", b"[]", "SerializationException"),
    ("InitiateLayerUpload", b'"text"', "SerializationException"),
    ("InitiateLayerUpload", b'{"repositoryName": 12}', "SerializationException"),
    ("InitiateLayerUpload", b'{"repositoryName": null}', "InvalidParameterException"),
    ("InitiateLayerUpload", b"{}", "InvalidParameterException"),
    ("InitiateLayerUpload", '{"repositoryName": "tëam/app"}'.encode(), "InvalidParameterException"),
    ("InitiateLayerUpload", b'{"repositoryName": "team/\\u0000app"}', "InvalidParameterException"),
    ("InitiateLayerUpload", b'{"repositoryName": "team\\napp"}', "InvalidParameterException"),
    ("InitiateLayerUpload", b'{"repositoryName": "team/app", "registryId": ""}', "InvalidParameterException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "x", "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "AA=="}', "InvalidParameterException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": -1, "partLastByte": 0, "layerPartBlob": "AA=="}', "InvalidParameterException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 1e400, "partLastByte": 0, "layerPartBlob": "AA=="}', "SerializationException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 99999999999999999999999, "partLastByte": 0, "layerPartBlob": "AA=="}', "SerializationException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "%%%"}', "SerializationException"),
    ("UploadLayerPart", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": "0", "partLastByte": 0, "layerPartBlob": "AA=="}', "SerializationException"),
    ("CompleteLayerUpload", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "layerDigests": ["bad"]}', "InvalidParameterException"),
    ("CompleteLayerUpload", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "layerDigests": []}', "InvalidParameterException"),
    ("CompleteLayerUpload", b'{"repositoryName": "team/app", "uploadId": "00000000-0000-4000-8000-000000000000", "layerDigests": "sha256:aa"}', "SerializationException"),
    ("PutImage", b'{"repositoryName": "team/app", "imageManifest": "not json"}', "InvalidParameterException"),
    ("PutImage", b'{"repositoryName": "team/app", "imageManifest": ""}', "InvalidParameterException"),
    ("DescribeRepositories", b'{"maxResults": 0}', "InvalidParameterException"),
    ("DescribeRepositories", b'{"registryId": "abc"}', "InvalidParameterException"),
    ("DescribeRepositories", b'{"nextToken": "!!!"}', "InvalidParameterException"),
    ("BatchDeleteImage", b'{"repositoryName": "team/app", "imageIds": [1]}', "SerializationException"),
    # A member no operation reads still makes the body one Foundation, and Go's decoders, refuse.
    ("InitiateLayerUpload", b'{"repositoryName": "team/app", "unread": [1e400]}', "SerializationException"),
    ("InitiateLayerUpload", b'{"repositoryName": "team/app",}', "SerializationException"),
]


@pytest.mark.parametrize("target,body,expected", CASES)
def test_bad_request_gets_the_named_4xx_and_writes_nothing(server, target, body, expected):
    before = len(server.events())
    status, headers, answer = post(server, "SpencerFrontendService." + target, body)
    assert 400 <= status < 500, (status, answer)
    assert answer["__type"] == expected, answer
    assert headers["x-amzn-ErrorType"] == expected
    assert len(server.events()) == before


def raw_connection(server):
    host = urllib.parse.urlparse(server.endpoint)
    return socket.create_connection((host.hostname, host.port), timeout=10)


def test_slow_and_half_closed_connections_do_not_hurt_the_server(server):
    # a request cut off in its headers, one cut off in its body, one dribbled byte by byte
    cut_headers = raw_connection(server)
    cut_headers.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar")
    cut_headers.shutdown(socket.SHUT_WR)
    cut_body = raw_connection(server)
    cut_body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"repo")
    cut_body.close()
    slow = raw_connection(server)
    for byte in b"POST / HTTP/1.1\r\nHost: x\r\n":
        slow.send(bytes([byte]))
        time.sleep(0.005)
    garbage = raw_connection(server)
    garbage.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n")
    garbage.close()
    # the server still answers everyone else
    status, _, answer = post(server, "SpencerFrontendService.DescribeRegistries", b"{}")
    assert status == 200 and answer["registries"]
    for s in (cut_headers, slow):
        s.close()
