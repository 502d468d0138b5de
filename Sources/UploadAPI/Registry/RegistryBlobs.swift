import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import NIOPosix
import UploadCore
import UploadService
import UploadStore

/// Blob uploads and blobs: `/v2/<name>/blobs/uploads/[<id>]` and `/v2/<name>/blobs/<digest>`.
extension RegistryFrontEnd {
    /// `POST …/blobs/uploads/`: a mount (`?mount=`, with or without `from`), a monolithic upload
    /// (`?digest=` with the body), or a new session.
    func startUpload(_ call: Call, _ ref: RepositoryRef) async throws -> Response {
        let request = call.request
        // What the request alone refuses is refused before a mount, a repository or a session is
        // made: a refused request writes nothing.
        // The algorithm a client says it will push with (the spec's `digest-algorithm`): one not
        // served is 400 (it SHOULD be, spec "Pushing blobs"); one served changes nothing, as the
        // completion's digest names its algorithm.
        if let algorithm = call.first("digest-algorithm"), DigestAlgorithm(rawValue: algorithm) == nil {
            throw RegistryError(.digestInvalid, "digest-algorithm '\(algorithm.prefix(100))' is not served: sha256 or sha512")
        }
        let digest = call.first("digest")
        if let digest {
            guard Validation.isRegistryDigest(digest) else { throw RegistryError(.digestInvalid, "'\(digest)' is not a sha256 or sha512 digest") }
            let range = try await chunkRange(call) { 0 }
            if let refusal = service.chunkHeadRefusal(at: 0, range: range, declaredLength: Self.declaredLength(call)) { throw refusal }
        }
        // A blob it cannot mount (a digest that is none among them, as the spec's earlier version
        // said) is answered with a session, in which the client uploads it (202).
        if let mount = call.first("mount"), Validation.isRegistryDigest(mount), try await mountLayer(call, ref, digest: mount) {
            return Self.empty(.created, request, headers: [.location: "/v2/\(ref.repositoryName)/blobs/\(mount)", Self.contentDigestHeader: mount])
        }
        if let digest {
            // Its bytes are checked before anything is recorded: what the initiation would refuse
            // (a repository that is not there and not to be made, one with as many uploads as it
            // may have) is refused before they are read.
            try await service.reading { [service, createsRepositoriesOnPush] state in
                if !createsRepositoriesOnPush { _ = try Decider.existingRepository(ref.registryId, ref.repositoryName, state: state, settings: service.settings) }
                try Decider.refuseAnotherUpload(in: ref, state: state, settings: service.settings)
            }
            let completed = try await service.pushWholeLayer(
                into: ref, range: try await chunkRange(call) { 0 }, declaredLength: Self.declaredLength(call), body: ClientBody(base: request.body),
                digest: digest, initiate: { try await self.initiate(call, ref).uploadId }, call.metadata())
            return Self.empty(.created, request, headers: [
                .location: "/v2/\(ref.repositoryName)/blobs/\(completed.layerDigest)", Self.contentDigestHeader: completed.layerDigest,
            ])
        }
        let upload = RepositoryUpload(ref, uploadId: try await initiate(call, ref).uploadId)
        return Self.empty(.accepted, request, headers: [
            .location: Self.uploadLocation(upload), Self.uploadUUIDHeader: upload.uploadId, .range: Self.rangeHeader(0),
        ])
    }

    /// Starts an upload (InitiateLayerUpload), making its repository first under
    /// `--create-repositories-on-push`.
    private func initiate(_ call: Call, _ ref: RepositoryRef) async throws -> UploadStarted {
        try await createIfAllowed(ref, call)
        let initiation = try InitiateLayerUpload(repositoryName: ref.repositoryName)
        do {
            return try await service.initiateLayerUpload(initiation, call.metadata())
        } catch let refusal as CommandError where refusal.code == .repositoryNotFound && createsRepositoriesOnPush {
            // Deleted since it was found: made again, as a push after the delete would make it.
            try await createIfAllowed(ref, call)
            return try await service.initiateLayerUpload(initiation, call.metadata())
        }
    }

    /// Whether the layer could be mounted (or the repository already holds it).
    private func mountLayer(_ call: Call, _ ref: RepositoryRef, digest: String) async throws -> Bool {
        let source: String?  // nil: the blob store
        if let from = call.first("from") {
            guard (try? Validation.repositoryName(from)) != nil else { return false }
            do {
                // Judged as its pull would be: as the principal the credentials pull `from` as.
                let puller = try authenticate(call, for: (from, .pull))
                try await authority.access.check(
                    puller, actions: ["GetDownloadUrlForLayer"], on: RepositoryRef(registryId: ref.registryId, repositoryName: from),
                    in: service, publicActions: authority.publicActions)
            } catch {
                return false  // not allowed to read the source: the client uploads the blob instead
            }
            source = from
        } else if service.storage.hasBlob(digest), try await mayRead(digest, call) {
            source = nil
        } else {
            return false
        }
        // The repository is made (under --create-repositories-on-push) only for a mount that
        // lands: one that falls back to an upload leaves the making to that upload, which writes
        // nothing when it is refused (a monolithic push's bytes that are not its digest).
        var made = false
        while true {
            do {
                try await service.mountLayer(digest, into: ref, from: source, call.metadata())
                return true
            } catch let refusal as CommandError where refusal.code == .layersNotFound {
                return false
            } catch let refusal as CommandError where refusal.code == .repositoryNotFound && createsRepositoriesOnPush {
                guard !made else { return false }  // deleted since it was made: the session that follows makes it again
                try await createIfAllowed(ref, call)
                made = true
            }
        }
    }

    /// `PATCH`, `PUT`, `GET` (and `HEAD`) and `DELETE` on an upload session.
    func upload(_ call: Call, _ upload: RepositoryUpload) async throws -> Response {
        let request = call.request
        switch request.method {
        case .get, .head:
            let received = try await service.bytesReceived(upload)
            return Self.empty(.noContent, request, headers: [
                .location: Self.uploadLocation(upload), Self.uploadUUIDHeader: upload.uploadId, .range: Self.rangeHeader(received),
            ])
        case .patch:
            let received = try await appendChunk(call, upload)
            return Self.empty(.accepted, request, headers: [
                .location: Self.uploadLocation(upload), Self.uploadUUIDHeader: upload.uploadId, .range: Self.rangeHeader(received),
            ])
        case .put:
            guard let digest = call.first("digest"), Validation.isRegistryDigest(digest) else {
                throw RegistryError(.digestInvalid, "PUT completes an upload and needs ?digest= with a sha256 or sha512 digest")
            }
            return try await finish(call, upload, digest: digest)
        case .delete:
            try await service.cancelUpload(upload, call.metadata())
            return Self.empty(.noContent, request, headers: [:])
        default:
            throw Self.methodNotAllowed(allowing: [.get, .head, .patch, .put, .delete])
        }
    }

    /// Stages the request's body as the upload's next chunk, where `Content-Range` (when sent)
    /// says it starts. - Returns: the bytes the upload holds afterwards.
    private func appendChunk(_ call: Call, _ upload: RepositoryUpload) async throws -> UInt64 {
        try await service.appendChunk(
            upload, range: try await chunkRange(call, upload), declaredLength: Self.declaredLength(call), body: ClientBody(base: call.request.body), call.metadata())
    }

    /// The chunk's length as its `Content-Length` says (NIO refuses a malformed one), when it says.
    private static func declaredLength(_ call: Call) -> UInt64? { call.request.headers[.contentLength].flatMap { UInt64($0) } }

    /// Where the request's chunk says it starts and ends (`Content-Range`), when it says. One
    /// that is not a range is 416 with the upload's `Range`, as one that starts elsewhere is.
    private func chunkRange(_ call: Call, _ upload: RepositoryUpload) async throws -> ClosedRange<UInt64>? {
        try await chunkRange(call) { try await service.bytesReceived(upload) }
    }

    /// - Parameter bytesReceived: what the upload holds, for the refusal's `Range`.
    private func chunkRange(_ call: Call, bytesReceived: () async throws -> UInt64) async throws -> ClosedRange<UInt64>? {
        guard let header = call.request.headers[.contentRange] else { return nil }
        guard let (first, last) = Self.chunkRange(header) else {
            throw ChunkOutOfRange(bytesReceived: try await bytesReceived(), message: "Content-Range must be <first>-<last>, inclusive byte offsets")
        }
        return first...last
    }

    /// The final `PUT` (or a monolithic `POST`): its body, if any, is the last chunk; then the
    /// upload completes as the layer `digest` names.
    private func finish(_ call: Call, _ upload: RepositoryUpload, digest: String) async throws -> Response {
        let completed = try await service.finishUpload(
            upload, range: try await chunkRange(call, upload), declaredLength: Self.declaredLength(call), body: ClientBody(base: call.request.body),
            digest: digest, call.metadata())
        return Self.empty(.created, call.request, headers: [
            .location: "/v2/\(upload.repository.repositoryName)/blobs/\(completed.layerDigest)", Self.contentDigestHeader: completed.layerDigest,
        ])
    }

    /// `HEAD` and `GET` (whole, or one `Range`) of a blob the repository holds; `DELETE` is not
    /// offered (405, as the spec allows).
    func blob(_ call: Call, _ ref: RepositoryRef, digest: String) async throws -> Response {
        let request = call.request
        guard Self.readsOnly.contains(request.method) else {
            throw Self.methodNotAllowed(allowing: Self.readsOnly, "Blobs are not deleted through this API; delete the manifests that name them")
        }
        guard Validation.isRegistryDigest(digest) else { throw RegistryError(.digestInvalid, "'\(digest)' is not a sha256 or sha512 digest") }
        let layer = try await service.reading { [service] snapshot in
            _ = try Decider.existingRepository(ref.registryId, ref.repositoryName, state: snapshot, settings: service.settings)
            return try snapshot.layer(ref, digest)
        }
        guard let layer else { throw RegistryError(.blobUnknown, "The repository holds no blob \(digest)") }
        // Opened for HEAD too, so that HEAD and GET agree when the file is gone or damaged (a
        // server fault: the record says the repository holds it).
        let blob = try service.storage.openBlob(digest)
        guard blob.size == layer.layerSize else {
            throw StoreError(.corrupt, "the blob \(digest) holds \(blob.size) bytes; its layer was recorded with \(layer.layerSize)")
        }
        var headers: HTTPFields = [Self.contentDigestHeader: digest, .contentType: "application/octet-stream", .acceptRanges: "bytes"]
        var range = layer.layerSize == 0 ? nil : 0...(layer.layerSize - 1)
        var status = HTTPResponse.Status.ok
        // A Range this server does not serve (another unit, several ranges) is ignored, as RFC
        // 9110 §14.2 allows: the whole blob is the answer. One that is no range is 416.
        if let asked = request.headers[.range], layer.layerSize > 0, let requested = Self.byteRange(asked, size: layer.layerSize) {
            guard let byteRange = requested else {
                var error = RegistryError(.sizeInvalid, "The range \(asked) is not a range within the blob's \(layer.layerSize) bytes", status: .rangeNotSatisfiable)
                error.headers[.contentRange] = "bytes */\(layer.layerSize)"
                throw error
            }
            range = byteRange
            status = .partialContent
            headers[.contentRange] = "bytes \(byteRange.lowerBound)-\(byteRange.upperBound)/\(layer.layerSize)"
        }
        headers[.contentLength] = String(range.map { $0.upperBound - $0.lowerBound + 1 } ?? 0)
        guard request.method == .get, let range else { return Self.response(status, ByteBuffer(), request, headers: headers) }
        headers[Self.apiVersionHeader] = "registry/2.0"
        return Response(status: status, headers: headers, body: Self.blobBody(blob, range: range))
    }

    /// The bytes of `range` of a blob, read on NIO's thread pool a piece at a time as the
    /// connection takes them: memory per download is one piece.
    static func blobBody(_ blob: any BlobReader, range: ClosedRange<UInt64>) -> ResponseBody {
        ResponseBody(contentLength: Int(range.upperBound - range.lowerBound + 1)) { writer in
            var offset = range.lowerBound
            while offset <= range.upperBound {
                let count = Int(min(UInt64(filePieceBytes), range.upperBound - offset + 1)), at = offset
                let piece = try await NIOThreadPool.singleton.runIfActive { () throws -> ByteBuffer in
                    var buffer = ByteBufferAllocator().buffer(capacity: count)
                    let read = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) {
                        try blob.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: $0.prefix(count)))
                    }
                    guard read == count else { throw RegistryError(.unknown, "The blob's file is shorter than its record") }
                    return buffer
                }
                try await writer.write(piece)
                offset += UInt64(count)
            }
            try await writer.finish(nil)
        }
    }

    static let filePieceBytes = 64 * 1024

    /// `Content-Range: <first>-<last>` of a chunk (the spec's form; `bytes=` and `bytes ` are taken too).
    static func chunkRange(_ value: String) -> (UInt64, UInt64)? {
        var text = Substring(value)
        for prefix in ["bytes=", "bytes "] where text.hasPrefix(prefix) { text = text.dropFirst(prefix.count) }
        if let slash = text.firstIndex(of: "/") { text = text[..<slash] }
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, bounds.allSatisfy(isDigits), let first = UInt64(bounds[0]), let last = UInt64(bounds[1]), last >= first else { return nil }
        return (first, last)
    }

    /// One `Range: bytes=<first>-[<last>]` or `bytes=-<suffix>` of a blob of `size` bytes (more
    /// than none): `nil` when it is not one this server serves (another unit, which RFC 9110 §14.2
    /// says to ignore, or several ranges, which it may), `.some(nil)` when it is unsatisfiable or
    /// not a range at all (`bytes=5-2`, `bytes=abc`: 416, as §14.2 allows and the distribution
    /// spec's conformance suite asks).
    static func byteRange(_ value: String, size: UInt64) -> ClosedRange<UInt64>?? {
        let unit = "bytes="  // range units are case-insensitive (§14.1)
        guard value.utf8.count >= unit.utf8.count, value.prefix(unit.count).lowercased() == unit else { return nil }
        guard !value.contains(",") else { return nil }
        let bounds = value.dropFirst(unit.count).split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2 else { return .some(nil) }
        if bounds[0].isEmpty {
            guard let suffix = position(bounds[1]) else { return .some(nil) }
            return .some(suffix == 0 ? nil : (size - min(suffix, size))...(size - 1))
        }
        guard let first = position(bounds[0]) else { return .some(nil) }
        let last = bounds[1].isEmpty ? UInt64.max : position(bounds[1])  // `<first>-`: to the end
        guard let last, last >= first else { return .some(nil) }
        return .some(first < size ? first...min(last, size - 1) : nil)
    }

    /// A range's position: digits only (§14.1.2 `1*DIGIT`; Swift's `UInt64("+5")` takes a sign),
    /// any count of them: one past `UInt64.max` is past every blob's end, and taken as that.
    private static func position(_ text: Substring) -> UInt64? {
        guard isDigits(text) else { return nil }
        return UInt64(text) ?? .max
    }

    /// One or more ASCII digits, and nothing else (no sign, no space).
    private static func isDigits(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }
}
