"""The transparency log, checked from outside by an independent verifier (tlog_verifier.py, written from
RFC 9162 and the C2SP specs, not from the server's code).

The first tests check the verifier itself against published vectors and against proofs built from the
RFC's definitions, so that its rejections below mean something. Then, against real servers: signed
checkpoints (and forged ones), consistency and inclusion proofs between many sizes checked against
roots we compute ourselves from the entry bundles, the tree rebuilt from tiles alone, malformed
requests, authentication, entries over 64 KiB, and a history rewritten on disk behind the log's back.
"""
import base64
import contextlib
import html
import json
import os
import pathlib
import random
import shutil
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import lmdb
import pytest
import requests
from botocore.config import Config

import tlog_verifier as tv
from conftest import BIN, Server, serving, signed_headers
from test_layer_flow import upload

KNOWN_ORIGIN = "tlog-test.example/upload-coordinator"
KNOWN_KEY_NAME = "tlog-test.example/log-key"
KNOWN_EVENTS = 520  # two full level-0 tiles, a partial one of width 8 and a level-1 partial of width 2


# ---------------------------------------------------------------------------------------------
# Helpers


def b64(data):
    return base64.b64encode(data).decode()


def hashes(values):
    return [base64.b64decode(v, validate=True) for v in values]


from conftest import tool  # noqa: E402  (on a PostgreSQL server's data directory, on its database too)


def audit(data_dir, *args):
    """`upload-coordinator audit ARGS --data-dir DIR`; must succeed."""
    out = tool("upload-coordinator", "audit", *args, "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def verify_consistency_cli(tmp_path, old, new, proof, key, said=None):
    """`audit verify-consistency` on two notes and a proof body; its exit status (checking first,
    when `said` is given, that its standard error says that)."""
    paths = {}
    for name, content in [("old", old), ("new", new), ("proof", proof)]:
        paths[name] = tmp_path / f"cli-{name}-{time.monotonic_ns()}"
        paths[name].write_bytes(content)
    out = tool("upload-coordinator", "audit", "verify-consistency", "--old", str(paths["old"]), "--new", str(paths["new"]),
               "--proof", str(paths["proof"]), "--public-key", str(key))
    assert said is None or said in out.stderr, out.stderr
    return out.returncode


def proof_body(proof):
    return json.dumps({"consistency": [b64(h) for h in proof]}).encode()


def post(endpoint, operation, body, session=None, user_agent=None):
    """An unsigned AWS JSON 1.1 call, for servers run with --allow-anonymous."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SpencerFrontendService.{operation}"}
    if user_agent:
        headers["User-Agent"] = user_agent
    response = (session or requests).post(endpoint + "/", data=json.dumps(body), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def initiate_many(endpoint, repository, count, workers=8):
    """`count` InitiateLayerUpload calls (one event each), several at a time."""
    local = threading.local()

    def one(_):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        post(endpoint, "InitiateLayerUpload", {"repositoryName": repository}, local.session)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))


@contextlib.contextmanager
def running(data_dir, *flags):
    """An anonymous server on a data directory the test keeps; it must exit 0 on SIGTERM."""
    server = Server(str(data_dir), "--allow-anonymous", *flags)
    try:
        yield server
    finally:
        status = server.stop()
    assert status == 0, "serve must exit cleanly on SIGTERM"


class Log:
    """A server's /log endpoints over one keep-alive connection."""

    def __init__(self, server, sign_bundles=False):
        self.server = server
        self.sign_bundles = sign_bundles
        self.http = requests.Session()
        self.fetched = []

    def get(self, path, signed=False):
        url = f"{self.server.endpoint}/log/{path}"
        return self.http.get(url, headers=signed_headers("GET", url) if signed else {}, timeout=30)

    def fetch(self, path):
        """fetch(path) -> bytes for the verifier: tiles, and bundles (signed if the server needs it)."""
        self.fetched.append(path)
        response = self.get(path, signed=self.sign_bundles and path.startswith("tile/entries"))
        if response.status_code != 200:
            raise tv.TileError(f"GET /log/{path}: {response.status_code} {response.text[:200]}")
        return response.content

    def checkpoint(self):
        response = self.get("checkpoint")
        assert response.status_code == 200, response.text
        return response.content

    def wait_for_checkpoint(self, size, timeout=10):
        """The served checkpoint note, once it covers at least `size` leaves (it may lag a signing interval)."""
        deadline = time.monotonic() + timeout
        while True:
            note = self.checkpoint()
            if tv.read_checkpoint(note).size >= size or time.monotonic() > deadline:
                return note
            time.sleep(0.05)

    def consistency(self, first, second):
        response = self.get(f"proof/consistency?first={first}&second={second}")
        assert response.status_code == 200, (first, second, response.text)
        return hashes(response.json()["consistency"])

    def inclusion(self, index, size):
        response = self.get(f"proof/inclusion?index={index}&size={size}")
        assert response.status_code == 200, (index, size, response.text)
        body = response.json()
        assert body["leaf_index"] == index
        return hashes(body["audit_path"])

    def entries(self, size, kind="entries", prefix=2):
        """Every entry of a tree of `size`, read from its bundles (not yet checked against anything).
        As a monitor reads them: a spec bundle that holds an entry over 64 KiB is a 404 naming its
        `entries32` path, which is read instead."""
        entries = []
        for bundle in tv.bundles_for_size(size):
            path = tv.bundle_path(bundle.index, bundle.width, kind)
            try:
                entries += tv.parse_entry_bundle(self.fetch(path), prefix)
            except tv.TileError as error:
                if kind != "entries" or "entries32" not in str(error):
                    raise
                entries += tv.parse_entry_bundle(self.fetch(tv.bundle_path(bundle.index, bundle.width, "entries32")), 4)
        return entries


def rejected(size, fetch, root):
    """Whether tiles served through `fetch` fail to rebuild `root`: an error, or another root."""
    try:
        return tv.root_from_tiles(size, fetch) != root
    except tv.VerificationError:
        return True


def entry(position, record):
    """A leaf's entry: the event's 8-byte big-endian position, then its record bytes."""
    return position.to_bytes(8, "big") + record


# ---------------------------------------------------------------------------------------------
# The verifier itself, offline: published vectors and the RFC's own definitions

# RFC 6962 reference leaves and tree heads (certificate-transparency / transparency-dev test data).
CT_ENTRIES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = [bytes.fromhex(h) for h in [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]]
CT_INCLUSION = [(0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
                (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"])]
CT_CONSISTENCY = [(2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
                  (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"])]

# The example of golang.org/x/mod/sumdb/note, the reference implementation of signed notes.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
           "qfqdngotpRZb6KE6RyyBwJnAM=\n").encode()


def test_merkle_tree_matches_the_rfc_6962_reference_vectors():
    leaves = [tv.leaf_hash(e) for e in CT_ENTRIES]
    tree = tv.MerkleTree(leaves)
    for size, root in enumerate(CT_ROOTS):
        assert tv.mth(leaves[:size]) == root and tree.root(size) == root, size
    for index, size, proof in CT_INCLUSION:
        proof = [bytes.fromhex(h) for h in proof]
        assert tree.inclusion_proof(index, size) == proof
        assert tv.verify_inclusion(index, size, leaves[index], proof, CT_ROOTS[size])
    for first, second, proof in CT_CONSISTENCY:
        proof = [bytes.fromhex(h) for h in proof]
        assert tree.consistency_proof(first, second) == proof
        assert tv.verify_consistency(first, second, CT_ROOTS[first], CT_ROOTS[second], proof)


def test_every_proof_of_small_trees_verifies_and_damaged_ones_do_not():
    leaves = [tv.leaf_hash(bytes([i, i * 7 % 256])) for i in range(33)]
    tree = tv.MerkleTree(leaves)
    roots = [tree.root(n) for n in range(len(leaves) + 1)]
    junk = bytes(range(32))
    for size in range(1, len(leaves) + 1):
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert tv.verify_inclusion(index, size, leaves[index], proof, roots[size]), (index, size)
            assert not tv.verify_inclusion(index, size, leaves[(index + 1) % len(leaves)], proof, roots[size])
            assert not tv.verify_inclusion(index, size, leaves[index], proof, roots[size - 1])
            assert not tv.verify_inclusion(index, size, leaves[index], proof + [junk], roots[size])
            if proof:
                assert not tv.verify_inclusion(index, size, leaves[index], proof[:-1], roots[size])
                assert not tv.verify_inclusion(index, size, leaves[index], [junk] + proof[1:], roots[size])
                if index ^ 1 < size:
                    assert not tv.verify_inclusion(index ^ 1, size, leaves[index], proof, roots[size])
    for second in range(len(leaves) + 1):
        for first in range(second + 1):
            proof = tree.consistency_proof(first, second)
            assert tv.verify_consistency(first, second, roots[first], roots[second], proof), (first, second)
            assert not tv.verify_consistency(second, first, roots[second], roots[first], proof) or first == second
            assert not tv.verify_consistency(first, second, roots[first], roots[second], proof + [junk])
            if first not in (0, second):
                assert not tv.verify_consistency(first, second, roots[first - 1], roots[second], proof)
                assert not tv.verify_consistency(first, second, roots[first], junk, proof)
                assert not tv.verify_consistency(first, second, roots[first], roots[second], proof[:-1])
                assert not tv.verify_consistency(first, second, roots[first], roots[second], [junk] + proof[1:])
                if len(proof) > 1 and proof[0] != proof[1]:
                    swapped = [proof[1], proof[0]] + proof[2:]
                    assert not tv.verify_consistency(first, second, roots[first], roots[second], swapped)


def test_degenerate_consistency_cases():
    leaves = [tv.leaf_hash(bytes([i])) for i in range(9)]
    tree = tv.MerkleTree(leaves)
    r4, r5, r8 = tree.root(4), tree.root(5), tree.root(8)
    assert tv.verify_consistency(4, 4, r4, r4, [])
    assert not tv.verify_consistency(4, 4, r4, r5, [])
    assert not tv.verify_consistency(4, 4, r4, r4, [r4])
    assert tv.verify_consistency(0, 8, tv.EMPTY_ROOT, r8, [])
    assert not tv.verify_consistency(0, 8, tv.EMPTY_ROOT, r8, [r8])
    assert tv.verify_consistency(0, 0, tv.EMPTY_ROOT, tv.EMPTY_ROOT, [])
    assert not tv.verify_consistency(5, 4, r5, r4, tree.consistency_proof(4, 5))
    assert not tv.verify_consistency(4, 8, r4, r8, [])
    assert not tv.verify_consistency(4, 8, r4, r8, [h[:31] for h in tree.consistency_proof(4, 8)])


def test_signed_notes_match_the_go_reference_and_follow_the_verification_rules():
    signer, verifier = tv.Signer.parse(GO_SIGNER), tv.Verifier.parse(GO_VERIFIER)
    assert str(signer) == GO_SIGNER and str(signer.verifier) == GO_VERIFIER and signer.verifier == verifier
    assert signer.sign(GO_TEXT) == GO_NOTE, "Ed25519 is deterministic: the reference note byte for byte"
    assert tv.open_note(GO_NOTE, verifier) == GO_TEXT
    other = tv.Signer.generate("PeterNeumann")
    witness = tv.Signer.generate("witness.example/w1")
    text, (signature,) = tv.parse_note(GO_NOTE)
    # An extra signature by an unknown key is ignored; the note still opens.
    cosigned = tv.format_note(text, [(signature.name, signature.key_id + signature.signature),
                                     (witness.name, witness.verifier.key_id + witness.signature(text))])
    assert tv.open_note(cosigned, verifier) == GO_TEXT
    assert tv.open_note(cosigned, [verifier, witness.verifier]) == GO_TEXT
    forged = {
        "no trusted signature (same name, another key)": other.sign(GO_TEXT),
        "a failing signature under the trusted key's name and id": tv.format_note(
            text, [(signature.name, signature.key_id + other.signature(text))]),
        "a flipped signature byte": tv.format_note(
            text, [(signature.name, signature.key_id + bytes([signature.signature[0] ^ 1]) + signature.signature[1:])]),
        "changed text": GO_NOTE.replace(b"problem,", b"problem;"),
        "no blank line": GO_NOTE.replace(b".\n\n\xe2\x80\x94", b".\n\xe2\x80\x94"),
        "no signature": GO_TEXT.encode() + b"\n",
        "no final newline": GO_NOTE[:-1],
        "hyphen for the em dash": GO_NOTE.replace("\u2014".encode(), b"-"),
        "a control character": GO_NOTE.replace(b"think", b"th\x07nk"),
        "not UTF-8": GO_NOTE.replace(b"think", b"th\xffnk"),
        "a truncated signature": GO_NOTE.replace(b"JnAM=", b"J==="),
    }
    for reason, note in forged.items():
        with pytest.raises(tv.NoteError):
            tv.open_note(note, verifier)
            pytest.fail(reason)
    assert tv.open_note(other.sign(GO_TEXT), other.verifier) == GO_TEXT, "the forger's own key does verify it"
    for bad in [GO_VERIFIER.replace("c74f20a3", "c74f20a4"), GO_VERIFIER[:-4], "Peter Neumann+c74f20a3+AAAA", "PeterNeumann"]:
        with pytest.raises(tv.NoteError):
            tv.Verifier.parse(bad)
    with pytest.raises(tv.NoteError):
        tv.Signer.parse(GO_SIGNER.replace("c74f20a3", "00000000"))


def test_checkpoint_text_is_parsed_strictly():
    root = b64(bytes(range(32)))
    assert tv.parse_checkpoint(f"example.com/log\n42\n{root}\n") == tv.Checkpoint("example.com/log", 42, bytes(range(32)))
    assert tv.parse_checkpoint(f"o\n0\n{b64(tv.EMPTY_ROOT)}\next one\next two\n").extensions == ("ext one", "ext two")
    for bad in [f"o\n42\n{root}", f"o\n42\n", f"\n42\n{root}\n", f"o\n042\n{root}\n", f"o\n-1\n{root}\n",
                f"o\n4 2\n{root}\n", f"o\n42\n{b64(bytes(31))}\n", f"o\n42\n{root[:-1]}\n", f"o\n42\n{root}\n\n"]:
        with pytest.raises(tv.NoteError):
            tv.parse_checkpoint(bad)
            pytest.fail(repr(bad))


def test_tile_paths_and_the_tiles_of_a_tree():
    assert tv.encode_index(1234067) == "x001/x234/067" and tv.encode_index(5) == "005"
    assert tv.encode_index(0) == "000" and tv.encode_index(1000) == "x001/000"
    assert tv.tile_path(0, 1234067) == "tile/0/x001/x234/067" and tv.tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert tv.bundle_path(2, 8) == "tile/entries/002.p/8" and tv.bundle_path(0, kind="entries32") == "tile/entries32/000"
    for width in [0, 257]:
        with pytest.raises(ValueError):
            tv.tile_path(0, 0, width)
    # tlog-tiles' own examples: size 70,000 and size 256.
    tiles = tv.tiles_for_size(70000)
    assert len([t for t in tiles if t.level == 0 and t.width == 256]) == 273
    assert [t for t in tiles if t.width != 256 or t.level > 0] == [
        tv.Tile(0, 273, 112), tv.Tile(1, 0, 256), tv.Tile(1, 1, 17), tv.Tile(2, 0, 1)]
    assert tv.tiles_for_size(256) == [tv.Tile(0, 0, 256), tv.Tile(1, 0, 1)]
    assert tv.tiles_for_size(0) == [] and tv.tiles_for_size(1) == [tv.Tile(0, 0, 1)]


def spec_tiles(leaves):
    """Every tile of a tree, straight from tlog-tiles' formula MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l])."""
    tiles = {}
    for tile in tv.tiles_for_size(len(leaves)):
        unit = 256 ** tile.level
        tiles[tv.tile_path(tile.level, tile.index, tile.width)] = b"".join(
            tv.mth(leaves[(tile.index * 256 + i) * unit:(tile.index * 256 + i + 1) * unit]) for i in range(tile.width))
    return tiles


def test_root_from_tiles_offline_up_to_level_2():
    leaves = [tv.leaf_hash(i.to_bytes(4, "big")) for i in range(70000)]
    tree = tv.MerkleTree(leaves)
    tiles = spec_tiles(leaves)
    assert tv.root_from_tiles(70000, tiles.__getitem__) == tree.root()
    for size in [1, 2, 3, 255, 256, 257, 511, 512, 513]:
        assert tv.root_from_tiles(size, spec_tiles(leaves[:size]).__getitem__) == tree.root(size), size
    # Within the 70,000 tree: a damaged full tile deep down is caught by the level above it.
    broken = dict(tiles)
    full = tv.tile_path(0, 7)
    broken[full] = tiles[full][32:64] + tiles[full][:32] + tiles[full][64:]
    assert rejected(70000, broken.__getitem__, tree.root())
    broken[full] = tiles[full][:-1]
    assert rejected(70000, broken.__getitem__, tree.root())
    entries = [b"", b"a", bytes(300)]
    bundle = b"".join(len(e).to_bytes(2, "big") + e for e in entries)
    assert tv.parse_entry_bundle(bundle) == entries
    with pytest.raises(tv.TileError):
        tv.parse_entry_bundle(bundle[:-1])


# ---------------------------------------------------------------------------------------------
# A log of known content: our own key and origin, ~520 events, nothing else writing to it


@dataclass
class KnownLog:
    server: Server
    log: Log
    signer: tv.Signer
    key_file: pathlib.Path
    note: bytes
    events: list
    entries: list
    tree: tv.MerkleTree

    @property
    def size(self):
        return len(self.events)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    signer = tv.Signer.generate(KNOWN_KEY_NAME)
    key_file = tmp_path_factory.mktemp("tlog-key") / "log.key"
    key_file.write_text(str(signer))  # the key string alone, no newline
    key_file.chmod(0o600)
    with serving("--allow-anonymous", "--log-key", str(key_file), "--log-origin", KNOWN_ORIGIN) as server:
        post(server.endpoint, "CreateRepository", {"repositoryName": "tlog/known"})
        initiate_many(server.endpoint, "tlog/known", KNOWN_EVENTS - 1)
        events = server.events()
        log = Log(server)
        note = log.wait_for_checkpoint(len(events))
        entries = log.entries(len(events))
        yield KnownLog(server, log, signer, key_file, note, events, entries, tv.MerkleTree(tv.leaf_hash(e) for e in entries))


def test_upload_replay_checks_the_signatures_with_the_key_an_auditor_gives(known):
    """The log's key is kept outside its data folder here, as the README advises: `upload-replay`
    checks every kept checkpoint's signature with the verifier an auditor gives (as text or as a
    file), fails on another key of the same name, and says when it checked none."""
    data = str(known.server.data_dir)
    verifier_file = pathlib.Path(data).parent / "auditor.pub"
    verifier_file.write_text(str(known.signer.verifier))

    def replay(*flags):
        out = tool("upload-replay", "--data-dir", data, "--json", *flags)
        return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else {}), out.stderr

    for given in (str(known.signer.verifier), str(verifier_file)):
        status, report, stderr = replay("--public-key", given)
        assert status == 0 and report["ok"] and report["signaturesChecked"] is True, (status, report, stderr)
    impostor = tv.Signer.generate(KNOWN_KEY_NAME).verifier
    status, report, stderr = replay("--public-key", str(impostor))
    assert status == 2 and not report.get("ok"), (status, report, stderr)
    status, report, stderr = replay()
    assert status == 0 and report["signaturesChecked"] is False and "signatures not checked" in stderr, (status, report, stderr)


def test_checkpoint_is_signed_by_the_configured_key_over_the_events(known):
    assert known.size >= KNOWN_EVENTS
    response = known.log.get("checkpoint")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == known.note
    checkpoint = tv.verify_checkpoint(response.content, known.signer.verifier, origin=KNOWN_ORIGIN)
    assert checkpoint.size == known.size, "covers every event once the signing interval has passed"
    assert len(known.entries) == known.size
    for i, e in enumerate(known.entries):
        assert e[:8] == (i + 1).to_bytes(8, "big"), f"leaf {i} is the event at position {i + 1}"
    assert checkpoint.root == known.tree.root(), "the root of the entries we read is the signed one"
    key = ("--log-key", str(known.key_file), "--log-origin", KNOWN_ORIGIN)
    assert audit(known.server.data_dir, "public-key", *key).strip() == str(known.signer.verifier)
    # The log serve writes names the key too, where an operator finds it to publish.
    assert f"log.public_key={known.signer.verifier}" in known.server.stderr_text() and f"log.origin={KNOWN_ORIGIN}" in known.server.stderr_text()
    assert audit(known.server.data_dir, "checkpoint", *key).encode() == known.note, "same size, same bytes"
    # Without the log's key, the audit commands refuse rather than make a key of their own.
    for command in ("public-key", "checkpoint"):
        out = tool("upload-coordinator", "audit", command, "--data-dir", str(known.server.data_dir))
        assert out.returncode != 0 and "--log-key" in out.stderr, out.stdout + out.stderr
    assert not (pathlib.Path(known.server.data_dir) / "transparency-log.key").exists()


def test_entry_bundles_hash_to_the_level_0_tiles(known):
    log = known.log
    for bundle in tv.bundles_for_size(known.size):
        response = log.get(tv.bundle_path(bundle.index, bundle.width))
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/octet-stream"
        entries = tv.parse_entry_bundle(response.content)
        tile = tv.split_hashes(log.fetch(tv.tile_path(0, bundle.index, bundle.width)), bundle.width)
        tv.verify_entry_bundle(entries, tile)
        wide = log.get(tv.bundle_path(bundle.index, bundle.width, kind="entries32"))
        assert wide.status_code == 200 and tv.parse_entry_bundle(wide.content, prefix=4) == entries
        reordered = [entries[1], entries[0]] + entries[2:]
        with pytest.raises(tv.TileError):
            tv.verify_entry_bundle(reordered, tile)
        with pytest.raises(tv.TileError):
            tv.verify_entry_bundle(entries[:-1], tile)
        with pytest.raises(tv.TileError):
            tv.verify_entry_bundle(tv.parse_entry_bundle(response.content[:-1] + bytes([response.content[-1] ^ 1])), tile)
        with pytest.raises(tv.TileError):
            tv.parse_entry_bundle(response.content[:-1])


def test_the_root_is_rebuilt_from_tiles_alone(known):
    checkpoint = tv.read_checkpoint(known.note)
    log = Log(known.server)
    assert tv.root_from_tiles(checkpoint.size, log.fetch) == checkpoint.root
    expected = [tv.tile_path(t.level, t.index, t.width) for t in tv.tiles_for_size(checkpoint.size)]
    assert log.fetched == expected, "exactly the tiles tlog-tiles says a tree of this size has"
    assert any(t.level == 1 for t in tv.tiles_for_size(checkpoint.size)), "the log is big enough for level 1"
    for tile in tv.tiles_for_size(checkpoint.size):
        response = log.get(tv.tile_path(tile.level, tile.index, tile.width))
        assert response.headers["Content-Type"] == "application/octet-stream"
        # a kept checkpoint covers it (partial ones too): the path names these bytes for good
        assert "immutable" in response.headers.get("Cache-Control", ""), tile


def test_a_tile_past_the_last_signed_checkpoint_is_not_cached():
    """A failover that lost commits may take an unsigned tail back, and the log grow again with other
    events: until a checkpoint covers a tile, the same path may come to name other bytes."""
    with serving("--allow-anonymous", "--checkpoint-interval", "3600") as server:
        post(server.endpoint, "CreateRepository", {"repositoryName": "tlog/unsigned"})
        log = Log(server)
        assert tv.read_checkpoint(log.checkpoint()).size == 0, "the start's checkpoint stands for the interval"
        tile = log.get(tv.tile_path(0, 0, 1))
        assert tile.status_code == 200 and tile.headers["Cache-Control"] == "public, no-cache", tile.headers


def test_truncated_swapped_and_altered_tiles_are_rejected(known):
    checkpoint = tv.read_checkpoint(known.note)
    served = {}
    log = Log(known.server)
    for tile in tv.tiles_for_size(checkpoint.size):
        path = tv.tile_path(tile.level, tile.index, tile.width)
        served[path] = log.fetch(path)
    assert not rejected(checkpoint.size, served.__getitem__, checkpoint.root), "the honest tiles pass"
    for path, data in served.items():
        damaged = {
            "one byte short": data[:-1],
            "one hash short": data[:-32],
            "one byte long": data + b"\x00",
            "a flipped byte": data[:5] + bytes([data[5] ^ 1]) + data[6:],
            "the first two hashes swapped": data[32:64] + data[:32] + data[64:],
            "the last two hashes swapped": data[:-64] + data[-32:] + data[-64:-32],
        }
        for how, bad in damaged.items():
            if len(data) < 64 and "swapped" in how:
                continue
            tiles = {**served, path: bad}
            assert rejected(checkpoint.size, tiles.__getitem__, checkpoint.root), f"{path} with {how}"


def consistency_pairs(size, rng):
    """Every pair up to 32, every size to the next and to the last, the tile boundaries, and random pairs."""
    pairs = {(a, b) for b in range(33) for a in range(b + 1)}
    for a in range(1, size + 1):
        pairs |= {(a, size), (a, min(a + 1, size))}
    for edge in [255, 256, 257, 511, 512, 513]:
        pairs |= {(a, b) for a in (edge - 1, edge, edge + 1) for b in (256, 257, 512, 513, size) if a <= b <= size}
    while len(pairs) < 1800:
        a, b = sorted(rng.randint(0, size) for _ in range(2))
        pairs.add((a, b))
    return sorted(pairs)


def test_consistency_proofs_between_many_sizes_hold_against_our_own_roots(known):
    rng = random.Random(9162)
    tree, size = known.tree, known.size
    for first, second in consistency_pairs(size, rng):
        proof = known.log.consistency(first, second)
        assert tv.verify_consistency(first, second, tree.root(first), tree.root(second), proof), (first, second)
        if 1 < first < second:
            assert not tv.verify_consistency(first, second, tree.root(first - 1), tree.root(second), proof)


def test_inclusion_proofs_hold_against_our_own_roots(known):
    rng = random.Random(6962)
    tree, size = known.tree, known.size
    cases = {(i, n) for n in range(1, 17) for i in range(n)}
    for n in [255, 256, 257, 300, 511, 512, 513, size]:
        cases |= {(i, n) for i in [0, 1, n // 2, n - 2, n - 1] + rng.sample(range(n), 10)}
    cases |= {(rng.randrange(n), n) for n in (rng.randint(1, size) for _ in range(100))}
    for index, n in sorted(cases):
        proof = known.log.inclusion(index, n)
        assert tv.verify_inclusion(index, n, tree.leaves[index], proof, tree.root(n)), (index, n)
        assert not tv.verify_inclusion(index, n, tv.leaf_hash(b"not an entry"), proof, tree.root(n))


def test_audit_consistency_prints_the_same_proofs(known):
    tree, data_dir = known.tree, known.server.data_dir
    printed = json.loads(audit(data_dir, "consistency", "--from", "100", "--to", "300", "--json"))
    assert hashes(printed["consistency"]) == known.log.consistency(100, 300)
    assert tv.verify_consistency(100, 300, tree.root(100), tree.root(300), hashes(printed["consistency"]))
    latest = tv.read_checkpoint(known.note).size
    printed = json.loads(audit(data_dir, "consistency", "--from", "257", "--json"))
    assert tv.verify_consistency(257, latest, tree.root(257), tree.root(latest), hashes(printed["consistency"])), \
        "--to defaults to the latest signed checkpoint's size"


def test_bad_proof_requests_are_400_and_bad_tile_paths_404(known):
    n = known.size
    bad_proofs = [
        f"consistency?first=5&second=3", f"consistency?first=0&second={n + 1}", f"consistency?first={n + 1}&second={n + 1}",
        "consistency?first=a&second=3", "consistency?first=1&second=x", "consistency?first=-1&second=3", "consistency?first=1",
        f"inclusion?index={n}&size={n}", "inclusion?index=3&size=3", f"inclusion?index=0&size={n + 1}",
        "inclusion?index=0&size=0", "inclusion?index=x&size=3", "inclusion?index=-1&size=3", "inclusion?size=3",
        "inclusion?index=%2B3&size=5", "inclusion?index=-0&size=5", "consistency?first=%2B1&second=2",  # a number has one spelling:
        "inclusion?index=03&size=5", "consistency?first=01&second=5",  # no sign, no leading zero
    ]
    for query in bad_proofs:
        response = known.log.get("proof/" + query)
        assert response.status_code == 400, (query, response.status_code, response.text)
        assert isinstance(response.json().get("error"), str) and response.json()["error"], query
    assert n == KNOWN_EVENTS, "the paths below are written for this size"  # tiles: 0/000 0/001 0/002.p/8 1/000.p/2
    bad_tiles = [
        "tile/64/000", "tile/0/1", "tile/0/0000", "tile/00/000", "tile/01/000", "tile/-1/000", "tile/0/x000",
        "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/002.p/08", "tile/0/002.p/x", "tile/0/002.p/",
        "tile/0/002", "tile/0/002.p/9", "tile/0/003.p/1", "tile/1/000", "tile/1/000.p/3", "tile/2/000.p/1",
        "tile/entries/1", "tile/entries/002", "tile/entries/002.p/9", "tile/entries/003.p/1", "tile/entries/000.p/0",
        "tile/entries32/002.p/9",
    ]
    for path in bad_tiles:
        response = known.log.get(path)
        assert response.status_code == 404, (path, response.status_code)
    for path in ["tile/0/000", "tile/0/001", "tile/0/002.p/8", "tile/1/000.p/2", "tile/entries/002.p/8"]:
        assert known.log.get(path).status_code == 200, path


# ---------------------------------------------------------------------------------------------
# The default server: credentials, its generated key, and forged checkpoints


def settled_checkpoint(server):
    """The served checkpoint once it covers every event in the log."""
    size = len(server.events())
    note = Log(server).wait_for_checkpoint(size)
    assert tv.read_checkpoint(note).size == size, "the checkpoint lags the log by more than the signing interval"
    return note


def test_the_checkpoint_lags_a_commit_by_at_most_the_signing_interval():
    """An event committed now is in every checkpoint served once the interval (here 1 s) has passed."""
    with serving("--allow-anonymous", "--checkpoint-interval", "1") as server:
        log = Log(server)
        post(server.endpoint, "CreateRepository", {"repositoryName": "tlog/lag"})
        for i in range(3):
            log.checkpoint()  # a checkpoint at hand, signed before the next commit
            post(server.endpoint, "InitiateLayerUpload", {"repositoryName": "tlog/lag"})
            committed = len(server.events())
            time.sleep(1.05)
            assert tv.read_checkpoint(log.checkpoint()).size >= committed, f"round {i}"
    bad = subprocess.run([str(BIN / "upload-coordinator"), "serve", "--data-dir", "/nonexistent", "--checkpoint-interval", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--checkpoint-interval" in bad.stderr


def test_checkpoint_and_tiles_are_public_but_entry_bundles_need_the_feeds_credentials(server, repo):
    log = Log(server)
    size = tv.read_checkpoint(settled_checkpoint(server)).size
    bundle = tv.bundles_for_size(size)[0]
    assert log.get("checkpoint").status_code == 200
    tile = log.get(tv.tile_path(0, 0, bundle.width))
    assert tile.status_code == 200 and tile.headers["Cache-Control"].startswith("public,"), tile.headers
    assert log.get(f"proof/consistency?first=1&second={size}").status_code == 200
    assert log.get(f"proof/inclusion?index=0&size={size}").status_code == 200
    for kind in ["entries", "entries32"]:
        unsigned = log.get(tv.bundle_path(0, bundle.width, kind))
        assert unsigned.status_code in (401, 403), (kind, unsigned.status_code, unsigned.text)
        signed = log.get(tv.bundle_path(0, bundle.width, kind), signed=True)
        assert signed.status_code == 200, (kind, signed.status_code, signed.text)
        # read with credentials: no shared cache may keep it for others (RFC 9111, 3.5)
        assert signed.headers["Cache-Control"].startswith("private,"), signed.headers
        entries = tv.parse_entry_bundle(signed.content, prefix=2 if kind == "entries" else 4)
        tv.verify_entry_bundle(entries, tv.split_hashes(log.fetch(tv.tile_path(0, 0, bundle.width)), bundle.width))


def test_generated_key_and_checkpoints_from_http_and_audit_agree(server, repo):
    note = settled_checkpoint(server)  # first: the key may be generated only when the first checkpoint is signed
    key_file = os.path.join(server.data_dir, "transparency-log.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with open(key_file) as f:
        verifier = tv.Signer.parse(f.read()).verifier
    assert audit(server.data_dir, "public-key").strip() == str(verifier)
    assert audit(server.data_dir, "checkpoint").encode() == note, "same size, same bytes (Ed25519 is deterministic)"
    checkpoint = tv.verify_checkpoint(note, verifier)
    assert checkpoint.origin == verifier.name, "the origin defaults to the key's name"
    log = Log(server, sign_bundles=True)
    assert tv.root_from_tiles(checkpoint.size, log.fetch) == checkpoint.root
    entries = log.entries(checkpoint.size)
    assert tv.mth([tv.leaf_hash(e) for e in entries]) == checkpoint.root
    assert [int.from_bytes(e[:8], "big") for e in entries] == list(range(1, checkpoint.size + 1))


def forgeries(note):
    """Notes that must not verify: (what was done, note). The first three leave the text intact."""
    text, signatures = tv.parse_note(note)
    real = signatures[0]
    other = tv.Signer.generate(real.name)
    checkpoint = tv.parse_checkpoint(text)
    flipped = bytes([real.signature[0] ^ 0x20]) + real.signature[1:]
    altered_root = bytes([checkpoint.root[0] ^ 1]) + checkpoint.root[1:]
    lines = text.split("\n")
    return [
        ("a flipped signature byte", tv.format_note(text, [(real.name, real.key_id + flipped)])),
        ("signed by another key of the same name", other.sign(text)),
        ("signed by another key claiming the log's key id", tv.format_note(text, [(real.name, real.key_id + other.signature(text))])),
        ("another tree size", tv.format_note("\n".join([lines[0], str(checkpoint.size + 1)] + lines[2:]),
                                             [(real.name, real.key_id + real.signature)])),
        ("another root", tv.format_note(text.replace(b64(checkpoint.root), b64(altered_root)),
                                        [(real.name, real.key_id + real.signature)])),
    ], other


def test_forged_checkpoints_are_rejected_by_us_and_by_audit_verify_consistency(server, ecr, repo, tmp_path):
    old = settled_checkpoint(server)
    printed = audit(server.data_dir, "public-key")
    verifier = tv.Verifier.parse(printed)
    key_file = tmp_path / "public.key"
    key_file.write_text(printed)  # as `audit public-key > FILE` would leave it
    for _ in range(3):
        ecr.initiate_layer_upload(repositoryName=repo)
    new = settled_checkpoint(server)
    a, b = tv.verify_checkpoint(old, verifier), tv.verify_checkpoint(new, verifier)
    assert a.size + 3 == b.size
    response = Log(server).get(f"proof/consistency?first={a.size}&second={b.size}")
    assert response.status_code == 200
    proof = hashes(response.json()["consistency"])
    assert tv.verify_consistency(a.size, b.size, a.root, b.root, proof)
    # The genuine pair passes, the key given as a string or as a file.
    assert verify_consistency_cli(tmp_path, old, new, response.content, str(verifier)) == 0
    assert verify_consistency_cli(tmp_path, old, new, response.content, key_file) == 0
    # A witness's cosignature is an unknown key's signature: ignored, as signed-note requires.
    text, _ = tv.parse_note(new)
    witness = tv.Signer.generate("witness.example/w1")
    cosigned = new + f"\u2014 {witness.name} {b64(witness.verifier.key_id + witness.signature(text))}\n".encode()
    assert tv.verify_checkpoint(cosigned, verifier) == b
    assert verify_consistency_cli(tmp_path, old, cosigned, response.content, str(verifier)) == 0
    # Every forgery is refused, as the old note and as the new one.
    for which, genuine in [("old", old), ("new", new)]:
        notes, forger = forgeries(genuine)
        for how, forged in notes:
            with pytest.raises(tv.NoteError):
                tv.verify_checkpoint(forged, verifier)
                pytest.fail(f"{which}: {how}")
            pair = (forged, new) if which == "old" else (old, forged)
            assert verify_consistency_cli(tmp_path, *pair, response.content, str(verifier)) == 1, f"{which}: {how}"
        assert tv.verify_checkpoint(forger.sign(tv.parse_note(genuine)[0]), forger.verifier) is not None
        assert verify_consistency_cli(tmp_path, old, new, response.content, str(forger.verifier)) == 1, "another public key"
    # A damaged proof is refused, and so is a proof for other sizes.
    damaged = [proof[0][:3] + bytes([proof[0][3] ^ 1]) + proof[0][4:]] + proof[1:]
    assert not tv.verify_consistency(a.size, b.size, a.root, b.root, damaged)
    assert verify_consistency_cli(tmp_path, old, new, proof_body(damaged), str(verifier)) == 1
    assert verify_consistency_cli(tmp_path, old, new, proof_body(proof[:-1]), str(verifier)) == 1
    # The newer checkpoint given as the old one: the log would have gone back, and that is what it says.
    assert verify_consistency_cli(tmp_path, new, old, response.content, str(verifier), said="the log was taken back") == 1


# ---------------------------------------------------------------------------------------------
# Entries too long for uint16 length prefixes


def test_an_entry_over_64_kib_is_served_only_with_32_bit_lengths():
    with serving("--allow-anonymous") as server:
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}))
        repo = "tlog/big-manifest"
        ecr.create_repository(repositoryName=repo)
        config = b'{"architecture":"amd64","os":"linux"}'
        layer = os.urandom(1024)
        _, config_digest = upload(ecr, repo, config)
        _, layer_digest = upload(ecr, repo, layer)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer)}],
            "annotations": {"padding": "x" * 70000}}, separators=(",", ":"))
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="big")
        # Three manifests of 2 MB: the wide bundle is more than one slice of the log's records
        # (4 MiB), which the server reads and sends one after the other.
        for n in range(3):
            large = manifest.replace('"padding":"', f'"padding":"{n}' + "y" * 2_000_000, 1)
            ecr.put_image(repositoryName=repo, imageManifest=large, imageTag=f"large-{n}")
        note = settled_checkpoint(server)
        checkpoint = tv.verify_checkpoint(note, tv.Verifier.parse(audit(server.data_dir, "public-key")))
        log = Log(server)
        for bundle in tv.bundles_for_size(checkpoint.size):
            path16 = tv.bundle_path(bundle.index, bundle.width)
            path32 = tv.bundle_path(bundle.index, bundle.width, kind="entries32")
            assert log.get(path16).status_code == 404, "an entry over 65,535 bytes has no uint16 form"
            entries = tv.parse_entry_bundle(log.fetch(path32), prefix=4)
            tv.verify_entry_bundle(entries, tv.split_hashes(log.fetch(tv.tile_path(0, bundle.index, bundle.width)), bundle.width))
            assert max(len(e) for e in entries) > 65535
            assert sum(len(e) for e in entries) > 3 * 2_000_000
        entries = log.entries(checkpoint.size, kind="entries32", prefix=4)
        assert tv.mth([tv.leaf_hash(e) for e in entries]) == checkpoint.root
        assert tv.root_from_tiles(checkpoint.size, log.fetch) == checkpoint.root


# ---------------------------------------------------------------------------------------------
# A history rewritten on disk, by someone holding the store and the log's key


STORE_DATABASES = [b"events", b"merkle-tree", b"signed-checkpoints"]


def open_store(data_dir):
    """The stopped server's LMDB environment, DATA/data.mdb."""
    return lmdb.open(str(data_dir), max_dbs=32, map_size=1 << 30)


def merkle_nodes(entries):
    """Every complete subtree's hash over `entries`, keyed as the store keys it: 8-byte big-endian
    ((index + 1) << level), then the level byte."""
    nodes, level, row = {}, 0, [tv.leaf_hash(e) for e in entries]
    while row:
        for index, value in enumerate(row):
            nodes[((index + 1) << level).to_bytes(8, "big") + bytes([level])] = value
        row = [tv.node_hash(row[2 * i], row[2 * i + 1]) for i in range(len(row) // 2)]
        level += 1
    return nodes


def stored_log(data_dir):
    """(entries, merkle-tree nodes, checkpoints by size) as the stopped server left them."""
    env = open_store(data_dir)
    try:
        events_db, tree_db, checkpoints_db = (env.open_db(name, create=False) for name in STORE_DATABASES)
        with env.begin() as txn:
            events = list(txn.cursor(db=events_db))
            nodes = dict(txn.cursor(db=tree_db))
            checkpoints = {int.from_bytes(k, "big"): v for k, v in txn.cursor(db=checkpoints_db)}
    finally:
        env.close()
    assert [int.from_bytes(k, "big") for k, _ in events] == list(range(1, len(events) + 1)), "positions dense from 1"
    return [entry(int.from_bytes(k, "big"), v) for k, v in events], nodes, checkpoints


def rewrite_history(data_dir, needle, replacement, keep_checkpoints, recompute_tree=True, edit=None):
    """Edits the one event holding `needle` in place (same length, still decodable), recomputes the
    whole merkle-tree database from the events with our own hashing (unless not `recompute_tree`)
    and, unless `keep_checkpoints`, deletes every stored checkpoint: what an attacker covering their
    tracks would do. `edit`, when given, changes the record instead (bytes in, bytes out)."""
    assert len(needle) == len(replacement)
    env = open_store(data_dir)
    try:
        events_db, tree_db, checkpoints_db = (env.open_db(name, create=False) for name in STORE_DATABASES)
        with env.begin(write=True) as txn:
            hits = [(k, v) for k, v in txn.cursor(db=events_db) if needle in v]
            assert len(hits) == 1, f"{len(hits)} events hold {needle!r}"
            key, record = hits[0]
            txn.put(key, edit(record) if edit else record.replace(needle, replacement), db=events_db)
            entries = [entry(int.from_bytes(k, "big"), v) for k, v in txn.cursor(db=events_db)]
            for node, value in (merkle_nodes(entries) if recompute_tree else {}).items():
                assert txn.get(node, db=tree_db) is not None, "every node we rewrite was stored"
                txn.put(node, value, db=tree_db)
            if not keep_checkpoints:
                assert txn.stat(checkpoints_db)["entries"] > 0
                txn.drop(checkpoints_db, delete=False)
    finally:
        env.close()
    return int.from_bytes(key, "big")


def signed_in(server):
    """A session signed in to the pages with the test key, and the server's address."""
    session, base = requests.Session(), server.endpoint
    form = {"accessKeyId": "test", "secretAccessKey": "test", "next": "/gallery/audit"}
    assert session.post(base + "/gallery/sign-in", data=form, headers={"Origin": base}, allow_redirects=False).status_code == 303
    return session, base


def proof_page(data_dir, key_file, position):
    """The audit page's proof of the event at `position`, served from `data_dir`: its status and its text."""
    server = Server(str(data_dir), "--log-key", str(key_file))
    try:
        session, base = signed_in(server)
        page = session.get(f"{base}/gallery/audit/proofs/{position}")
    finally:
        server.stop()
    return page.status_code, html.unescape(page.text)


def test_a_rewritten_history_is_caught(tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    key_file = original / "transparency-log.key"
    with running(original) as server:
        post(server.endpoint, "CreateRepository", {"repositoryName": "tlog/rewrite"})
        for i in range(12):
            post(server.endpoint, "InitiateLayerUpload", {"repositoryName": "tlog/rewrite"},
                 user_agent="tlog-victim/1.0" if i == 6 else f"tlog-test/{i}")
        note_a = settled_checkpoint(server)
    verifier = tv.Verifier.parse(audit(original, "public-key"))
    a = tv.verify_checkpoint(note_a, verifier)

    # What the store holds is what we compute ourselves from its events.
    entries, nodes, checkpoints = stored_log(original)
    assert len(entries) == a.size
    assert nodes == merkle_nodes(entries), "merkle-tree holds exactly every complete subtree of the events"
    assert a.size in checkpoints and checkpoints[a.size] == note_a, "the served checkpoint is stored"
    tree = tv.MerkleTree(tv.leaf_hash(e) for e in entries)
    for size, note in checkpoints.items():
        assert tv.verify_checkpoint(note, verifier).root == tree.root(size), size

    # The rewrite: one letter of one event's user agent, the tree recomputed, the checkpoints gone.
    rewritten, replayed = tmp_path / "rewritten", tmp_path / "replayed"
    shutil.copytree(original, rewritten)
    shutil.copytree(original, replayed)
    position = rewrite_history(rewritten, b"tlog-victim", b"tlog-Victim", keep_checkpoints=False)
    assert 1 < position < a.size, "an event in the middle of the log"
    with running(rewritten, "--log-key", str(key_file)) as server:
        post(server.endpoint, "InitiateLayerUpload", {"repositoryName": "tlog/rewrite"})
        note_b = settled_checkpoint(server)
        b = tv.verify_checkpoint(note_b, verifier)
        response = Log(server).get(f"proof/consistency?first={a.size}&second={b.size}")
        assert response.status_code == 200
    assert b.size == a.size + 1, "the new checkpoint is genuinely signed by the log's key"
    proof = hashes(response.json()["consistency"])
    assert not tv.verify_consistency(a.size, b.size, a.root, b.root, proof), "the old checkpoint pins the old history"
    assert verify_consistency_cli(tmp_path, note_a, note_b, response.content, str(verifier)) == 1
    quiet = tool("upload-replay", "--data-dir", str(rewritten))
    # Exit 1 at most: the edited user agent may sit in a projection the rebuild then disagrees with.
    assert quiet.returncode in (0, 1) and "merkle root:" in quiet.stdout, \
        "control: without its checkpoints, the store's log is consistent with itself " + quiet.stdout + quiet.stderr

    # The same edit with the stored checkpoints left in place: upload-replay sees the log is damaged.
    rewrite_history(replayed, b"tlog-victim", b"tlog-Victim", keep_checkpoints=True)
    caught = tool("upload-replay", "--data-dir", str(replayed))
    assert caught.returncode == 2, caught.stdout + caught.stderr
    # So does the audit page's proof of the edited event: its own path agrees with the recomputed
    # tree, but the signed checkpoint, the independent witness, does not, and that check fails.
    server = Server(str(replayed), "--log-key", str(key_file))
    try:
        session, base = signed_in(server)
        page = session.get(f"{base}/gallery/audit/proofs/{position}")
        assert page.status_code == 200 and "Not verified" in page.text and "no longer extends the checkpoint" in page.text, page.text
        # The trail and the checkpoint's endpoint say so too: a failed check, not a passing outage.
        trail = session.get(f"{base}/gallery/audit")
        assert trail.status_code == 200 and "Failed: the log&#39;s tree no longer extends" in trail.text.replace("&#x27;", "&#39;"), trail.text
        served = requests.get(f"{base}/log/checkpoint", timeout=30)
        assert served.status_code == 500 and "no longer extends the checkpoint" in served.json()["error"], served.text
    finally:
        server.stop()

    # The record alone edited, the tree left as it was: the page names the step that fails, and
    # shows the event as it now reads (it said only that the path does not lead to the root).
    edited = tmp_path / "edited"
    shutil.copytree(original, edited)
    rewrite_history(edited, b"tlog-victim", b"tlog-Victim", keep_checkpoints=True, recompute_tree=False)
    status, text = proof_page(edited, key_file, position)
    assert status == 200 and "Not verified" in text, text
    assert "but the tree holds" in text and "changed after it was appended" in text, text
    assert "tlog-Victim" in text, "the edited event, as it now reads"

    # A record this binary cannot read (a type code it does not know, as a newer binary's event
    # would be, mid rolling upgrade), its tree recomputed: the hashes prove it; only its decoding
    # is not checked, which is no failure of the proof.
    unknown = tmp_path / "unknown"
    shutil.copytree(original, unknown)
    assert rewrite_history(unknown, b"tlog-victim", b"tlog-victim", keep_checkpoints=False,
                           edit=lambda record: b"\x08\x63" + record[2:] if record[:2] == b"\x08\x03" else pytest.fail("an UploadInitiated")) == position
    status, text = proof_page(unknown, key_file, position)
    assert status == 200 and "Verified: event" in text and "Not checked: the record does not decode" in text, text

    # Control: the untouched store, served again with the same key, proves consistency with A.
    with running(original, "--log-key", str(key_file)) as server:
        post(server.endpoint, "InitiateLayerUpload", {"repositoryName": "tlog/rewrite"})
        note_c = settled_checkpoint(server)
        c = tv.verify_checkpoint(note_c, verifier)
        response = Log(server).get(f"proof/consistency?first={a.size}&second={c.size}")
    assert tv.verify_consistency(a.size, c.size, a.root, c.root, hashes(response.json()["consistency"]))
    assert verify_consistency_cli(tmp_path, note_a, note_c, response.content, str(verifier)) == 0
    intact = tool("upload-replay", "--data-dir", str(original))
    assert intact.returncode == 0, intact.stdout + intact.stderr


def test_a_clean_stop_signs_the_log_to_its_end_and_verify_says_how_far_signatures_reach(tmp_path):
    """serve signs once a minute while the log grows, and once more as it stops cleanly: every event
    of a log stopped cleanly is under a signature. upload-replay says how far the signatures reach,
    and says so when it could not check them (the key file gone), rather than passing quietly."""
    data = tmp_path / "data"
    data.mkdir()
    with running(data) as server:
        post(server.endpoint, "CreateRepository", {"repositoryName": "tlog/stop"})
        for _ in range(5):
            post(server.endpoint, "InitiateLayerUpload", {"repositoryName": "tlog/stop"})
    checked = tool("upload-replay", "--data-dir", str(data), "--json")
    report = json.loads(checked.stdout)
    assert report["ok"] and report["events"] == 6, checked.stdout + checked.stderr
    assert report["signedUpTo"] == 6 and report["signaturesChecked"] is True, report

    (data / "transparency-log.key").unlink()
    unchecked = tool("upload-replay", "--data-dir", str(data), "--json")
    report = json.loads(unchecked.stdout)
    assert report["ok"] and report["signaturesChecked"] is False, report
    assert "signatures not checked" in unchecked.stderr, unchecked.stderr
    text = tool("upload-replay", "--data-dir", str(data))
    assert "signatures NOT checked" in text.stdout and "signed up to:     6 of 6 events" in text.stdout, text.stdout


def test_the_audit_page_checks_each_initiation_the_index_names_against_the_log(tmp_path):
    """The audit page lists initiations from their index, a projection: with two entries' repositories
    swapped on disk, it listed one repository's initiation under the other's filter, as `audit
    initiations` did. Each entry is checked against the event it names, and the page refuses."""
    data = tmp_path / "data"
    data.mkdir()
    with running(data) as server:
        for repository in ("index/app", "index/solo"):
            post(server.endpoint, "CreateRepository", {"repositoryName": repository})
            post(server.endpoint, "InitiateLayerUpload", {"repositoryName": repository})

    def solo_page():
        """The page filtered to index/solo: its status, its text, and what the server logged."""
        server = Server(str(data), "--log-key", str(data / "transparency-log.key"))
        try:
            session, base = signed_in(server)
            page = session.get(f"{base}/gallery/audit", params={"repository": "index/solo"})
        finally:
            server.stop()
        return page.status_code, html.unescape(page.text), server.stderr_text()

    status, text, _ = solo_page()
    assert status == 200 and text.count("index/solo") >= 2 and "index/app" not in text, "control: the page lists solo's one initiation"

    env = lmdb.open(str(data / "projections"), max_dbs=32, map_size=1 << 30)
    try:
        with env.begin(write=True) as txn:
            index = env.open_db(b"initiations", txn=txn, create=False)
            entries = list(txn.cursor(db=index))
            assert len(entries) == 2
            (app_key, app_value), (solo_key, solo_value) = entries
            txn.put(app_key, solo_value, db=index)
            txn.put(solo_key, app_value, db=index)
    finally:
        env.close()
    status, text, logged = solo_page()
    assert status == 500 and "index/app" not in text, text[text.find("<main"):]
    assert "the log holds another event there; run upload-replay" in logged, logged


def test_wide_entry_bundles_held_for_readers_that_do_not_read_are_counted_in_the_answer_budget():
    """A wide entry bundle streams a slice (4 MiB of entries and one more) at a time; each slice is held as
    an answer while a slow reader takes it, so readers that do not read hold no more than their
    address's share (each held its slices outside --max-answer-bytes before), and a bundle the
    share cannot take is refused ThrottlingException before it starts."""
    from test_feeds import ESCAPED_THREEFOLD, held_by_unread_answers, tail
    share = 32 << 20
    with serving("--max-answer-bytes", str(share), "--max-answer-bytes-per-address", str(share)) as server:
        ecr = boto3.client("ecr-public", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        ecr.create_repository(repositoryName="log/held")
        ecr.put_image(repositoryName="log/held", imageManifest=ESCAPED_THREEFOLD, imageTag="big")  # a 4 MB entry
        size = tail(server)
        statuses, refused = held_by_unread_answers(server, "/log/" + tv.bundle_path(0, size, kind="entries32"), 12, share)
        assert statuses[:4] == [200] * 4 and 400 in statuses, statuses  # 4 MB each: up to 8 fit in 32 MiB
        assert b"ThrottlingException" in refused, refused[:300]
