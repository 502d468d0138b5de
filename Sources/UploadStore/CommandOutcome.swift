import LMDBKit
public import UploadCore

/// What a committed command recorded.
public struct CommandOutcome: Sendable {
    /// The command's events with their positions; empty when it changed nothing (an exact retry).
    public let events: [EventEnvelope]
    /// The decision they came from (BatchDeleteImage's answered ids and refusals).
    public let decision: Decision
    /// Whether this answers a retry with what the first attempt recorded.
    public var isRetry = false

    init(events: [EventEnvelope], decision: Decision, isRetry: Bool = false) {
        self.events = events
        self.decision = decision
        self.isRetry = isRetry
    }

    /// What an earlier attempt of this very call recorded: the same `amz-sdk-invocation-id`, the
    /// same principal, and events this command records. A different call that reuses the id
    /// (a client bug, or a forged header) is not a retry and is decided normally.
    static func recorded(
        _ command: Command, _ metadata: RequestMetadata, _ txn: Transaction, _ schema: Schema
    ) throws -> CommandOutcome? {
        guard let invocationId = metadata.invocationId,
              let record = try LMDBTables(txn: txn, schema: schema).invocation(invocationId) else { return nil }
        var events: [EventEnvelope] = []
        try EventLog.scan(txn, schema, after: record.firstPosition - 1) { envelope in
            events.append(envelope)
            return UInt64(events.count) < record.count
        }
        guard events.allSatisfy({ command.records($0.event.type) && $0.metadata.principal == metadata.principal }) else { return nil }
        return CommandOutcome(events: events, decision: Decision(events.map(\.event)), isRetry: true)
    }
}
