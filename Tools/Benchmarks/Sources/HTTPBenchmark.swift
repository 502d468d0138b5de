import Foundation

/// InitiateLayerUpload through `serve` under wrk, against the same server's no-op route and
/// against CNCF distribution's upload initiation, all with the same wrk settings
/// (the peer's: one thread, 32 connections).
struct HTTPBenchmark {
    struct Run {
        let rps: Double
        let p50Milliseconds: Double
        let p99Milliseconds: Double
    }

    let wrk: String
    let scripts: String
    let duration: String
    let runs: Int
    let connections = 32

    /// Runs wrk `runs` times; each run must get only the expected status. - Returns: the median run.
    func measure(port: Int, path: String, script: String) throws -> Run {
        var results: [Run] = []
        for _ in 0..<runs {
            let output = try Processes.run(wrk, ["-t1", "-c\(connections)", "-d\(duration)", "--timeout", "5s", "-s", "\(scripts)/\(script)", "http://127.0.0.1:\(port)\(path)"])
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("WRKRESULT") }) else {
                throw BenchError("wrk printed no result: \(output)")
            }
            let f = Processes.fields(line)
            guard f["other_status"] == "0", f["socket_errors"] == "0" else {
                throw BenchError("wrk on \(path) got unexpected answers: \(line)")
            }
            // A server that answers nothing within the run shows no error either (wrk counts a
            // timeout only after it): no answer, or a figure that does not read, is no run.
            guard let requests = Int(f["requests"] ?? ""), requests > 0, let rps = Double(f["rps"] ?? ""),
                  let p50 = Double(f["p50_ms"] ?? ""), let p99 = Double(f["p99_ms"] ?? "") else {
                throw BenchError("wrk on \(path) got no answer, or printed figures that do not read: \(line)")
            }
            results.append(Run(rps: rps, p50Milliseconds: p50, p99Milliseconds: p99))
        }
        return results.sorted { $0.rps < $1.rps }[results.count / 2]
    }

    /// Measures our InitiateLayerUpload and the no-op route, alternating so that both see the
    /// same machine.
    func measureServer(port: Int) throws -> (initiate: Run, noop: Run) {
        var initiates: [Run] = [], noops: [Run] = []
        let single = HTTPBenchmark(wrk: wrk, scripts: scripts, duration: duration, runs: 1)
        for _ in 0..<runs {
            noops.append(try single.measure(port: port, path: "/noop", script: "initiate-ecr.lua"))
            initiates.append(try single.measure(port: port, path: "/", script: "initiate-ecr.lua"))
        }
        return (initiates.sorted { $0.rps < $1.rps }[runs / 2], noops.sorted { $0.rps < $1.rps }[runs / 2])
    }

    /// Measures distribution's upload initiation (see ``withDistribution(registry:workDirectory:_:)``).
    func measureDistribution(registry: String, workDirectory: String) throws -> Run {
        try Self.withDistribution(registry: registry, workDirectory: workDirectory) { port in
            try measure(port: port, path: "/v2/demo/app/blobs/uploads/", script: "initiate-oci.lua")
        }
    }

    /// Small-blob push flows per second (`push-flow.py`: POST, PUT with the digest and the bytes,
    /// HEAD) with `concurrency` connections. - Returns: the median of `runs` runs.
    func measurePushFlows(port: Int, repository: String, concurrency: Int) throws -> Run {
        var results: [Run] = []
        for _ in 0..<runs {
            let output = try Processes.run("/usr/bin/env", [
                "python3", "\(scripts)/push-flow.py", "--hostport", "127.0.0.1:\(port)", "--repo", repository,
                "--seconds", duration.replacingOccurrences(of: "s", with: ""), "--concurrency", "\(concurrency)",
            ])
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("FLOWRESULT") }) else {
                throw BenchError("push-flow.py printed no result: \(output)")
            }
            let f = Processes.fields(line)
            guard f["failed"] == "0" else { throw BenchError("push flows failed on port \(port): \(output)") }
            results.append(Run(rps: Double(f["flows_per_s"] ?? "") ?? 0, p50Milliseconds: Double(f["p50_ms"] ?? "") ?? 0, p99Milliseconds: Double(f["p99_ms"] ?? "") ?? 0))
        }
        return results.sorted { $0.rps < $1.rps }[results.count / 2]
    }

    /// Runs `body` with distribution (`docker-registry`) serving on a loopback port, with
    /// filesystem storage in a temporary folder, configured as the peer's benchmark configures it.
    static func withDistribution<T>(registry: String, workDirectory: String, _ body: (Int) throws -> T) throws -> T {
        let dir = workDirectory + "/distribution-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/storage", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try HTTPClient.freePort()
        let config = """
            version: 0.1
            log:
              level: warn
              accesslog:
                disabled: true
            storage:
              filesystem:
                rootdirectory: \(dir)/storage
              delete:
                enabled: true
              maintenance:
                uploadpurging:
                  enabled: false
            http:
              addr: 127.0.0.1:\(port)
              secret: distribution-bench-not-a-secret
            """
        try config.write(toFile: dir + "/config.yml", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: registry)
        process.arguments = ["serve", dir + "/config.yml"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        var up = false
        for _ in 0..<200 where !up {
            up = (try? HTTPClient.request(port: port, method: "GET", path: "/v2/").status) == 200
            if !up { Thread.sleep(forTimeInterval: 0.1) }
        }
        guard up else { throw BenchError("docker-registry did not come up on port \(port)") }
        return try body(port)
    }

}
