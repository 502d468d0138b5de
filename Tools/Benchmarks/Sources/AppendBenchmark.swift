import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UploadCore
import UploadStore

/// Durable InitiateLayerUpload commands through `Store.execute` from C concurrent callers, each
/// awaiting its answer before sending the next, against lmdb-baseline with the same record count,
/// the same mean record size and batch B = C, both with full sync.
struct AppendBenchmark {
    struct Result {
        let perSecond: Double
        let latencies: Latencies
        let meanRecordBytes: Int
        let transactions: Int
        /// Bytes the process wrote to the disk per command (the kernel's count, `ru_oublock`).
        let diskBytesPerCommand: Double
        /// The share of the run the writer spent writing batches (commits included), and the
        /// mean time of one: the rest of the run it waited for callers.
        let writerBusy: Double
        let meanWriteMs: Double
    }

    let workDirectory: String

    func run(callers: Int, commands: Int) async throws -> Result {
        let fixture = try await StoreFixture(workDirectory: workDirectory, name: "append-c\(callers)")
        defer { fixture.remove() }
        let store = fixture.store
        let perCaller = commands / callers
        let before = store.writerStatistics
        let blocksBefore = DiskWrites.ownBlocks()
        let started = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: Latencies.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var latencies = Latencies()
                    let command = Command.initiateLayerUpload(try InitiateLayerUpload(repositoryName: StoreFixture.repository(caller)))
                    for n in 0..<perCaller {
                        let metadata = StoreFixture.metadata(caller * perCaller + n)
                        let sent = ContinuousClock.now
                        _ = try await store.execute(command, metadata: metadata)
                        latencies.append((ContinuousClock.now - sent).seconds)
                    }
                    return latencies
                }
            }
            var all = Latencies()
            for try await part in group { all.append(contentsOf: part) }
            return all
        }
        let elapsed = (ContinuousClock.now - started).seconds
        let diskBytes = Double(DiskWrites.ownBlocks() - blocksBefore) * 512 / Double(perCaller * callers)
        let after = store.writerStatistics
        let transactions = after.transactions - before.transactions
        let writing = (after.writing - before.writing).seconds
        let meanBytes = try fixture.meanRecordBytes()
        await fixture.close()
        return Result(perSecond: Double(perCaller * callers) / elapsed, latencies: latencies, meanRecordBytes: meanBytes, transactions: transactions,
                      diskBytesPerCommand: diskBytes, writerBusy: writing / elapsed, meanWriteMs: 1000 * writing / Double(max(transactions, 1)))
    }
}

/// Bytes written to the disk, as the kernel counts them (512-byte units of `ru_oublock`): how much
/// more than the raw log each durable command costs the disk.
enum DiskWrites {
    static func ownBlocks() -> Int { blocks(RUSAGE_SELF.rawValue) }
    /// Of children that have exited and been waited for.
    static func childBlocks() -> Int { blocks(RUSAGE_CHILDREN.rawValue) }

    private static func blocks(_ who: Int32) -> Int {
        var usage = rusage()
        getrusage(who, &usage)
        return usage.ru_oublock
    }
}
