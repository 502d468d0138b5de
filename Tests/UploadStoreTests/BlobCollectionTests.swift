import Foundation
import LogHashing
import Testing
@testable import UploadStore
import UploadCore
@testable import UploadService
import UploadTesting

/// The blob collector's rules (`BlobCollection.swift`): what it removes, and what a claim keeps.
struct BlobCollectionTests {
    private static func digest(_ text: String) -> String { Hex.sha256Digest(Array(text.utf8)) }

    /// A blob kept two hours ago: older than an hour's minimum age.
    private static func keepOld(_ blobs: BlobStore, _ text: String) throws -> String {
        let digest = digest(text)
        try blobs.commitBlob(try blobs.writeTemporary(Array(text.utf8)), digest: digest)
        try age(blobs.blobPath(digest))
        return digest
    }

    private static func age(_ path: String, by seconds: Int = 7200) throws {
        var times = [timespec](repeating: timespec(tv_sec: time(nil) - seconds, tv_nsec: 0), count: 2)
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    @Test func removesOnlyOldBlobsNoOneNames_andADryRunRemovesNothing() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let named = try Self.keepOld(blobs, "named"), unnamed = try Self.keepOld(blobs, "unnamed"), other = try Self.keepOld(blobs, "other")
        let recent = Self.digest("recent")
        try blobs.commitBlob(try blobs.writeTemporary(Array("recent".utf8)), digest: recent)
        // Not blobs: a copy in progress, and a name no digest has.
        let copy = try blobs.writeTemporary(Array("copy".utf8))
        try Self.age(copy)
        _ = FileManager.default.createFile(atPath: dir.path + "/blobs/sha256/not-a-digest", contents: Data("x".utf8))

        let dry = try blobs.collectGarbage(minimumAge: 3600, dryRun: true) { [named] }
        #expect(dry.removed == [unnamed, other].sorted { $0.precedesByBytes($1) } && dry.named == 1 && dry.recent == 1)
        #expect(blobs.hasBlob(unnamed) && blobs.hasBlob(other))

        let done = try blobs.collectGarbage(minimumAge: 3600, dryRun: false) { [named] }
        #expect(done == dry)
        #expect(done.removedBytes == UInt64("unnamed".utf8.count + "other".utf8.count))
        #expect(!blobs.hasBlob(unnamed) && !blobs.hasBlob(other))
        #expect(blobs.hasBlob(named) && blobs.hasBlob(recent))
        #expect(FileManager.default.fileExists(atPath: copy) && FileManager.default.fileExists(atPath: dir.path + "/blobs/sha256/not-a-digest"))
        #expect(try blobs.collectGarbage(minimumAge: 3600, dryRun: false) { [named] }.removed.isEmpty)
        // No minimum age counts as the writer's fence's: a blob used 50 s ago may still be named by
        // a commit in flight, and is kept; one used 70 s ago goes.
        try Self.age(blobs.blobPath(recent), by: 50)
        #expect(try blobs.collectGarbage(minimumAge: 0, dryRun: false) { [named] }.removed == [])
        try Self.age(blobs.blobPath(recent), by: Int(BlobClaims.shortestCollectionAge) + 10)
        #expect(try blobs.collectGarbage(minimumAge: 0, dryRun: false) { [named] }.removed == [recent])
    }

    /// The names are read after the collection's clock: a blob claimed while they are read (by a
    /// command whose event they miss) is recent, even with no minimum age.
    @Test func namesAreReadAfterTheClock() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        var late = ""
        let collection = try blobs.collectGarbage(minimumAge: 0, dryRun: false) {
            late = try Self.keepOld(blobs, "kept while the names were read")
            _ = try blobs.claimBlob(late)  // as the command about to name it does
            Thread.sleep(forTimeInterval: 0.05)  // past the file system's clock's tick: a clock read now would be later
            return []
        }
        #expect(collection.removed.isEmpty && collection.recent == 1 && blobs.hasBlob(late))
    }

    /// A store whose last event is older than a blob it does not name lacks what came since (an
    /// old copy of the folder's database): refused, unless forced; a store as recent as the
    /// folder's uses collects.
    @Test func aStoreBehindTheFolder_isRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let named = try Self.keepOld(blobs, "named"), pushedSince = try Self.keepOld(blobs, "pushed since")
        let threeHoursAgo = Date().addingTimeInterval(-3 * 3600)  // both blobs were used two hours ago
        #expect(throws: StoreError.self) {
            try blobs.collectGarbage(minimumAge: 3600, dryRun: true, storeLastRecorded: threeHoursAgo) { [named] }
        }
        #expect(blobs.hasBlob(pushedSince))
        let aMinuteLater = Date().addingTimeInterval(-2 * 3600 + 30)  // within the clocks' leeway of its use
        #expect(try blobs.collectGarbage(minimumAge: 3600, dryRun: true, storeLastRecorded: aMinuteLater) { [named] }.removed == [pushedSince])
        #expect(try blobs.collectGarbage(minimumAge: 3600, dryRun: false, force: true, storeLastRecorded: threeHoursAgo) { [named] }.removed == [pushedSince])
    }

    /// A command that claims a blob after the collection judged it, but before it is moved aside,
    /// keeps it: the blob is put back under its name.
    @Test func aBlobClaimedAfterItWasJudged_isPutBack() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let claimed = try Self.keepOld(blobs, "claimed"), garbage = try Self.keepOld(blobs, "garbage")
        let collection = try blobs.collectGarbage(minimumAge: 3600, dryRun: false, force: true, named: { [] }) { digest in
            if digest == claimed { #expect(try! blobs.claimBlob(digest) == 7) }
        }
        #expect(collection.removed == [garbage] && collection.recent == 1)
        #expect(blobs.hasBlob(claimed) && !blobs.hasBlob(garbage))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/blobs/sha256").allSatisfy { !$0.hasPrefix(".collected-") })
        // A claim once it is gone finds nothing: its caller writes the bytes anew.
        #expect(try blobs.claimBlob(garbage) == nil)
    }

    /// Keeping a blob claims it, whether it was kept before or is linked from an old staging file
    /// (an upload whose last part came hours before its completion).
    @Test func keepingABlobClaimsIt() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let again = try Self.keepOld(blobs, "kept again")
        try blobs.commitBlob(try blobs.writeTemporary(Array("kept again".utf8)), digest: again)
        let upload = "00000000-0000-4000-8000-000000000001"
        let staged = try blobs.writePart(uploadId: upload, offset: 0, bytes: Array("staged".utf8))
        try Self.age(blobs.stagingPath(upload))
        #expect(try blobs.linkStaged(uploadId: upload, digest: staged, size: 6))
        let collection = try blobs.collectGarbage(minimumAge: 3600, dryRun: false) { [] }
        #expect(collection.removed.isEmpty && collection.recent == 2)
    }

    /// Names that look like another store's are refused before anything goes, unless forced:
    /// none while blobs would go, or names the folder mostly lacks.
    @Test func namesOfAnotherStore_areRefused_unlessForced() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let old = try Self.keepOld(blobs, "old"), kept = try Self.keepOld(blobs, "kept")
        let elsewhere = (1...2).map { Self.digest("elsewhere \($0)") }
        #expect(throws: StoreError.self) { try blobs.collectGarbage(minimumAge: 3600, dryRun: false) { [] } }
        #expect(throws: StoreError.self) { try blobs.collectGarbage(minimumAge: 3600, dryRun: true) { [kept] + elsewhere } }
        #expect(blobs.hasBlob(old) && blobs.hasBlob(kept))
        let forced = try blobs.collectGarbage(minimumAge: 3600, dryRun: false, force: true) { [kept] + elsewhere }
        #expect(forced.removed == [old] && forced.namedButMissing == 2)
        #expect(try blobs.collectGarbage(minimumAge: 3600, dryRun: false, force: true) { [] }.removed == [kept])
    }

    /// A backup holds collections off while it links the blobs its snapshot names.
    @Test func aCollection_isRefusedWhileABackupHoldsItOff() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let garbage = try Self.keepOld(blobs, "garbage"), named = try Self.keepOld(blobs, "named")
        let backup = try #require(try blobs.holdOffCollections())
        #expect(throws: StoreError.self) { try blobs.collectGarbage(minimumAge: 3600, dryRun: false) { [named] } }
        #expect(blobs.hasBlob(garbage))
        // A second backup shares the hold; a collection holding the folder keeps a backup off.
        let second = try #require(try blobs.holdOffCollections())
        second.release()
        backup.release()
        var judged = 0
        _ = try blobs.collectGarbage(minimumAge: 3600, dryRun: false, force: false, named: { [named] }) { _ in
            judged += 1
            #expect(try! blobs.holdOffCollections() == nil, "a backup waits while a collection runs")
        }
        #expect(judged == 1, "the collection judged its one candidate, with the backup's hold checked meanwhile")
        #expect(!blobs.hasBlob(garbage))
    }

    /// A collection killed between moving a blob aside and removing it leaves it aside: the next
    /// collection, or a start-up's reconciliation, puts it back (a new copy under its name wins).
    @Test func aBlobLeftAside_isPutBack() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let lost = try Self.keepOld(blobs, "left aside"), copied = try Self.keepOld(blobs, "copied again")
        let folder = dir.path + "/blobs/sha256/"
        for digest in [lost, copied] {
            #expect(link(blobs.blobPath(digest), folder + ".collected-" + digest.dropFirst(7) + ".killed") == 0)
        }
        #expect(unlink(blobs.blobPath(lost)) == 0)
        let restored = blobs.restoreCollected()
        #expect(restored.restored.sorted() == [lost, copied].sorted() && restored.failed.isEmpty)
        #expect(blobs.hasBlob(lost) && blobs.hasBlob(copied))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.hasPrefix(".collected-") })
    }

    /// A collection leaves its mark while it may have a blob moved aside; a server's sweeper puts
    /// back what a killed one left once it finds the mark and no collection or backup holds the
    /// folder, and a backup (which holds collections off) at once. No mark, no listing.
    @Test func aKilledCollectionsBlob_isPutBackOnceItsMarkIsFound_byWhoeverHoldsTheFolder() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let garbage = try Self.keepOld(blobs, "garbage"), named = try Self.keepOld(blobs, "named")
        var markedWhileAside = false
        _ = try blobs.collectGarbage(minimumAge: 3600, dryRun: false, named: { [named] }, movedAside: { _ in
            markedWhileAside = FileManager.default.fileExists(atPath: blobs.collectionMarkPath)
        })
        #expect(markedWhileAside && !FileManager.default.fileExists(atPath: blobs.collectionMarkPath), "kept only while it runs")
        #expect(!blobs.hasBlob(garbage))

        // Killed with `named` moved aside.
        let aside = dir.path + "/blobs/sha256/.collected-" + named.dropFirst(7) + ".killed"
        #expect(rename(blobs.blobPath(named), aside) == 0)
        #expect(blobs.restoreAfterAKilledCollection().isEmpty && !blobs.hasBlob(named), "no mark: nothing looked at")
        #expect(FileManager.default.createFile(atPath: blobs.collectionMarkPath, contents: nil))
        let backup = try #require(try blobs.holdOffCollections())
        #expect(blobs.restoreAfterAKilledCollection().isEmpty && !blobs.hasBlob(named), "a backup holds the folder: the sweeper waits")
        #expect(blobs.restoreAfterAKilledCollection(heldOff: true).isEmpty && blobs.hasBlob(named), "the backup puts it back")
        backup.release()
        #expect(!FileManager.default.fileExists(atPath: aside) && !FileManager.default.fileExists(atPath: blobs.collectionMarkPath))

        #expect(rename(blobs.blobPath(named), aside) == 0)
        #expect(FileManager.default.createFile(atPath: blobs.collectionMarkPath, contents: nil))
        #expect(blobs.restoreAfterAKilledCollection().isEmpty && blobs.hasBlob(named), "the folder free: the sweeper puts it back")
        #expect(!FileManager.default.fileExists(atPath: blobs.collectionMarkPath))
    }
}

/// What the collector keeps: every layer and logo the projections name, read at the log's tail.
struct ReferencedBlobDigestsTests {
    /// Each repository's completed layers (more than a page of them) and its logo, on both
    /// backends; a deleted repository's no longer.
    @Test(arguments: StoreBackend.allCases)
    func layersAndLogos_ofEveryRepository(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            let logo = Array("\u{89}PNG logo".utf8)
            let catalog = try RepositoryCatalogInput(logoImage: logo)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app", catalog: catalog)), metadata: testMetadata())
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/gone")), metadata: testMetadata())
            var layers: [String] = []
            for n in 0..<1030 {
                layers.append(try await Self.completeLayer(store, "team/app", "layer \(n)"))
            }
            let gone = try await Self.completeLayer(store, "team/gone", "only in the deleted repository")
            #expect(try store.referencedBlobDigests() == (layers + [gone, Hex.sha256Digest(logo)]).sorted { $0.precedesByBytes($1) })
            _ = try await store.execute(.deleteRepository(try DeleteRepository(repositoryName: "team/gone", force: true)), metadata: testMetadata())
            #expect(try store.referencedBlobDigests() == (layers + [Hex.sha256Digest(logo)]).sorted { $0.precedesByBytes($1) })
        }
    }

    /// Projections that trail the log (their commit failed: a full disk) miss what the log names:
    /// refused once the lag outlasts the patience, read again once it is folded in.
    @Test func projectionsThatTrailTheLog_areRefused() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let failuresLeft = Locked(0)
        let failing: @Sendable () -> Bool = { failuresLeft.withLock { left in defer { left = max(0, left - 1) }; return left > 0 } }
        try await withTestStore(dir, configure: { $0.failProjectionCommit = failing }) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            // The completion's commit of the views fails, and so does the fold after it.
            let layer = try await Self.completeLayer(store, "team/app", "named by the log only") { failuresLeft.withLock { $0 = 2 } }
            #expect(throws: StoreError.self) { try store.referencedBlobDigests(patience: .milliseconds(100)) }
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/other")), metadata: testMetadata())
            #expect(try store.referencedBlobDigests(patience: .milliseconds(100)) == [layer])
        }
    }

    /// Records an upload of `text` in `repository`, its bytes taken as staged: the layer's digest.
    private static func completeLayer(
        _ store: any EventStore, _ repository: String, _ text: String, beforeCompleting: () -> Void = {}
    ) async throws -> String {
        let bytes = Array(text.utf8), digest = Hex.sha256Digest(bytes)
        let id = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: repository), metadata: testMetadata()).uploadId
        var part = try UploadLayerPart(
            repositoryName: repository, uploadId: id, partFirstByte: 0, partLastByte: Int64(bytes.count - 1), partLength: UInt64(bytes.count), partDigest: digest)
        part.staged = true
        _ = try await store.execute(.uploadLayerPart(part), metadata: testMetadata())
        var complete = try CompleteLayerUpload(repositoryName: repository, uploadId: id, layerDigests: [digest])
        complete.staged = .init(digest: digest, size: UInt64(bytes.count))
        beforeCompleting()
        _ = try await store.execute(.completeLayerUpload(complete), metadata: testMetadata())
        return digest
    }
}
