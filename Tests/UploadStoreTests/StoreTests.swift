import Foundation
import LMDBKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

struct StoreTests {
    let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")

    static func create(_ name: String) throws -> Command { .createRepository(try CreateRepository(repositoryName: name)) }
    static func initiate(_ name: String) throws -> InitiateLayerUpload { try InitiateLayerUpload(repositoryName: name) }

    /// A store whose writer would gather for up to 30 s, with team/app created and the next commit
    /// held for `seconds`.
    static func withNextCommitHeld<T>(
        _ dir: TemporaryDirectory, seconds: Double, _ body: (Store, SlowCommit) async throws -> T
    ) async throws -> T {
        let slowCommit = SlowCommit(seconds: seconds)
        return try await withTestStore(dir, configure: { configuration in
            configuration.maxGatherWait = .seconds(30)
            configuration.failProjectionCommit = slowCommit.hook
        }) { store in
            _ = try await store.execute(create("team/app"), metadata: testMetadata())
            slowCommit.holdNextCommit()
            return try await body(store, slowCommit)
        }
    }

    /// The kernel knows the writer's threads by name (profiles and `top -H` showed the writer as
    /// the cooperative pool's thread before).
    @Test func theWritersThreads_areNamedForTheKernel() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
            let names = Set(tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }.map { $0.trimmingCharacters(in: .newlines) })
            #expect(names.isSuperset(of: ["uc-writer", "uc-answerer"]), "threads: \(names.sorted())")
        }
    }

    @Test func groupCommit_underManyConcurrentCallers_logsEveryAnsweredUploadExactlyOnce() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let callers = 64, perCaller = 25
        try await withTestStore(dir) { store in
            let opened = ContinuousClock.now
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let answered = try await withThrowingTaskGroup(of: [String].self) { group in
                for caller in 0..<callers {
                    group.addTask {
                        var ids: [String] = []
                        for i in 0..<perCaller {
                            // every fifth call names a missing repository: refused, nothing written
                            if i % 5 == 4 {
                                await #expect(throws: CommandError.self) {
                                    _ = try await store.initiateLayerUpload(try Self.initiate("team/missing"), metadata: testMetadata("c\(caller)-\(i)"))
                                }
                                continue
                            }
                            ids.append(try await store.initiateLayerUpload(try Self.initiate("team/app"), metadata: testMetadata("c\(caller)-\(i)")).uploadId)
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let events = try store.read { try $0.events() }
            #expect(events.map(\.position) == Array(1...UInt64(events.count)), "positions dense from 1")
            let logged = events.compactMap { envelope -> String? in
                if case .uploadInitiated(let e) = envelope.event { return e.uploadId }
                return nil
            }
            #expect(answered.count == callers * perCaller * 4 / 5)
            #expect(logged.sorted() == answered.sorted(), "every answered upload in the log exactly once, nothing else")
            #expect(Set(logged).count == logged.count)
            let stats = store.writerStatistics
            #expect(stats.commands == 1 + callers * perCaller)
            #expect(stats.transactions < stats.commands, "commands were batched (\(stats.transactions) transactions)")
            #expect(stats.writing > .zero && stats.writing < ContinuousClock.now - opened, "writing took \(stats.writing)")
            #expect(try store.read { try $0.repository(ref)?.uploadsInitiated } == UInt64(answered.count))
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// The writer gathers by callers: a caller whose last submission held two commands, alone,
    /// sends one next, and that one is written at once, not after the writer has waited out the
    /// gather (the last commit's duration, made long here) for a second command that never comes.
    @Test func aLoneCaller_afterASubmissionOfTwoCommands_isNotKeptWaiting() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.withNextCommitHeld(dir, seconds: 12) { store, _ in
            let two = await store.append([
                CommandSubmission(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("a")),
                CommandSubmission(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("b")),
            ])
            #expect(two.allSatisfy { (try? $0.get()) != nil })
            let started = ContinuousClock.now
            _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("c"))
            let waited = ContinuousClock.now - started
            // Counting commands, the writer would wait the last commit's 12 s for a second one; the
            // bound leaves a loaded machine (a build beside the tests, a starved task pool) 8 s.
            #expect(waited < .seconds(8), "the lone command waited \(waited)")
        }
    }

    /// A caller that queued while a commit ran is written as soon as that commit ends: the writer
    /// hands the committed batch's answers to another thread and does not wait for those callers
    /// to send again (here the one caller never does; gathering for it would hold the waiting
    /// caller for as long as the last commit took, 12 s, after the first was answered). Bounded
    /// against the first caller's answer, which a loaded machine delays as much, and loosely in
    /// all, below the 12 s a gather would take.
    @Test(.timeLimit(.minutes(1)))
    func aCallerQueuedDuringACommit_isWrittenAtOnce_notAfterAGatherForTheCommitsCallers() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.withNextCommitHeld(dir, seconds: 12) { store, slowCommit in
            let first = Task {
                _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("a"))
                return ContinuousClock.now
            }
            try await slowCommit.held()
            _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("b"))
            let secondAnswered = ContinuousClock.now
            let firstAnswered = try await first.value
            let released = try #require(slowCommit.released.withLock { $0 })
            // Both soon after the slow commit's end: the first through the answering thread, the
            // second in the batch written at once after it, not a gather's 12 s after the first.
            #expect(firstAnswered - released < .seconds(10), "the slow batch's caller was answered \(firstAnswered - released) after its commit")
            #expect(secondAnswered - released < .seconds(10), "the waiting caller was answered \(secondAnswered - released) after the slow commit")
            #expect(secondAnswered - firstAnswered < .seconds(8), "the waiting caller was answered \(secondAnswered - firstAnswered) after the first")
            #expect(try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) }?.uploadsInitiated == 2)
        }
    }

    /// A read while this process's writer is between its log's commit and its projections' finds
    /// the projections behind the log, by that batch alone, and is answered at once from them (the
    /// batch is not answered yet), not held or refused as a lag no writer explains would be.
    @Test(.timeLimit(.minutes(1)))
    func aReadBetweenThisWritersTwoCommits_isAnsweredAtOnce() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.withNextCommitHeld(dir, seconds: 6) { store, slowCommit in
            let held = Task { try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("held")) }
            try await slowCommit.held()
            let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
            #expect(try store.read { try $0.checkpoint() < $0.lastPosition() }, "the log holds the held batch; the projections do not yet")
            // Refused, were the lag not the held batch's: it lasts as long as the hold.
            let repository = try store.readAnswering { try $0.repository(ref) }
            #expect(slowCommit.released.withLock { $0 } == nil, "read while the commit was held")
            #expect(repository?.uploadsInitiated == 0, "as before the batch, which is not answered yet")
            _ = try await held.value
            #expect(try store.readAnswering { try $0.repository(ref) }?.uploadsInitiated == 1)
        }
    }

    /// A lag no writer of this process explains (another process's between its two commits, or,
    /// here, a failed commit of the views) is waited out for up to `projectionsLagPatience`: a
    /// read that sees it end within that is answered with the write; one that outlasts it is
    /// refused, after that long, and reads resume once the fold it asks for is in.
    @Test(.timeLimit(.minutes(1)))
    func aLagNoWriterHereExplains_isWaitedOutUpToThePatience_thenRefused() async throws {
        let patience = Duration.milliseconds(200)  // the README's figure
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let failuresLeft = Locked(0)
        let failing: @Sendable () -> Bool = { failuresLeft.withLock { left in defer { left = max(0, left - 1) }; return left > 0 } }
        try await withTestStore(dir, configure: { $0.failProjectionCommit = failing }) { store in
            let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            // The views' commit fails, and so does the fold the writer tries at once after it.
            failuresLeft.withLock { $0 = 2 }
            _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("lagging"))
            #expect(try store.read { try $0.checkpoint() < $0.lastPosition() }, "the views trail the log")

            // Ended within the patience: the next command's transaction folds the views in first.
            let readStarted = Locked<ContinuousClock.Instant?>(nil)
            let read = Task.detached {
                readStarted.withLock { $0 = .now }
                let answer = Result { try store.readAnswering { try $0.repository(ref) } }
                return (answer, ContinuousClock.now)
            }
            while readStarted.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(1)) }
            try await Task.sleep(for: .milliseconds(50))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/other")), metadata: testMetadata())
            let (folded, (answer, readEnded)) = (ContinuousClock.now, await read.value)
            let readFrom = try #require(readStarted.withLock { $0 })
            if folded - readFrom < patience {
                #expect(try answer.get()?.uploadsInitiated == 1, "answered with the write, not refused, nor without it")
            } else {  // a loaded machine took longer to fold: a refusal then is right, but only after the patience
                #expect((try? answer.get())??.uploadsInitiated == 1 || readEnded - readFrom >= patience)
            }

            // Outlasting it: refused after the patience, never before.
            failuresLeft.withLock { $0 = 2 }
            _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("lagging again"))
            let started = ContinuousClock.now
            #expect(throws: StoreError.self) { try store.readAnswering { try $0.repository(ref) } }
            #expect(ContinuousClock.now - started >= patience)
            // The refusal asked this process's writer for a fold.
            var answered: RepositorySummary?
            while answered == nil {
                answered = try? store.readAnswering { try $0.repository(ref) }
                if answered == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answered?.uploadsInitiated == 2)
        }
    }

    /// A batch takes whole submissions: one that would not fit is left for the next batch, so its
    /// commands commit together; only a first submission larger than a batch is split, and its
    /// tail is then taken through its end.
    @Test func aBatch_takesWholeSubmissions_andSplitsOnlyOneLargerThanABatch() {
        // Each waiting command: whether it ends its submission.
        func length(_ ends: [Bool], max: Int) -> Int { GroupCommitWriter.batchLength(waiting: ends.count, maxBatchSize: max) { ends[$0] } }
        #expect(length([true, false, true], max: 2) == 1, "A, then B's two commands together")
        #expect(length([false, true], max: 2) == 2)
        #expect(length([true, true, true], max: 2) == 2)
        #expect(length([false, false, false, true, true], max: 2) == 2, "a first submission of four is split")
        #expect(length([false, true, true], max: 2) == 2, "a split submission's tail, through its end")
        #expect(length([false, true, false, true], max: 3) == 2)
        #expect(length([false, true], max: 1) == 1, "a batch of one splits everything")
        #expect(length([true, false, true], max: 8) == 3, "all that waits fits")
    }

    /// A batch also stops at its manifest bytes (PostgreSQL refuses a message over 1 GB), past its
    /// first command, which is always taken.
    @Test func aBatch_stopsAtItsManifestBytes() {
        func length(_ bytes: [Int], budget: Int) -> Int {
            GroupCommitWriter.batchLength(waiting: bytes.count, maxBatchSize: 100, maxManifestBytes: budget, manifestBytes: { bytes[$0] }) { _ in true }
        }
        #expect(length([4, 4, 4, 4], budget: 8) == 2)
        #expect(length([4, 4, 0, 0], budget: 8) == 4, "commands without a manifest weigh nothing")
        #expect(length([12, 4], budget: 8) == 1, "a first command larger than the budget goes alone")
        #expect(length([4, 5], budget: 8) == 1)
        #expect(length([4, 4, 1], budget: 8) == 2)
    }

    /// Upload ids key the sessions table; increasing ids append to the B-tree instead of dirtying
    /// a random page each (see TimeOrderedUploadIDs). 20,000 ids overflow the per-millisecond
    /// counter, which must still never go backwards.
    @Test func timeOrderedUploadIds_areVersion7UUIDs_increasingInByteOrder() throws {
        let generator = TimeOrderedUploadIDs()
        let before = UInt64(Date().timeIntervalSince1970 * 1000)
        let ids = (0..<20_000).map { _ in generator.next() }
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0.utf8.lexicographicallyPrecedes($1.utf8) }, "strictly increasing")
        for id in ids.prefix(50) + ids.suffix(50) {
            #expect(try Validation.uploadId(id) == id, "the API's UploadId pattern, lowercase")
            let hex = Array(id.replacingOccurrences(of: "-", with: ""))
            #expect(hex[12] == "7", "version 7")
            #expect("89ab".contains(hex[16]), "RFC 9562 variant")
        }
        let milliseconds = UInt64(String(ids[0].replacingOccurrences(of: "-", with: "").prefix(12)), radix: 16) ?? 0
        #expect(milliseconds >= before && milliseconds < before + 60_000, "the first 48 bits are the time in milliseconds")
    }

    /// Request ids: version 4 UUIDs, as Foundation's, without its file reads.
    @Test func randomUUIDs_areVersion4_andDistinct() {
        let ids = (0..<1_000).map { _ in RandomUUIDs.next() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            #expect(UUID(uuidString: id)?.uuidString.lowercased() == id)
            let hex = Array(id.replacingOccurrences(of: "-", with: ""))
            #expect(hex[12] == "4", "version 4")
            #expect("89ab".contains(hex[16]), "RFC 9562 variant")
        }
    }

    /// The ids' random words come from one pool refilled 32 words at a time: callers on several
    /// threads at once, across many refills, never get a word twice.
    @Test func bufferedRandom_handsEachWordOutOnce_acrossThreadsAndRefills() async {
        let words = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var random = BufferedRandom()
                    return (0..<1_000).map { _ in random.next() }
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        #expect(words.count == 8_000)
        #expect(Set(words).count == words.count)
    }

    @Test func refusedCommand_writesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let error = await #expect(throws: CommandError.self) {
                _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            }
            #expect(error?.code == .repositoryAlreadyExists)
            #expect(try store.read { try $0.lastPosition() } == 1)
            #expect(try store.read { try $0.checkpoint() } == 1)
        }
    }

    @Test func reopen_afterClose_losesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let (before, uploadId) = try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let id = try await store.initiateLayerUpload(try Self.initiate("team/app"), metadata: testMetadata()).uploadId
            return (try store.read { try $0.events() }, id)
        }
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 100) }) { store in
            #expect(try store.read { try $0.events() } == before)
            #expect(try store.read { try $0.session(uploadId) }?.state == .active)
            // and the next position follows on
            let events = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata())
            #expect(events.events.map(\.position) == [3])
        }
    }

    @Test func closedStore_refusesCommands() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try Store(testConfiguration(dir))
        await store.close()
        let error = await #expect(throws: StoreError.self) {
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
        }
        #expect(error?.code == .closed)
    }

    /// Closing while callers wait behind a slow commit: the commit's caller (whose answer the
    /// writer hands to its answering thread, since others wait) and every queued caller are
    /// answered, written or refused as closed, and the log holds exactly the written ones.
    @Test(.timeLimit(.minutes(1)))
    func closingWhileCallersWaitBehindACommit_answersEveryCaller() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let slowCommit = SlowCommit(seconds: 1)
        var configuration = testConfiguration(dir)
        configuration.failProjectionCommit = slowCommit.hook
        // The store is closed and released inside, so that the directory can be opened again.
        func closeWhileCallersWait() async throws -> Int {
            let store = try Store(configuration)
            _ = try await store.execute(Self.create("team/app"), metadata: testMetadata())
            slowCommit.holdNextCommit()
            let first = Task { try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("first")) }
            try await slowCommit.held()
            let queued = (0..<8).map { i in
                Task { try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("queued-\(i)")) }
            }
            try await Task.sleep(for: .milliseconds(100))
            await store.close()
            _ = try await first.value
            var written = 1
            for task in queued {
                switch await task.result {
                case .success: written += 1
                case .failure(let error): #expect((error as? StoreError)?.code == .closed, "\(error)")
                }
            }
            return written
        }
        let written = try await closeWhileCallersWait()
        try await withTestStore(dir) { reopened in
            let initiations = try reopened.read { try $0.events() }.filter { if case .uploadInitiated = $0.event { true } else { false } }
            #expect(initiations.count == written)
        }
    }

    /// Two closes at once (a signal while the server's own shutdown runs, say): each returns only
    /// once the command being committed is written and projected, its caller is answered, and
    /// later commands are refused as closed.
    @Test(.timeLimit(.minutes(1)))
    func closingTwiceAtOnce_eachReturnsOnceTheHeldCommitIsDone() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let slowCommit = SlowCommit(seconds: 1)
        var configuration = testConfiguration(dir)
        configuration.failProjectionCommit = slowCommit.hook
        configuration.uploadIds = SequentialUploadIDs(start: 7)
        let heldUploadId = SequentialUploadIDs(start: 7).next()
        let store = try Store(configuration)
        _ = try await store.execute(Self.create("team/app"), metadata: testMetadata())
        slowCommit.holdNextCommit()
        let held = Task { try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("held")) }
        try await slowCommit.held()
        // What each close saw of the held upload the moment it returned.
        let closes = (0..<2).map { _ in
            Task {
                await store.close()
                return try store.read { try $0.session(heldUploadId) }?.state
            }
        }
        for close in closes { #expect(try await close.value == .active) }
        #expect(try await held.value.events.count == 1)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata("late"))
        }
        #expect(refused?.code == .closed)
    }

    @Test func recordedTime_neverGoesBackwards_whenTheClockDoes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let clock = TestClock()
        try await withTestStore(dir, configure: { $0.clock = clock }) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            clock.advance(milliseconds: -60_000)
            let later = try await store.execute(.initiateLayerUpload(try Self.initiate("team/app")), metadata: testMetadata())
            let events = try store.read { try $0.events() }
            #expect(later.events[0].recordedAt == events[0].recordedAt)
        }
    }

    @Test func metadata_isStoredWithEachEvent() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let metadata = RequestMetadata(requestId: "req-42", source: "http", userAgent: "aws-cli/1.45.11", sourceAddress: "127.0.0.1:5555", invocationId: "inv-1")
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: metadata)
            #expect(try store.read { try $0.events() }.first?.metadata == metadata)
        }
    }

    /// A full LMDB map grows, and no caller notices.
    @Test func fullMap_growsWithoutTheCallerNoticing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.environment.mapSize = 1 << 19 }) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<8 {
                    group.addTask {
                        for i in 0..<400 {
                            _ = try await store.initiateLayerUpload(try Self.initiate("team/app"), metadata: testMetadata("c\(caller)-\(i)"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let statistics = try store.statistics()
            #expect(statistics.logPosition == 3201)
            #expect(statistics.mapSizeBytes > 1 << 19, "the map grew")
        }
        #expect(Replayer.verify(directory: dir.path).passed)
        // A rebuild at open starts from a new file at the configured size, and grows it too.
        try FileManager.default.removeItem(atPath: dir.path + "/projections")
        try await withTestStore(dir, configure: { $0.environment.mapSize = 1 << 19 }) { store throws in
            #expect(try store.read { try $0.checkpoint() } == 3201)
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// Beyond the queue bound, commands are refused at once (ThrottlingException) rather than
    /// queued without limit.
    @Test func overfullQueue_refusesWithOverloaded() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.maxQueuedCommands = 1 }) { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let outcomes = await withTaskGroup(of: StoreError.Code?.self) { group in
                for _ in 0..<200 {
                    group.addTask {
                        do {
                            _ = try await store.initiateLayerUpload(try Self.initiate("team/app"), metadata: testMetadata())
                            return nil
                        } catch let error as StoreError {
                            return error.code
                        } catch {
                            return .io
                        }
                    }
                }
                return await group.reduce(into: [StoreError.Code?]()) { $0.append($1) }
            }
            #expect(outcomes.contains(.overloaded))
            #expect(!outcomes.contains(.io))
            let written = try store.read { try $0.lastPosition() } - 1
            #expect(Int(written) == outcomes.filter { $0 == nil }.count, "exactly the accepted commands were written")
        }
    }
}

/// Holds the writer's next commit for a while, through the projections' commit hook (which runs
/// after the log's commit, inside the writer's transaction): ``holdNextCommit()`` arms it, and
/// ``held()`` returns once that commit is being held.
final class SlowCommit: Sendable {
    private let seconds: Double
    private let armed = Locked(false)
    private let holding = Locked(false)
    /// When the held commit was let go.
    let released = Locked<ContinuousClock.Instant?>(nil)

    init(seconds: Double) { self.seconds = seconds }

    /// The hook for `StoreConfiguration.failProjectionCommit`; it never fails the commit.
    var hook: @Sendable () -> Bool {
        { [self] in
            let hold = armed.withLock { armed in
                defer { armed = false }
                return armed
            }
            if hold {
                holding.withLock { $0 = true }
                Thread.sleep(forTimeInterval: seconds)
                released.withLock { $0 = ContinuousClock.now }
            }
            return false
        }
    }

    func holdNextCommit() { armed.withLock { $0 = true } }

    func held() async throws {
        while !holding.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
    }
}
