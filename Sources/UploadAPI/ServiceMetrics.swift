import CoreMetrics
import Hummingbird
import Logging
import NIOCore
import Prometheus
import UploadCore
import UploadService
import UploadStore

/// The coordinator's metrics in Prometheus form, through swift-metrics with a Prometheus factory
/// of its own (no global bootstrap, so tests can make as many as they like).
public struct ServiceMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Every metric is made through it, with its help text (``MetricCatalogue``) and buckets:
    /// commit latency fine enough for fsyncs of a few hundred microseconds, request latency up to
    /// the database's answer limit, batch sizes up to the writer's largest batch.
    public let factory: any MetricsFactory
    /// Whether the last scrape failed to read the store: only a change is logged (the endpoint is
    /// open to anyone, and an outage must not become a line per scrape).
    let statisticsFailing = Locked(false)
    /// The read of the store's figures under way, which every scrape waits on, one at a time.
    let statisticsReads = SharedRead<StoreStatistics>()
    /// The read of the data folder's disk under way, apart from the store's: a full disk is one
    /// reason the store would not answer (and a shared folder's file system may itself hang).
    let diskReads = SharedRead<Disk.Bytes?>()
    /// The longest a scrape waits for the store's figures: then it serves the counters and the
    /// figures last read (Prometheus gives a scrape 10 s by default; a frozen database would take
    /// the answer limit).
    static let statisticsWait = Duration.seconds(2)
    /// The long-lived answers that follow the log: each reads it while it is quiet, so streams of
    /// readers that are gone would show in their gauge.
    enum Stream: CaseIterable {
        /// `/events/stream`.
        case events
        /// The audit page's `/gallery/audit/stream`.
        case audit

        var gauge: String {
            switch self {
            case .events: "upload_feed_streams_open"
            case .audit: "upload_pages_audit_streams_open"
            }
        }
    }

    /// The streams of each kind open now.
    private let openStreams = Locked<[Stream: Int]>([:])
    /// The connections open, counted by the connection guard (``CappedCount``): read at scrape
    /// time into `upload_coordinator_connections_open`.
    let openConnections = Locked<CappedCount?>(nil)
    let answersHeld = Locked<ByteBudget?>(nil)
    /// The per-request counters and timers, each made once.
    private let handles = MetricHandles()

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        // Eight buckets: a histogram by each operation and endpoint is 11 lines of a scrape each.
        let requestSeconds: [Duration] = [
            .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500), .milliseconds(2500),
            .seconds(10), .seconds(60),
        ]
        factory = DescribedMetricsFactory(
            registry: registry,
            durationBuckets: [
                "upload_store_commit_seconds": [
                    .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1),
                    // PostgreSQL's: a batch may wait 30 s for the append lock, and 60 s for an answer.
                    .seconds(5), .seconds(30), .seconds(60),
                ],
                "upload_coordinator_request_seconds": requestSeconds,
                "upload_coordinator_registry_request_seconds": requestSeconds,
            ],
            valueBuckets: ["upload_store_batch_commands": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]])
        // A series before the first stream.
        for stream in Stream.allCases { Gauge(label: stream.gauge, factory: factory).record(0) }
    }

    /// Starts each operation's and endpoint's count of answered requests at 0, so that a rate or
    /// an absence alert has a series before the first request (and after a restart).
    func startRequestCounts(operations: some Sequence<String>, endpoints: some Sequence<String>) {
        for operation in operations { countRequest(operation: operation, outcome: "ok", by: 0) }
        for endpoint in endpoints { countRegistryRequest(endpoint: endpoint, outcome: "ok", by: 0) }
    }

    /// The operation label of a request not authenticated, or naming no operation ECR Public has.
    static let unknownOperation = "unknown"

    /// Counts one API request by operation and outcome (`ok` or the error's name). Both labels come
    /// from closed sets (ECR Public's operation names or ``unknownOperation``; this service's error
    /// names), so no request can add a series.
    func countRequest(operation: String, outcome: String, by count: Int64 = 1) {
        handles.counter("upload_coordinator_requests_total", [("operation", operation), ("outcome", outcome)], factory).increment(by: count)
    }

    /// Times one API request, from its head to its answer's, by operation.
    func timeRequest(operation: String, since start: ContinuousClock.Instant) {
        handles.timer("upload_coordinator_request_seconds", [("operation", operation)], factory)
            .recordNanoseconds((ContinuousClock.now - start).nanoseconds)
    }

    /// Counts one registry request by endpoint (``RegistryFrontEnd/Route/name``, or `unknown`) and
    /// outcome (`ok`, or the spec's error code): closed sets, as above.
    func countRegistryRequest(endpoint: String, outcome: String, by count: Int64 = 1) {
        handles.counter("upload_coordinator_registry_requests_total", [("endpoint", endpoint), ("outcome", outcome)], factory).increment(by: count)
    }

    /// Times one registry request, from its head to its answer's (a blob's bytes follow), by endpoint.
    func timeRegistryRequest(endpoint: String, since start: ContinuousClock.Instant) {
        handles.timer("upload_coordinator_registry_request_seconds", [("endpoint", endpoint)], factory)
            .recordNanoseconds((ContinuousClock.now - start).nanoseconds)
    }

    /// Counts a connection the server ended itself (or refused on accept), by reason: a slow or
    /// stalled client, a cap reached. Without it an operator under a slow-client attack or a
    /// connection flood would see only debug lines.
    func countConnectionClosed(_ reason: ConnectionGuard.CloseReason) {
        Counter(label: "upload_coordinator_connections_closed_total", dimensions: [("reason", reason.rawValue)], factory: factory).increment()
    }

    /// Serves `connections`' count as `upload_coordinator_connections_open` (it may read a little
    /// above `--max-connections` for the moment a connection past it is refused), and starts every
    /// reason's close count at 0, so that a series exists before its first close.
    func watchOpenConnections(_ connections: CappedCount) {
        openConnections.withLock { $0 = connections }
        for reason in ConnectionGuard.CloseReason.allCases {
            Counter(label: "upload_coordinator_connections_closed_total", dimensions: [("reason", reason.rawValue)], factory: factory).increment(by: 0)
        }
    }

    /// Reports the bytes of answers held for clients (``AnswerHolding``) at each scrape.
    func watchAnswersHeld(_ answers: ByteBudget) { answersHeld.withLock { $0 = answers } }

    /// Counts a stream opened (`by` 1) or ended (-1).
    func countStream(_ stream: Stream, by change: Int) {
        openStreams.withLock { counts in
            counts[stream, default: 0] += change
            // Recorded under the lock: two streams ending together must not record out of order.
            Gauge(label: stream.gauge, factory: factory).record(Double(counts[stream, default: 0]))
        }
    }

    /// Whether the last scrape could read the store's figures (1) or not (0): the other store
    /// gauges then keep the values last read, and the request counters are still served, which
    /// are what shows an incident.
    static let statisticsUp = "upload_store_statistics_up"

    /// Sets the gauges read from the store at scrape time.
    func record(_ s: StoreStatistics) {
        let gauges: [(String, Double)] = [
            ("upload_store_log_position", Double(s.logPosition)),
            ("upload_store_checkpoint_lag", Double(s.checkpointLag)),
            ("upload_store_active_sessions", Double(s.activeSessions)),
            ("upload_store_map_size_bytes", Double(s.mapSizeBytes)),
            ("upload_store_map_used_bytes", Double(s.mapUsedBytes)),
            ("upload_store_readers", Double(s.readers)),
            ("upload_store_projections_map_size_bytes", Double(s.projectionMapSizeBytes)),
            ("upload_store_projections_map_used_bytes", Double(s.projectionMapUsedBytes)),
        ]
        for (label, value) in gauges { Gauge(label: label, factory: factory).record(value) }
    }

    /// Sets the gauges of the disk that holds the data folder: what a full disk is seen coming by
    /// (the log grows on it, and layer bytes stop at `--reserved-disk-bytes`).
    func record(disk: Disk.Bytes, reserved: UInt64) {
        let gauges: [(String, UInt64)] = [
            ("upload_coordinator_disk_free_bytes", disk.free),
            ("upload_coordinator_disk_total_bytes", disk.total),
            ("upload_coordinator_disk_reserved_bytes", reserved),
        ]
        for (label, value) in gauges { Gauge(label: label, factory: factory).record(Double(value)) }
    }
}

extension ECRPublicService {
    /// `GET /metrics`: the Prometheus text format. Open to anyone, so its read leaves the
    /// cooperative pool as every other read does (on PostgreSQL it waits on the network).
    func metricsResponse() async throws -> Response {
        let (store, blobs) = (self.store, service.blobs)
        let disk = metrics.diskReads.shared { Disk.bytes(of: blobs.directory) }
        let read = metrics.statisticsReads.shared { try await store.offTheCooperativePool { try store.statistics() } }
        let outcome = await read.result(within: ServiceMetrics.statisticsWait)
        // Asked at the same time as the store: by now a disk that answers has.
        if case .success(let bytes?)? = await disk.result(within: .milliseconds(100)) {
            metrics.record(disk: bytes, reserved: blobs.reservedDiskBytes)
        }
        var failure: (any Error)?
        switch outcome {
        case .success(let statistics)?: metrics.record(statistics)
        case .failure(let error)?: failure = error
        case nil: failure = StoreError(.io, "the store's figures were not read within \(ServiceMetrics.statisticsWait)")
        }
        Gauge(label: ServiceMetrics.statisticsUp, factory: metrics.factory).record(failure == nil ? 1 : 0)
        if let connections = metrics.openConnections.withLock({ $0 }) {
            Gauge(label: "upload_coordinator_connections_open", factory: metrics.factory).record(Double(connections.current))
        }
        if let answers = metrics.answersHeld.withLock({ $0 }) {
            Gauge(label: "upload_coordinator_answer_bytes_held", factory: metrics.factory).record(Double(answers.held))
        }
        // A full read queue is the moment's: it sets the gauge, and is not logged.
        let unreadable = failure.map { ($0 as? StoreError)?.code != .overloaded } ?? false
        if metrics.statisticsFailing.withLock({ failing in defer { failing = unreadable }; return failing != unreadable }) {
            if let failure {
                logger.warning("/metrics cannot read the store's figures; it serves the counters and the figures last read", metadata: ["error": "\(failure)"])
            } else {
                logger.notice("/metrics reads the store's figures again")
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: Self.piecewise(ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }
}

extension Task where Failure == any Error {
    /// The task's result, or `nil` once `wait` has passed first; the task itself goes on. (A task
    /// group would not do: it waits for every child, and awaiting `result` ignores cancellation.)
    func result(within wait: Duration) async -> Result<Success, any Error>? {
        let waiter = Locked<CheckedContinuation<Result<Success, any Error>?, Never>?>(nil)
        return await withCheckedContinuation { continuation in
            waiter.withLock { $0 = continuation }
            // A cancelled sleep throws at once: the timer then answers nothing, and the result
            // takes the continuation before it cancels the timer, so a fast read never reads as
            // one that timed out (it did, now and then, under parallel scrapes).
            let timer = Task<Void, Never> {
                do { try await Task<Never, Never>.sleep(for: wait) } catch { return }
                waiter.withLock { $0.take() }?.resume(returning: nil)
            }
            Task<Void, Never> {
                let result = await self.result
                waiter.withLock { $0.take() }?.resume(returning: result)
                timer.cancel()
            }
        }
    }
}

/// One read at a time, shared by whoever asks while it runs: scrapes of `/metrics` that arrive
/// while the store is slow wait on the read under way rather than start one each.
final class SharedRead<Value: Sendable>: Sendable {
    private let slot = Locked<(generation: UInt64, task: Task<Value, any Error>?)>((0, nil))

    /// The read under way, or `read` started now.
    func shared(_ read: @escaping @Sendable () async throws -> Value) -> Task<Value, any Error> {
        slot.withLock { current in
            if let task = current.task { return task }
            current.generation += 1
            let (generation, slot) = (current.generation, self.slot)
            let task = Task {
                // Its end frees the slot (after the lock this creation holds).
                defer { slot.withLock { if $0.generation == generation { $0.task = nil } } }
                return try await read()
            }
            current.task = task
            return task
        }
    }
}

/// Counters and timers by label and dimensions, each made once and kept: making one runs the
/// Prometheus registry's name, help and label checks under its lock, about 2.5 µs, which every
/// request paid twice. Their labels come from closed sets, so the cache is bounded.
final class MetricHandles: Sendable {
    private let counters = Locked<[[String]: CoreMetrics.Counter]>([:])
    private let timers = Locked<[[String]: CoreMetrics.Timer]>([:])

    func counter(_ label: String, _ dimensions: [(String, String)], _ factory: any MetricsFactory) -> CoreMetrics.Counter {
        Self.kept(in: counters, label, dimensions) { CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory) }
    }

    func timer(_ label: String, _ dimensions: [(String, String)], _ factory: any MetricsFactory) -> CoreMetrics.Timer {
        Self.kept(in: timers, label, dimensions) { CoreMetrics.Timer(label: label, dimensions: dimensions, factory: factory) }
    }

    /// The handle `table` keeps for the label and dimensions, made (outside the lock) the first time.
    private static func kept<Handle: Sendable>(
        in table: Locked<[[String]: Handle]>, _ label: String, _ dimensions: [(String, String)], making make: () -> Handle
    ) -> Handle {
        let key = [label] + dimensions.flatMap { [$0.0, $0.1] }
        if let made = table.withLock({ $0[key] }) { return made }
        let made = make()
        return table.withLock { kept in
            if let first = kept[key] { return first }
            kept[key] = made
            return made
        }
    }
}
