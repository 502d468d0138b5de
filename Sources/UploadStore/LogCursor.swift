/// A consumer's place in the log: the position it read up to, and the leaf (in the Merkle tree) of
/// the event it read there. The feeds (`/events`, `/events/stream`) and `upload-coordinator events`
/// give each event's leaf, and take the pair back to resume: a log restored from a backup, or failed
/// over losing commits, after the consumer read past what it now holds is told apart from one that
/// still holds it, rather than resumed from a position in another history.
public enum LogCursorRefusal: Error, Equatable, Sendable {
    /// The position is past the log's last one.
    case pastTheEnd(tail: UInt64)
    /// The leaf is not 32 bytes.
    case malformedLeaf
    /// A leaf given with position 0, where there is no event.
    case leafAtZero
    /// The log holds another event at the position.
    case takenBack
}

extension StoreSnapshot {
    /// Checks a consumer's cursor: `after` must be a position the log holds, and, when the
    /// consumer gives the leaf it was sent with the event at `after`, the event there must be that one.
    /// - Throws: ``LogCursorRefusal``.
    public func checkCursor(after: UInt64, leaf: [UInt8]?) throws {
        let tail = try lastPosition()
        guard after <= tail else { throw LogCursorRefusal.pastTheEnd(tail: tail) }
        guard let leaf else { return }
        guard leaf.count == 32 else { throw LogCursorRefusal.malformedLeaf }
        guard after > 0 else { throw LogCursorRefusal.leafAtZero }
        guard try merkleNode(level: 0, index: after - 1) == leaf else { throw LogCursorRefusal.takenBack }
    }
}
