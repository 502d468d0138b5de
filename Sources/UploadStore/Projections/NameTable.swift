import Foundation
import UploadCore

/// Byte strings interned to dense numbers, 0, 1, 2, … in the order first seen: replay's flat state
/// names each upload, digest and repository by its number, so its fold stores and compares
/// integers, and the bytes of each name are kept once, in one buffer.
///
/// Names are compared by their bytes (``UploadCore/ExactBytes``), as LMDB compares keys. The hash
/// is this type's own and fixed, so nothing depends on a seed; no order of the table's is ever
/// read: the digest and a rebuild sort by the names' bytes.
struct NameTable: Sendable, Equatable {
    /// Name `n` is `bytes[ends[n] ..< ends[n + 1]]`.
    private var bytes: [UInt8] = []
    private var ends: [Int] = [0]
    /// Open addressing with linear probing, at most half full: each slot holds a name's number
    /// plus one (0 is empty) in its low half and 32 bits of the name's hash in its high half, so
    /// a probe reads one word and touches a name's bytes only when the hashes agree.
    private var slots = [UInt64](repeating: 0, count: 64)

    private(set) var count = 0

    /// The name's number, adding it if it is new.
    mutating func intern(_ name: UnsafeRawBufferPointer) -> Int {
        let hash = Self.hash(name)
        var slot = Int(hash) & (slots.count - 1)
        while slots[slot] != 0 {
            if let n = match(slots[slot], hash, name) { return n }
            slot = (slot + 1) & (slots.count - 1)
        }
        let n = count
        precondition(n < Int(UInt32.max - 1), "more names than a replay holds")
        slots[slot] = UInt64(hash) << 32 | UInt64(n + 1)
        bytes.append(contentsOf: name)
        ends.append(bytes.count)
        count += 1
        if 2 * count > slots.count { grow() }
        return n
    }

    mutating func intern(_ name: String) -> Int {
        var name = name
        return name.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    /// The name's number, if it has one.
    func find(_ name: UnsafeRawBufferPointer) -> Int? {
        let hash = Self.hash(name)
        var slot = Int(hash) & (slots.count - 1)
        while slots[slot] != 0 {
            if let n = match(slots[slot], hash, name) { return n }
            slot = (slot + 1) & (slots.count - 1)
        }
        return nil
    }

    func find(_ name: String) -> Int? {
        var name = name
        return name.withUTF8 { find(UnsafeRawBufferPointer($0)) }
    }

    /// The number in `slot` if it names `name`.
    @inline(__always)
    private func match(_ slot: UInt64, _ hash: UInt32, _ name: UnsafeRawBufferPointer) -> Int? {
        guard UInt32(truncatingIfNeeded: slot >> 32) == hash else { return nil }
        let n = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
        return withName(n) { ExactBytes.equal($0, name) } ? n : nil
    }

    func string(_ n: Int) -> String { withName(n) { String(decoding: $0, as: UTF8.self) } }

    func key(_ n: Int) -> [UInt8] { Array(bytes[ends[n]..<ends[n + 1]]) }

    func withName<R>(_ n: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[ends[n]..<ends[n + 1]])) }
    }

    /// Whether name `a` sorts before name `b` as LMDB compares keys: unsigned bytes, a prefix first.
    func precedes(_ a: Int, _ b: Int) -> Bool {
        bytes.withUnsafeBytes { all in
            let (x, y) = (ends[a], ends[b])
            let (xCount, yCount) = (ends[a + 1] - x, ends[b + 1] - y)
            guard let base = all.baseAddress else { return false }  // every name is empty
            let order = memcmp(base + x, base + y, min(xCount, yCount))
            return order != 0 ? order < 0 : xCount < yCount
        }
    }

    /// Each name's place in byte order (the order of ``precedes(_:_:)``), so that the digest sorts
    /// a table's entries by integers (on a million-event log, the first rebuild's digest went from
    /// 1.23 to about 0.9 s; BENCHMARKS.md).
    ///
    /// Names are ordered by the eight bytes after the prefix they all share (a digest's `sha256:`),
    /// read as a big-endian number, and by their whole bytes only where those eight agree. Padding a
    /// short name with zeros keeps that order exact: where a zero of padding differs from a byte of
    /// the other name, that byte is not zero, and the short name is the prefix that sorts first.
    func byteOrderRanks() -> [UInt32] {
        let shared = sharedPrefixLength()
        var order = (0..<count).map { (key: window(of: $0, from: shared), name: UInt32($0)) }
        order.sort { $0.key != $1.key ? $0.key < $1.key : precedes(Int($0.name), Int($1.name)) }
        var ranks = [UInt32](repeating: 0, count: count)
        for (rank, entry) in order.enumerated() { ranks[Int(entry.name)] = UInt32(rank) }
        return ranks
    }

    /// How many leading bytes every name has, and shares with every other.
    private func sharedPrefixLength() -> Int {
        guard count > 0 else { return 0 }
        var shared = ends[1]
        for n in 1..<count where shared > 0 {
            shared = withName(n) { name in
                withName(0) { first in
                    var i = 0
                    while i < min(shared, name.count), name[i] == first[i] { i += 1 }
                    return i
                }
            }
        }
        return shared
    }

    /// The eight bytes of name `n` from `offset`, big-endian, zeros past its end.
    private func window(of n: Int, from offset: Int) -> UInt64 {
        withName(n) { name in
            var key: UInt64 = 0
            for i in offset..<offset + 8 { key = key << 8 | UInt64(i < name.count ? name[i] : 0) }
            return key
        }
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: old.count * 2)
        for entry in old where entry != 0 {
            var slot = Int(entry >> 32) & (slots.count - 1)
            while slots[slot] != 0 { slot = (slot + 1) & (slots.count - 1) }
            slots[slot] = entry
        }
    }

    /// A multiply-and-rotate hash over eight bytes at a time, with the length mixed in; 32 bits of it.
    private static func hash(_ name: UnsafeRawBufferPointer) -> UInt32 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h = UInt64(name.count) &* k
        var offset = 0
        while offset + 8 <= name.count {
            h = ((h ^ name.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* k).rotateLeft(29)
            offset += 8
        }
        var tail: UInt64 = 0
        while offset < name.count {
            tail = tail << 8 | UInt64(name[offset])
            offset += 1
        }
        h = (h ^ tail) &* k
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }
}

extension UInt64 {
    fileprivate func rotateLeft(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}
