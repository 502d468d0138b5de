import Crypto
import Foundation
import LMDBKit
import UploadCore

/// The canonical digest of projection state: SHA-256 over every table in name order, and within
/// each table every entry in key byte order, each as
/// `table name · 0x00 · len(key) · key · len(value) · value` with 8-byte big-endian lengths.
/// Live LMDB tables and in-memory rebuilds are hashed through the same entries, so equal state
/// gives equal digests.
enum ProjectionDigest {
    typealias Entry = (table: ProjectionTable, key: [UInt8], value: [UInt8])

    static func entries(_ tables: some ProjectionEntries) -> [Entry] {
        ProjectionTable.allCases.sorted().flatMap { table in tables.entries(table).map { (table, $0.key, $0.value) } }
    }

    static func liveEntries(_ txn: Transaction, _ schema: ProjectionSchema) throws -> [Entry] {
        var entries: [Entry] = []
        for table in ProjectionTable.allCases.sorted() {
            try txn.scan(schema.database(table)) { key, value in
                entries.append((table, Array(key), Array(value)))
                return true
            }
        }
        return entries
    }

    /// The digest of rebuilt tables, hashed one table at a time (no list of every entry).
    static func of(_ tables: some ProjectionEntries) -> SHA256.Digest {
        var hasher = Hasher()
        for table in ProjectionTable.allCases.sorted() {
            tables.forEachEntry(table) { hasher.add(table, $0, $1) }
        }
        return hasher.finalize()
    }

    /// The digest of the live tables, hashed straight from the map (no copies).
    static func ofLive(_ txn: Transaction, _ schema: ProjectionSchema) throws -> SHA256.Digest {
        var hasher = Hasher()
        for table in ProjectionTable.allCases.sorted() {
            try txn.scan(schema.database(table)) { key, value in
                hasher.add(table, key, value)
                return true
            }
        }
        return hasher.finalize()
    }

    /// One entry at a time, gathered into a buffer that goes to SHA-256 64 KiB at a time (a call
    /// per field of a million entries cost more than the hashing itself); the table's name bytes
    /// are made once per table.
    struct Hasher {
        private var sha = SHA256()
        private var table: ProjectionTable?
        private var name: [UInt8] = []
        private var pending: [UInt8] = []
        private static let batch = 65_536

        init() { pending.reserveCapacity(Self.batch + 4096) }

        mutating func add(_ table: ProjectionTable, _ key: some ContiguousBytes, _ value: some ContiguousBytes) {
            if table != self.table {
                self.table = table
                name = Array(table.rawValue.utf8) + [0]
            }
            pending += name
            key.withUnsafeBytes { key in
                withUnsafeBytes(of: UInt64(key.count).bigEndian) { pending.append(contentsOf: $0) }
                pending.append(contentsOf: key)
            }
            value.withUnsafeBytes { value in
                withUnsafeBytes(of: UInt64(value.count).bigEndian) { pending.append(contentsOf: $0) }
                pending.append(contentsOf: value)
            }
            if pending.count >= Self.batch { flush() }
        }

        private mutating func flush() {
            sha.update(data: pending)
            pending.removeAll(keepingCapacity: true)
        }

        consuming func finalize() -> SHA256.Digest {
            flush()
            return sha.finalize()
        }
    }

    /// Walks two sorted entry lists together and describes the first place they differ.
    static func firstDifference(
        _ left: [Entry], _ right: [Entry], leftName: String = "first", rightName: String = "second"
    ) -> String? {
        var l = 0, r = 0
        while l < left.count || r < right.count {
            let a = l < left.count ? left[l] : nil
            let b = r < right.count ? right[r] : nil
            if let a, let b, a.table == b.table, a.key == b.key {
                if a.value != b.value {
                    return "table \(a.table.rawValue), key '\(ProjectionKey.readable(a.key))': the \(leftName) value differs from the \(rightName) value"
                }
                l += 1
                r += 1
                continue
            }
            // The entry that sorts first is the one the other side lacks.
            let leftFirst: Bool
            if let a, let b {
                leftFirst = a.table != b.table ? a.table < b.table : ProjectionKey.precedes(a.key, b.key)
            } else {
                leftFirst = a != nil
            }
            let missing = leftFirst ? a! : b!
            return "table \(missing.table.rawValue), key '\(ProjectionKey.readable(missing.key))': only the \(leftFirst ? leftName : rightName) state has it"
        }
        return nil
    }
}
