import UploadCore

/// Records kept in key byte order in an array: for a table whose keys only grow, every put is an
/// append. Out-of-order keys are still placed correctly (by binary search), only slower.
struct OrderedRecords<R: FieldRecord & Sendable>: Sendable {
    private var entries: [(key: [UInt8], record: R)] = []

    var keys: [[UInt8]] { entries.map(\.key) }

    /// Where `key` is, or would be inserted.
    private func index(of key: [UInt8]) -> (index: Int, found: Bool) {
        if let last = entries.last, ProjectionKey.precedes(last.key, key) { return (entries.count, false) }
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if ProjectionKey.precedes(entries[mid].key, key) { low = mid + 1 } else { high = mid }
        }
        return (low, low < entries.count && entries[low].key == key)
    }

    subscript(key: [UInt8]) -> R? {
        get {
            let (index, found) = index(of: key)
            return found ? entries[index].record : nil
        }
        set {
            let (index, found) = index(of: key)
            switch (newValue, found) {
            case (let record?, true): entries[index].record = record
            case (let record?, false): entries.insert((key, record), at: index)
            case (nil, true): entries.remove(at: index)
            case (nil, false): break
            }
        }
    }

    /// Each key and encoded record in key order, encoded one at a time.
    func forEachInOrder(_ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Void) rethrows {
        for entry in entries { try body(entry.key, entry.record.encoded()) }
    }
}
