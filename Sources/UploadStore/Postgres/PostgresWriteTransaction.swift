import LogHashing
import PostgresKit
import UploadCore

/// One batch's transaction, for ``WritePath``: events and Merkle nodes held until
/// ``flush(projectionsAt:then:)`` writes them in one round trip, and read back from memory meanwhile.
struct PostgresWriteTransaction: WriteTransaction {
    let connection: PostgresConnection
    var tables: PostgresTables
    /// The log's tail when the batch began: later positions are this batch's.
    private let tail: UInt64
    private var records: [[UInt8]] = []
    private var nodes: [(level: UInt8, index: UInt64, hash: MerkleTree.Hash)] = []
    /// The nodes this batch completed, and the tree's right edge it began from: what its later
    /// leaves read instead of asking the database.
    private var nodeIndex: [MerkleNodeAddress: MerkleTree.Hash]

    /// - Parameter rightEdge: the tree's right edge at `tail`, if known (``rightEdge()`` of the
    ///   batch that ended there); nodes missing from it are read from the database.
    init(
        connection: PostgresConnection, tail: UInt64, decoded: DecodedRecords = DecodedRecords(),
        rightEdge: [MerkleNodeAddress: MerkleTree.Hash] = [:]
    ) {
        self.connection = connection
        self.tail = tail
        tables = PostgresTables(connection: connection, decoded: decoded)
        nodeIndex = rightEdge
    }

    /// The last node completed at each level, as of this batch's last record: every stored node a
    /// later leaf can need (a leaf only ever pairs with the newest node of each level to its left).
    func rightEdge() -> [MerkleNodeAddress: MerkleTree.Hash] {
        var newest: [UInt8: MerkleNodeAddress] = [:]
        for address in nodeIndex.keys where address.index >= newest[address.level]?.index ?? 0 { newest[address.level] = address }
        var edge: [MerkleNodeAddress: MerkleTree.Hash] = [:]
        for address in newest.values { edge[address] = nodeIndex[address] }
        return edge
    }

    mutating func append(_ envelope: EventEnvelope) throws {
        try append(record: envelope.encoded(), at: envelope.position)
    }

    /// Appends a record as it is (``StoreCopy``), binding it into the Merkle tree.
    mutating func append(record: [UInt8], at position: UInt64) throws {
        precondition(position == tail + UInt64(records.count) + 1, "events are appended in order")
        records.append(record)
        let leaf = MerkleTree.leafHash(position: position, record: record)
        // Read in place, not through a copy, which the writes below would then copy whole.
        let completed = try MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf) { level, index in
            if let hash = nodeIndex[MerkleNodeAddress(level: level, index: index)] { return hash }
            return try PostgresLog.merkleNode(connection, level: level, index: index)
        }
        for node in completed {
            nodes.append(node)
            nodeIndex[MerkleNodeAddress(level: node.level, index: node.index)] = node.hash
        }
    }

    func events(from first: UInt64, count: UInt64) throws -> [EventEnvelope] {
        var events = first <= tail ? try PostgresLog.events(connection, after: first - 1, limit: Int(min(count, tail - first + 1))) : []
        var position = first + UInt64(events.count)
        while UInt64(events.count) < count, position > tail, position - tail <= UInt64(records.count) {
            events.append(try EventLog.decode(position: position, records[Int(position - tail - 1)][...]))
            position += 1
        }
        return events
    }

    /// Writes the batch in one round trip with `then` (`COMMIT`, say), its rows in statements
    /// whose text does not vary with the batch (``PostgresRowBatch``, prepared once per
    /// connection; deletions are not prepared): its events, Merkle nodes and projection changes,
    /// the projections' position (the new tail; `nil` for records a copy imports, whose
    /// projections are built afterwards), and the notification every node's feeds wake on (sent
    /// by the server when the transaction commits).
    func flush(projectionsAt projected: UInt64?, then: [String] = []) throws {
        let tail = self.tail + UInt64(records.count)
        var events = PostgresRowBatch(into: "events", columns: [("position", .int8), ("record", .bytea)])
        for (offset, record) in records.enumerated() { events.append(.position(self.tail + UInt64(offset) + 1), .bytes(record)) }
        var merkleNodes = PostgresRowBatch(into: "merkle_nodes", columns: [("last_leaf", .int8), ("level", .int2), ("hash", .bytea)])
        for node in nodes { merkleNodes.append(.position(PostgresLog.lastLeaf(node.level, node.index)), .int16(Int16(node.level)), .bytes(node.hash)) }
        var queries = events.queries + merkleNodes.queries + tables.takeChanges()
        if let projected { queries += PostgresProjectionState(position: projected, version: Projector.version).rows.queries }
        queries.append(.prepared("SELECT pg_notify($1, $2)", [.text(PostgresLog.channel), .text(String(tail))]))
        try connection.pipeline(queries + then.map { PostgresConnection.Query($0) })
    }
}

/// A node of the Merkle tree: its level (0 for leaves) and its index at that level.
struct MerkleNodeAddress: Hashable {
    let level: UInt8
    let index: UInt64
}
