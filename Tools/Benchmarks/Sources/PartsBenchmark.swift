import Crypto
import Foundation
import UploadCore
#if canImport(Glibc)
import Glibc
#endif

/// UploadLayerPart through `serve` with 10 MiB parts (the request's base64 decoded, hashed with
/// SHA-256, written to the staging file and fsynced, then recorded), against a minimal loop that
/// hashes, writes and fsyncs the same bytes.
struct PartsBenchmark {
    static let partBytes = 10 * 1024 * 1024

    let workDirectory: String
    let parts: Int
    let bytes: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        return (0..<PartsBenchmark.partBytes / 8).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
    }()

    /// - Returns: MB/s (10^6 bytes of layer per second) through the server.
    func throughServer(port: Int) throws -> Double {
        let initiate = try HTTPClient.post(port: port, target: "InitiateLayerUpload", body: Array(#"{"repositoryName":"bench/app"}"#.utf8))
        guard initiate.status == 200,
              let json = try JSONSerialization.jsonObject(with: Data(initiate.body)) as? [String: Any],
              let uploadId = json["uploadId"] as? String else {
            throw BenchError("InitiateLayerUpload answered \(initiate.status): \(initiate.text)")
        }
        let blob = Array(Data(bytes).base64EncodedString().utf8)
        let started = ContinuousClock.now
        for part in 0..<parts {
            let first = part * Self.partBytes
            // Built from bytes, as an SDK's serializer would: the client's own cost stays small.
            var body = Array(#"{"repositoryName":"bench/app","uploadId":"\#(uploadId)","partFirstByte":\#(first),"partLastByte":\#(first + Self.partBytes - 1),"layerPartBlob":""#.utf8)
            body.reserveCapacity(body.count + blob.count + 2)
            body += blob
            body += Array(#""}"#.utf8)
            let response = try HTTPClient.post(port: port, target: "UploadLayerPart", body: body)
            guard response.status == 200 else { throw BenchError("UploadLayerPart answered \(response.status): \(response.text)") }
        }
        return Double(parts * Self.partBytes) / 1e6 / (ContinuousClock.now - started).seconds
    }

    /// - Returns: MB/s of the same bytes hashed, appended to one file and fsynced per part.
    func minimalLoop() throws -> Double {
        let path = workDirectory + "/parts-reference-\(UUID().uuidString)"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard fd >= 0 else { throw BenchError("open \(path): errno \(errno)") }
        defer { close(fd); unlink(path) }
        let started = ContinuousClock.now
        for _ in 0..<parts {
            let digest = SHA256.hash(data: bytes)
            withExtendedLifetime(digest) {}
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == bytes.count, fsync(fd) == 0 else { throw BenchError("write/fsync: errno \(errno)") }
        }
        return Double(parts * Self.partBytes) / 1e6 / (ContinuousClock.now - started).seconds
    }
}
