import LMDBKit
import UploadCore

/// Verify's checks that are not a rebuild: the Merkle tree (``MerkleVerification``), then the whole
/// decoding of every record, cut into ranges. Each of verify's two threads takes the next check no
/// one has taken once its own rebuild is done, so the checks fill whichever core is free, the
/// largest first, and neither core idles while the other works.
final class SharedChecks: Sendable {
    /// The whole decoding is cut into at most this many ranges, of at least `minimumRange` events
    /// each: small enough that the two threads end close together, few enough that each range is
    /// one long scan.
    static let wholeDecodingRanges = 8

    private let merkle: MerkleVerification
    private let schema: Schema
    private let tick: @Sendable () -> Void
    private let ranges: [ClosedRange<UInt64>]
    /// The order the checks are taken in: 0 is the Merkle tree, then the ranges.
    private let order: [Int]
    /// How many checks have been taken, and each one's outcome.
    private let state: Locked<(taken: Int, outcomes: [Result<Void, any Error>?])>

    /// - Parameter lastFirst: take the checks in reverse (tests: the outcome must not depend on
    ///   which range ran first).
    init(
        merkle: MerkleVerification, size: UInt64, schema: Schema, minimumRange: UInt64 = 10_000, lastFirst: Bool = false,
        tick: @escaping @Sendable () -> Void
    ) {
        self.merkle = merkle
        self.schema = schema
        self.tick = tick
        let count = min(UInt64(Self.wholeDecodingRanges), max(1, size / max(minimumRange, 1)))
        let step = max((size + count - 1) / count, 1)
        ranges = size == 0 ? [] : stride(from: UInt64(1), through: size, by: Int(step)).map { $0...min($0 + step - 1, size) }
        order = lastFirst ? Array((0...ranges.count).reversed()) : Array(0...ranges.count)
        state = Locked((0, Array(repeating: nil, count: 1 + ranges.count)))
    }

    /// Runs checks no one has taken, in `txn`, until none is left. Called by each thread only over
    /// a log its rebuild found whole and dense: the Merkle check sizes its buffer by the log's size.
    func help(_ txn: Transaction) {
        while let check = claim() {
            let outcome = Result {
                if check == 0 {
                    try merkle.check(txn, schema, tick: tick)
                } else {
                    try Replayer.decodeWhole(txn, schema, positions: ranges[check - 1], tick: tick)
                }
            }
            state.withLock { $0.outcomes[check] = outcome }
        }
    }

    /// The Merkle check's outcome, once both threads have stopped helping.
    var merkleOutcome: Result<Void, any Error> { outcome(0) }

    /// The first record, in log order, that does not decode whole; once both threads have stopped helping.
    var wholeDecodingOutcome: Result<Void, any Error> {
        for check in ranges.indices.map({ $0 + 1 }) {
            if case .failure = outcome(check) { return outcome(check) }
        }
        return .success(())
    }

    private func claim() -> Int? {
        state.withLock { state in
            guard state.taken < order.count else { return nil }
            defer { state.taken += 1 }
            return order[state.taken]
        }
    }

    private func outcome(_ check: Int) -> Result<Void, any Error> {
        // Every check has run once the main thread has helped and the other has ended.
        state.withLock { $0.outcomes[check] } ?? .failure(Replayer.Failure.unusable("a check of the log did not run"))
    }
}

extension Replayer {
    /// Decodes each record at `positions` whole (``EventEnvelope``, metadata included), which a
    /// rebuild never does (it reads only what projections read): what proves every record decodes.
    /// The rebuilds check that the positions are dense; this decodes the ones there are.
    static func decodeWhole(_ txn: Transaction, _ schema: Schema, positions: ClosedRange<UInt64>, tick: () -> Void = {}) throws {
        // Decoded from one reused array, not one made per record.
        var whole: [UInt8] = []
        try txn.scan(schema.events, from: BigEndian.bytes(positions.lowerBound)) { key, value in
            guard let position = BigEndian.uint64(key), position <= positions.upperBound else { return false }
            whole.removeAll(keepingCapacity: true)
            whole.append(contentsOf: value)
            do {
                _ = try EventEnvelope(position: position, decoding: whole)
            } catch let error as CodecError {
                throw Failure.log("the event at position \(position) does not decode: \(error)")
            }
            tick()
            return true
        }
    }
}
