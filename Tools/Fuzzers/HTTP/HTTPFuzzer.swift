import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import UploadAPI
import UploadCore
import UploadStore
import UploadService

#if FUZZING
// Tools/fuzz builds with -sanitize=fuzzer,address -parse-as-library -DFUZZING; see RequestFuzzer.swift.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { fuzzOne(data, size) }

/// Starts the servers before the first input, so that nothing they allocate once is charged to one.
@_cdecl("LLVMFuzzerInitialize")
func LLVMFuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    _ = FuzzServers.shared
    return 0
}

@_cdecl("HTTPFuzzer_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
}
#endif

/// The HTTP layer itself under fuzzing: the real server (Hummingbird, the connection guard, SigV4,
/// the spool, dispatch, feeds, the store) in this process on a loopback port, fed each input as the
/// raw bytes of one connection. The first byte picks the server: anonymous (reaches every
/// operation) or SigV4 (the authentication paths). Nothing may crash, and every 64 inputs an honest
/// request must still be answered.
final class FuzzServers: Sendable {
    static let shared = FuzzServers()

    let anonymousPort: Int
    let signedPort: Int
    private let inputs = Atomic<Int>(0)

    private init() {
        // One folder per user, emptied at start: a run leaves at most one behind.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upload-coordinator-http-fuzz").path
        try? FileManager.default.removeItem(atPath: directory)
        anonymousPort = Self.start(directory + "/anonymous", authentication: .anonymous)
        let key = AccessKey(accessKeyId: "AKIDFUZZ", secretAccessKey: "secret")
        signedPort = Self.start(
            directory + "/signed",
            authentication: .sigV4(SigV4Verifier(keys: [key], clock: SystemClock(), servedRegistryId: "000000000000")))
        _ = Self.exchange(Array("POST / HTTP/1.1\r\nHost: f\r\nX-Amz-Target: SpencerFrontendService.CreateRepository\r\nContent-Length: 29\r\n\r\n{\"repositoryName\":\"team/app\"}".utf8), port: anonymousPort)
    }

    private static func start(_ directory: String, authentication: ECRPublicService.Authentication) -> Int {
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let store = try! Store(StoreConfiguration(directory: directory, settings: DecisionSettings(defaultRegistryId: "000000000000")))
        var logger = Logger(label: "http-fuzzer")
        logger.logLevel = .critical
        let service = ECRPublicService(service: UploadService(store: store, blobs: try! BlobStore(directory: directory), logger: logger), logger: logger, authentication: authentication)
        var limits = ConnectionLimits()
        limits.headerTimeout = .seconds(1)
        limits.idleTimeout = .seconds(1)
        let port = Locked(0)
        let ready = DispatchSemaphore(value: 0)
        Task.detached {
            let app = Application(
                router: service.router(), server: .guardedHTTP1(limits: limits, logger: logger),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in
                    port.withLock { $0 = channel.localAddress?.port ?? 0 }
                    ready.signal()
                },
                logger: logger)
            try await app.run()  // not runService: libFuzzer owns the process's signals
        }
        guard ready.wait(timeout: .now() + 60) == .success else { fatalError("the server in \(directory) did not start") }
        return port.withLock { $0 }
    }

    /// Sends `bytes` on a new connection, half-closes it, and reads until the server closes or
    /// `wait` passes without a byte. - Returns: what the server answered.
    static func exchange(_ bytes: [UInt8], port: Int, wait microseconds: Int = 100_000) -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket")
        defer { close(fd) }
        var timeout = timeval(tv_sec: microseconds / 1_000_000, tv_usec: microseconds % 1_000_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return [] }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while answer.count < 1 << 20 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        return answer
    }

    func countInput() -> Int { inputs.wrappingAdd(1, ordering: .relaxed).newValue }
}

func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let servers = FuzzServers.shared
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let port = (bytes.first ?? 0) & 1 == 0 ? servers.anonymousPort : servers.signedPort
    _ = FuzzServers.exchange(Array(bytes.dropFirst()), port: port)
    if servers.countInput() % 64 == 0 {
        let honest = FuzzServers.exchange(Array("POST / HTTP/1.1\r\nHost: f\r\nX-Amz-Target: SpencerFrontendService.DescribeRegistries\r\nContent-Length: 2\r\n\r\n{}".utf8), port: servers.anonymousPort,
            wait: 5_000_000)  // a slow answer under the sanitizers is not a dead server
        guard String(decoding: honest.prefix(12), as: UTF8.self) == "HTTP/1.1 200" else {
            fatalError("the server stopped answering honest requests: \(String(decoding: honest.prefix(200), as: UTF8.self))")
        }
    }
    return 0
}
