import Foundation
public import LMDBKit
public import UploadCore
public import CoreMetrics
public import Logging

/// Everything a ``Store`` needs to open. Only executables read flags and environment variables;
/// they turn them into this value.
public struct StoreConfiguration: Sendable {
    /// The data directory: LMDB's `data.mdb` and `lock.mdb` live here.
    public var directory: String
    public var settings: DecisionSettings
    public var environment = Environment.Configuration()
    /// Apply pending migrations on open. When false, a store that needs them is refused.
    public var migrateOnOpen = true
    /// The most commands one write transaction takes.
    public var maxBatchSize = 4096
    /// The most commands waiting for the writer; beyond it, commands fail at once with
    /// `.overloaded` (ThrottlingException) instead of growing memory without bound.
    public var maxQueuedCommands = 20_000
    public var clock: any UploadCore.Clock = SystemClock()
    public var uploadIds: any UploadIDGenerator = RandomUploadIDs()
    /// Where the writer logs each committed batch (debug level, with `event.first`/`event.last`).
    public var logger = Logger(label: "upload-store")
    /// Where the writer reports commit latency and batch sizes; nowhere by default.
    public var metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance

    public init(directory: String, settings: DecisionSettings) {
        self.directory = directory
        self.settings = settings
    }

    /// The registry id used when none is configured. Twelve digits, like an AWS account id.
    public static let fallbackRegistryId = "000000000000"
}

/// The wall clock, in milliseconds.
public struct SystemClock: UploadCore.Clock {
    public init() {}
    public func now() -> Timestamp {
        Timestamp(millisecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }
}

/// Random (version 4) UUIDs, lowercase.
public struct RandomUploadIDs: UploadIDGenerator {
    public init() {}
    public func next() -> String { UUID().uuidString.lowercased() }
}
