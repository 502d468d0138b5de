import Foundation
import Synchronization
import Testing
@testable import UploadService
import UploadTesting

/// What an interrupt does to a partial folder while the copy goes on in other threads
/// (`PartialFolder.takeAway`).
struct PartialFolderTests {
    /// The copy opens its store and blob folders by path, creating them with their parents: one
    /// doing so between the interrupt's rename and its placeholder made the folder again, and it
    /// was left behind (CI, a SIGTERM'd backup). Here a thread makes the folder again as fast as it
    /// can, every round: the name must end held by the placeholder, with no folder anywhere.
    @Test func aFolderMadeAgainWhileItIsTakenAwayIsTakenAwayToo() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        for round in 0..<200 {
            let path = dir.path + "/.b.partial-\(round)"
            try FileManager.default.createDirectory(atPath: path + "/blobs/sha256", withIntermediateDirectories: true)
            let stop = Atomic<Bool>(false)
            let maker = Thread {
                while !stop.load(ordering: .relaxed) {
                    try? FileManager.default.createDirectory(atPath: path + "/blobs/sha256", withIntermediateDirectories: true)
                }
            }
            maker.start()
            let (existed, removed, heldByPlaceholder) = PartialFolder.takeAway(path)
            stop.store(true, ordering: .relaxed)
            while !maker.isFinished { usleep(100) }
            #expect(existed && removed && heldByPlaceholder, "round \(round)")
            var info = stat()
            #expect(lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG, "round \(round): the name is held by a file")
            unlink(path)
            let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(left.isEmpty, "round \(round): \(left)")
            if !left.isEmpty { return }
        }
    }
}
