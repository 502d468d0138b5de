import ArgumentParser
import Foundation

/// Every performance figure of upload-coordinator, each as a ratio to a reference measured in the
/// same run (see BENCHMARKS.md). Run it through `Tools/bench`, which builds it in release mode and
/// passes the reference programs.
@main
struct UploadBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload-bench",
        abstract: "Measure append, replay, verify, open, http, parts, the registry flow and PostgreSQL against their references, in one run.")

    @Option(help: "The built lmdb-baseline (Tools/Benchmarks/reference/lmdb-baseline.c).") var baseline: String
    @Option(help: "The built upload-coordinator, for the figures that run `serve`.") var server: String
    @Option(help: "The folder with the wrk scripts.") var scripts = "Tools/Benchmarks/reference"
    @Option(help: "Where stores and files are made (a real disk: fsync is part of what is measured).") var workDir: String?
    static let figureGroups = ["append", "replay", "verify", "open", "http", "parts", "registry", "postgres"]
    @Option(help: "Comma-separated figures to run: \(figureGroups.joined(separator: ", ")).")
    var only = figureGroups.joined(separator: ",")
    @Option(help: "The PostgreSQL server for the postgres figures (Tools/bench starts one).") var databaseUrl: String?
    @Option(help: ArgumentHelp("Keep the replay/open log here and reuse it on later runs (for profiling).", visibility: .hidden)) var logDir: String?
    @Flag(help: "Small sizes and short runs: checks that every benchmark works, measures nothing worth quoting.") var quick = false

    func validate() throws {
        // A misspelt name would otherwise measure nothing and print an empty table.
        let unknown = only.split(separator: ",").map(String.init).filter { !Self.figureGroups.contains($0) }
        guard unknown.isEmpty else {
            throw ValidationError("--only: unknown figure(s) \(unknown.joined(separator: ", ")); the figures are \(Self.figureGroups.joined(separator: ", "))")
        }
    }

    func run() async throws {
        let selected = Set(only.split(separator: ",").map { String($0) })
        let work = workDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("upload-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: work) } }
        let report = Report()
        report.note("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB; load before: \(loadAverage()); mode: \(quick ? "quick (not for quoting)" : "full")")
        let lmdb = LMDBBaseline(executable: baseline, workDirectory: work)

        if selected.contains("append") { try await appendFigures(report, lmdb, work) }
        if !selected.isDisjoint(with: ["replay", "verify", "open"]) { try await replayAndOpenFigures(report, lmdb, work, selected) }
        if !selected.isDisjoint(with: ["http", "parts", "registry"]) { try httpAndPartsFigures(report, work, selected) }
        if selected.contains("postgres") { try await postgresFigures(report, work) }
        print("")
        report.printTable()
        if report.figures.contains(where: { $0.met == false }) {
            FileHandle.standardError.write(Data("# some targets were missed; BENCHMARKS.md explains where the time goes\n".utf8))
        }
    }

    private func appendFigures(_ report: Report, _ lmdb: LMDBBaseline, _ work: String) async throws {
        let shapes: [(callers: Int, commands: Int, target: Double)] = quick
            ? [(1, 200, 0.8), (64, 64 * 32, 0.8), (1024, 1024 * 8, 0.6)]
            : [(1, 3000, 0.8), (64, 64 * 1500, 0.8), (1024, 1024 * 400, 0.6)]
        for shape in shapes {
            let ours = try await AppendBenchmark(workDirectory: work).run(callers: shape.callers, commands: shape.commands)
            let floor = try lmdb.run(records: shape.commands, recordBytes: ours.meanRecordBytes, batch: shape.callers)
            report.add(Figure(name: "append-c\(shape.callers)", value: ours.perSecond, reference: floor.appendPerSecond, unit: "events/s",
                              referenceName: "lmdb-baseline -b \(shape.callers), \(ours.meanRecordBytes) B", target: .ratioAtLeast(shape.target)))
            // The floor's latency: one durable transaction of B records.
            let floorCommitMs = 1000 * Double(shape.callers) / floor.appendPerSecond
            for p in [50.0, 99.0] {
                report.add(Figure(name: "append-c\(shape.callers)-p\(Int(p))-ms", value: 1000 * ours.latencies.percentile(p), reference: floorCommitMs,
                                  unit: "ms", referenceName: "baseline ms per transaction", target: shape.callers == 64 && p == 99 ? .valueAtMost(5) : nil))
            }
            report.note("append c=\(shape.callers): \(shape.commands) commands in \(ours.transactions) transactions (mean batch \(String(format: "%.1f", Double(shape.commands) / Double(max(ours.transactions, 1))))); disk bytes written per event: ours \(Int(ours.diskBytesPerCommand)), baseline \(Int(floor.diskBytesPerRecord)); writer busy \(Int((100 * ours.writerBusy).rounded())) % of the run, \(String(format: "%.2f", ours.meanWriteMs)) ms a batch")
        }
    }

    private func replayAndOpenFigures(_ report: Report, _ lmdb: LMDBBaseline, _ work: String, _ selected: Set<String>) async throws {
        let bench = ReplayBenchmark(workDirectory: work)
        let log = try await bench.makeLog(events: quick ? 20_000 : 1_000_000, keepingIn: logDir)
        defer { if logDir == nil { try? FileManager.default.removeItem(atPath: log.directory) } }
        report.note("replay/open log: \(log.events) events, mean record \(log.meanRecordBytes) B")
        if selected.contains("replay") {
            let ours = try bench.replay(directory: log.directory, runs: quick ? 1 : 3)
            let floor = try lmdb.run(records: Int(ours.events), recordBytes: log.meanRecordBytes, batch: 10_000, sync: false)
            report.add(Figure(name: "replay", value: ours.perSecond, reference: floor.scanPerSecond, unit: "events/s",
                              referenceName: "lmdb-baseline scan", target: .valueAtLeast(2_000_000)))
        }
        if selected.contains("verify") {
            // What an operator runs: two rebuilds, the live tables' digest and the Merkle tree,
            // the second rebuild on another core (see Replayer).
            let ours = try bench.verify(directory: log.directory)
            let floor = try lmdb.run(records: Int(log.events), recordBytes: log.meanRecordBytes, batch: 10_000, sync: false)
            report.add(Figure(name: "verify-\(log.events / 1000)k", value: ours, reference: floor.scanPerSecond, unit: "events/s",
                              referenceName: "lmdb-baseline scan", target: .valueAtLeast(500_000)))
        }
        if selected.contains("open") {
            let empty = work + "/open-empty-\(UUID().uuidString)"
            let reference = try bench.open(server: server, directory: empty, runs: quick ? 1 : 5)
            let ours = try bench.open(server: server, directory: log.directory, runs: quick ? 1 : 5)
            report.add(Figure(name: "open-\(log.events / 1000)k", value: 1000 * ours, reference: 1000 * reference, unit: "ms",
                              referenceName: "serve on an empty store", target: .valueAtMost(100)))
        }
    }

    private func httpAndPartsFigures(_ report: Report, _ work: String, _ selected: Set<String>) throws {
        let serve = try ServerProcess(server, [
            "serve", "--data-dir", work + "/http-\(UUID().uuidString)", "--port", "0", "--allow-anonymous", "--benchmark-noop-route",
            "--max-active-uploads", "1000000000", "--log-level", "warning",
        ], readyMarker: "listening on http://")
        defer { serve.stop() }
        let created = try HTTPClient.post(port: serve.port, target: "CreateRepository", body: Array(#"{"repositoryName":"bench/app"}"#.utf8))
        guard created.status == 200 else { throw BenchError("CreateRepository answered \(created.status): \(created.text)") }

        if selected.contains("http") {
            guard let wrk = Processes.which("wrk") else { throw BenchError("wrk is not installed (Tools/bench installs it)") }
            let http = HTTPBenchmark(wrk: wrk, scripts: scripts, duration: quick ? "1s" : "10s", runs: quick ? 1 : 3)
            let (ours, noop) = try http.measureServer(port: serve.port)
            report.add(Figure(name: "http-vs-noop", value: ours.rps, reference: noop.rps, unit: "req/s",
                              referenceName: "no-op route, same server", target: .ratioAtLeast(0.8)))
            report.note("http InitiateLayerUpload p50 \(ours.p50Milliseconds) ms, p99 \(ours.p99Milliseconds) ms; no-op p50 \(noop.p50Milliseconds) ms, p99 \(noop.p99Milliseconds) ms (wrk -t1 -c32)")
            guard let registry = Processes.which("docker-registry") else { throw BenchError("docker-registry is not installed (Tools/bench installs it)") }
            let peer = try http.measureDistribution(registry: registry, workDirectory: work)
            report.add(Figure(name: "http-vs-distribution", value: ours.rps, reference: peer.rps, unit: "req/s",
                              referenceName: "distribution POST /v2/<name>/blobs/uploads/", target: .ratioAtLeast(20)))
            report.note("distribution initiation p50 \(peer.p50Milliseconds) ms, p99 \(peer.p99Milliseconds) ms")
        }
        if selected.contains("registry") {
            guard let registry = Processes.which("docker-registry") else { throw BenchError("docker-registry is not installed (Tools/bench installs it)") }
            // The same client, flow and connections against both, alternating runs.
            let flows = HTTPBenchmark(wrk: "", scripts: scripts, duration: quick ? "1s" : "10s", runs: 1)
            var ours: [HTTPBenchmark.Run] = [], peer: [HTTPBenchmark.Run] = []
            try HTTPBenchmark.withDistribution(registry: registry, workDirectory: work) { peerPort in
                for _ in 0..<(quick ? 1 : 3) {
                    ours.append(try flows.measurePushFlows(port: serve.port, repository: "bench/app", concurrency: 4))
                    peer.append(try flows.measurePushFlows(port: peerPort, repository: "demo/app", concurrency: 4))
                }
            }
            let (o, p) = (ours.sorted { $0.rps < $1.rps }[ours.count / 2], peer.sorted { $0.rps < $1.rps }[peer.count / 2])
            report.add(Figure(name: "registry-push-vs-distribution", value: o.rps, reference: p.rps, unit: "flows/s",
                              referenceName: "distribution, same flow (POST, PUT ?digest=, HEAD; 4 KiB; 4 connections)", target: .ratioAtLeast(10)))
            report.note("registry push flow p50 \(o.p50Milliseconds) ms, p99 \(o.p99Milliseconds) ms; distribution p50 \(p.p50Milliseconds) ms, p99 \(p.p99Milliseconds) ms")
        }
        if selected.contains("parts") {
            let parts = PartsBenchmark(workDirectory: work, parts: quick ? 2 : 10)
            let ours = try parts.throughServer(port: serve.port)
            let floor = try parts.minimalLoop()
            report.add(Figure(name: "parts-10mib", value: ours, reference: floor, unit: "MB/s",
                              referenceName: "hash + write + fsync loop", target: .ratioAtLeast(0.7)))
        }
    }

    private func postgresFigures(_ report: Report, _ work: String) async throws {
        guard let databaseUrl else { throw BenchError("the postgres figures need --database-url (Tools/bench starts a server)") }
        let bench = PostgresBenchmark(serverURL: databaseUrl, workDirectory: work)
        // One caller: each command's own transaction, so its round trips show in full.
        let lone = try await bench.append(nodes: 1, callers: 1, commands: quick ? 64 : 1_000)
        let loneFloor = try await bench.plainInserts(records: quick ? 64 : 1_000, recordBytes: lone.meanRecordBytes, batch: 1)
        report.add(Figure(name: "append-pg-c1", value: lone.perSecond, reference: loneFloor, unit: "events/s",
                          referenceName: "one-row INSERT of \(lone.meanRecordBytes) B, autocommit, synchronous commit", target: nil))
        let commands = quick ? 64 * 16 : 64 * 500
        let one = try await bench.append(nodes: 1, callers: 64, commands: commands)
        let floor = try await bench.plainInserts(records: commands, recordBytes: one.meanRecordBytes, batch: 64)
        report.add(Figure(name: "append-pg-c64", value: one.perSecond, reference: floor, unit: "events/s",
                          referenceName: "batched INSERT of \(one.meanRecordBytes) B rows, 64 a transaction, synchronous commit", target: .ratioAtLeast(0.5)))
        let two = try await bench.append(nodes: 2, callers: 64, commands: commands)
        report.add(Figure(name: "append-pg-two-nodes", value: two.perSecond, reference: one.perSecond, unit: "events/s",
                          referenceName: "one node, the same 64 callers", target: nil))
    }

    private func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }
}
