import Foundation
import UploadStore

/// A folder built beside its destination (`.NAME.partial-<uuid>`, private from the start) and
/// renamed into place only once whole, so that a crash part way leaves nothing that looks finished.
/// `backup` and `copy-store` build their stores in one.
public struct PartialFolder: Sendable {
    public let path: String
    public let destination: String
    private let parent: String

    /// Makes the folder. The destination must be new or an empty folder (``StoreBackup/refusal(destination:dataDirectory:)``).
    public init(beside destination: String) throws {
        parent = PathNames.folder(of: destination)
        self.destination = destination
        path = self.parent + "/." + (destination as NSString).lastPathComponent + ".partial-" + RandomUUIDs.next()
        guard mkdir(path, 0o700) == 0 else { throw BlobStore.posixError("create \(path), where \(destination) is built") }
    }

    /// Syncs the folders directly inside it and the folder itself (their files are synced as they
    /// are written), renames it to its destination (replacing an empty folder there) and syncs
    /// the parent: once this returns, the whole copy is durable.
    public func publish() throws {
        let inside = try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
        for folder in inside.filter(Self.isFolder) + [path] { try BlobStore.syncDirectory(folder) }
        guard rename(path, destination) == 0 else { throw BlobStore.posixError("rename \(path) to \(destination)") }
        try BlobStore.syncDirectory(parent)
    }

    private static func isFolder(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Removes what was built (a failed or abandoned copy).
    public func discard() { try? FileManager.default.removeItem(atPath: path) }
}
