import Foundation
import UploadCore
import UploadStore

/// A log of whole layer uploads (initiate, two parts, complete: four events each), written
/// through the store's write path without fsync (only its contents matter here), then:
/// - replay: events per second folding the whole log into both projections (`Replayer.rebuild`),
///   against lmdb-baseline's cursor scan over as many records of the same mean size;
/// - open: process start to ready line of `serve` on that store, against the same on an empty store.
struct ReplayBenchmark {
    let workDirectory: String

    /// Writes at least `events` events. - Returns: the fixture (closed) and the log's length.
    /// With `keepingIn`, reuses the store there when it has one.
    func makeLog(events: Int, keepingIn kept: String? = nil) async throws -> (directory: String, events: UInt64, meanRecordBytes: Int) {
        if let kept, FileManager.default.fileExists(atPath: kept + "/data.mdb") {
            let fixture = try await StoreFixture(existing: kept)
            let length = try fixture.store.read { try $0.lastPosition() }
            let meanBytes = try fixture.meanRecordBytes()
            await fixture.close()
            return (kept, length, meanBytes)
        }
        let fixture = try await StoreFixture(workDirectory: workDirectory, name: "replay", durable: false, directory: kept)
        let store = fixture.store
        let callers = 1024
        let flowsPerCaller = (events / 4 + callers - 1) / callers
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    for n in 0..<flowsPerCaller {
                        try await Self.upload(store, repository: StoreFixture.repository(caller), flow: caller * flowsPerCaller + n)
                    }
                }
            }
            try await group.waitForAll()
        }
        let length = try store.read { try $0.lastPosition() }
        let meanBytes = try fixture.meanRecordBytes()
        await fixture.close()
        return (fixture.directory, length, meanBytes)
    }

    private static func upload(_ store: Store, repository: String, flow: Int) async throws {
        let first: UInt64 = 5_242_880, second: UInt64 = 1024
        // Each call its own request and invocation id, as an SDK sends them.
        let started = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: repository)), metadata: StoreFixture.metadata(flow))
        guard case .uploadInitiated(let initiated)? = started.events.first?.event else { throw CommandError(.server, "no UploadInitiated") }
        let uploadId = initiated.uploadId
        let partDigest = "sha256:" + String(repeating: "ab", count: 32)
        for (firstByte, length) in [(UInt64(0), first), (first, second)] {
            // The log alone is measured: no bytes are staged, so the part is marked staged by hand.
            var part = try UploadLayerPart(
                repositoryName: repository, uploadId: uploadId, partFirstByte: Int64(firstByte),
                partLastByte: Int64(firstByte + length - 1), partLength: length, partDigest: partDigest)
            part.staged = true
            _ = try await store.execute(.uploadLayerPart(part), metadata: StoreFixture.metadata(flow))
        }
        let layerDigest = "sha256:" + String(format: "%064x", flow)
        var complete = try CompleteLayerUpload(repositoryName: repository, uploadId: uploadId, layerDigests: [layerDigest])
        complete.staged = .init(digest: layerDigest, size: first + second)
        _ = try await store.execute(.completeLayerUpload(complete), metadata: StoreFixture.metadata(flow))
    }

    /// Median rate of `runs` full rebuilds.
    func replay(directory: String, runs: Int) throws -> (perSecond: Double, events: UInt64) {
        var rates: [Double] = []
        var events: UInt64 = 0
        for _ in 0..<runs {
            let rebuild = try Replayer.rebuild(directory: directory)
            events = rebuild.events
            rates.append(Double(rebuild.events) / rebuild.seconds)
        }
        return (median(rates), events)
    }

    /// Log events per second through `Replayer.verify`, the check `upload-replay verify` runs
    /// (one run: it reads the log three times).
    func verify(directory: String) throws -> Double {
        let report = Replayer.verify(directory: directory)
        if let failure = report.failure { throw failure }
        return Double(report.events) / report.seconds
    }

    /// Median seconds from launching `serve` to its ready line, over `runs` starts after one
    /// unmeasured start (which applies migrations to a new store and warms the page cache).
    func open(server: String, directory: String, runs: Int) throws -> Double {
        var times: [Double] = []
        for _ in 0...runs {
            let serve = try ServerProcess(server, ["serve", "--data-dir", directory, "--port", "0", "--allow-anonymous"], readyMarker: "listening on http://")
            times.append(serve.secondsToReady)
            serve.stop()
        }
        return median(Array(times.dropFirst()))
    }
}
