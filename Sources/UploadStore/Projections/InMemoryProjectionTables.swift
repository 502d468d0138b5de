import UploadCore

/// The projection tables held in memory: replay's scratch state, and the tests' reference model.
///
/// Records stay values, one dictionary per record type: nothing is encoded until
/// ``entries(_:)`` is asked for (replay's digest), so a rebuild spends its time folding events.
/// A look-up returns the record through `any FieldRecord` and one cast to `R`; casting the
/// concrete record to `R` directly measured slower (55k against 100k events/s on 20k events),
/// since the projector is not specialised across modules.
struct InMemoryProjectionTables: KeyedProjectionTables, Sendable {
    /// Key bytes hashed in one call (`[UInt8]`'s own hashing feeds the hasher a byte at a time).
    struct Key: Hashable, Sendable {
        let bytes: [UInt8]
        func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    }

    private var sessions: [Key: UploadSession] = [:]
    private var repositories: [Key: RepositorySummary] = [:]
    private var layers: [Key: LayerRecord] = [:]
    private var images: [Key: ImageRecord] = [:]
    private var tags: [Key: TagRecord] = [:]
    /// In key order: its keys only grow (``ProjectionTable/keysOnlyGrow``), so a put appends and
    /// the digest needs no sort of its million entries.
    private var invocationMarks = OrderedRecords<InvocationMark>()
    /// The index tables, whose values are all ``RepositoryMark``.
    private var marks: [ProjectionTable: [Key: RepositoryMark]] = [:]

    init() {}

    func record<R: FieldRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        let key = Key(bytes: key)
        let found: (any FieldRecord)? = switch table {
        case .sessions: sessions[key]
        case .repositories: repositories[key]
        case .layers: layers[key]
        case .images: images[key]
        case .imageTags: tags[key]
        case .invocationMarks: invocationMarks[key.bytes]
        case .activeUploads, .initiations: marks[table]?[key]
        }
        guard let found else { return nil }
        guard let record = found as? R else {
            throw CodecError("table \(table.rawValue) holds a \(Swift.type(of: found)), not a \(R.self)")
        }
        return record
    }

    mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some FieldRecord) throws {
        let key = Key(bytes: key)
        switch table {
        case .sessions: sessions[key] = try Self.cast(record, table)
        case .repositories: repositories[key] = try Self.cast(record, table)
        case .layers: layers[key] = try Self.cast(record, table)
        case .images: images[key] = try Self.cast(record, table)
        case .imageTags: tags[key] = try Self.cast(record, table)
        case .invocationMarks: invocationMarks[key.bytes] = try Self.cast(record, table)
        case .activeUploads, .initiations: marks[table, default: [:]][key] = try Self.cast(record, table)
        }
    }

    mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) {
        let key = Key(bytes: key)
        switch table {
        case .sessions: sessions[key] = nil
        case .repositories: repositories[key] = nil
        case .layers: layers[key] = nil
        case .images: images[key] = nil
        case .imageTags: tags[key] = nil
        case .invocationMarks: invocationMarks[key.bytes] = nil
        case .activeUploads, .initiations: marks[table]?[key] = nil
        }
    }

    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) -> [[UInt8]] {
        if table == .invocationMarks { return invocationMarks.keys.filter { $0.starts(with: prefix) } }  // already in order
        let keys: [Key] = switch table {
        case .sessions: Array(sessions.keys)
        case .repositories: Array(repositories.keys)
        case .layers: Array(layers.keys)
        case .images: Array(images.keys)
        case .imageTags: Array(tags.keys)
        case .invocationMarks: []  // answered above
        case .activeUploads, .initiations: Array(marks[table, default: [:]].keys)
        }
        return keys.map(\.bytes).filter { $0.starts(with: prefix) }.sorted(by: ProjectionKey.precedes)
    }

    func entries<R: FieldRecord>(in table: ProjectionTable, withPrefix prefix: [UInt8], as type: R.Type) throws -> [(key: [UInt8], value: R)] {
        try keys(in: table, withPrefix: prefix).map { key in
            guard let value = try record(table, key, as: type) else { throw CodecError("table \(table.rawValue) lost key \(key)") }
            return (key, value)
        }
    }

    /// Every entry of `table`, encoded, in key byte order: the order and bytes LMDB holds.
    func entries(_ table: ProjectionTable) -> [(key: [UInt8], value: [UInt8])] {
        if table == .invocationMarks { return invocationMarks.encodedInOrder() }  // already in order
        func encoded(_ records: [Key: some FieldRecord]) -> [(key: [UInt8], value: [UInt8])] {
            records.map { ($0.key.bytes, $0.value.encoded()) }
        }
        let entries: [(key: [UInt8], value: [UInt8])] = switch table {
        case .sessions: encoded(sessions)
        case .repositories: encoded(repositories)
        case .layers: encoded(layers)
        case .images: encoded(images)
        case .imageTags: encoded(tags)
        case .invocationMarks: []  // answered above
        case .activeUploads, .initiations: encoded(marks[table, default: [:]])
        }
        return entries.sorted { ProjectionKey.precedes($0.key, $1.key) }
    }

    private static func cast<R>(_ record: some FieldRecord, _ table: ProjectionTable) throws -> R {
        guard let typed = record as? R else {
            throw CodecError("table \(table.rawValue) holds \(R.self) records, not \(type(of: record))")
        }
        return typed
    }
}

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

    func encodedInOrder() -> [(key: [UInt8], value: [UInt8])] { entries.map { ($0.key, $0.record.encoded()) } }
}
