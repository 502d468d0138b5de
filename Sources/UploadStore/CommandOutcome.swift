public import UploadCore

/// What a committed command recorded.
public struct CommandOutcome: Sendable {
    /// The command's events with their positions (for a retry, the first attempt's); only
    /// CallAnswered when it changed nothing, and none when it also sent no invocation id (a
    /// BatchDeleteImage whose events do not tell its answer ends with CallAnswered too).
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

    /// What an earlier attempt of this very call recorded: the same `amz-sdk-invocation-id` (its
    /// `run` of events, found in the ``InvocationWindow``), the same principal, the same request
    /// (``RequestMetadata/requestDigest``) and events this command records. `nil` when the id was
    /// not used within the window.
    /// - Throws: `IdempotentParameterMismatchException` when another call used the id: the
    ///   caller's command must write nothing, and must not be answered with the other call's result.
    /// - Parameter state: the projections at the log's tail, which answer again what the events do not
    ///   hold (``Decider/answeredAgain(_:recorded:decidedAt:state:settings:)``).
    static func recorded(
        _ command: Command, _ metadata: RequestMetadata, run: InvocationWindow.Run?,
        events read: (_ first: UInt64, _ count: UInt64) throws -> [EventEnvelope],
        state: some ProjectionState, settings: DecisionSettings
    ) throws -> CommandOutcome? {
        guard let invocationId = metadata.invocationId, let run else { return nil }
        let events = try read(run.first, run.count)
        let sameCall = events.allSatisfy { recorded in
            command.records(recorded.event.type) && recorded.metadata.principal == metadata.principal
                && recorded.event.answeredCall.map { $0.operation == command.operationName } ?? true
                // Events from before request digests were recorded can only be matched by kind.
                && (recorded.metadata.requestDigest == nil || recorded.metadata.requestDigest == metadata.requestDigest)
        }
        guard sameCall else {
            throw CommandError(
                .idempotentParameterMismatch,
                "The amz-sdk-invocation-id '\(invocationId)' was already used by a different request; a retry must repeat the same operation and body with the same credentials")
        }
        let decision = try Decider.answeredAgain(
            command, recorded: events.map(\.event), decidedAt: events.first?.recordedAt ?? Timestamp(millisecondsSinceEpoch: 0), state: state, settings: settings)
        return CommandOutcome(events: events, decision: decision, isRetry: true)
    }
}
