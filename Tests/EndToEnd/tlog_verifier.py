"""An independent verifier for the server's transparency log, written from the specifications only:

- RFC 9162 §2.1 (and RFC 6962 §2.1): the Merkle Tree Hash, inclusion and consistency proofs;
- C2SP signed-note: notes, Ed25519 signatures, verifier and signer key strings;
- C2SP tlog-checkpoint: the checkpoint text;
- C2SP tlog-tiles: tile and entry-bundle paths, and rebuilding a tree head from tiles alone.

Standard library plus `cryptography` (Ed25519). Nothing here knows how the server computes anything.
"""
import base64
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HASH_SIZE = 32
TILE_WIDTH = 256
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = HASH()


class VerificationError(Exception):
    """Something served or stored does not hold up."""


class NoteError(VerificationError):
    """A malformed note or key, or a note without a valid signature by a trusted key."""


class TileError(VerificationError):
    """A tile or entry bundle of the wrong shape, or inconsistent with the others."""


# ---------------------------------------------------------------------------------------------
# RFC 9162 §2.1: the Merkle tree


def leaf_hash(entry):
    """HASH(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    """HASH(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n):
    """The largest power of two smaller than n (n > 1): where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes):
    """MTH over a list of leaf hashes, by RFC 9162 §2.1.1's recursive definition."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split_point(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


class MerkleTree:
    """Every tree head and proof over a fixed list of leaf hashes, from RFC 9162's definitions
    (MTH, PATH, PROOF/SUBPROOF); perfect subtrees are memoized so that the root at every size is cheap."""

    def __init__(self, leaf_hashes):
        self.leaves = list(leaf_hashes)
        self._perfect = {}

    def __len__(self):
        return len(self.leaves)

    def root(self, size=None):
        """MTH(D[0:size]); the whole list by default."""
        size = len(self.leaves) if size is None else size
        if not 0 <= size <= len(self.leaves):
            raise ValueError(f"size {size} outside 0..{len(self.leaves)}")
        return self._hash(0, size)

    def _hash(self, start, end):
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.leaves[start]
        perfect = (n & (n - 1)) == 0
        if perfect and (start, n) in self._perfect:
            return self._perfect[(start, n)]
        k = split_point(n)
        value = node_hash(self._hash(start, start + k), self._hash(start + k, end))
        if perfect:
            self._perfect[(start, n)] = value
        return value

    def inclusion_proof(self, index, size):
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1)."""
        if not 0 <= index < size <= len(self.leaves):
            raise ValueError(f"no inclusion proof for index {index} in size {size}")
        return self._path(index, 0, size)

    def _path(self, m, start, end):
        n = end - start
        if n == 1:
            return []
        k = split_point(n)
        if m < k:
            return self._path(m, start, start + k) + [self._hash(start + k, end)]
        return self._path(m - k, start + k, end) + [self._hash(start, start + k)]

    def consistency_proof(self, first, second):
        """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1); empty when first is 0 or first == second."""
        if not 0 <= first <= second <= len(self.leaves):
            raise ValueError(f"no consistency proof from {first} to {second}")
        if first == 0 or first == second:
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m, start, end, whole):
        n = end - start
        if m == n:
            return [] if whole else [self._hash(start, end)]
        k = split_point(n)
        if m <= k:
            return self._subproof(m, start, start + k, whole) + [self._hash(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self._hash(start, start + k)]


def _hashes_ok(*hashes):
    return all(isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2: does `proof` show the leaf hash `leaf` at `index` in the tree of `size` with `root`?"""
    if not 0 <= index < size or not _hashes_ok(leaf, root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2: does `proof` show the tree (first, first_root) is a prefix of (second, second_root)?

    first == second needs an empty proof and equal roots; first == 0 needs an empty proof (and the
    empty tree's root); first > second is never consistent."""
    proof = list(proof)
    if not 0 <= first <= second or not _hashes_ok(first_root, second_root, *proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    if (first & (first - 1)) == 0:  # an exact power of two: the old root is itself a node of the new tree
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# ---------------------------------------------------------------------------------------------
# C2SP signed-note, Ed25519 (signature type 0x01)

EM_DASH = "\u2014"
ED25519 = 0x01


def key_id(name, public_key):
    """SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _b64decode(text, what):
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as error:
        raise NoteError(f"{what}: not base64: {text!r}") from error


def _check_key_name(name):
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"bad key name {name!r}")


def _typed_key(encoded, what):
    raw = _b64decode(encoded, what)
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError(f"{what}: expected 0x01 followed by 32 bytes, got {len(raw)} bytes")
    return raw[1:]


@dataclass(frozen=True)
class Verifier:
    """A verifier key: `<name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>`."""
    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text):
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError(f"not a verifier key: {text!r}")
        name, hex_id, encoded = parts
        _check_key_name(name)
        public_key = _typed_key(encoded, "verifier key")
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id) or bytes.fromhex(hex_id) != key_id(name, public_key):
            raise NoteError(f"verifier key id {hex_id!r} is not the key's id {key_id(name, public_key).hex()}")
        return cls(name, bytes.fromhex(hex_id), public_key)

    def __str__(self):
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public_key).decode()}"

    def verify(self, message, signature):
        """The Ed25519 signature check itself (RFC 8032)."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
            return True
        except InvalidSignature:
            return False


@dataclass(frozen=True)
class Signer:
    """A signer key: `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`."""
    name: str
    seed: bytes

    @classmethod
    def parse(cls, text):
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("not a signer key")
        _, _, name, hex_id, encoded = parts
        _check_key_name(name)
        signer = cls(name, _typed_key(encoded, "signer key"))
        if hex_id != signer.verifier.key_id.hex():
            raise NoteError(f"signer key id {hex_id!r} is not the key's id {signer.verifier.key_id.hex()}")
        return signer

    @classmethod
    def generate(cls, name):
        _check_key_name(name)
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    def __str__(self):
        encoded = base64.b64encode(bytes([ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    @property
    def verifier(self):
        public_key = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return Verifier(self.name, key_id(self.name, public_key), public_key)

    def signature(self, text):
        """The 64-byte Ed25519 signature of the note text (including its final newline)."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(text.encode())

    def sign(self, text):
        """The signed note (bytes) of `text` with this key's signature line."""
        return format_note(text, [(self.name, self.verifier.key_id + self.signature(text))])


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def format_note(text, signatures):
    """A note of `text` and (name, key id || signature) pairs; no checks, so it can build forgeries too."""
    lines = "".join(f"{EM_DASH} {name} {base64.b64encode(blob).decode()}\n" for name, blob in signatures)
    return (text + "\n" + lines).encode()


def parse_note(note):
    """(text, [NoteSignature]) of a note, checking its form but no signature."""
    try:
        s = note.decode("utf-8") if isinstance(note, (bytes, bytearray)) else note
    except UnicodeDecodeError as error:
        raise NoteError("note is not UTF-8") from error
    if any(c < " " and c != "\n" for c in s):
        raise NoteError("note holds a control character")
    if not s.endswith("\n"):
        raise NoteError("note does not end with a newline")
    split = s.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = s[:split + 1], s[split + 2:]
    if not block:
        raise NoteError("note has no signature")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise NoteError(f"malformed signature line {line!r}")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise NoteError(f"malformed signature line {line!r}")
        name, encoded = fields
        _check_key_name(name)
        blob = _b64decode(encoded, "signature")
        if len(blob) < 5:
            raise NoteError(f"signature of {len(blob)} bytes")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    return text, signatures


def open_note(note, verifiers):
    """The text of `note` once a signature by one of `verifiers` holds (signed-note §Signatures):
    signatures by unknown keys are ignored, one by a known key that fails rejects the note, and a
    note with no valid signature by a known key is rejected."""
    if isinstance(verifiers, Verifier):
        verifiers = [verifiers]
    known = {(v.name, v.key_id): v for v in verifiers}
    text, signatures = parse_note(note)
    verified = False
    for signature in signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), signature.signature):
            raise NoteError(f"the signature by {signature.name}+{signature.key_id.hex()} does not hold")
        verified = True
    if not verified:
        raise NoteError("no signature by a trusted key")
    return text


# ---------------------------------------------------------------------------------------------
# C2SP tlog-checkpoint


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple = ()


def parse_checkpoint(text):
    """The checkpoint in a note text: origin, decimal size, base64 root hash, then extension lines."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"checkpoint of {len(lines)} lines")
    origin, size, root, *extensions = lines
    if not origin:
        raise NoteError("empty origin")
    if not re.fullmatch(r"0|[1-9][0-9]*", size):
        raise NoteError(f"bad tree size {size!r}")
    digest = _b64decode(root, "root hash")
    if len(digest) != HASH_SIZE or base64.b64encode(digest).decode() != root:
        raise NoteError(f"bad root hash {root!r}")
    if any(not line for line in extensions):
        raise NoteError("empty extension line")
    return Checkpoint(origin, int(size), digest, tuple(extensions))


def verify_checkpoint(note, verifier, origin=None):
    """The checkpoint of a signed note that `verifier` signed (and whose origin is `origin`, if given)."""
    checkpoint = parse_checkpoint(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint


def read_checkpoint(note):
    """The checkpoint of a note WITHOUT checking any signature (for polling, never for trust)."""
    return parse_checkpoint(parse_note(note)[0])


# ---------------------------------------------------------------------------------------------
# C2SP tlog-tiles


@dataclass(frozen=True)
class Tile:
    level: int
    index: int
    width: int  # 256 for a full tile


def encode_index(n):
    """A tile index as zero-padded 3-digit path elements, all but the last prefixed with x."""
    if n < 0:
        raise ValueError(n)
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(("x%03d" if i < len(groups) - 1 else "%03d") % g for i, g in enumerate(groups))


def _suffix(width):
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level, index, width=TILE_WIDTH):
    """`tile/<L>/<N>[.p/<W>]`."""
    return f"tile/{level}/{encode_index(index)}{_suffix(width)}"


def bundle_path(index, width=TILE_WIDTH, kind="entries"):
    """`tile/entries/<N>[.p/<W>]` (or another kind of bundle, such as `entries32`)."""
    return f"tile/{kind}/{encode_index(index)}{_suffix(width)}"


def tiles_for_size(size):
    """Every tile a tree of `size` has: at each level the full tiles, then the partial one of width
    floor(size / 256**level) mod 256 when that is not 0; no level without a hash."""
    tiles, level = [], 0
    while size // TILE_WIDTH ** level:
        count = size // TILE_WIDTH ** level  # hashes at this level
        tiles += [Tile(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH)]
        if count % TILE_WIDTH:
            tiles.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return tiles


def bundles_for_size(size):
    """The entry bundles of a tree of `size`: the level-0 tiles' indexes and widths."""
    return [t for t in tiles_for_size(size) if t.level == 0]


def split_hashes(data, width):
    """A tile's bytes as `width` hashes; TileError when it is not exactly that long."""
    if len(data) != width * HASH_SIZE:
        raise TileError(f"tile of {len(data)} bytes, expected {width} hashes ({width * HASH_SIZE} bytes)")
    return [bytes(data[i:i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def read_tile_levels(size, fetch):
    """Fetches every tile of a tree of `size` (fetch(path) -> bytes) and returns the hashes of each
    level, checked against one another: every hash at level l+1 must be the MTH of the full tile
    below it. TileError on any wrong length or mismatch."""
    levels = []
    for tile in tiles_for_size(size):
        if tile.level == len(levels):
            levels.append([])
        levels[tile.level] += split_hashes(fetch(tile_path(tile.level, tile.index, tile.width)), tile.width)
    for level in range(1, len(levels)):
        below = levels[level - 1]
        for j, value in enumerate(levels[level]):
            if mth(below[j * TILE_WIDTH:(j + 1) * TILE_WIDTH]) != value:
                raise TileError(f"hash {j} of level {level} is not the hash of tile {j} of level {level - 1}")
    return levels


def root_from_levels(levels, size):
    """MTH(D[0:size]) from per-level tile hashes: the perfect subtrees of size's binary decomposition,
    largest first, each from the highest level that covers it, folded from the right (RFC 9162's split)."""
    if size == 0:
        return EMPTY_ROOT
    subtrees, start = [], 0
    for bit in reversed(range(size.bit_length())):
        count = 1 << bit
        if size & count:
            level = bit // 8  # 256**level <= count < 256**(level+1)
            unit = TILE_WIDTH ** level
            subtrees.append(mth(levels[level][start // unit:(start + count) // unit]))
            start += count
    root = subtrees[-1]
    for left in reversed(subtrees[:-1]):
        root = node_hash(left, root)
    return root


def root_from_tiles(size, fetch):
    """The root of the tree of `size` rebuilt from its tiles alone (compare it with the checkpoint's)."""
    return root_from_levels(read_tile_levels(size, fetch), size)


def parse_entry_bundle(data, prefix=2):
    """The entries of a bundle of big-endian length-prefixed entries (uint16, or uint32 with prefix=4)."""
    entries, offset = [], 0
    while offset < len(data):
        if offset + prefix > len(data):
            raise TileError("entry bundle cut inside a length prefix")
        length = int.from_bytes(data[offset:offset + prefix], "big")
        offset += prefix
        if offset + length > len(data):
            raise TileError(f"entry bundle cut inside an entry of {length} bytes")
        entries.append(bytes(data[offset:offset + length]))
        offset += length
    return entries


def verify_entry_bundle(entries, tile_hashes):
    """Each entry must hash to the corresponding hash of its level-0 tile."""
    if len(entries) != len(tile_hashes):
        raise TileError(f"bundle of {len(entries)} entries for a tile of {len(tile_hashes)} hashes")
    for i, (entry, expected) in enumerate(zip(entries, tile_hashes)):
        if leaf_hash(entry) != expected:
            raise TileError(f"entry {i} of the bundle does not hash to hash {i} of its tile")
