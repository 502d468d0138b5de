import Foundation
import LogHashing
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

struct BlobStoreTests {
    /// A single-part upload's staging file is linked into the blob store at completion. Until the
    /// completion commits it is also staging, so whatever writes staging next (another part after a
    /// refused completion, a cut back, a crash's reconciliation) must leave the blob as it was.
    @Test func aLinkedStagingFile_isCopiedBeforeAnythingWritesIt_soTheBlobNeverChanges() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let upload = "00000000-0000-4000-8000-000000000001", layer = Array("layer".utf8)
        let digest = try blobs.writePart(uploadId: upload, offset: 0, bytes: layer)
        #expect(try !blobs.linkStaged(uploadId: upload, digest: digest, size: 4), "a file of another size is not the layer")
        #expect(!blobs.hasBlob(digest))
        #expect(try blobs.linkStaged(uploadId: upload, digest: digest, size: 5))
        func blob() throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(digest)))) }
        func staged() throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(upload)))) }
        #expect(try blob() == layer)

        try blobs.writePart(uploadId: upload, offset: 5, bytes: Array("+more".utf8))
        #expect(try blob() == layer && staged() == Array("layer+more".utf8))
        #expect(try !blobs.linkStaged(uploadId: upload, digest: digest, size: 5), "staging no longer holds the layer")
        blobs.truncateStaging(upload, to: 2)
        #expect(try blob() == layer && staged() == Array("la".utf8))

        let other = "00000000-0000-4000-8000-000000000002"
        let second = try blobs.writePart(uploadId: other, offset: 0, bytes: Array("other".utf8))
        #expect(try blobs.linkStaged(uploadId: other, digest: second, size: 5))
        blobs.truncateStaging(other, to: 1)
        let writer = blobs.stagingWriter(uploadId: other, offset: 1)
        try writer.write(Array("X".utf8))
        _ = try writer.finish()
        #expect(try Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(second))) == Data("other".utf8))
        #expect(try Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(other))) == Data("oX".utf8))
    }

    /// Views that miss an answered write (their commit and the fold after it failed: a full disk)
    /// would show an answered upload as none, and tidying would remove its staged bytes: it is
    /// refused until the views catch up, and the bytes stay.
    @Test func reconcile_whileTheViewsMissAnAnsweredWrite_isRefused_andRemovesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let failuresLeft = Locked(0)
        let failing: @Sendable () -> Bool = { failuresLeft.withLock { left in defer { left = max(0, left - 1) }; return left > 0 } }
        try await withTestStore(dir, configure: { $0.failProjectionCommit = failing }) { store in
            let blobs = try BlobStore(directory: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            failuresLeft.withLock { $0 = 2 }  // the commit of the views and the fold after it
            let upload = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try blobs.writePart(uploadId: upload, offset: 0, bytes: Array("abcd".utf8))
            #expect(throws: StoreError.self) { try blobs.reconcile(with: store, tidyingOnly: true) }
            #expect(FileManager.default.fileExists(atPath: blobs.stagingPath(upload)))
            // The next transaction folds the views in; then the upload is known, and kept.
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/other")), metadata: testMetadata())
            #expect(try blobs.reconcile(with: store, tidyingOnly: true).removedStaging.isEmpty)
            #expect(FileManager.default.fileExists(atPath: blobs.stagingPath(upload)))
        }
    }

    /// The file system's clock is read from a probe written and removed in each pass; one a killed
    /// process left behind goes once an hour old, and none is left by a pass itself.
    @Test func reconcile_removesAClockProbeLeftBehind_andLeavesNoneOfItsOwn() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            let staging = dir.path + "/staging"
            let old = staging + "/.clock-probe-left", recent = staging + "/.clock-probe-recent"
            for path in [old, recent] { #expect(FileManager.default.createFile(atPath: path, contents: Data([0]))) }
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: old)
            _ = try blobs.reconcile(with: store, tidyingOnly: true)
            let probes = try FileManager.default.contentsOfDirectory(atPath: staging).filter { $0.hasPrefix(".clock-probe-") }
            #expect(probes == [".clock-probe-recent"])
        }
    }

    /// After a crash, staging must agree with the log: bytes the log does not record are cut or
    /// removed, and bytes it records are reported when missing.
    @Test func reconcile_afterACrash_discardsUnrecordedBytes_andReportsMissingOnes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let a = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            let b = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            // a: one recorded part of 4 bytes, then a part whose bytes were synced but whose event never committed
            try blobs.writePart(uploadId: a, offset: 0, bytes: Array("abcd".utf8))
            var part = try UploadLayerPart(repositoryName: "team/app", uploadId: a, partFirstByte: 0, partLastByte: 3, partLength: 4, partDigest: "sha256:00")
            part.staged = true  // its bytes are staged by hand above
            _ = try await store.execute(.uploadLayerPart(part), metadata: testMetadata())
            try blobs.writePart(uploadId: a, offset: 4, bytes: Array("efgh".utf8))
            // b: a recorded part whose staging file is gone
            var partB = try UploadLayerPart(repositoryName: "team/app", uploadId: b, partFirstByte: 0, partLastByte: 0, partLength: 1, partDigest: "sha256:01")
            partB.staged = true  // its bytes are staged by hand above
            _ = try await store.execute(.uploadLayerPart(partB), metadata: testMetadata())
            // an upload the log never heard of
            try blobs.writePart(uploadId: "00000000-0000-4000-8000-00000000ffff", offset: 0, bytes: [1])
            // copies of staged bytes a completion was making, of that upload and of `a`, which is active
            let copy = { (upload: String) in dir.path + "/blobs/sha256/.tmp-" + upload }
            for upload in ["00000000-0000-4000-8000-00000000ffff", a] { #expect(FileManager.default.createFile(atPath: copy(upload), contents: Data([1]))) }

            // A live server's tidying does the same to staging, but reports nothing missing, and
            // leaves a file written within the hour: a part whose commit's answer was lost may
            // still commit after its read.
            let recent = try blobs.reconcile(with: store, tidyingOnly: true)
            #expect(recent.truncatedStaging.isEmpty && recent.removedStaging == ["00000000-0000-4000-8000-00000000ffff"] && recent.missing.isEmpty)
            // The copy of an upload that is none goes with its staging, however recent; an active one's stays.
            #expect(!FileManager.default.fileExists(atPath: copy("00000000-0000-4000-8000-00000000ffff")))
            #expect(FileManager.default.fileExists(atPath: copy(a)))
            var hoursAgo = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(blobs.stagingPath(a), &hoursAgo) == 0)
            let tidied = try blobs.reconcile(with: store, tidyingOnly: true)
            #expect(tidied.truncatedStaging == [a] && tidied.removedStaging.isEmpty && tidied.missing.isEmpty)
            try blobs.writePart(uploadId: a, offset: 4, bytes: Array("efgh".utf8))
            try blobs.writePart(uploadId: "00000000-0000-4000-8000-00000000ffff", offset: 0, bytes: [1])

            let result = try blobs.reconcile(with: store)
            #expect(result.truncatedStaging == [a])
            #expect(result.removedStaging == ["00000000-0000-4000-8000-00000000ffff"])
            #expect(result.missing == ["upload \(b): 1 bytes recorded, none staged"])
            #expect(try Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(a))) == Data("abcd".utf8))
            #expect(try blobs.reconcile(with: store).truncatedStaging.isEmpty, "a second pass finds nothing to do")
        }
    }

    /// On PostgreSQL a part whose commit's answer was lost (its connection cut while the commit
    /// waited on a standby) may still commit after a node restarts: start-up leaves a staging file
    /// written within the hour as the live tidy does, and cuts back an older one. LMDB's commits
    /// end with their process, so its start-up cuts back at once.
    @Test(arguments: StoreBackend.allCases)
    func startUp_leavesLatelyWrittenStaging_whereCommitsMayLandLate(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await location.withStore { store in
            let blobs = try BlobStore(directory: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let a = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try blobs.writePart(uploadId: a, offset: 0, bytes: Array("staged, its commit not yet seen".utf8))
            let atStart = try blobs.reconcile(with: store)
            #expect(atStart.truncatedStaging == (store.commitsMayLandLate ? [] : [a]), "\(backend)")
            #expect(store.commitsMayLandLate == (backend == .postgres))
            try blobs.writePart(uploadId: a, offset: 0, bytes: Array("staged an hour ago".utf8))
            var hoursAgo = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(blobs.stagingPath(a), &hoursAgo) == 0)
            #expect(try blobs.reconcile(with: store).truncatedStaging == [a], "\(backend)")
        }
    }

    /// Completed layers and logos are checked after start-up, not by reconcile (which reads only
    /// active uploads); one the log records without its blob is reported there.
    @Test func missingBlobs_reportsACompletedLayerWhoseBlobIsGone() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let id = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try blobs.writePart(uploadId: id, offset: 0, bytes: Array("hello world".utf8))
            var part = try UploadLayerPart(repositoryName: "team/app", uploadId: id, partFirstByte: 0, partLastByte: 10, partLength: 11, partDigest: "sha256:00")
            part.staged = true  // its bytes are staged by hand above
            _ = try await store.execute(.uploadLayerPart(part), metadata: testMetadata())
            let (digest, temporary) = try blobs.hashAndCopyStaged(uploadId: id, length: 11)
            var complete = try CompleteLayerUpload(repositoryName: "team/app", uploadId: id, layerDigests: [digest])
            complete.staged = .init(digest: digest, size: 11)
            _ = try await store.execute(.completeLayerUpload(complete), metadata: testMetadata())
            #expect(try blobs.missingBlobs(in: store, stopped: { false }) == ["layer \(digest): recorded, no blob"], "the blob was never committed")
            try blobs.commitBlob(temporary, digest: digest)
            #expect(try blobs.missingBlobs(in: store, stopped: { false }).isEmpty)
            // A logo the store names is checked too.
            let logo = Array("logo".utf8)
            let catalog = try RepositoryCatalogInput(logoImage: logo)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/logo", catalog: catalog)), metadata: testMetadata())
            #expect(try blobs.missingBlobs(in: store, stopped: { false }) == ["logo \(Hex.sha256Digest(logo)): recorded, no blob"])
            #expect(try blobs.reconcile(with: store).missing.isEmpty, "reconcile looks only at active uploads")
        }
    }

    /// A copy checks the disk's reserve before each mebibyte, not only once: copies that passed
    /// the first check together (here, one whose room another takes after its start) would fill
    /// the reserve between them. The refused copy leaves no file.
    @Test func aCopyStops_whenTheReserveRunsOutPartWay() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        var blobs = try BlobStore(directory: dir.path)
        let id = "00000000-0000-4000-8000-000000000002"
        try blobs.writePart(uploadId: id, offset: 0, bytes: [UInt8](repeating: 7, count: 3 << 20))
        blobs.reservedDiskBytes = 100 << 20
        let checks = Locked(0)
        // Room for the whole copy at its first check; another writer takes it all after.
        blobs.freeDiskBytes = { _ in checks.withLock { $0 += 1; return $0 == 1 ? (104 << 20) : (100 << 20) } }
        #expect { _ = try blobs.hashAndCopyStaged(uploadId: id, length: 3 << 20) } throws: { ($0 as? CommandError)?.code == .limitExceeded }
        #expect(checks.withLock { $0 } == 2, "checked again before its second mebibyte")
        // The copy is written beside the blobs it would join (`completionCopyPath`).
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/blobs/sha256/.tmp-" + id))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/blobs/sha256").allSatisfy { !$0.hasPrefix(".tmp-") })
    }

    @Test func hashAndCopy_thenCommit_storesTheBytesUnderTheirDigest() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let blobs = try BlobStore(directory: dir.path)
        let id = "00000000-0000-4000-8000-000000000001"
        try blobs.writePart(uploadId: id, offset: 0, bytes: Array("hello ".utf8))
        try blobs.writePart(uploadId: id, offset: 6, bytes: Array("world".utf8))
        let (digest, temporary) = try blobs.hashAndCopyStaged(uploadId: id, length: 11)
        #expect(digest == "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        try blobs.commitBlob(temporary, digest: digest)
        #expect(try Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(digest))) == Data("hello world".utf8))
        #expect(!FileManager.default.fileExists(atPath: temporary))
    }
}
