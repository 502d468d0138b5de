import Crypto
import UploadCore

/// The named tables this store keeps the projection state in. Their names are the LMDB database names.
enum ProjectionTable: String, Sendable, CaseIterable, Comparable {
    /// uploadId → ``UploadSession``: the current-upload-sessions view.
    case sessions = "sessions"
    /// `registryId/repositoryName` → ``RepositorySummary``: the per-repository view.
    case repositories = "repositories"
    /// uploadId → ``RepositoryMark``: every active upload and its repository. Keyed by the
    /// time-ordered upload id, so that a new upload lands at the tree's right edge; a repository's
    /// uploads are found by filtering on the mark. That reads every active upload (idle ones
    /// expire, after a day by default), which only DeleteRepository, expiry and start-up do.
    case activeUploads = "active-uploads"
    /// `registryId/repositoryName` 0x00 layerDigest → ``LayerRecord``: the layers available in a repository.
    case layers = "layers"
    /// `registryId/repositoryName` 0x00 imageDigest → ``ImageRecord``.
    case images = "images"
    /// `registryId/repositoryName` 0x00 imageTag → ``TagRecord``.
    case imageTags = "image-tags"
    /// recordedAt (8 bytes BE, ms) · position (8 bytes BE) → ``RepositoryMark``: every
    /// UploadInitiated in time order, at the tree's right edge. One repository's are found by
    /// filtering a time range on the mark.
    case initiations = "initiations"
    /// position (8 bytes BE) → ``InvocationMark``: each event of an SDK call that sent an
    /// invocation id. Keyed by position so that every insert lands at the tree's right edge; the
    /// writer folds the log's recent stretch of it into ``InvocationWindow``.
    case invocationMarks = "invocation-marks"
    /// `registryId/repositoryName` → ``RepositoryDetails``: catalog data and tags.
    case repositoryDetails = "repository-details"
    /// registryId → ``RegistryCatalog``.
    case registries = "registries"
    /// `registryId/repositoryName` 0x00 subjectDigest 0x00 referrerDigest → ``MemberMark``: the
    /// images whose manifest names that subject, so that the referrers API reads one range of keys
    /// rather than every manifest of the repository.
    case referrers = "referrers"
    /// `registryId/repositoryName` 0x00 imageDigest 0x00 imageTag → ``MemberMark``: the tags of
    /// each image, one range of keys, kept with `image-tags` (which names each tag's image).
    case tagsByImage = "tags-by-image"
    /// `registryId/repositoryName` 0x00 imageDigest 0x00 listDigest → ``MemberMark``: the
    /// repository's manifest lists (indexes) that name each image.
    case manifestListsByImage = "manifest-lists-by-image"

    /// Whether each new key sorts after every key in the table (log positions), so that LMDB can
    /// write it with `MDB_APPEND`: full pages instead of half-full ones after each split.
    var keysOnlyGrow: Bool { self == .invocationMarks }

    static func < (a: ProjectionTable, b: ProjectionTable) -> Bool { a.rawValue < b.rawValue }
}

/// The keys of each table, in one place.
///
/// Every key of every value the API accepts must fit LMDB's 511 bytes: a repository's name is up to
/// 218 bytes with its registry, a tag up to 300. So a scoped key names a long repository by its
/// hash (see ``repositoryPrefix(_:)``).
enum ProjectionKey {
    /// The longest repository key used as a scoped prefix as it is; longer ones are hashed (a
    /// prefix of 34 bytes). The longest scoped key, an image's tag in
    /// ``ProjectionTable/tagsByImage``, is this key and 0x00 (75), a SHA-512 image digest (135:
    /// PutImage took one, with its tags of up to 300, in logs written before it took SHA-256
    /// alone), 0x00 and a tag of 300: 511, LMDB's limit.
    static let longestPlainRepositoryKey = 74

    static func session(_ uploadId: String) -> [UInt8] { Array(uploadId.utf8) }
    /// `registryId/name`, the bytes of ``RepositoryRef/description``, built without the string
    /// (every command on a repository makes this key several times).
    static func repository(_ ref: RepositoryRef) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(ref.registryId.utf8.count + 1 + ref.repositoryName.utf8.count)
        key.append(contentsOf: ref.registryId.utf8)
        key.append(UInt8(ascii: "/"))
        key.append(contentsOf: ref.repositoryName.utf8)
        return key
    }

    /// The start of every key scoped to a repository: `registryId/name` and a 0x00 separator, or,
    /// when that is longer than ``longestPlainRepositoryKey``, 0xFF, the SHA-256 of it, and 0x00
    /// (34 bytes). Neither can be a prefix of the other: plain names start with a digit, and
    /// contain no 0x00. Scoped keys are read back by their part after the prefix, never parsed.
    static func repositoryPrefix(_ ref: RepositoryRef) -> [UInt8] {
        let plain = repository(ref)
        guard plain.count > longestPlainRepositoryKey else { return plain + [0] }
        return [0xFF] + Array(SHA256.hash(data: plain)) + [0]
    }

    /// The key of `item` (a layer digest, image digest or tag) under a repository.
    static func scoped(_ ref: RepositoryRef, _ item: String) -> [UInt8] {
        repositoryPrefix(ref) + Array(item.utf8)
    }

    /// The item part of a key of a set that each image has (its referrers, its tags, the lists that
    /// name it): the image's digest, 0x00 (which no digest holds, so one image's set is one range
    /// of keys), the member.
    static func memberItem(_ digest: String, _ member: String) -> String { digest + "\u{0}" + member }

    /// The keys of the sets of the images whose digests sort from `first` through `last`: from the
    /// first key of `first`'s set (inclusive) to the key after the last of `last`'s (exclusive; the
    /// 0x01 after `last` sorts past `last`, 0x00 and any member).
    static func memberRange(_ ref: RepositoryRef, from first: String, through last: String) -> (lower: [UInt8], upper: [UInt8]) {
        (scoped(ref, memberItem(first, "")), scoped(ref, last) + [1])
    }

    /// The image's digest and the member an entry of such a set holds, from the part of its key
    /// after the repository's prefix.
    static func member(_ item: some Collection<UInt8>) -> (digest: String, member: String) {
        let separator = item.firstIndex(of: 0) ?? item.endIndex
        let member = separator == item.endIndex ? item[separator...] : item[item.index(after: separator)...]
        return (String(decoding: item[..<separator], as: UTF8.self), String(decoding: member, as: UTF8.self))
    }

    /// recordedAt and position, 16 bytes that sort by time, then position.
    static func timeAndPosition(_ at: Timestamp, _ position: UInt64) -> [UInt8] {
        BigEndian.bytes(UInt64(bitPattern: at.millisecondsSinceEpoch)) + BigEndian.bytes(position)
    }

    /// Where a scan of times from `since` on starts. Recorded times are never before 1970, so an
    /// earlier `since` starts at the first key (its bit pattern would sort after every key).
    static func timesFrom(_ since: Timestamp) -> [UInt8] {
        timeAndPosition(Timestamp(millisecondsSinceEpoch: max(0, since.millisecondsSinceEpoch)), 0)
    }

    /// Whether `a` sorts before `b` as LMDB compares keys: unsigned bytes, a prefix first.
    /// (The standard `lexicographicallyPrecedes` walks generic iterators: sorting a replay's
    /// digest entries with it took a quarter of `upload-replay verify` on a million events.)
    static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                var i = 0
                while i < n {
                    if x[i] != y[i] { return x[i] < y[i] }
                    i += 1
                }
                return x.count < y.count
            }
        }
    }

    /// A key as a person reads it in a report: its printable ASCII as it is, the 0x00 separator as
    /// `|`, and any other byte as `\xNN`.
    static func readable(_ key: some Collection<UInt8>) -> String {
        // Names are printable ASCII; times, positions and hashes are not, and their bytes must not
        // reach an operator's terminal as control characters: they are shown as `\xNN`.
        var shown = ""
        for byte in key {
            switch byte {
            case 0: shown += "|"
            case 0x20...0x7E where byte != UInt8(ascii: "\\"): shown.unicodeScalars.append(Unicode.Scalar(byte))
            default: shown += (byte < 0x10 ? "\\x0" : "\\x") + String(byte, radix: 16, uppercase: true)
            }
        }
        return shown
    }
}

