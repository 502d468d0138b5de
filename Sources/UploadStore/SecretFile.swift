import Foundation

/// A secret kept in the data directory (a signing key), created once and never changed: 0600,
/// written and synced under another name, then linked into place, so that two processes starting
/// together agree on one, and a crash never leaves a half-written one.
public enum SecretFile {
    /// The file's contents, after creating it with `make()` when it does not exist yet.
    public static func contents(at path: String, creatingWith make: () throws -> [UInt8]) throws -> Data {
        if !FileManager.default.fileExists(atPath: path) {
            // Random, not the process id: nodes in containers share a folder and are all pid 1,
            // and one unlinking another's half-written file would link an empty secret into place.
            let temporary = path + ".new-\(UInt64.random(in: 0...UInt64.max))"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StoreError(.io, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
            defer { unlink(temporary) }
            let bytes: [UInt8]
            do { bytes = try make() } catch {
                close(fd)
                throw error
            }
            let written = write(fd, bytes, bytes.count) == bytes.count && fsync(fd) == 0
            close(fd)
            // link() fails when another process linked its file first: theirs is kept and read below
            // (so too if another process took this copy for abandoned, and linked its own).
            guard written, link(temporary, path) == 0 || errno == EEXIST || FileManager.default.fileExists(atPath: path) else {
                throw StoreError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            let directory = open(PathNames.folder(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if directory >= 0 {
                fsync(directory)
                close(directory)
            }
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError(.io, "cannot read \(path)")
        }
        removeAbandonedCopies(of: path)
        return data
    }

    /// How old a temporary copy must be before it counts as abandoned: another process starting
    /// now may be writing its own.
    static let abandonedAfter: TimeInterval = 60

    /// Removes the temporary copies of `path` that a process killed while writing one left behind
    /// (a secret, or part of one, under a name nothing reads).
    static func removeAbandonedCopies(of path: String, now: Date = Date()) {
        let url = URL(fileURLWithPath: path)
        let prefix = url.lastPathComponent + ".new-"
        let directory = url.deletingLastPathComponent()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
        for name in names where name.hasPrefix(prefix) {
            let copy = directory.appendingPathComponent(name).path
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: copy))?[.modificationDate] as? Date,
                  now.timeIntervalSince(modified) > abandonedAfter else { continue }
            unlink(copy)
        }
    }
}
