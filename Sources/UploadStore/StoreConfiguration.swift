import Foundation
import LogHashing
public import LMDBKit
public import UploadCore
public import CoreMetrics
public import Logging

/// Everything a ``Store`` needs to open. Only executables read flags and environment variables;
/// they turn them into this value.
public struct StoreConfiguration: Sendable {
    /// The data directory: the log's LMDB files (`data.mdb`, `lock.mdb`) live here, and the
    /// projections' in `projections/`.
    public var directory: String
    public var settings: DecisionSettings
    public var environment = Environment.Configuration()
    /// Apply pending migrations on open. When false, a store that needs them is refused.
    public var migrateOnOpen = true
    /// The most commands one write transaction takes.
    public var maxBatchSize = 4096
    /// The most manifest bytes one write transaction takes (``UploadCore/Command/manifestBytes``),
    /// past its first command: PostgreSQL refuses a message over 1 GB, and a batch's rows go in
    /// one, so 256 pushes of 4 MiB manifests written together failed every command with them.
    public var maxBatchManifestBytes = 64 << 20
    /// The most commands waiting for the writer; beyond it, commands fail at once with
    /// `.overloaded` (ThrottlingException) instead of growing memory without bound.
    public var maxQueuedCommands = 20_000
    /// The longest the writer waits, after answering a batch, for its callers' next commands
    /// (see `GroupCommitWriter`); zero takes whatever is queued at once.
    public var maxGatherWait = Duration.milliseconds(2)
    /// On PostgreSQL: the longest the writer, the API's reads, the commit listener and the leader
    /// election wait for one answer from the server before they cut the connection
    /// (``PostgresKit/PostgresConnection/answerLimit``); then the request fails with
    /// ServerException, a write's outcome unknown. Longer than the append lock's 30 s wait.
    /// `nil` waits as long as the server takes.
    public var databaseAnswerLimit: Duration? = .seconds(60)
    /// How far back an SDK retry is answered with its original result (``RetryWindow``).
    public var retryWindow = RetryWindow.default
    /// The longest from a command's claim of its blobs to its decision (``BlobClaims``): never
    /// longer than ``BlobClaims/lease`` outside tests, which shorten it to see every claiming path
    /// fenced.
    public var blobClaimLease = BlobClaims.lease
    /// The clock decisions and recorded times read. On PostgreSQL, ``SystemClock`` stands for the
    /// database's clock, so that all nodes keep one: decisions read it under the append lock, and
    /// the store's `clock` (tokens, signatures, pages) is this node's set to it. Another clock (a
    /// test's) is read as given.
    public var clock: any UploadCore.Clock = SystemClock()
    /// This boot of the machine, which tells a restart of the process from a crash of the machine
    /// (see ``ProjectionEnvironment``); a test gives another to stand for a reboot.
    public var bootId = BootID.current
    /// For tests: asked before each commit of the projections that follows a log commit, and
    /// before the catch-up that a failed one calls for; `true` fails it, as a full disk would.
    package var failProjectionCommit: (@Sendable () -> Bool)?
    public var uploadIds: any UploadIDGenerator = TimeOrderedUploadIDs()
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

/// The wall clock, in milliseconds, with its steps held off (``WallClockSteps``).
public struct SystemClock: UploadCore.Clock {
    public init() {}
    public func now() -> Timestamp { Timestamp(millisecondsSinceEpoch: SteadyWallClock.now()) }
}

/// UUIDs of version 7 (RFC 9562), lowercase: 48 bits of Unix milliseconds, a 12-bit counter that
/// keeps ids from one process strictly increasing within a millisecond, and 62 random bits.
///
/// Why not version 4: upload ids key the sessions table (and the active-uploads index). A
/// random key lands on a random B-tree page, which the commit must copy, write and sync with its
/// branch path; increasing keys fill the tree's right edge. In raw LMDB, random 36-byte keys cost
/// about 16 KB of disk writes per insert, increasing ones about 260 B (Tools/Benchmarks/BENCHMARKS.md).
public final class TimeOrderedUploadIDs: UploadIDGenerator {
    private let state = Locked<(milliseconds: UInt64, counter: UInt64)>((0, 0))

    public init() {}

    public func next() -> String {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let (milliseconds, counter) = state.withLock { last in
            // Never go backwards: a clock step back or a full counter borrows from the next millisecond.
            if now > last.milliseconds {
                last = (now, 0)
            } else if last.counter < 0xfff {
                last.counter += 1
            } else {
                last = (last.milliseconds + 1, 0)
            }
            return last
        }
        var random = BufferedRandom()
        let high = milliseconds << 16 | 0x7000 | counter  // unix_ts_ms · ver · rand_a (the counter)
        let low = (random.next() as UInt64) & 0x3fff_ffff_ffff_ffff | 0x8000_0000_0000_0000  // var · rand_b
        return Hex.uuid(high: high, low: low)
    }
}

/// Random UUIDs (version 4), lowercase: request ids. Foundation's `UUID()` opens, reads and closes
/// `/dev/urandom` on every call on Linux; these take their bits from ``BufferedRandom``.
public enum RandomUUIDs {
    public static func next() -> String {
        var random = BufferedRandom()
        let high = (random.next() as UInt64) & ~0xf000 | 0x4000  // version 4
        let low = (random.next() as UInt64) & 0x3fff_ffff_ffff_ffff | 0x8000_0000_0000_0000  // variant
        return Hex.uuid(high: high, low: low)
    }
}

/// The kernel's random bits, fetched 256 bytes at a time: the standard library's generator makes a
/// `getrandom` call for every 64 bits, three of them for each request's ids; this makes one call
/// for 32 words. Each word is handed out once.
public struct BufferedRandom: RandomNumberGenerator {
    /// The most `getentropy(3)` gives in one call.
    private static let bytesPerFill = 256
    /// Starts spent, so the first call fills it.
    private static let pool = Locked<(words: [UInt64], next: Int)>(([UInt64](repeating: 0, count: bytesPerFill / 8), bytesPerFill / 8))

    public init() {}

    public mutating func next() -> UInt64 {
        Self.pool.withLock { pool in
            if pool.next == pool.words.count {
                pool.words.withUnsafeMutableBytes(Self.fill)
                pool.next = 0
            }
            defer { pool.next += 1 }
            return pool.words[pool.next]
        }
    }

    /// One `getentropy` call (a `getrandom` system call); should it ever fail, the standard
    /// library's generator fills the buffer a word at a time.
    private static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard getentropy(buffer.baseAddress!, buffer.count) != 0 else { return }
        var system = SystemRandomNumberGenerator()
        for offset in stride(from: 0, to: buffer.count, by: 8) { buffer.storeBytes(of: system.next(), toByteOffset: offset, as: UInt64.self) }
    }
}
