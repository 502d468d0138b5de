import Foundation
import Hummingbird
import HTTPTypes
import LogHashing
import Logging
import NIOCore
import NIOPosix
import UploadCore
import UploadService
import UploadStore

/// The log as a transparency log over plain HTTP, under `/log/`: the signed checkpoint, inclusion
/// and consistency proofs in Certificate Transparency's JSON shapes, and the tree as C2SP tiles.
/// Checkpoints, proofs and hash tiles are hashes only and open to anyone, as transparency logs
/// are; entry bundles are the events themselves (with request metadata), so they are read with
/// the credentials the `/events` feed needs.
extension ECRPublicService {
    func addTransparencyLogRoutes(to router: Router<APIRequestContext>) {
        router.getAndHead("/log/checkpoint") { _, _ in await self.openAnswer { try await self.checkpointResponse() } }
        router.getAndHead("/log/proof/consistency") { request, _ in
            await self.openAnswer {
                let (first, second) = (try Self.required(request, "first"), try Self.required(request, "second"))
                let proof = try await self.store.reading { try $0.consistencyProof(first: first, second: second) }
                return Self.json(.object([("consistency", .array(proof.map(Self.base64)))]))
            }
        }
        router.getAndHead("/log/proof/inclusion") { request, _ in
            await self.openAnswer {
                let (index, size) = (try Self.required(request, "index"), try Self.required(request, "size"))
                let path = try await self.store.reading { try $0.inclusionPath(leafIndex: index, size: size) }
                return Self.json(.object([("leaf_index", .uint(index)), ("audit_path", .array(path.map(Self.base64)))]))
            }
        }
        router.getAndHead("/log/tile/**") { request, context in
            // The path as sent, not the router's segments (which drop empty ones): each tile has one URL.
            let path = String(request.uri.path.dropFirst(Self.tilePrefix.count))
            guard request.uri.path.hasPrefix(Self.tilePrefix), let address = TileAddress(path: path) else {
                return Self.logNotFound("no tile has the path \(Validation.quoted(String(request.uri.path.prefix(200))))")
            }
            if case .hashes = address.kind { return await self.openAnswer { try await self.tileResponse(address) } }
            return await self.authenticated(request, context) { try await self.tileResponse(address) }
        }
    }

    /// `GET /log/checkpoint`: the newest signed checkpoint, less than the signing interval behind the log.
    private func checkpointResponse() async throws -> Response {
        guard let checkpoints else { return Self.logNotFound("this server signs no checkpoints") }
        let checkpoint: SignedCheckpoint
        do { checkpoint = try await checkpoints.current() } catch let broken as StoreError where broken.code == .corrupt {
            // The log no longer holds what it signed: said as such to the witness or monitor asking,
            // not as an outage (the message names sizes and what to run, nothing of the server's).
            return Self.json(.object([("error", .string(broken.message))]), status: .internalServerError)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        // It changes as the log grows: C2SP asks that it not be cached beyond a few seconds.
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: checkpoint.note)))
    }

    static let tilePrefix = "/log/tile/"

    /// A tile or an entry bundle, cached for good once a signed checkpoint covers it: a path then
    /// names the same bytes forever. (Past the last checkpoint a failover that lost commits may
    /// take the tail back and the log grow again with other events: such a tile is not cached.)
    /// A hash tile
    /// (256 lookups) is read as API requests read (``UploadStore/SnapshotReading/reading(_:)``); a
    /// bundle, which may be large, on the feeds' thread, so that anonymous tile requests never
    /// queue behind the feeds, nor bundles ahead of API requests.
    private func tileResponse(_ address: TileAddress) async throws -> Response {
        let store = self.store
        if case .wideEntries = address.kind { return try await wideBundleResponse(address) }
        let read = { @Sendable (snapshot: any StoreSnapshot) throws -> ([UInt8]?, UInt64, UInt64) in
            (try snapshot.tile(address), try snapshot.lastPosition(), try snapshot.latestSignedCheckpoint()?.size ?? 0)
        }
        let (bytes, logSize, signedSize) = if case .hashes = address.kind { try await store.reading(read) } else { try await Self.feedPool.runIfActive { try store.read(read) } }
        guard let bytes else {
            // A bundle the log holds but cannot encode: one of its entries is longer than 64 KiB.
            if address.kind == .entries, let leaves = address.leaves, leaves.upperBound <= logSize {
                let wide = TileAddress(kind: .wideEntries, index: address.index, width: address.width)
                return Self.logNotFound("an entry of this bundle is longer than a 16-bit length allows; tile/\(wide.path) serves it, each entry after a 32-bit length")
            }
            return Self.logNotFound("the log is not yet large enough to hold tile/\(address.path)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        // A bundle is read with credentials: a shared cache (a CDN, a proxy) must not keep it for others.
        let shared = if case .hashes = address.kind { "public" } else { "private" }
        headers[.cacheControl] = Self.tileCaching(shared, address, signedSize: signedSize)
        return Response(status: .ok, headers: headers, body: Self.piecewise(ByteBuffer(bytes: bytes)))
    }

    /// A wide entry bundle, streamed: each slice is read on the feeds' thread and written when the
    /// connection takes it, so a bundle of 256 entries of 4 MiB manifests (1 GiB) holds one
    /// slice (`EntryBundle.sliceBytes`, or one entry) of each reader's in memory, not the whole,
    /// and that one counted in the answer budget (``HeldSlice``).
    private func wideBundleResponse(_ address: TileAddress) async throws -> Response {
        let store = self.store
        let (logSize, signedSize) = try await Self.feedPool.runIfActive {
            try store.read { (try $0.lastPosition(), try $0.latestSignedCheckpoint()?.size ?? 0) }
        }
        guard let leaves = address.leaves, leaves.upperBound <= logSize else {
            return Self.logNotFound("the log is not yet large enough to hold tile/\(address.path)")
        }
        let slice = { @Sendable (from: UInt64) async throws -> (bytes: [UInt8], next: UInt64) in
            let read = try await Self.feedPool.runIfActive {
                try store.read { try $0.entryBundleSlice(address, from: from, byteBudget: EntryBundle.sliceBytes) }
            }
            guard let read else { throw StoreError(.corrupt, "an entry is longer than a 32-bit length allows") }
            return read
        }
        // The first slice is read before the answer, so that a failure to read is a 500 rather than
        // a bundle cut short under a 200.
        let first = try await slice(leaves.lowerBound + 1)
        // The body is written after the request's holding is no longer the task's.
        let holding = AnswerHolding.current
        let firstSlice = try OpeningSlice(ByteBuffer(bytes: first.bytes), holding: holding)
        let firstNext = first.next
        let logger = self.logger
        let body = ResponseBody { writer in
            try await firstSlice.write(to: &writer)
            var next = firstNext
            while next <= leaves.upperBound {
                let read: (bytes: [UInt8], next: UInt64)
                do { read = try await slice(next) } catch {
                    // Past the 200 the client sees only a cut connection: the log says why.
                    logger.error("an entry bundle could not be read past its first slice; its answer was cut short", metadata: [
                        "tile": "\(address.path)", "entry": "\(next)", "error": "\(error)"])
                    throw error
                }
                // A slice the budget cannot take cuts the bundle short, as a failure does: the
                // client sees a cut connection, and fetches the tile again.
                guard try await Self.writeSlice(ByteBuffer(bytes: read.bytes), holding: holding, to: &writer) else {
                    logger.notice("an entry bundle was cut short: the answer budget could not hold its next slice", metadata: ["tile": "\(address.path)", "entry": "\(next)"])
                    throw AnswerBudgetSpent()
                }
                next = read.next
            }
            try await writer.finish(nil)
        }
        // A bundle is read with credentials: a shared cache (a CDN, a proxy) must not keep it for others.
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .cacheControl: Self.tileCaching("private", address, signedSize: signedSize)], body: body)
    }

    /// `Cache-Control` of a tile or bundle: for good once a checkpoint of `signedSize` events covers
    /// it, else revalidated on every use.
    static func tileCaching(_ shared: String, _ address: TileAddress, signedSize: UInt64) -> String {
        guard let leaves = address.leaves, leaves.upperBound <= signedSize else { return shared + ", no-cache" }
        return shared + ", max-age=31536000, immutable"
    }

    /// Runs an endpoint open to anyone (the log's, `/metrics`): bad parameters get 400 with
    /// `{"error": …}`, as CT's API does; a store too busy to answer, 503 with `Retry-After` (a log
    /// client takes a 400 as final).
    func openAnswer(_ answer: () async throws -> Response) async -> Response {
        // (Its failures' log lines are limited: ``openFailures``.)
        // Their answers are counted with those held for readers (``AnswerHolding``), never refused
        // for it: a tile or a proof is at most 8 KiB, and /metrics must answer while the budget is
        // spent, to show it.
        do {
            return try await answer()
        } catch let busy as StoreError where busy.code == .overloaded {
            var response = Self.json(.object([("error", .string(busy.message))]), status: .serviceUnavailable)
            response.headers[.retryAfter] = "1"
            return response
        } catch {
            let api = APIError.from(error)
            guard api.status == .internalServerError else { return Self.json(.object([("error", .string(api.message))]), status: .badRequest) }
            // Anyone may ask: the store's own words stay in the log, a line every 10 s at most.
            if let heldBack = Self.openFailures.admit(to: logger) {
                logger.error("a request to an open endpoint (the log's, /metrics) failed", metadata: ["error": "\(error)", "lines.held.back": "\(heldBack)"])
            }
            return Self.json(.object([("error", .string("The server could not answer; its log says why."))]), status: .internalServerError)
        }
    }

    /// The open endpoints' failures, logged at most one line every 10 s.
    static let openFailures = LogLimiter(interval: .seconds(10), heldBackLine: "more requests to open endpoints failed, as the last line logged says")

    private static func required(_ request: Request, _ name: String) throws -> UInt64 {
        guard let value = try query(request, name) else { throw APIError.invalidParameter("The query parameter '\(name)' is required") }
        return value
    }

    private static func base64(_ hash: MerkleTree.Hash) -> JSONValue { .string(Data(hash).base64EncodedString()) }

    private static func logNotFound(_ message: String) -> Response {
        Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: message + "\n")))
    }
}
