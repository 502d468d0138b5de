import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

struct DeciderTests {
    let settings = DecisionSettings(defaultRegistryId: testRegistryId, partSize: 5_242_880)
    let now = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)

    /// Decides and projects `commands` in order into in-memory tables, as the writer does.
    func run(_ commands: [Command], into tables: inout InMemoryProjectionState, ids: SequentialUploadIDs = .init()) throws -> [Event] {
        var all: [Event] = []
        for command in commands {
            let context = DecisionContext(now: now, newUploadId: command.startsUpload ? ids.next() : nil)
            let events = try Decider.decide(command, state: tables, settings: settings, context: context).events
            for event in events {
                all.append(event)
                let envelope = EventEnvelope(position: UInt64(all.count), recordedAt: now, metadata: testMetadata(), event: event)
                try Projector.apply(envelope, to: &tables)
            }
        }
        return all
    }

    func create(_ name: String) throws -> Command { .createRepository(try CreateRepository(repositoryName: name)) }
    func initiate(_ name: String, registry: String? = nil) throws -> Command {
        .initiateLayerUpload(try InitiateLayerUpload(registryId: registry, repositoryName: name))
    }

    @Test func initiate_inExistingRepository_recordsUploadInitiatedWithConfiguredPartSize() throws {
        var tables = InMemoryProjectionState()
        let events = try run([create("team/app"), initiate("team/app")], into: &tables)
        #expect(events.last == .uploadInitiated(UploadInitiated(
            uploadId: "00000000-0000-4000-8000-000000000001", partSize: 5_242_880, registryId: testRegistryId,
            repositoryName: "team/app", initiatedAt: now)))
    }

    @Test func initiate_namingTheDefaultRegistry_isTheSameRegistry() throws {
        var tables = InMemoryProjectionState()
        let events = try run([create("team/app"), initiate("team/app", registry: testRegistryId)], into: &tables)
        guard case .uploadInitiated(let e) = events.last else { Issue.record("no UploadInitiated"); return }
        #expect(e.registryId == testRegistryId)
    }

    @Test func initiate_inMissingRepository_isRepositoryNotFound() throws {
        var tables = InMemoryProjectionState()
        let error = try #require(throws: CommandError.self) { try run([create("team/app"), initiate("team/other")], into: &tables) }
        #expect(error.code == .repositoryNotFound)
        #expect(error.message == "The repository with name 'team/other' does not exist in the registry with id '123456789012'")
    }

    @Test func initiate_inUnknownRegistry_isRegistryNotFound() throws {
        var tables = InMemoryProjectionState()
        let error = try #require(throws: CommandError.self) {
            try run([create("team/app"), initiate("team/app", registry: "999999999999")], into: &tables)
        }
        #expect(error.code == .registryNotFound)
        #expect(error.message.contains("'999999999999'"))
    }

    @Test func create_twice_isRepositoryAlreadyExists() throws {
        var tables = InMemoryProjectionState()
        let error = try #require(throws: CommandError.self) { try run([create("team/app"), create("team/app")], into: &tables) }
        #expect(error.code == .repositoryAlreadyExists)
    }

    @Test func delete_withUploadsInProgressButNoImages_abortsThemWithoutForce() throws {
        var tables = InMemoryProjectionState()
        _ = try run([create("team/app"), initiate("team/app")], into: &tables)
        let events = try run([.deleteRepository(try DeleteRepository(repositoryName: "team/app"))], into: &tables)
        #expect(events.map(\.type) == [.uploadAborted, .repositoryDeleted])
    }

    @Test func delete_withForce_abortsEachUploadThenDeletes() throws {
        var tables = InMemoryProjectionState()
        let ids = SequentialUploadIDs()
        _ = try run([create("team/app"), initiate("team/app"), initiate("team/app"), create("team/other"), initiate("team/other")], into: &tables, ids: ids)
        let events = try run([.deleteRepository(try DeleteRepository(repositoryName: "team/app", force: true))], into: &tables, ids: ids)
        #expect(events.map(\.type) == [.uploadAborted, .uploadAborted, .repositoryDeleted])
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        #expect(try tables.repository(ref) == nil)
        #expect(try tables.session("00000000-0000-4000-8000-000000000001")?.state == .aborted)
        #expect(try tables.session("00000000-0000-4000-8000-000000000003")?.state == .active, "other repository untouched")
        #expect(try tables.activeUploads(in: RepositoryRef(registryId: testRegistryId, repositoryName: "team/other")).count == 1)
        // the name can be used again, from a clean slate
        _ = try run([create("team/app")], into: &tables, ids: ids)
        #expect(try tables.repository(ref)?.uploadsInitiated == 0)
    }

    @Test func projections_countUploadsAndActiveSessionsPerRepository() throws {
        var tables = InMemoryProjectionState()
        _ = try run([create("team/app"), initiate("team/app"), initiate("team/app"), initiate("team/app")], into: &tables)
        let summary = try #require(try tables.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")))
        #expect(summary.uploadsInitiated == 3)
        #expect(summary.activeSessions == 3)
        #expect(summary.createdPosition == 1)
        #expect(summary.lastPosition == 4)
        let session = try #require(try tables.session("00000000-0000-4000-8000-000000000002"))
        #expect(session.initiatedPosition == 3 && session.partSize == 5_242_880 && session.state == .active)
    }

    @Test func projector_refusesAnEventThatContradictsState() throws {
        var tables = InMemoryProjectionState()
        let orphan = EventEnvelope(
            position: 1, recordedAt: now, metadata: testMetadata(),
            event: .uploadInitiated(UploadInitiated(uploadId: "u", partSize: 1, registryId: testRegistryId, repositoryName: "nope", initiatedAt: now)))
        #expect(throws: ProjectionError.self) { try Projector.apply(orphan, to: &tables) }
    }

    @Test func initiate_beyondTheActiveUploadBound_isLimitExceeded() throws {
        var limited = settings
        limited.maximumActiveUploadsPerRepository = 2
        var tables = InMemoryProjectionState()
        _ = try run([create("team/app"), initiate("team/app"), initiate("team/app")], into: &tables)
        let error = try #require(throws: CommandError.self) {
            try Decider.decide(try initiate("team/app"), state: tables, settings: limited, context: DecisionContext(now: now, newUploadId: "x"))
        }
        #expect(error.code == .limitExceeded)
    }
}
