import Foundation
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
    }

    let workDirectory: String

    func run(callers: Int, commands: Int) async throws -> Result {
        let fixture = try await StoreFixture(workDirectory: workDirectory, name: "append-c\(callers)")
        defer { fixture.remove() }
        let store = fixture.store
        let perCaller = commands / callers
        let before = store.writerStatistics.transactions
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
        let transactions = store.writerStatistics.transactions - before
        let meanBytes = try fixture.meanRecordBytes()
        await fixture.close()
        return Result(perSecond: Double(perCaller * callers) / elapsed, latencies: latencies, meanRecordBytes: meanBytes, transactions: transactions)
    }
}
