/// The tree served as tiles (C2SP tlog-tiles): groups of 256 consecutive hashes at every eighth
/// level of the tree, and the log's entries in bundles of 256, each at one immutable path.
///
/// The tile at level `l`, index `n`, holds MTH(D[(n·256 + i)·256^l ..< (n·256 + i + 1)·256^l]) for
/// i in 0 ..< its width: the nodes at tree level 8·l, which the store keeps as complete subtrees.
public struct TileAddress: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Hashes at tree level 8·level.
        case hashes(level: UInt8)
        /// Entries, each after its length as a big-endian uint16 (the spec's bundle).
        case entries
        /// Entries, each after its length as a big-endian uint32: this log's form for bundles
        /// holding an entry too long for the spec's (see TamperEvidence).
        case wideEntries
    }

    public static let width = 256

    public var kind: Kind
    public var index: UInt64
    /// 1 ... 256; 256 is a full tile, anything less a partial one (`.p/<W>`).
    public var width: Int

    public init(kind: Kind, index: UInt64, width: Int = TileAddress.width) {
        self.kind = kind
        self.index = index
        self.width = width
    }

    /// The path under `tile/`: `<L>/<N>[.p/<W>]`, `entries/<N>[.p/<W>]` or `entries32/…`.
    public var path: String {
        let prefix = switch kind {
        case .hashes(let level): String(level)
        case .entries: "entries"
        case .wideEntries: "entries32"
        }
        var groups = [String]()
        var rest = index
        repeat {
            let group = String(rest % 1000)
            groups.insert(String(repeating: "0", count: 3 - group.count) + group, at: 0)
            rest /= 1000
        } while rest > 0
        let n = groups.dropLast().map { "x" + $0 }.joined(separator: "/") + (groups.count > 1 ? "/" : "") + groups.last!
        return "\(prefix)/\(n)" + (width < Self.width ? ".p/\(width)" : "")
    }

    /// Parses a path under `tile/`, accepting only the canonical form, so every tile has one URL.
    public init?(path: String) {
        var parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        switch parts.removeFirst() {
        case "entries": kind = .entries
        case "entries32": kind = .wideEntries
        case let level:
            guard let l = Self.decimal(level), l < 64 else { return nil }
            kind = .hashes(level: UInt8(l))
        }
        width = Self.width
        if parts.count >= 2, parts[parts.count - 2].hasSuffix(".p") {
            guard let w = Self.decimal(parts.removeLast()), (1..<UInt64(Self.width)).contains(w) else { return nil }
            width = Int(w)
            parts[parts.count - 1] = parts[parts.count - 1].dropLast(2)
        }
        var index: UInt64 = 0
        for (i, part) in parts.enumerated() {
            let isLast = i == parts.count - 1
            let digits = isLast ? part[...] : part.dropFirst()
            guard isLast || part.first == "x", digits.utf8.count == 3, let group = Self.decimalDigits(digits),
                  i > 0 || isLast || group != 0 else { return nil }
            let (scaled, overflow) = index.multipliedReportingOverflow(by: 1000)
            let sum = scaled.addingReportingOverflow(group)
            guard !overflow, !sum.overflow else { return nil }
            index = sum.partialValue
        }
        self.index = index
    }

    /// A decimal without leading zeros.
    private static func decimal(_ text: Substring) -> UInt64? {
        guard text == "0" || text.first != "0" else { return nil }
        return decimalDigits(text)
    }

    /// ASCII digits only (bytes, not characters: a digit with a combining mark is not one), as a
    /// number; `nil` when empty or too large.
    private static func decimalDigits(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return UInt64(text)
    }

    /// The leaves the tile's hashes (or entries) cover, 0-based: they exist once the tree has
    /// `range.upperBound` leaves. `nil` when the tile lies past any possible tree.
    public var leaves: Range<UInt64>? {
        let level = if case .hashes(let l) = kind { UInt64(l) } else { UInt64(0) }
        let shift = 8 * level
        guard shift < 64 else { return nil }
        let perHash = UInt64(1) << shift
        let (first, o1) = index.multipliedReportingOverflow(by: UInt64(Self.width))
        let (start, o2) = first.multipliedReportingOverflow(by: perHash)
        let (count, o3) = UInt64(width).multipliedReportingOverflow(by: perHash)
        let (end, o4) = start.addingReportingOverflow(count)
        guard !(o1 || o2 || o3 || o4) else { return nil }
        return start..<end
    }

    /// The nodes (tree level, index) whose hashes the tile holds, in order; none for a tile past
    /// any possible tree (``leaves`` is `nil`).
    public var nodes: [(level: UInt8, index: UInt64)] {
        guard case .hashes(let level) = kind, leaves != nil else { return [] }
        let first = index * UInt64(Self.width)
        return (0..<UInt64(width)).map { (8 * level, first + $0) }
    }
}

/// The log's entries in a bundle: each entry after its length, big-endian, in `lengthBytes` bytes.
public enum EntryBundle {
    /// The bundle, or `nil` when an entry is too long for a `lengthBytes`-byte length.
    public static func encode(_ entries: [[UInt8]], lengthBytes: Int) -> [UInt8]? {
        let limit = lengthBytes >= 8 ? UInt64.max : (UInt64(1) << (8 * UInt64(lengthBytes))) - 1
        var bundle: [UInt8] = []
        bundle.reserveCapacity(entries.reduce(0) { $0 + $1.count + lengthBytes })
        for entry in entries {
            guard UInt64(entry.count) <= limit else { return nil }
            bundle += (0..<lengthBytes).map { UInt8(truncatingIfNeeded: UInt64(entry.count) >> (8 * UInt64(lengthBytes - 1 - $0))) }
            bundle += entry
        }
        return bundle
    }

    /// A leaf's entry: the data its hash covers (``MerkleTree/leafHash(position:record:)``), the
    /// event's 8-byte big-endian position and then its record.
    public static func entry(position: UInt64, record: some Collection<UInt8>) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: position >> (56 - 8 * $0)) } + record
    }
}
