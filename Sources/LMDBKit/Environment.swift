internal import CLMDB
import Foundation

/// One LMDB environment: a directory holding `data.mdb` and `lock.mdb`.
///
/// Open each directory at most once per process (LMDB's POSIX locks are per process: closing a
/// second handle to the same file would drop the first one's locks). ``open(directory:configuration:)``
/// enforces this and throws ``EnvironmentError/alreadyOpenInProcess`` on a second open.
///
/// Transactions exist only inside the synchronous closures of ``read(_:)`` and ``write(_:)``, so
/// none can outlive its closure or cross an `await`.
///
/// - Important: `@unchecked Sendable` because `MDB_env` is safe to share between threads once
///   opened (we open with `MDB_NOTLS`, so read transactions are not tied to a thread), and this
///   class mutates no stored property after `init` but `remapFailure`, under its resize lock.
public final class Environment: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// The maximum size of the memory map. The file grows only as data is written.
        public var mapSize: Int = 64 << 30
        public var maxDatabases: UInt32 = 32
        public var maxReaders: UInt32 = 256
        /// Open with `MDB_RDONLY`: nothing in `data.mdb` can be written through this handle.
        public var readOnly: Bool = false
        /// Sync data and metadata on every commit (LMDB's default). Off for what can be rebuilt from
        /// a durable environment (the projections), and for benchmarks of the floor.
        public var durable: Bool = true
        public init() {}

        /// The defaults, opened with `MDB_RDONLY`: how checkers and readers of another's store open it.
        public static var readOnly: Configuration {
            var configuration = Configuration()
            configuration.readOnly = true
            return configuration
        }
    }

    let handle: OpaquePointer
    /// Shared by every transaction, exclusive while the map is resized: LMDB allows
    /// `mdb_env_set_mapsize` only when no transaction of this process is active. Writer-preferring,
    /// so a stream of readers cannot starve a resize; that is safe only because no transaction of
    /// an environment is ever opened inside another of the same one, and transactions of two
    /// environments nest in one fixed order only (the store's: projections, then log).
    private let resizeLock = WriterPreferringLock()
    /// Why the environment has no map: LMDB unmaps before it maps at the new size, and leaves no
    /// map when that fails (address space or memory exhausted), after which any transaction, and
    /// `mdb_env_info`, would read freed memory. Every use then throws this instead, until the
    /// environment is opened again. Written under the exclusive resize lock, read under the shared one.
    private var remapFailure: LMDBError?
    public let directory: String
    public let configuration: Configuration
    /// Reader slots of dead processes that opening this environment released.
    public let staleReadersCleared: Int
    private let registryKey: String

    private static let openDirectories = OpenDirectories()

    /// Why `directory` holds no store this process may open (no `data.mdb`, or one this user may
    /// not read: `fileExists` tells the two apart from neither), or `nil` when it has one.
    public static func noStore(in directory: String) -> EnvironmentError? {
        let path = directory + "/data.mdb"
        var info = stat()
        guard stat(path, &info) == 0 else {
            return errno == ENOENT || errno == ENOTDIR ? .missingStore(directory) : .unreadable(path, String(cString: strerror(errno)))
        }
        guard access(path, R_OK) == 0 else { return .unreadable(path, String(cString: strerror(errno))) }
        return nil
    }

    public init(directory: String, configuration: Configuration = .init()) throws {
        if !configuration.readOnly {
            var info = stat()
            if stat(directory, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR { throw EnvironmentError.notAFolder(directory) }
            // Private, as its files are (0600): a data folder also holds private repositories' layers.
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                let underlying = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error).map { $0 as NSError }
                throw EnvironmentError.uncreatable(
                    directory, underlying.map { $0.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32($0.code))) : $0.localizedDescription }
                        ?? error.localizedDescription)
            }
        } else if let reason = Self.noStore(in: directory) {
            // Read-only never makes a store, and LMDB would leave a `lock.mdb` behind finding none.
            throw reason
        }
        guard let real = realpath(directory, nil) else {
            throw EnvironmentError.missingDirectory(directory)
        }
        let key = String(cString: real)
        free(real)
        try Self.refuseEmptiedFile(key)
        guard Self.openDirectories.insert(key) else { throw EnvironmentError.alreadyOpenInProcess(key) }
        do { try Self.allocateLockFile(key, readers: configuration.maxReaders) } catch {
            Self.openDirectories.remove(key)
            throw error
        }

        var env: OpaquePointer?
        do {
            try check(mdb_env_create(&env), "mdb_env_create")
            guard let env else { throw LMDBError(code: EINVAL, operation: "mdb_env_create") }
            do {
                try check(mdb_env_set_mapsize(env, configuration.mapSize), "mdb_env_set_mapsize")
                try check(mdb_env_set_maxdbs(env, configuration.maxDatabases), "mdb_env_set_maxdbs")
                try check(mdb_env_set_maxreaders(env, configuration.maxReaders), "mdb_env_set_maxreaders")
                var flags = UInt32(MDB_NOTLS)
                if configuration.readOnly { flags |= UInt32(MDB_RDONLY) }
                if !configuration.durable { flags |= UInt32(MDB_NOSYNC) }
                let opened = mdb_env_open(env, key, flags, 0o600)
                if opened == EACCES, configuration.readOnly, access(key + "/lock.mdb", W_OK) != 0, access(key + "/data.mdb", R_OK) == 0 {
                    // A reader too writes its slot in LMDB's readers' table, kept in lock.mdb.
                    throw LMDBError(code: opened, operation: "mdb_env_open(\(key)): a reader needs \(key)/lock.mdb writable (LMDB's readers' table), even to only read")
                }
                try check(opened, "mdb_env_open(\(key))")
                try Self.refuseTruncatedFile(env, key, writable: !configuration.readOnly)
            } catch {
                mdb_env_close(env)
                throw error
            }
            self.handle = env
        } catch {
            Self.openDirectories.remove(key)
            throw error
        }
        self.directory = key
        self.configuration = configuration
        self.registryKey = key
        var dead: Int32 = 0
        _ = mdb_reader_check(handle, &dead)
        self.staleReadersCleared = Int(dead)
    }

    /// LMDB maps `data.mdb` and reads its pages in place, so a page past the file's end (a partial
    /// copy, a file cut short) is a SIGBUS in whichever thread touches it, not an error. The meta
    /// page (read with `pread` at open) names the last page in use: a shorter file is refused whole.
    /// LMDB itself leaves a file shorter when a commit's last pages were allocated and freed within
    /// it, never written: ``coverLastPage(_:)`` extends it after every commit, and a store last
    /// written before it did, opened to write, is extended here when every page it lacks is on
    /// LMDB's free list (``extendedOverFreePages(_:)``). Any other short file was cut short.
    private static func refuseTruncatedFile(_ env: OpaquePointer, _ directory: String, writable: Bool) throws {
        let (_, size, inUse) = try fileAndLastPage(env)
        guard size < inUse else { return }
        if writable, try extendedOverFreePages(env) { return }
        throw EnvironmentError.truncated(directory, bytes: size, inUse: inUse)
    }

    /// Under LMDB's writer lock (a write transaction, aborted: no process commits meanwhile, so
    /// none reuses or writes the pages looked at), extends a `data.mdb` still short over the pages
    /// it lacks (zeros first, so that nothing read there is a SIGBUS) and keeps it so, synced, when
    /// each of them is on the free list; otherwise puts its size back.
    /// - Returns: whether the file covers its last page now.
    /// - Throws: when it cannot be extended (a full disk), looked at, or put back: not a file cut short.
    private static func extendedOverFreePages(_ env: OpaquePointer) throws -> Bool {
        var writer: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &writer), "mdb_txn_begin (to extend data.mdb over the pages LMDB freed)")
        defer { mdb_txn_abort(writer) }
        let (descriptor, size, inUse) = try fileAndLastPage(env)
        guard size < inUse else { return true }  // extended by another process meanwhile
        var pages = MDB_stat()
        mdb_env_stat(env, &pages)
        let pageSize = Int(pages.ms_psize)
        guard size % pageSize == 0 else { return false }
        let extended = posix_fallocate(descriptor, off_t(size), off_t(inUse - size))
        let missingAreFree = extended == 0 ? Result { try freePages(env).isSuperset(of: size / pageSize..<inUse / pageSize) } : .success(false)
        if case .success(true) = missingAreFree {
            guard fsync(descriptor) == 0 else {
                let code = errno
                _ = ftruncate(descriptor, off_t(size))
                throw LMDBError(code: code, operation: "fsync data.mdb extended over the pages LMDB freed")
            }
            return true
        }
        guard ftruncate(descriptor, off_t(size)) == 0 else {
            throw LMDBError(code: errno, operation: "put data.mdb back to its \(size) bytes after extending it to look at its free pages")
        }
        guard extended == 0 else { throw LMDBError(code: extended, operation: "extend data.mdb over the pages LMDB freed and never wrote") }
        return try missingAreFree.get()
    }

    /// The pages on LMDB's free list, read in a transaction of their own (a write transaction may
    /// not read it): records of a count, then that many page numbers, a `size_t` each. A record
    /// that does not read so ends the look, as a page not found (a store cut short).
    private static func freePages(_ env: OpaquePointer) throws -> Set<Int> {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "mdb_txn_begin (to read LMDB's free list)")
        defer { mdb_txn_abort(txn) }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, 0, &cursor), "mdb_cursor_open (LMDB's free list)")  // 0: the free list
        defer { mdb_cursor_close(cursor) }
        var free = Set<Int>()
        var key = MDB_val(), value = MDB_val()
        var operation = MDB_FIRST
        while mdb_cursor_get(cursor, &key, &value, operation) == 0, let ids = value.mv_data {
            operation = MDB_NEXT
            let count = ids.loadUnaligned(as: Int.self)
            guard count >= 0, count < value.mv_size / MemoryLayout<Int>.size else { break }
            for index in stride(from: 1, through: count, by: 1) {
                free.insert(ids.loadUnaligned(fromByteOffset: index * MemoryLayout<Int>.size, as: Int.self))
            }
        }
        return free
    }

    /// After a write commit: extends `data.mdb` to its last page in use when LMDB left it shorter
    /// (a large record's pages allocated and freed within the commit are never written, and may be
    /// the file's last), synced when the store is durable. Only ever extends: another process's
    /// commit may have grown it since.
    static func coverLastPage(_ env: OpaquePointer) throws(LMDBError) {
        let (descriptor, size, inUse) = try fileAndLastPage(env)
        guard size < inUse else { return }
        let result = posix_fallocate(descriptor, off_t(size), off_t(inUse - size))
        guard result == 0 else { throw LMDBError(code: result, operation: "extend data.mdb to its last page") }
        var flags: UInt32 = 0
        mdb_env_get_flags(env, &flags)
        if flags & UInt32(MDB_NOSYNC) == 0, fsync(descriptor) != 0 { throw LMDBError(code: errno, operation: "fsync data.mdb") }
    }

    /// `data.mdb`'s descriptor and size, and the bytes up to the end of its last page in use.
    private static func fileAndLastPage(_ env: OpaquePointer) throws(LMDBError) -> (descriptor: Int32, size: Int, inUse: Int) {
        var descriptor: Int32 = -1
        try check(mdb_env_get_fd(env, &descriptor), "mdb_env_get_fd")
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw LMDBError(code: errno, operation: "fstat(data.mdb)") }
        var info = MDB_envinfo()
        var pages = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &pages)
        return (descriptor, Int(status.st_size), (info.me_last_pgno + 1) * Int(pages.ms_psize))
    }

    /// LMDB sizes a new `lock.mdb` with `ftruncate` and maps it: on a full disk the file is a
    /// hole, and the first touch of its pages is a SIGBUS in LMDB, not an error (a new store, a
    /// restored one, a copy's: any open that makes the file). A new (empty) one has its blocks
    /// allocated first, so that a full disk is an error here; one that exists is left as LMDB
    /// made it, whatever its size (LMDB derives the count of readers from it, and another
    /// process may have it mapped). The size is LMDB's own on 64-bit Linux (a 64-byte slot a
    /// reader after the first, and a 192-byte header): where it is larger, LMDB grows the file.
    private static func allocateLockFile(_ directory: String, readers: UInt32) throws {
        let path = directory + "/lock.mdb"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return }  // LMDB reports it, opening the file itself
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_size == 0 else { return }
        let result = posix_fallocate(descriptor, 0, off_t(max(readers, 1) - 1) * 64 + 192)
        guard result == 0 || result == EOPNOTSUPP || result == EINVAL else { throw LMDBError(code: result, operation: "allocate \(path)") }
    }

    /// LMDB takes an empty `data.mdb` (a copy onto a full disk leaves one) for a new store and
    /// writes it a header: a store that held a log would open as an empty one, and what the data
    /// folder holds besides (staging) would be judged against nothing. An empty file beside no
    /// folder a store's first open makes after its first commit (an open that died before it, or
    /// another process's open under way) may start again.
    private static func refuseEmptiedFile(_ directory: String) throws {
        var status = stat()
        guard stat(directory + "/data.mdb", &status) == 0, status.st_size == 0 else { return }
        let storeFolders = ["projections", "blobs", "staging"].filter { FileManager.default.fileExists(atPath: directory + "/" + $0) }
        if !storeFolders.isEmpty { throw EnvironmentError.truncated(directory, bytes: 0, inUse: nil) }
    }

    deinit {
        mdb_env_close(handle)
        Self.openDirectories.remove(registryKey)
    }

    /// Releases reader slots left by processes that died (`mdb_reader_check`).
    /// - Returns: how many slots were cleared.
    @discardableResult
    public func clearStaleReaders() -> Int {
        var dead: Int32 = 0
        _ = mdb_reader_check(handle, &dead)
        return Int(dead)
    }

    /// Runs `body` in a read-only transaction that sees one consistent snapshot.
    ///
    /// The transaction is committed, not aborted, when `body` returns: for a read-only
    /// transaction that only matters to database handles it opened, which LMDB keeps open for the
    /// environment's life on commit but discards on abort.
    public func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        try transaction(readOnly: true, body)
    }

    /// Runs `body` in the write transaction and commits it when `body` returns.
    /// If `body` throws, nothing it wrote is kept.
    public func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        try transaction(readOnly: false, body)
    }

    private func transaction<T>(readOnly: Bool, _ body: (Transaction) throws -> T) throws -> T {
        resizeLock.lockShared()
        if let remapFailure {
            resizeLock.unlock()
            throw remapFailure
        }
        let txn: Transaction
        do {
            txn = try Transaction(environment: self, readOnly: readOnly)
        } catch where error.code == .mapResized {
            // Another process grew the map: adopt its size, then begin again.
            resizeLock.unlock()
            try resize(to: 0)
            return try transaction(readOnly: readOnly, body)
        } catch {
            resizeLock.unlock()
            throw error
        }
        defer { resizeLock.unlock() }
        let result: T
        do {
            result = try body(txn)
        } catch {
            txn.abort()
            throw error
        }
        try txn.commit()
        return result
    }

    /// ``write(_:)``, growing the map and running `body` again (the failed transaction kept nothing)
    /// while the map is full, up to 20 doublings. For writes that are safe to repeat.
    public func writeGrowingTheMap<T>(_ body: (Transaction) throws -> T) throws -> T {
        for _ in 0..<20 {
            do {
                return try write(body)
            } catch let error as LMDBError where error.code == .mapFull {
                try growMap()
            }
        }
        return try write(body)
    }

    /// Doubles the map, for a writer that hit `MDB_MAP_FULL`; waits for every transaction of
    /// this process to end first. The file grows only as data is written.
    public func growMap() throws {
        try resize(to: usage().mapSize * 2)
    }

    /// `mdb_env_set_mapsize` under the exclusive lock; 0 adopts the size another process set.
    func resize(to size: Int) throws {
        resizeLock.lockExclusive()
        defer { resizeLock.unlock() }
        if let remapFailure { throw remapFailure }
        let rc = mdb_env_set_mapsize(handle, size)
        guard rc == 0 else {
            // EINVAL is refused before anything is unmapped; any other failure is of the new map.
            // Its only refusal before unmapping, a transaction of this process in progress, cannot
            // happen under the exclusive lock: any failure is of the new map.
            let failure = LMDBError(code: rc, operation: "mdb_env_set_mapsize(\(size)) left \(directory) without a map; open it again")
            remapFailure = failure
            throw failure
        }
    }

    /// Writes a copy of the environment, as one read snapshot sees it, to `directory/data.mdb`
    /// (`mdb_env_copy2`), while other transactions go on; `compacting` leaves out free pages
    /// (`MDB_CP_COMPACT`). The directory must exist and hold no `data.mdb`. The copy is private to
    /// its owner, as the environment's own file is, and synced before this returns.
    public func copy(to directory: String, compacting: Bool) throws {
        let file = directory + "/data.mdb"
        func copyOnce() throws -> Int32 {
            resizeLock.lockShared()
            defer { resizeLock.unlock() }
            if let remapFailure { throw remapFailure }
            return mdb_env_copy2(handle, directory, compacting ? UInt32(MDB_CP_COMPACT) : 0)
        }
        var rc = try copyOnce()
        for _ in 0..<20 where rc == MDB_MAP_RESIZED {
            // Another process grew the map while the copy ran: adopt its size, then copy again.
            unlink(file)
            try resize(to: 0)
            rc = try copyOnce()
        }
        if rc != 0 { unlink(file) }  // no half copy left for a rerun to trip on
        try check(rc, "mdb_env_copy2(\(directory))")
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw LMDBError(code: errno, operation: "open \(file)") }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0, fsync(descriptor) == 0 else { throw LMDBError(code: errno, operation: "sync \(file)") }
    }

    /// Flushes every commit to disk (`mdb_env_sync` forced): for an environment opened without
    /// durable commits, before it is trusted across a crash of the machine.
    public func sync() throws {
        try check(mdb_env_sync(handle, 1), "mdb_env_sync")
    }

    /// The environment's map size (as this process maps it), how much of it is in use, the reader
    /// slots held now by live transactions of every process, and how many slots there are.
    /// Inside a transaction of this environment, use ``Transaction/environmentUsage()``: this takes
    /// the resize lock, which a transaction already holds.
    public func usage() throws -> Usage {
        resizeLock.lockShared()
        defer { resizeLock.unlock() }
        if let remapFailure { throw remapFailure }
        return Self.usage(of: handle)
    }

    public typealias Usage = (mapSize: Int, usedBytes: Int, readers: Int, maxReaders: Int)

    /// What ``usage()`` reports, read while the map cannot be resized (`mdb_env_info` and
    /// `mdb_env_stat` read the meta pages, inside the map).
    static func usage(of handle: OpaquePointer) -> Usage {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        var maxReaders: UInt32 = 0
        mdb_env_info(handle, &info)
        mdb_env_stat(handle, &stat)
        mdb_env_get_maxreaders(handle, &maxReaders)
        return (info.me_mapsize, (info.me_last_pgno + 1) * Int(stat.ms_psize), readersHeld(handle), Int(maxReaders))
    }

    /// Slots held by a transaction now. (`me_numreaders` is only the most ever used at once.)
    /// `mdb_reader_list` prints a header line, then one line per held slot.
    private static func readersHeld(_ handle: OpaquePointer) -> Int {
        var lines = 0
        _ = mdb_reader_list(handle, { message, context in
            if let message, !String(cString: message).hasPrefix("(no active readers)") {
                context!.assumingMemoryBound(to: Int.self).pointee += 1
            }
            return 0
        }, &lines)
        return max(0, lines - 1)
    }
}

/// A pthread read-write lock that lets a waiting writer in before new readers. A class, so the
/// lock is destroyed exactly once, even when the environment's initialiser fails.
private final class WriterPreferringLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() {
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func lockShared() { pthread_rwlock_rdlock(lock) }
    func lockExclusive() { pthread_rwlock_wrlock(lock) }
    func unlock() { pthread_rwlock_unlock(lock) }
}

/// The directories open in this process. A class with its own lock rather than a global `Mutex`,
/// whose `withLock` ThreadSanitizer reports as an unsynchronised modifying access of the global.
private final class OpenDirectories: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: Set<String> = []

    /// - Returns: whether `path` was not open yet.
    func insert(_ path: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return paths.insert(path).inserted
    }

    func remove(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        paths.remove(path)
    }
}

public enum EnvironmentError: Error, CustomStringConvertible, Sendable {
    case alreadyOpenInProcess(String)
    case missingDirectory(String)
    case missingStore(String)
    /// A store's file this user may not read (or reach), with why.
    case unreadable(String, String)
    /// A data folder named by a path that is something else (a file).
    case notAFolder(String)
    /// A data folder that could not be made, with why.
    case uncreatable(String, String)
    /// `data.mdb` is shorter than the pages its last commit uses (`nil`: it is empty, in a
    /// directory that holds more than a new store).
    case truncated(String, bytes: Int, inUse: Int?)

    /// Whether it says no store is there (rather than one that cannot be read).
    public var isMissing: Bool { if case .missingStore = self { true } else { false } }

    /// Whether it says `data.mdb` is shorter than the pages its last commit uses.
    public var isCutShort: Bool { if case .truncated(_, _, .some) = self { true } else { false } }

    public var description: String {
        switch self {
        case .missingStore(let path):
            "no store at \(path) (it holds no data.mdb)"
        case .unreadable(let path, let why):
            "cannot read \(path): \(why) (run as the user that owns the data folder)"
        case .notAFolder(let path):
            "\(path) is not a folder: give a data folder (it is made if it does not exist)"
        case .uncreatable(let path, let why):
            "cannot make the data folder \(path): \(why)"
        case .alreadyOpenInProcess(let path):
            "the store at \(path) is already open in this process; share the one handle"
        case .missingDirectory(let path):
            "no store directory at \(path)"
        case .truncated(let path, let bytes, let inUse):
            "\(path)/data.mdb is \(bytes) bytes, "
                + (inUse.map { "shorter than the \($0) its last commit uses" } ?? "in a directory that holds more than a new store")
                + ": the file was cut short "
                + "(a partial copy, or a disk that filled while it was copied). Nothing was read or written; restore it "
                + "from a backup. A store's projections directory can be removed instead: its next open rebuilds it from the log"
                + (inUse == nil ? "" : ". (One last written by an older version may lack only pages LMDB freed and never wrote: opened "
                    + "to write, by `migrate` or `serve`, it is extended over them when that is so, and refused otherwise)")
        }
    }
}
