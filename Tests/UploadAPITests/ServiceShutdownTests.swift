import Foundation
import Logging
import ServiceLifecycle
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

/// The services `serve` runs beside its server, in a shutdown.
struct ServiceShutdownTests {
    /// Stands for the HTTP server, listed last and so shut down first: it drains for a while.
    struct DrainingServer: Service {
        let drained: Locked<Bool>
        func run() async throws {
            try? await gracefulShutdown()
            try await Task.sleep(for: .milliseconds(800))
            drained.withLock { $0 = true }
        }
    }

    /// The blob check ends its check while the server drains: it must wait for its own turn, for
    /// a service that returns while others drain makes ServiceLifecycle cancel them all and fail
    /// the group (serve then exited 1 on a clean SIGTERM).
    @Test func theBlobCheck_finishingWhileTheServerDrains_leavesTheShutdownClean() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let service = UploadService(store: store, blobs: try BlobStore(directory: dir.path), logger: Logger(label: "test"))
            let drained = Locked(false)
            let group = ServiceGroup(configuration: .init(
                services: [
                    .init(service: BlobCheck(service), successTerminationBehavior: .ignore),
                    .init(service: DrainingServer(drained: drained)),
                ],
                logger: Logger(label: "test")))
            // Asked before it runs: the group starts every service, then shuts them down in
            // reverse order, the server first, while the check (milliseconds here) is still running.
            await group.triggerGracefulShutdown()
            try await group.run()
            #expect(drained.withLock { $0 }, "the server drained to its end, not cancelled")
        }
    }
}
