/// Equality of bytes, as LMDB compares keys. Names are compared this way everywhere a key is:
/// `String`'s own `==` also equates canonically equivalent Unicode, which two keys can differ by.
public enum ExactBytes {
    /// Whether two buffers hold the same bytes, compared eight at a time: a generic
    /// `elementsEqual` here measured 13 % of replay's decoding thread (BENCHMARKS.md), and the
    /// domain's code calls no C library.
    public static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        var offset = 0
        while offset + 8 <= a.count {
            guard a.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == b.loadUnaligned(fromByteOffset: offset, as: UInt64.self) else {
                return false
            }
            offset += 8
        }
        while offset < a.count {
            guard a[offset] == b[offset] else { return false }
            offset += 1
        }
        return true
    }

    /// Whether every byte is ASCII, checked eight at a time: ASCII is valid UTF-8, so a fast path
    /// can take such text without the full check.
    public static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0, high: UInt64 = 0
        while offset + 8 <= bytes.count {
            high |= bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < bytes.count {
            high |= UInt64(bytes[offset])
            offset += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }
}

extension String {
    /// Equality of UTF-8 bytes (``ExactBytes``).
    public func sameBytes(as other: String) -> Bool {
        let equal = utf8.withContiguousStorageIfAvailable { a in
            other.utf8.withContiguousStorageIfAvailable { b in ExactBytes.equal(UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b)) }
        }
        return (equal ?? nil) ?? utf8.elementsEqual(other.utf8)
    }

    /// Order by UTF-8 bytes, as the store orders keys: how every sorted list in a record is sorted.
    public func precedesByBytes(_ other: String) -> Bool { utf8.lexicographicallyPrecedes(other.utf8) }

    /// Feeds the UTF-8 bytes and their count to `hasher` in one call where the string is contiguous:
    /// the hash that goes with ``sameBytes(as:)``.
    public func hashBytes(into hasher: inout Hasher) {
        hasher.combine(utf8.count)
        if utf8.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            Array(utf8).withUnsafeBytes { hasher.combine(bytes: $0) }  // the same bytes, the same hash
        }
    }
}

extension Array where Element == String {
    /// Whether the list is in byte order without repeats, as a record's sorted lists are kept.
    public var isInByteOrderWithoutRepeats: Bool { zip(self, dropFirst()).allSatisfy { $0.precedesByBytes($1) } }

    /// Adds `name` to a list kept in byte order without repeats (a resource's tag keys), unless it
    /// is there.
    public mutating func insertInByteOrder(_ name: String) {
        guard !contains(where: { $0.sameBytes(as: name) }) else { return }
        insert(name, at: firstIndex { name.precedesByBytes($0) } ?? endIndex)
    }
}
