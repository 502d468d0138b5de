import Foundation
import LMDBKit
import UploadCore
import UploadStore

/// A store in a fresh directory under the benchmark's work folder, with repositories made
/// beforehand, opened the way `serve` opens one (durable commits, production id generator).
struct StoreFixture {
    static let repositoryCount = 64

    let directory: String
    let store: Store

    init(workDirectory: String, name: String, durable: Bool = true, directory: String? = nil) async throws {
        self.directory = directory ?? workDirectory + "/\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        store = try Store(Self.configuration(self.directory, durable: durable))
        for i in 0..<Self.repositoryCount {
            _ = try await store.execute(.createRepository(CreateRepository(repositoryName: Self.repository(i))), metadata: Self.metadata(0))
        }
    }

    /// Opens the store a run kept.
    init(existing directory: String) async throws {
        self.directory = directory
        store = try Store(Self.configuration(directory, durable: true))
    }

    private static func configuration(_ directory: String, durable: Bool) -> StoreConfiguration {
        var settings = DecisionSettings(defaultRegistryId: StoreConfiguration.fallbackRegistryId)
        settings.maximumActiveUploadsPerRepository = .max
        var configuration = StoreConfiguration(directory: directory, settings: settings)
        configuration.environment.durable = durable
        return configuration
    }

    static func repository(_ i: Int) -> String { "bench/repo-\(i % repositoryCount)" }

    /// What the HTTP front end records for a signed awscli request, so records have their real size.
    static func metadata(_ n: Int) -> RequestMetadata {
        RequestMetadata(
            requestId: RandomUUIDs.next(), source: "http",
            userAgent: "aws-cli/2.22.0 md/awscrt#0.23.4 ua/2.1 os/linux#6.1.0 md/arch#x86_64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#debian.12 md/prompt#off md/command#ecr-public.initiate-layer-upload",
            sourceAddress: "127.0.0.1:\(40000 + n % 20000)", principal: "AKIAIOSFODNN7EXAMPLE",
            invocationId: RandomUUIDs.next())
    }

    /// The mean size of the records written after the repositories, in bytes (the baseline writes
    /// records this big).
    func meanRecordBytes() throws -> Int {
        try store.read { reader in
            let events = try reader.events(after: UInt64(Self.repositoryCount))
            let total = events.reduce(0) { $0 + $1.encoded().count }
            return events.isEmpty ? 0 : Int((Double(total) / Double(events.count)).rounded())
        }
    }

    func close() async {
        await store.close()
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
