import Foundation
import Hummingbird
import HTTPTypes
import LogHashing
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UploadCore
import UploadService
import UploadStore

/// The audit page: upload initiations by time with filters, the log's size and root, each
/// initiation's inclusion proof checked on the server, and a live view over Server-Sent Events.
extension ECRPublicService {
    /// Rows on the audit page.
    static let auditRowsShown = 100
    /// The most entries of the initiations index one audit page reads (small: a time, a position and
    /// a repository), and the most initiations it decodes, to fill itself with matches for its filters.
    static let auditMarksScanLimit = 50_000
    static let auditScanLimit = 5_000
    /// The longest the audit stream stays silent: well inside `serve --idle-timeout`'s default.
    static let streamHeartbeat = Duration.seconds(15)
    /// The windows the audit page offers, in hours (0: the whole log).
    static let auditWindows: [(hours: Int64, label: String)] = [(1, "the last hour"), (24, "the last day"), (168, "the last week"), (720, "the last 30 days"), (0, "all time")]

    /// The filters of an audit page or stream, from its query.
    struct AuditFilter {
        var repository = ""
        var principal = ""
        var source = AuditSource.any
        var hours: Int64 = 24

        init(_ request: Request) {
            let query = ECRPublicService.formQuery(request)
            repository = String((query["repository"] ?? "").prefix(256)).trimmingCharacters(in: .whitespaces)
            principal = String((query["principal"] ?? "").prefix(256)).trimmingCharacters(in: .whitespaces)
            source = query["source"].flatMap { AuditSource(rawValue: String($0)) } ?? .any
            if let raw = query["hours"], let value = Int64(raw), ECRPublicService.auditWindows.contains(where: { $0.hours == value }) { hours = value }
        }

        /// The mark's repository (`registryId/name`) is the one asked for (by name, or registry/name).
        func matches(repository marked: String, registryId: String) -> Bool {
            repository.isEmpty || marked == repository || marked == registryId + "/" + repository
        }

        func matches(_ metadata: RequestMetadata) -> Bool {
            (principal.isEmpty || metadata.shownPrincipal == principal) && (source == .any || AuditSource(metadata) == source)
        }

        var query: String {
            "repository=\(ECRPublicService.percentEncoded(repository))&principal=\(ECRPublicService.percentEncoded(principal))&source=\(source.rawValue)&hours=\(hours)"
        }
    }

    /// `GET /gallery/audit?…filters&before=CURSOR`: the newest initiations that match, from before
    /// the cursor (an "Older" link's) when given, read newest first from the initiations index.
    /// Runs on the pages' thread; `signed` is the newest signed checkpoint, fetched before.
    /// - Parameter signed: the newest signed checkpoint, or why there is none (`nil` when this
    ///   server signs none).
    func auditTrail(_ request: Request, _ viewer: PageSession.Viewer, signed result: Result<SignedCheckpoint, StoreError>?) throws -> Response {
        let signed = try? result?.get()
        let filter = AuditFilter(request)
        var cursor: StoreCursor?
        if let before = request.uri.queryParameters["before"] {
            guard let opened = StoreCursor(text: String(before)) else { throw APIError.invalidParameter("The 'before' of an Older link is not one this server made.") }
            cursor = opened
        }
        let following = cursor == nil
        let registryId = settings.defaultRegistryId
        let now = store.clock.now().millisecondsSinceEpoch
        let since = filter.hours == 0 ? nil : Timestamp(millisecondsSinceEpoch: now - filter.hours * 3_600_000)
        var rows: [[String: Any]] = []
        var marksRead = 0, decoded = 0
        var exhausted = false
        var reflectedLeaf: String?
        let (size, root, reflected): (UInt64, String, UInt64) = try store.read { snapshot in
            // Once the page is full, the scan goes on (the cursor staying at its last row) for
            // one more match: an "Older" link is offered only when there is one, or when the scan
            // stopped at its bound before knowing.
            let ranOut = try snapshot.forEachInitiationMark(newestFirstBefore: cursor) { mark in
                guard marksRead < Self.auditMarksScanLimit else { return false }
                if let since, mark.recordedAt < since { exhausted = true; return false }
                marksRead += 1
                let full = rows.count == Self.auditRowsShown
                if !full { cursor = mark.cursor }
                guard filter.matches(repository: mark.repository, registryId: registryId) else { return true }
                decoded += 1
                let envelope = try snapshot.initiation(at: mark.position, markedFor: mark.repository)
                if filter.matches(envelope.metadata) {
                    if full { return false }
                    rows.append(Self.auditRow(envelope))
                }
                return decoded < Self.auditScanLimit
            }
            exhausted = exhausted || ranOut
            let size = try snapshot.lastPosition()
            let reflected = try snapshot.checkpoint()
            // The leaf at the position the stream follows from: the stream checks that its log
            // still holds it before it sends anything (a restore, a failover that lost commits).
            if reflected > 0 {
                reflectedLeaf = try snapshot.eventRecords(from: reflected, count: 1).first.map { Hex.encode(MerkleTree.leafHash(position: reflected, record: $0)) }
            }
            return (size, Hex.encode(try snapshot.rootHash(size: size)), reflected)
        }
        let olderPath = exhausted ? nil : cursor.map { "/gallery/audit?\(filter.query)&before=\($0.text)" }
        let scanNote = !exhausted && rows.count < Self.auditRowsShown
            ? "This page looked at \(marksRead) initiations (and read \(decoded)) for ones that match; Older initiations looks further." : nil
        // The page's rows are the projections' (at `reflected`), so the stream starts there:
        // an initiation committed to the log but not yet to them comes through the stream.
        let streamPath: String? = following ? "/gallery/audit/stream?after=\(reflected)&" + (reflectedLeaf.map { "leaf=\($0)&" } ?? "") + filter.query : nil
        return render("audit", title: "Audit trail", viewer: viewer.accessKeyId, script: "live.js", [
            "treeSize": size, "rootHash": root,
            "checkpoint": signed.map { ["size": $0.size, "origin": self.checkpoints?.identity.origin ?? ""] as [String: Any] } as Any,
            "checkpointProblem": Self.checkpointProblem(result) as Any,
            "repository": filter.repository, "principal": filter.principal,
            "sources": AuditSource.allCases.map { ["value": $0.rawValue, "label": $0.label, "selected": $0 == filter.source] as [String: Any] },
            "windows": Self.auditWindows.map { ["value": $0.hours, "label": $0.label, "selected": $0.hours == filter.hours] as [String: Any] },
            "initiations": rows, "scanNote": scanNote as Any, "olderPath": olderPath as Any, "position": reflected,
            "streamPath": streamPath as Any,
        ])
    }

    /// What the page says in place of the signed checkpoint: a log that no longer holds what it
    /// signed as the failed check it is, anything else as the moment's.
    static func checkpointProblem(_ result: Result<SignedCheckpoint, StoreError>?) -> String? {
        guard case .failure(let problem) = result else { return nil }
        return problem.code == .corrupt ? "Failed: " + problem.message : problem.message
    }

    /// One initiation as the page and the stream show it.
    static func auditRow(_ envelope: EventEnvelope) -> [String: Any] {
        var repository = "", uploadId = ""
        if case .uploadInitiated(let initiated) = envelope.event {
            repository = initiated.repositoryName
            uploadId = initiated.uploadId
        }
        return [
            "position": envelope.position, "recordedAt": Self.shown(envelope.recordedAt), "repository": repository,
            "principal": envelope.metadata.shownPrincipal, "source": AuditSource.describe(envelope.metadata), "uploadId": uploadId,
        ]
    }

    /// One step of a proof page's check.
    enum CheckOutcome: String {
        case passed, failed, skipped

        var label: String {
            switch self {
            case .passed: "Passed: "
            case .failed: "Failed: "
            case .skipped: "Not checked: "
            }
        }
    }

    /// `GET /gallery/audit/proofs/<position>`: the event's inclusion proof, checked here, step by step.
    func proofPage(_ positionText: String?, _ viewer: PageSession.Viewer) async throws -> Response {
        guard let positionText, let position = Self.canonicalNumber(positionText), position >= 1 else {
            throw PageNotFound(message: "A proof is of an event's position in the log: a whole number from 1.")
        }
        let size = try await store.reading { try $0.lastPosition() }
        guard position <= size else { throw PageNotFound(message: "The log holds \(size) events; there is no event at position \(position).") }
        let (proof, treeLeaf) = try await store.reading { snapshot in
            (try snapshot.inclusionProof(position: position), Hex.encode(try snapshot.merkleNode(level: 0, index: position - 1)))
        }
        var checks: [(CheckOutcome, String)] = []
        // Step by step, in a fixed order, so that a failure names its step: the record's hash
        // against the tree's own leaf (only a difference there is evidence of an edit), its
        // decoding (a binary older than the event may not read it: the hashes do not depend on
        // that), then the path. A record changed in place is still shown, as it now reads.
        var envelope: EventEnvelope?
        var signedToo = false
        if proof.leafHash == treeLeaf {
            checks.append((.passed, "The log's record at position \(position) hashes (RFC 9162, with its position) to the leaf hash \(proof.leafHash), the tree's leaf at its position."))
        } else {
            checks.append((.failed, "the record hashes (RFC 9162, with its position) to \(proof.leafHash), but the tree holds \(treeLeaf) as its leaf at this position: the record was changed after it was appended (`upload-replay` names every record so changed)."))
        }
        do {
            let decoded = try EventEnvelope(position: position, decoding: Array(Data(base64Encoded: proof.record) ?? Data()))
            envelope = decoded
            checks.append((.passed, "The record decodes as an event of type \(decoded.event.type.name)."))
        } catch {
            checks.append((.skipped, "the record does not decode as an event this server reads (\(error)); the hashes do not depend on it."))
        }
        if !checks.contains(where: { $0.0 == .failed }) {
            if MerkleTree.verifyInclusion(
                leafHash: Hex.decode(proof.leafHash) ?? [], index: position - 1, size: proof.treeSize, path: proof.path.compactMap(Hex.decode),
                root: Hex.decode(proof.rootHash) ?? []) {
                checks.append((.passed, "Folding that leaf hash with the \(proof.path.count) hashes of its audit path gives \(proof.rootHash), the root of the tree over the log's first \(proof.treeSize) events, which is the log's root now."))
                let signed = await signedCheckpointCheck(position)
                checks.append(signed)
                signedToo = signed.0 == .passed
            } else {
                checks.append((.failed, "the path does not lead from the leaf to the root \(proof.rootHash) of the tree over the log's first \(proof.treeSize) events."))
            }
        }
        let verified = !checks.contains { $0.0 == .failed }
        let metadata = envelope?.metadata
        var repository = "–"
        if let scoped = envelope?.event.payload as? any RepositoryScoped { repository = scoped.repositoryName }
        if let named = envelope?.event.answeredCall?.repositoryName { repository = named }
        var uploadId: String?
        if case .uploadInitiated(let initiated)? = envelope?.event { uploadId = initiated.uploadId }
        return render("proof", title: "Proof of event \(position)", viewer: viewer.accessKeyId, heading: await headingReadAside(position: proof.treeSize), [
            "position": position, "leafIndex": position - 1, "treeSize": proof.treeSize, "rootHash": proof.rootHash, "leafHash": proof.leafHash,
            "path": proof.path, "verdictClass": verified ? "ok" : "bad",
            "verdict": verified
                ? "Verified: event \(position) is in the log, under the root \(proof.rootHash) of \(proof.treeSize) events"
                    + (signedToo ? ", and under the newest signed checkpoint." : ". It was not compared with a signed checkpoint: the last check says why.")
                : "Not verified: a check below failed. The log does not prove that it holds this event.",
            "checks": checks.map { ["outcome": $0.0.rawValue, "text": $0.0.label + $0.1] },
            "eventType": envelope?.event.type.name ?? "–", "recordedAt": envelope.map { Self.shown($0.recordedAt) } ?? "–", "repository": repository,
            "principal": metadata?.shownPrincipal ?? "–", "source": metadata.map(AuditSource.describe) ?? "–", "uploadId": uploadId as Any,
        ])
    }

    /// The event against the newest signed checkpoint (signed now if the log grew since, at most
    /// once per signing interval, as `/log/checkpoint` serves it): its signature is the log's key's,
    /// and the event's path at the checkpoint's size leads to the root it signed.
    private func signedCheckpointCheck(_ position: UInt64) async -> (CheckOutcome, String) {
        guard let checkpoints else { return (.skipped, "this server signs no checkpoints, so no signed root was compared.") }
        do {
            let signed = try await checkpoints.current()
            guard signed.size >= position else {
                return (.skipped, "the newest signed checkpoint (\(signed.size) events) is older than this event, signed less than the signing interval ago; the next one covers it.")
            }
            let checkpoint: Checkpoint
            do { checkpoint = try checkpoints.identity.check(signed) } catch { return (.failed, "the newest signed checkpoint does not verify: \(error)") }
            let read = try await store.reading { snapshot -> (size: UInt64, leaf: [UInt8]?, path: [MerkleTree.Hash]) in
                let size = try snapshot.lastPosition()
                guard size >= signed.size else { return (size, nil, []) }
                let record = try snapshot.eventRecords(from: position, count: 1).first
                return (size, record.map { Array(MerkleTree.leafHash(position: position, record: $0)) }, try snapshot.inclusionPath(leafIndex: position - 1, size: signed.size))
            }
            // A log shorter than what it signed was taken back (a failover that lost commits, a
            // restore, an edit): the signature is the independent witness, and it disagrees.
            guard read.size >= signed.size else {
                return (.failed, "the newest signed checkpoint covers \(signed.size) events, but the log now holds \(read.size): it was taken back after it was signed.")
            }
            let (leaf, path) = (read.leaf, read.path)
            guard let leaf, MerkleTree.verifyInclusion(leafHash: leaf, index: position - 1, size: signed.size, path: path, root: checkpoint.rootHash) else {
                return (.failed, "the event's path at \(signed.size) events does not lead to the root the newest signed checkpoint signed.")
            }
            return (.passed, "the newest signed checkpoint, \(signed.size) events signed by \(checkpoint.origin) (signature checked against the log's key \(checkpoints.identity.verifier.text)), includes this event: its path at that size leads to the signed root \(Hex.encode(checkpoint.rootHash)).")
        } catch let broken as StoreError where broken.code == .corrupt {
            // The log is damaged where the signing read it (a tree that no longer extends what was
            // signed, a missing node, a record that does not decode): the log was changed.
            return (.failed, broken.message)
        } catch {
            // Not the log's answer but the server's state: the inclusion checks above still stand.
            logger.error("a proof page could not read the signed checkpoint", metadata: ["error": "\(error)"])
            return (.skipped, "the newest signed checkpoint could not be signed or read just now; the server has logged why.")
        }
    }

    /// `GET /gallery/audit/stream?after=POS&…filters`: Server-Sent Events from the log after POS:
    /// `initiation` for each UploadInitiated that matches the filters, and `log` (size and root)
    /// after each slice, until the client goes or the server stops. Read a slice at a time on the
    /// feeds' thread, as `/events/stream` is; each message waits for the connection to take it.
    /// Each message's id is a position and the leaf hash of the event there (`POS.HEX`), so a
    /// browser reconnecting (`Last-Event-ID`) resumes after what it was sent rather than again
    /// from POS, and only in the history it was sent. When the log no longer holds what the page was sent (a restore,
    /// a failover that lost commits: the log is shorter, or another event's leaf is there), the
    /// stream sends `changed` and ends, and the page asks to be reloaded, rather than go on from a
    /// position in another history.
    /// The stream ends when the session that opened it expires or signs out (``PageSession/isCurrent(_:)``,
    /// asked at least once a second); the browser's reconnect then needs a fresh sign-in.
    func auditStream(_ request: Request, for viewer: PageSession.Viewer) throws -> Response {
        let filter = AuditFilter(request)
        // Opaque to the stream's spec: an id that does not parse (empty, ".") is ignored, never indexed into.
        let lastEventId = request.headers[HTTPField.Name("Last-Event-ID")!]?.split(separator: ".", maxSplits: 1)
        let resumed = lastEventId?.first.flatMap { Self.canonicalNumber($0) }
        let requestedAfter = try Self.query(request, "after") ?? 0
        let after = max(requestedAfter, resumed ?? 0)
        // The leaf the page was last sent, when it says; else the one its rows reached (its URL's,
        // so that a page that was sent no event yet still finds its history gone).
        let urlLeaf = try Self.single(request, "leaf")
        let resumedLeaf = lastEventId.flatMap { $0.count == 2 && resumed == after ? Hex.decode(String($0[1])) : nil }
            ?? (after == requestedAfter ? urlLeaf.flatMap { Hex.decode($0) } : nil)
        let store = self.store, pageSession = self.pageSession, metrics = self.metrics
        let registryId = settings.defaultRegistryId
        var headers = Self.pageHeaders
        headers[.contentType] = "text/event-stream"
        let body = ResponseBody { writer in
            metrics.countStream(.audit, by: 1)
            defer { metrics.countStream(.audit, by: -1) }
            try await withGracefulShutdownHandler {
                // At once, so that the browser knows the stream is open before the log next grows.
                try await writer.write(ByteBuffer(string: "retry: 2000\n: following the log after position \(after)\n\n"))
                var position = after
                var leaf = resumedLeaf
                var lastWrite = ContinuousClock.now
                while !store.followersStopped, pageSession.isCurrent(viewer) {
                    let (from, sent) = (position, leaf)
                    let read = try await Self.feedPool.runIfActive {
                        try store.read { snapshot -> (events: [EventEnvelope], leaves: [[UInt8]], size: UInt64, root: String?)? in
                            func leafHash(_ at: UInt64) throws -> [UInt8]? {
                                try snapshot.eventRecords(from: at, count: 1).first.map { Array(MerkleTree.leafHash(position: at, record: $0)) }
                            }
                            // Taken back: shorter than what the page was sent, or another event where it read one.
                            guard try snapshot.lastPosition() >= from else { return nil }
                            if let sent, from > 0, try leafHash(from) != sent { return nil }
                            let events = try snapshot.events(after: from, limit: Self.sliceEvents, byteBudget: Self.sliceBytes)
                            let size = events.last?.position ?? from
                            guard !events.isEmpty else { return ([], [], size, nil) }
                            // Each event's leaf, for its message's id: the tree's level 0, stored, in one read.
                            let leaves = try snapshot.merkleNodes(level: 0, indices: from..<(from + UInt64(events.count)))
                            return (events, leaves, size, Hex.encode(try snapshot.rootHash(size: size)))
                        }
                    }
                    guard let read else {
                        try await writer.write(ByteBuffer(string: "event: changed\ndata: {}\n\n"))
                        break
                    }
                    let (events, leaves, size, root) = read
                    guard let root else {
                        // A comment now and then, so that a quiet log is not an idle connection.
                        if ContinuousClock.now - lastWrite > Self.streamHeartbeat {
                            try await writer.write(ByteBuffer(string: ": waiting after position \(position)\n\n"))
                            lastWrite = .now
                        }
                        if await !store.waitForEvents(after: position) { break }
                        continue
                    }
                    var buffer = ByteBuffer()
                    for (envelope, leaf) in zip(events, leaves) {
                        guard case .uploadInitiated(let initiated) = envelope.event, filter.matches(envelope.metadata),
                              filter.matches(repository: initiated.repository.description, registryId: registryId) else { continue }
                        buffer.writeString("event: initiation\nid: \(envelope.position).\(Hex.encode(leaf))\ndata: \(Self.auditRowJSON(envelope).text)\n\n")
                    }
                    buffer.writeString("event: log\nid: \(size).\(Hex.encode(leaves.last!))\ndata: \(JSONValue.object([("treeSize", .uint(size)), ("rootHash", .string(root))]).text)\n\n")
                    try await writer.write(buffer)
                    lastWrite = .now
                    (position, leaf) = (size, leaves.last)
                }
            } onGracefulShutdown: {
                store.stopFollowers()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private static func auditRowJSON(_ envelope: EventEnvelope) -> JSONValue {
        let row = auditRow(envelope)
        return .object([
            ("position", .uint(envelope.position)), ("recordedAt", .string(row["recordedAt"] as? String ?? "")),
            ("repository", .string(row["repository"] as? String ?? "")), ("principal", .string(row["principal"] as? String ?? "")),
            ("source", .string(row["source"] as? String ?? "")), ("uploadId", .string(row["uploadId"] as? String ?? "")),
        ])
    }
}

/// Which client recorded an event, from its request metadata: the front end the log records (a
/// registry client, such as docker, podman, skopeo or oras: `source: oci`; the command line:
/// `source: cli`), and for the AWS API the client its User-Agent names (the AWS CLI, boto3, or
/// another; as the client says).
enum AuditSource: String, CaseIterable {
    case any, awscli, boto3, registry, cli, other

    init(_ metadata: RequestMetadata) {
        let agent = metadata.userAgent ?? ""
        if metadata.source == "oci" { self = .registry }
        else if metadata.source == "cli" { self = .cli }
        else if agent.hasPrefix("aws-cli/") { self = .awscli }
        else if agent.contains("Boto3/") { self = .boto3 }
        else { self = .other }
    }

    var label: String {
        switch self {
        case .any: "any source"
        case .awscli: "awscli"
        case .boto3: "boto3"
        case .registry: "registry client"
        case .cli: "upload-coordinator (command line)"
        case .other: "other"
        }
    }

    /// The source's label, with the client's first product token for registry clients and others.
    static func describe(_ metadata: RequestMetadata) -> String {
        let source = AuditSource(metadata)
        guard source == .registry || source == .other, let agent = metadata.userAgent?.split(separator: " ").first else { return source.label }
        return "\(source.label) (\(agent.prefix(48)))"
    }
}
