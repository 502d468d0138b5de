import Foundation
import Testing
@testable import UploadStore
import UploadTesting

/// A secret is written under a temporary name, then linked into place; a process killed between
/// the two leaves the temporary copy (the secret, or part of it) under a name nothing reads.
struct SecretFileTests {
    @Test func copiesAbandonedByAKilledProcess_areRemoved_andOnesBeingWrittenNowAreKept() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/transparency-log.key"
        let abandoned = path + ".new-123", beingWritten = path + ".new-456", unrelated = dir.path + "/other.key.new-789"
        for copy in [abandoned, beingWritten, unrelated] { #expect(FileManager.default.createFile(atPath: copy, contents: Data("half".utf8))) }
        let old = Date().addingTimeInterval(-2 * SecretFile.abandonedAfter)
        for copy in [abandoned, unrelated] { try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: copy) }
        let secret = try SecretFile.contents(at: path) { Array("the secret".utf8) }
        #expect(secret == Data("the secret".utf8))
        #expect(!FileManager.default.fileExists(atPath: abandoned))
        #expect(FileManager.default.fileExists(atPath: beingWritten), "another process may be writing it now")
        #expect(FileManager.default.fileExists(atPath: unrelated), "another file's copy")
        #expect(try SecretFile.contents(at: path) { Array("another".utf8) } == secret, "created once, never changed")
    }
}
