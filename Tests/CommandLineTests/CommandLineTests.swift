import Foundation
import Synchronization
import LMDBKit
import Testing
import UploadTesting

/// The built `upload-coordinator` and `upload-replay`, run as separate processes on real stores.
@Suite(.serialized)
struct CommandLineTests {
    func coordinator(_ args: String..., env: [String: String] = [:]) throws -> Executables.Output {
        try Executables.run("upload-coordinator", args, environment: env)
    }

    func json(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func initiateLayerUpload_printsUploadIdAndPartSize_andTheEventIsInTheLog() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let out = try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app")
        #expect(out.status == 0)
        #expect(out.stdout.wholeMatch(of: /\{"uploadId":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}","partSize":10485760\}\n/) != nil, "\(out.stdout)")
        let uploadId = try json(out.lines[0])["uploadId"] as? String

        let events = try coordinator("events", "--data-dir", dir.path)
        #expect(events.status == 0)
        #expect(events.lines.count == 2)
        let last = try json(events.lines[1])
        #expect(last["position"] as? Int == 2)
        #expect(last["type"] as? String == "UploadInitiated")
        #expect(last["version"] as? Int == 1)
        #expect((last["recordedAt"] as? String)?.hasSuffix("Z") == true)
        let data = try #require(last["data"] as? [String: Any])
        #expect(data["uploadId"] as? String == uploadId)
        #expect(data["registryId"] as? String == "000000000000")
        #expect((last["metadata"] as? [String: Any])?["source"] as? String == "cli")

        let page = try coordinator("events", "--data-dir", dir.path, "--after", "1", "--limit", "1")
        #expect(page.lines.count == 1)
        #expect(try json(page.lines[0])["position"] as? Int == 2)
        // At the tail there is nothing more; past it, the log does not hold what was read (as the feeds say).
        #expect(try coordinator("events", "--data-dir", dir.path, "--after", "2").lines.isEmpty)
        let past = try coordinator("events", "--data-dir", dir.path, "--after", "3")
        #expect(past.status == 1 && past.lines.isEmpty)
        #expect(past.stderr.contains("InvalidParameterException: --after 3 is past the log's last position 2"), "\(past.stderr)")
    }

    /// A mistyped `--data-dir` made a new store and recorded there, answering success.
    @Test(arguments: ["create-repository", "delete-repository", "initiate-layer-upload"])
    func aCommandThatRecords_refusesADataDirectoryThatDoesNotExist_andMakesNothing(command: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let mistyped = dir.path + "/dtaa"
        let lmdb = ["UPLOAD_COORDINATOR_DATABASE_URL": ""]  // whatever the environment running the tests says
        let out = try coordinator(command, "--data-dir", mistyped, "--repository-name", "team/app", env: lmdb)
        #expect(out.status == 64)
        #expect(out.stderr.contains("--data-dir \(mistyped) does not exist"), "\(out.stderr)")
        // With the command's own usage, found in its run: the top level's was shown.
        #expect(out.stderr.contains("Usage: upload-coordinator \(command) --data-dir") && out.stderr.contains("'upload-coordinator \(command) --help'"), "\(out.stderr)")
        #expect(!FileManager.default.fileExists(atPath: mistyped))
        // Nor does a folder that holds other files (a home or project folder) take a store.
        let other = TemporaryDirectory()
        defer { other.remove() }
        let project = other.path
        #expect(FileManager.default.createFile(atPath: project + "/notes.txt", contents: Data("mine".utf8)))
        let misplaced = try coordinator(command, "--data-dir", project, "--repository-name", "team/app", env: lmdb)
        #expect(misplaced.status == 64, "a usage error")
        #expect(misplaced.stderr.contains("--data-dir \(project) holds files but no store (no data.mdb)"), "\(misplaced.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: project) == ["notes.txt"], "nothing made")
        // An empty folder still takes a new store, as before, and its store takes more records.
        #expect(try coordinator("create-repository", "--data-dir", dir.path + "/", "--repository-name", "team/app", env: lmdb).status == 0)
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/other", env: lmdb).status == 0)
    }

    @Test(arguments: [
        (["--repository-name", "team/missing"], "RepositoryNotFoundException: The repository with name 'team/missing' does not exist in the registry with id '000000000000'"),
        (["--repository-name", "Team/App"], "InvalidParameterException: 1 validation error detected: Value 'Team/App' at 'repositoryName'"),
        // --registry-id names the registry acted on: the repository is in another one.
        (["--repository-name", "team/app", "--registry-id", "210987654321"], "RepositoryNotFoundException: The repository with name 'team/app' does not exist in the registry with id '210987654321'"),
        (["--repository-name", "team/app", "--default-registry-id", "210987654321"], "RepositoryNotFoundException: The repository with name 'team/app' does not exist in the registry with id '210987654321'"),
    ])
    func refusedCommand_printsErrorNameAndMessage_exitsNonZero_andWritesNothing(args: [String], expected: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let out = try Executables.run("upload-coordinator", ["initiate-layer-upload", "--data-dir", dir.path] + args)
        #expect(out.status == 1)
        #expect(out.stdout.isEmpty)
        #expect(out.stderr.hasPrefix(expected), "\(out.stderr)")
        #expect(try coordinator("events", "--data-dir", dir.path).lines.count == 1, "nothing written")
    }

    @Test func defaultRegistryAndPartSize_comeFromFlagsOrEnvironment() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let env = ["UPLOAD_COORDINATOR_REGISTRY_ID": "111122223333", "UPLOAD_COORDINATOR_PART_SIZE": "5242880"]
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app", env: env).status == 0)
        let fromEnv = try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app", "--registry-id", "111122223333", env: env)
        #expect(try json(fromEnv.lines[0])["partSize"] as? Int == 5_242_880)
        let fromFlag = try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app", "--part-size", "20971520", env: env)
        #expect(try json(fromFlag.lines[0])["partSize"] as? Int == 20_971_520)
        let badRegistry = try coordinator("events", "--data-dir", dir.path, "--default-registry-id", "12")
        #expect(badRegistry.status != 0 && badRegistry.stderr.contains("12 digits"))
    }

    /// Many processes writing one data directory at once: LMDB serialises them, and each write
    /// continues from the log's true tail, so positions stay dense and no upload is lost.
    @Test func concurrentProcesses_onOneDataDirectory_neverReuseAPosition() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let processes = 24
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<processes {
                group.addTask {
                    let out = try Executables.run("upload-coordinator", ["initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app"])
                    guard out.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": out.stderr]) }
                    return out.stdout
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        let answered = Set(try answers.map { try json($0)["uploadId"] as? String ?? "" })
        let events = try coordinator("events", "--data-dir", dir.path).lines.map(json)
        #expect(events.map { $0["position"] as? Int } == Array(1...(processes + 1)))
        let logged = events.compactMap { ($0["data"] as? [String: Any])?["uploadId"] as? String }
        #expect(logged.count == processes && Set(logged) == answered)
        #expect(try Executables.run("upload-replay", ["--data-dir", dir.path]).status == 0)
    }

    /// `upload-replay` passes while other processes append: it reads the log's size, the tree's
    /// extent and the live tables in one snapshot, and rebuilds and checks the tree in later ones
    /// (bounded to that size; `AuditTests` checks the bound itself, without a race).
    @Test func replayTool_passesWhileOtherProcessesAppend() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let outputs = try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask {
                for _ in 0..<40 {
                    let out = try Executables.run("upload-coordinator", ["initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app"])
                    guard out.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": out.stderr]) }
                }
                return []
            }
            // Checks again and again until the appends end (this task never ends first).
            group.addTask {
                var outputs: [String] = []
                while !Task.isCancelled { outputs.append(try Executables.run("upload-replay", ["--data-dir", dir.path, "--json"]).stdout) }
                return outputs
            }
            var outputs = try await group.next()!
            group.cancelAll()
            outputs += try await group.next()!
            return outputs
        }
        let reports = try outputs.map(json)
        for report in reports { #expect(report["ok"] as? Bool == true, "\(report)") }
        let sizes = Set(reports.compactMap { $0["events"] as? Int })
        #expect(sizes.count > 1, "the log grew between checks: \(sizes)")
    }

    /// A database URL only in the environment is what a tool reads, even beside a folder that
    /// holds an LMDB store (the folder a move to PostgreSQL left): the tool says so, and
    /// upload-replay's report names the store it checked, so that a check of the database is
    /// never taken for a check of the folder.
    @Test func aDatabaseURLOnlyInTheEnvironment_besideAnLMDBStore_isNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let elsewhere = ["UPLOAD_COORDINATOR_DATABASE_URL": "postgres://nobody:secret@127.0.0.1:9/none"]
        let replay = try Executables.run("upload-replay", ["--data-dir", dir.path], environment: elsewhere)
        #expect(replay.status != 0, "the database cannot be reached")
        #expect(replay.stderr.contains("so it is used, not the LMDB store in \(dir.path)"), "\(replay.stderr)")
        #expect(replay.stdout.contains("store:            PostgreSQL at"), "\(replay.stdout)")
        #expect(!(replay.stdout + replay.stderr).contains("secret"))
        let events = try coordinator("events", "--data-dir", dir.path, env: elsewhere)
        #expect(events.status != 0)
        #expect(events.stderr.contains("so it is used, not the LMDB store"), "\(events.stderr)")
        // Without the variable, the folder's store is checked, and the report says which it was.
        let ok = try Executables.run("upload-replay", ["--data-dir", dir.path])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("store:            LMDB in \(dir.path)"), "\(ok.stdout)")
    }

    @Test func replayTool_passesAnIntactStore_andNamesTheKeyOfATamperedProjection() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        #expect(try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        let ok = try Executables.run("upload-replay", ["--data-dir", dir.path])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("events in log:    2"))
        #expect(ok.stdout.contains("events/s"))
        #expect(ok.stdout.contains("live digest:"))

        let report = try Executables.run("upload-replay", ["--data-dir", dir.path, "--json"])
        let parsed = try json(report.stdout)
        #expect(parsed["ok"] as? Bool == true)
        let digests = try #require(parsed["rebuildDigests"] as? [String])
        #expect(digests.count == 2 && digests[0] == digests[1] && digests[0] == parsed["liveDigest"] as? String)

        // Alter the live repository record, in the projections' own file, as a stray writer
        // would: its name field becomes team/apq, its key stays.
        try Self.rename(in: dir.path + "/projections/data.mdb")
        let tampered = try Executables.run("upload-replay", ["--data-dir", dir.path])
        #expect(tampered.status == 1, "a projection that differs from the log's rebuild")
        #expect(tampered.stderr.contains("FAILED: projection mismatch: table repositories, key '000000000000/team/app'"), "\(tampered.stderr)")
    }

    /// The same byte changed in the log's file instead: the log itself is damaged, which is
    /// another failure, naming the event's position.
    @Test func replayTool_namesThePositionOfADamagedLogRecord() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", "team/app").status == 0)
        try Self.rename(in: dir.path + "/data.mdb")
        let damaged = try Executables.run("upload-replay", ["--data-dir", dir.path])
        #expect(damaged.status == 2, "the log is damaged: \(damaged.stdout) \(damaged.stderr)")
        #expect(damaged.stderr.contains("position 1"), "\(damaged.stderr)")
    }

    /// A folder without a store, and an LMDB store no migration has made, are refused with their
    /// reasons, and with no count of events: there is no log to count.
    @Test func replayTool_refusesAFolderWithoutAStore_andAnUnmigratedStore_withTheirReasons() throws {
        let empty = TemporaryDirectory(), unmigrated = TemporaryDirectory()
        defer { empty.remove(); unmigrated.remove() }
        _ = try Environment(directory: unmigrated.path)  // its data.mdb, holding nothing
        for (dir, reason) in [(empty, "no store at \(empty.path)"), (unmigrated, "this store needs migrations 0001-create-event-log")] {
            let report = try Executables.run("upload-replay", ["--data-dir", dir.path])
            #expect(report.status == 3, "\(report.stdout) \(report.stderr)")
            #expect(report.stderr.contains("FAILED: cannot check the store: \(reason)"), "\(report.stderr)")
            #expect(!report.stdout.contains("events in log"), "\(report.stdout)")
        }
    }

    /// Changes `team/app` to `team/apq` wherever a record holds it as a registry id's
    /// repositoryName field (the RepositoryCreated event, the repository's projection record),
    /// in place in `file`, as a second copy of the page would.
    static func rename(in file: String) throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        let needle = Array("000000000000".utf8) + [0x12, 0x08] + Array("team/app".utf8)  // registryId, then repositoryName field
        let hits = (0...(bytes.count - needle.count)).filter { Array(bytes[$0..<($0 + needle.count)]) == needle }
        try #require(!hits.isEmpty)
        for hit in hits { bytes[hit + needle.count - 1] = UInt8(ascii: "q") }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
    }

    /// A record that does not decode stops `events` at it, not at the page that holds it: the
    /// events before it are printed, then the error names its position.
    @Test func events_printsTheEventsBeforeARecordThatDoesNotDecode_thenNamesIt() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        for name in ["team/one", "team/two", "team/three"] {
            #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", name).status == 0)
        }
        let second = try json(try coordinator("events", "--data-dir", dir.path).lines[1])
        let requestId = try #require((second["metadata"] as? [String: Any])?["requestId"] as? String)
        // Its request id's first byte made one that is not UTF-8, in place in the log's file.
        let file = URL(fileURLWithPath: dir.path + "/data.mdb")
        var bytes = try [UInt8](Data(contentsOf: file))
        let needle = Array(requestId.utf8)
        let at = try #require((0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) })
        bytes[at] = 0xFF
        try Data(bytes).write(to: file)

        let events = try coordinator("events", "--data-dir", dir.path)
        #expect(events.status == 1)
        #expect(try events.lines.map { try json($0)["position"] as? Int } == [1])
        #expect(events.stderr.contains("the event at position 2 does not decode"), "\(events.stderr)")
    }

    @Test func migrate_appliesEveryStep_thenReportsUpToDate() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let first = try coordinator("migrate", "--data-dir", dir.path)
        #expect(first.status == 0)
        #expect(first.lines.prefix(2) == ["applied 0001-create-event-log", "applied 0002-create-projections"])
        #expect(first.lines.allSatisfy { $0.hasPrefix("applied ") })
        let last = try #require(first.lines.last).dropFirst("applied ".count)
        let second = try coordinator("migrate", "--data-dir", dir.path)
        #expect(second.lines == ["up to date at \(last)"])
    }

    /// Several `migrate`s at once on one new store: each reports only what it applied itself, so
    /// that together they name every migration once (each reported what any process had applied
    /// since it looked, before opening).
    @Test func concurrentMigrates_eachReportOnlyWhatTheyApplied() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let outputs = Mutex<[Executables.Output]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let output = try? coordinator("migrate", "--data-dir", dir.path)
            outputs.withLock { $0.append(contentsOf: output.map { [$0] } ?? []) }
        }
        let all = outputs.withLock { $0 }
        #expect(all.count == 4 && all.allSatisfy { $0.status == 0 }, "\(all.map(\.stderr))")
        let applied = all.flatMap(\.lines).filter { $0.hasPrefix("applied ") }
        let alone = TemporaryDirectory()
        defer { alone.remove() }
        let every = try coordinator("migrate", "--data-dir", alone.path).lines
        #expect(applied.sorted() == every.sorted(), "each migration reported once, by the process that applied it")
        for output in all where !output.lines.contains(where: { $0.hasPrefix("applied ") }) {
            #expect(output.lines.count == 1 && output.lines[0].hasPrefix("up to date at "), "\(output.lines)")
        }
    }

    @Test func audit_listsInitiations_provesOne_andTheVerifierRejectsATamperedProof() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        for name in ["team/app", "team/web"] {
            #expect(try coordinator("create-repository", "--data-dir", dir.path, "--repository-name", name).status == 0)
        }
        var ids: [String] = []
        for name in ["team/app", "team/web", "team/app"] {
            let out = try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", name)
            ids.append(try json(out.lines[0])["uploadId"] as! String)
        }
        let table = try coordinator("audit", "initiations", "--data-dir", dir.path)
        #expect(table.status == 0)
        #expect(table.lines.count == 4 && table.lines[0].hasPrefix("POSITION\tTIME"))
        #expect(table.lines[1].hasSuffix("\tcommand-line"), "the principal as the audit page shows it: \(table.lines[1])")
        let app = try coordinator("audit", "initiations", "--data-dir", dir.path, "--repository", "team/app", "--json").lines.map(json)
        #expect(app.map { $0["uploadId"] as? String } == [ids[0], ids[2]])
        #expect((app[0]["metadata"] as? [String: Any])?["source"] as? String == "cli")
        // In another registry than serve's, nothing is found, and the tool says where it looked.
        let elsewhere = try coordinator("audit", "initiations", "--data-dir", dir.path, "--repository", "team/app", "--registry-id", "210987654321", "--json")
        #expect(elsewhere.status == 0 && elsewhere.lines.isEmpty)
        #expect(elsewhere.stderr.contains("no initiation in team/app of the registry 210987654321"), "\(elsewhere.stderr)")
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--since", "2999-01-01", "--json").lines.isEmpty)
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", "2000-01-01").lines.count == 1)
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--since", "yesterday").status != 0)
        // A window is never moved quietly: a time without its zone, or text after a date, was read
        // as that date's midnight.
        for moved in ["2999-01-01T00:00:00", "2000-01-01garbage", "2000-01-01T23:59:59 ", "2999-01-01T00:00:00Zjunk",
                      "2999-01-01T00:00:00Z+23:00", "2026-11-31", "2026-02-31T00:00:00Z", "2026-11-30T24:00:00Z", "٢٠٢٦-١١-٢٩T١٢:٠٠:٠٠Z",
                      "2999-01-01T00:00:00+24:00", "2999-01-01T00:00:00+99:00", "2999-01-01T00:00:00-00:60"] {
            let refused = try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", moved, "--json")
            #expect(refused.status == 64 && refused.lines.isEmpty, "\(moved)")
            #expect(refused.stderr.contains("--until must be an ISO 8601 date (midnight UTC) or a time with its zone"), "\(refused.stderr)")
        }
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", "2999-01-01T00:00:00").stderr.contains("a time without a zone"))
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", "2999-01-01T00:00:00Z", "--json").lines.count == 3)
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", "2999-01-01T02:00:00.5+02:00", "--json").lines.count == 3)
        #expect(try coordinator("audit", "initiations", "--data-dir", dir.path, "--until", "2999-01-01t00:00:00z", "--json").lines.count == 3, "RFC 3339's lowercase t and z")
        // Times are recorded in whole milliseconds: a bound a tenth of one past an initiation's
        // time is past it, for --since (from) and --until (before) alike.
        let recordedAt = try #require(app[0]["recordedAt"] as? String)
        #expect(recordedAt.wholeMatch(of: /[0-9-]{10}T[0-9:]{8}\.[0-9]{3}Z/) != nil, "\(recordedAt)")
        let finer = recordedAt.dropLast() + "1Z"
        func listed(_ flag: String, _ time: some StringProtocol) throws -> Bool {
            try coordinator("audit", "initiations", "--data-dir", dir.path, flag, String(time), "--json").lines.map(json).contains { $0["uploadId"] as? String == ids[0] }
        }
        #expect(try listed("--since", recordedAt) && !listed("--since", finer))
        #expect(try !listed("--until", recordedAt) && listed("--until", finer))

        let root = try json(try coordinator("audit", "root", "--data-dir", dir.path).lines[0])
        #expect(root["treeSize"] as? Int == 5)
        let proof = try coordinator("audit", "proof", "--data-dir", dir.path, "--upload-id", ids[1])
        #expect(proof.status == 0)
        let proofFile = dir.path + "/proof.json"
        try proof.stdout.write(toFile: proofFile, atomically: true, encoding: .utf8)
        let verified = try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-root", root["rootHash"] as! String)
        #expect(verified.status == 0 && verified.lines[0].hasPrefix("OK: the UploadInitiated at position 4"), "\(verified.stderr)")

        let untrusted = try coordinator("audit", "verify-proof", "--file", proofFile)
        #expect(untrusted.status == 0 && untrusted.lines[0].contains("the root the proof itself names"), "without a trusted root, it says what it did not prove")

        // A path leads to one root for several tree sizes (index 3 of 5 has the path of index 3
        // of 6, 7 or 8), so a trusted root alone proves no size: only a size known otherwise does.
        var resized = try json(proof.lines[0])
        resized["treeSize"] = 8
        let resizedFile = dir.path + "/resized.json"
        try JSONSerialization.data(withJSONObject: resized).write(to: URL(fileURLWithPath: resizedFile))
        let rootOnly = try coordinator("audit", "verify-proof", "--file", resizedFile, "--trusted-root", root["rootHash"] as! String)
        #expect(rootOnly.status == 0 && rootOnly.lines[0].contains("is not proven") && !rootOnly.lines[0].contains("log of 8"), "\(rootOnly.stdout)")
        let wrongSize = try coordinator("audit", "verify-proof", "--file", resizedFile, "--trusted-root", root["rootHash"] as! String, "--trusted-size", "5")
        #expect(wrongSize.status == 1 && wrongSize.stderr.contains("not the trusted 5"))
        let sized = try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-root", root["rootHash"] as! String, "--trusted-size", "5")
        #expect(sized.status == 0 && sized.lines[0].hasPrefix("OK: the UploadInitiated at position 4 is in the log of 5 events"))
        // A pasted `audit root` line, or anything else not a root's hex, is a usage error, not a
        // root the proof misses.
        let rootHash = root["rootHash"] as! String
        for notARoot in [try coordinator("audit", "root", "--data-dir", dir.path).lines[0], "zz", String(rootHash.dropLast(2)), rootHash + "00"] {
            let refused = try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-root", notARoot)
            #expect(refused.status == 64 && refused.stderr.contains("64 hex digits"), "\(notARoot): \(refused.stderr)")
        }

        // Or a checkpoint the auditor saved, under the log's key: its size and root both.
        let keyFile = dir.path + "/log.key"
        try "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n".write(toFile: keyFile, atomically: true, encoding: .utf8)
        let signed = try coordinator("audit", "checkpoint", "--data-dir", dir.path, "--log-key", keyFile)
        #expect(signed.status == 0, "\(signed.stderr)")
        let checkpointFile = dir.path + "/checkpoint"
        try signed.stdout.write(toFile: checkpointFile, atomically: true, encoding: .utf8)
        let verifier = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        let byCheckpoint = try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-checkpoint", checkpointFile, "--public-key", verifier)
        #expect(byCheckpoint.status == 0 && byCheckpoint.lines[0].contains("in the log 'PeterNeumann' of 5 events"), "\(byCheckpoint.stderr)")
        let resizedByCheckpoint = try coordinator("audit", "verify-proof", "--file", resizedFile, "--trusted-checkpoint", checkpointFile, "--public-key", verifier)
        #expect(resizedByCheckpoint.status == 1)
        let otherKey = try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-checkpoint", checkpointFile,
                                       "--public-key", "PeterNeumann+c74f20a3+AZpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        #expect(otherKey.status == 1, "a checkpoint under another key is no trusted checkpoint")

        // Once the log has grown, a proof against the saved checkpoint's size still verifies by it.
        #expect(try coordinator("initiate-layer-upload", "--data-dir", dir.path, "--repository-name", "team/web").status == 0)
        let grownFile = dir.path + "/grown.json"
        try coordinator("audit", "proof", "--data-dir", dir.path, "--upload-id", ids[1]).stdout.write(toFile: grownFile, atomically: true, encoding: .utf8)
        #expect(try coordinator("audit", "verify-proof", "--file", grownFile, "--trusted-checkpoint", checkpointFile, "--public-key", verifier).status == 1, "a proof of 6 events")
        let atCheckpoint = try coordinator("audit", "proof", "--data-dir", dir.path, "--upload-id", ids[1], "--tree-size", "5")
        #expect(atCheckpoint.status == 0, "\(atCheckpoint.stderr)")
        #expect(try json(atCheckpoint.lines[0])["treeSize"] as? Int == 5)
        try atCheckpoint.stdout.write(toFile: grownFile, atomically: true, encoding: .utf8)
        let stillVerified = try coordinator("audit", "verify-proof", "--file", grownFile, "--trusted-checkpoint", checkpointFile, "--public-key", verifier)
        #expect(stillVerified.status == 0 && stillVerified.lines[0].contains("of 5 events"), "\(stillVerified.stderr)")
        // --to defaults to the latest signed size (5): a --from past it says so, not "second 5".
        let pastSigned = try coordinator("audit", "consistency", "--data-dir", dir.path, "--from", "6")
        #expect(pastSigned.status == 1 && pastSigned.stderr.contains("--from 6 is past the latest signed checkpoint, of 5 events, which --to defaults to"), "\(pastSigned.stderr)")
        #expect(try coordinator("audit", "consistency", "--data-dir", dir.path, "--from", "6", "--to", "6").status == 0)
        // A folder where a file is named is a file that cannot be read (it trapped in Foundation).
        for (flag, command) in [
            ("--trusted-checkpoint", ["audit", "verify-proof", "--file", grownFile, "--trusted-checkpoint", dir.path, "--public-key", verifier]),
            ("--public-key", ["audit", "verify-proof", "--file", grownFile, "--trusted-checkpoint", checkpointFile, "--public-key", dir.path]),
            ("--old", ["audit", "verify-consistency", "--old", dir.path, "--new", checkpointFile, "--proof", grownFile, "--public-key", verifier]),
        ] {
            let unreadable = try Executables.run("upload-coordinator", command, environment: [:])
            #expect(unreadable.status == 1 && unreadable.stderr.hasPrefix("FAILED: ") && unreadable.stderr.contains("cannot read \(dir.path)"), "\(flag): \(unreadable.status) \(unreadable.stderr)")
        }
        let noStore = TemporaryDirectory()
        defer { noStore.remove() }
        let unsigned = try coordinator("audit", "checkpoint", "--data-dir", noStore.path, "--log-key", keyFile)
        #expect(unsigned.status == 1 && unsigned.stderr.hasPrefix("error: \(noStore.path) holds no store"), "as the other audit commands: \(unsigned.stderr)")
        let notAFolder = try coordinator("create-repository", "--data-dir", keyFile, "--repository-name", "team/app")
        #expect(notAFolder.status == 64 && notAFolder.stderr.contains("--data-dir \(keyFile) is not a folder"), "\(notAFolder.stderr)")
        for size in ["3", "7"] {  // before the event, past the log
            #expect(try coordinator("audit", "proof", "--data-dir", dir.path, "--upload-id", ids[1], "--tree-size", size).status != 0, "--tree-size \(size)")
        }
        var shouted = try json(proof.lines[0])
        shouted["rootHash"] = (shouted["rootHash"] as! String).uppercased()
        try JSONSerialization.data(withJSONObject: shouted).write(to: URL(fileURLWithPath: proofFile))
        #expect(try coordinator("audit", "verify-proof", "--file", proofFile, "--trusted-root", root["rootHash"] as! String).status == 0, "hex in either case")
        for lenient: Any in [-1, 4.5, true] {
            var bent = try json(proof.lines[0])
            bent["position"] = lenient
            try JSONSerialization.data(withJSONObject: bent).write(to: URL(fileURLWithPath: proofFile))
            let read = try coordinator("audit", "verify-proof", "--file", proofFile)
            #expect(read.status == 1 && read.stderr.contains("not an inclusion proof"), "position \(lenient)")
        }

        var forged = try json(proof.lines[0])
        forged["position"] = 3
        try JSONSerialization.data(withJSONObject: forged).write(to: URL(fileURLWithPath: proofFile))
        let refused = try coordinator("audit", "verify-proof", "--file", proofFile)
        #expect(refused.status == 1 && refused.stderr.contains("FAILED"))
        let missing = try coordinator("audit", "proof", "--data-dir", dir.path, "--upload-id", "00000000-0000-4000-8000-000000000000")
        #expect(missing.status == 1 && missing.stderr.hasPrefix("UploadNotFoundException"))
    }
}
