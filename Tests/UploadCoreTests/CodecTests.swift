import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

struct CodecTests {
    static let at = Timestamp(millisecondsSinceEpoch: 1_796_083_200_123)
    static let events: [Event] = [
        .repositoryCreated(RepositoryCreated(registryId: "123456789012", repositoryName: "team/app", createdAt: at)),
        .uploadInitiated(UploadInitiated(uploadId: "0f8c1a2e-0000-4000-8000-000000000001", partSize: 10_485_760, registryId: "123456789012", repositoryName: "team/app", initiatedAt: at)),
        .uploadAborted(UploadAborted(uploadId: "0f8c1a2e-0000-4000-8000-000000000001", registryId: "123456789012", repositoryName: "team/app", reason: .repositoryDeleted)),
        .repositoryDeleted(RepositoryDeleted(registryId: "123456789012", repositoryName: "team/app", force: true, createdAt: Timestamp(millisecondsSinceEpoch: 1_796_083_200_000))),
    ]

    @Test(arguments: events)
    func envelope_roundTripsThroughItsEncoding(event: Event) throws {
        let metadata = RequestMetadata(requestId: "r", source: "http", userAgent: "aws-cli/1", sourceAddress: "127.0.0.1", principal: "AKID", invocationId: "inv")
        let envelope = EventEnvelope(position: 7, recordedAt: Self.at, metadata: metadata, event: event)
        let decoded = try EventEnvelope(position: 7, decoding: envelope.encoded())
        #expect(decoded == envelope)
        #expect(decoded.encoded() == envelope.encoded(), "one value, one encoding")
    }

    /// Replay's decoding reads what the projector reads, and the same as decoding whole gives.
    @Test(arguments: events)
    func projectedEvent_decodesAsTheWholeEnvelopeProjects(event: Event) throws {
        for invocationId in [nil, "inv"] as [String?] {
            let metadata = RequestMetadata(requestId: "r", source: "http", userAgent: "aws-cli/1", principal: "AKID", invocationId: invocationId, requestDigest: "d")
            let bytes = EventEnvelope(position: 7, recordedAt: Self.at, metadata: metadata, event: event).encoded()
            let projected = try ProjectedEvent(position: 7, decoding: bytes[...])
            #expect(projected == ProjectedEvent(try EventEnvelope(position: 7, decoding: bytes)))
            #expect(projected.invocation == invocationId.map { InvocationMark(invocationId: $0, requestId: "r", recordedAt: Self.at) })
        }
    }

    /// What replay leaves undecoded is only the metadata no projection reads: a user agent that is
    /// not UTF-8 passes the projected decoding and is refused whole (which verify's second rebuild
    /// does); a damaged invocation id or payload is refused by both.
    @Test func projectedEvent_skipsOnlyTheMetadataNoProjectionReads() throws {
        let metadata = RequestMetadata(requestId: "r", source: "http", userAgent: "ua", invocationId: "inv")
        let good = EventEnvelope(position: 1, recordedAt: Self.at, metadata: metadata, event: Self.events[1]).encoded()
        func damaged(_ text: String) throws -> [UInt8] {
            var bytes = good
            let at = try #require(bytes.firstRange(of: Array(text.utf8)))
            bytes[at.lowerBound] = 0xFF
            return bytes
        }
        let badUserAgent = try damaged("ua")
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: badUserAgent) }
        #expect(try ProjectedEvent(position: 1, decoding: badUserAgent[...]).invocation?.invocationId == "inv")
        for text in ["inv", "team/app"] {
            let bytes = try damaged(text)
            #expect(throws: CodecError.self, "\(text)") { try ProjectedEvent(position: 1, decoding: bytes[...]) }
        }
    }

    /// Text fields accept exactly the UTF-8 that `String(validating:)` accepts, a literal U+FFFD
    /// included, and refuse every kind of malformed sequence. A truncated four-byte sequence is
    /// repaired into a U+FFFD of the same length, so only comparing the bytes finds it, at either
    /// end of a text longer than the eight bytes compared at a time.
    @Test(arguments: [
        [], Array("plain".utf8), Array("é 𝄞 \u{FFFD}".utf8), [0xEF, 0xBF, 0xBD],
        [0xFF], [0xC0, 0xAF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x61, 0x80],
        [0xF0, 0x9F, 0x98], Array("0123456789abcdef".utf8) + [0xF0, 0x9F, 0x98], [0xF0, 0x9F, 0x98] + Array("0123456789abcdef".utf8),
        Array("0123456789abcdef".utf8) + [0xEF, 0xBF, 0xBD],
    ] as [[UInt8]])
    func text_isValidatedAsTheStandardLibraryValidatesUTF8(bytes: [UInt8]) {
        #expect(FieldReader.Value.validUTF8(bytes[...]) == String(validating: bytes, as: UTF8.self))
    }

    /// Locks the on-disk format of UploadInitiated v1. If this fails, the change breaks every
    /// existing log: add a new schema version instead (see the event catalogue).
    @Test func uploadInitiated_v1_hasAFixedEncoding() {
        let envelope = EventEnvelope(position: 1, recordedAt: Self.at, metadata: RequestMetadata(requestId: "r1", source: "cli"), event: Self.events[1])
        let hex = envelope.encoded().map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        let expected = [
            "0803", "1001", "18" + "fbe09af7a234",                     // type 3, version 1, recordedAt
            "2209" + "0a02" + "7231" + "1203" + "636c69",               // metadata: requestId "r1", source "cli"
            "2a4a",                                                     // payload, 74 bytes:
            "0a24" + "30663863316132652d303030302d343030302d383030302d303030303030303030303031", // uploadId
            "10" + "80808005",                                          // partSize 10485760
            "1a0c" + "313233343536373839303132",                        // registryId
            "2208" + "7465616d2f617070",                                // repositoryName
            "28" + "fbe09af7a234",                                      // initiatedAt
        ].joined()
        #expect(hex == expected)
    }

    @Test func decoding_refusesNonCanonicalRecords() throws {
        let good = EventEnvelope(position: 1, recordedAt: Self.at, metadata: testMetadata(), event: Self.events[0]).encoded()
        // truncated
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: Array(good.dropLast())) }
        // a trailing unknown field
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: good + [0x30, 0x01]) }
        // fields out of order: swap the first two fields (type, version)
        var swapped = good
        swapped.swapAt(0, 2)
        swapped.swapAt(1, 3)
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: swapped) }
        // a non-minimal varint for the type code (0x81 0x00 instead of 0x01)
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: [0x08, 0x81, 0x00] + good.dropFirst(2)) }
        // an unknown event type code
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: [0x08, 0x63] + good.dropFirst(2)) }
        // a newer schema version than this binary knows
        #expect(throws: CodecError.self) { try EventEnvelope(position: 1, decoding: Array(good.prefix(2)) + [0x10, 0x02] + good.dropFirst(4)) }
    }

    /// A list has one encoding: items at tags 1…n, and no record at all when it is empty.
    @Test func lists_decodeOnlyTheWritersOneEncoding() throws {
        let tagged = RepositoryTagged(registryId: "123456789012", repositoryName: "a", tagKeys: ["k1", "k2"], tagValues: ["v1", "v2"])
        let bytes = tagged.encoded()
        #expect(try RepositoryTagged(decoding: bytes) == tagged)
        // The keys' list record: field 3, 10 bytes; its items at tags 1 and 2 (0x0A, 0x12).
        guard let start = bytes.firstIndex(of: 0x1A), bytes[start + 1] == 8, bytes[start + 2] == 0x0A, bytes[start + 6] == 0x12 else {
            Issue.record("unexpected layout: \(bytes)")
            return
        }
        var gap = bytes
        gap[start + 6] = 0x1A  // the second item at tag 3
        #expect(throws: CodecError.self) { try RepositoryTagged(decoding: gap) }
        // An empty list record where the writer leaves the field out (architectures, field 4,
        // after the description, the last field written).
        let catalog = RepositoryCatalogDataPut(registryId: "123456789012", repositoryName: "a", description: "d", architectures: [], operatingSystems: [], logoImageDigest: nil, aboutText: nil, usageText: nil)
        let encoded = catalog.encoded() + [0x22, 0x00]
        #expect(try RepositoryCatalogDataPut(decoding: catalog.encoded()) == catalog)
        #expect(throws: CodecError.self) { try RepositoryCatalogDataPut(decoding: encoded) }
    }

    /// Tag keys are kept in byte order without repeats: a record that breaks that does not decode.
    @Test(arguments: [["b", "a"], ["a", "a"]])
    func tagKeys_outOfOrderOrRepeated_doNotDecode(keys: [String]) throws {
        let tagged = RepositoryTagged(registryId: "123456789012", repositoryName: "a", tagKeys: keys, tagValues: keys.map { _ in "v" })
        #expect(throws: CodecError.self) { try RepositoryTagged(decoding: tagged.encoded()) }
        let untagged = RepositoryUntagged(registryId: "123456789012", repositoryName: "a", tagKeys: keys)
        #expect(throws: CodecError.self) { try RepositoryUntagged(decoding: untagged.encoded()) }
        var details = RepositoryDetails()
        details.tagKeys = keys
        details.tagValues = keys
        #expect(throws: CodecError.self) { try RepositoryDetails(decoding: details.encoded()) }
    }

    @Test func projectionRecords_roundTrip() throws {
        var tables = InMemoryProjectionState()
        for (i, event) in Self.events.prefix(2).enumerated() {
            try Projector.apply(EventEnvelope(position: UInt64(i + 1), recordedAt: Self.at, metadata: testMetadata(), event: event), to: &tables)
        }
        let session = try #require(try tables.session("0f8c1a2e-0000-4000-8000-000000000001"))
        #expect(try UploadSession(decoding: session.encoded()) == session)
        let repo = try #require(try tables.repository(RepositoryRef(registryId: "123456789012", repositoryName: "team/app")))
        #expect(try RepositorySummary(decoding: repo.encoded()) == repo)
    }

    /// A session's last-part fields (tags 12-14) come all together, exactly when it has parts:
    /// any other combination would be a second encoding of some session, so it is refused.
    @Test func uploadSession_lastPartFields_comeTogether_exactlyWhenThereAreParts() throws {
        var session = UploadSession(
            uploadId: "u", registryId: "123456789012", repositoryName: "team/app", partSize: 1, state: .active,
            initiatedAt: Self.at, initiatedPosition: 1, lastActivityAt: Self.at, lastPosition: 1)
        #expect(try UploadSession(decoding: session.encoded()) == session)
        session.partCount = 1
        #expect(throws: CodecError.self) { try UploadSession(decoding: session.encoded()) }
        session.lastPart = .init(firstByte: 0, lastByte: 9, digest: "sha256:00")
        #expect(try UploadSession(decoding: session.encoded()) == session)
        session.lastPartDigest = nil
        #expect(throws: CodecError.self) { try UploadSession(decoding: session.encoded()) }
        session.partCount = 0
        #expect(throws: CodecError.self) { try UploadSession(decoding: session.encoded()) }
    }

    @Test(arguments: [
        (0, "1970-01-01T00:00:00.000Z"), (1_796_083_200_123, "2026-12-01T00:00:00.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"), (-1, "1969-12-31T23:59:59.999Z"),
    ] as [(Int64, String)])
    func timestamp_formatsAsISO8601(ms: Int64, text: String) {
        #expect(Timestamp(millisecondsSinceEpoch: ms).iso8601 == text)
    }

    @Test func json_escapesAndKeepsMemberOrderSorted() {
        let value = JSONValue.object(sorting: [("b", .string("q\"\\/\n\u{1}")), ("a", .uint(1)), ("c", nil)])
        #expect(value.text == #"{"a":1,"b":"q\"\\/\n\u0001"}"#)
    }

    /// Strings that need no escape are copied whole; one byte that needs it sends the string the
    /// scalar-by-scalar way, which must still escape exactly what misleads when shown beyond
    /// JSON's own (DEL, C1's controls, U+2028 and U+2029, the bidirectional controls), and keep
    /// every other scalar (those whose UTF-8 also starts with 0xC2, 0xD8 or 0xE2 included) as it is.
    @Test(arguments: [
        ("plain-ascii/name_1.2", #""plain-ascii/name_1.2""#),
        ("caf\u{E9} \u{20AC}\u{2027}\u{2030}\u{A0}\u{600}\u{2070}", "\"caf\u{E9} \u{20AC}\u{2027}\u{2030}\u{A0}\u{600}\u{2070}\""),
        // C1's NEL, CSI, OSC and ST, as a terminal reads them; marks, an override and isolates.
        ("a\u{85}b\u{9B}1A\u{9D}0;t\u{9C}\u{80}\u{9F}", #""a\u0085b\u009b1A\u009d0;t\u009c\u0080\u009f""#),
        ("x\u{61C}\u{200E}\u{200F}\u{202A}\u{202E}evil\u{2066}\u{2069}", #""x\u061c\u200e\u200f\u202a\u202eevil\u2066\u2069""#),
        // Each lead byte alone, so that each part of the whole-copy test is held.
        ("x\u{61C}y", #""x\u061cy""#), ("x\u{85}y", #""x\u0085y""#), ("x\u{202E}y", #""x\u202ey""#),
        ("a\u{2028}b\u{2029}c\u{7F}d\re\tf", #""a\u2028b\u2029c\u007fd\re\tf""#),
        ("\u{20AC}\"", #""€\"""#),
        ("", #""""#),
        // One byte that needs an escape each, so that each part of the whole-copy test is held.
        ("a\u{2028}", #""a\u2028""#), ("\u{2029}b", #""\u2029b""#), ("x\u{7F}", #""x\u007f""#),
        ("x\"", #""x\"""#), ("x\\", #""x\\""#), ("x\u{1F}", #""x\u001f""#), ("\u{0}", #""\u0000""#),
    ])
    func json_escapesOnlyWhatItMust(string: String, text: String) {
        #expect(JSONValue.string(string).text == text)
        #expect(JSONValue.string(string).utf8 == Array(text.utf8))
    }
}

/// Replay's in-memory state keeps records as values keyed by their names, and hands the digest
/// LMDB's keys and bytes.
struct InMemoryProjectionStateTests {
    /// "é" precomposed and decomposed are equal `String`s but different keys to LMDB: they stay two
    /// records, and the digest sees them in LMDB's byte order, under the store's scoped keys.
    @Test func namesAreKeyedByTheirBytes_andEntriesAreLMDBsKeysAndBytes() throws {
        var state = InMemoryProjectionState()
        let ref = RepositoryRef(registryId: "123456789012", repositoryName: "team/app")
        let at = Timestamp(millisecondsSinceEpoch: 1)
        let composed = LayerRecord(layerDigest: "\u{E9}", layerSize: 1, uploadId: "u1", completedAt: at)
        let decomposed = LayerRecord(layerDigest: "e\u{301}", layerSize: 2, uploadId: "u2", completedAt: at)
        #expect(composed.layerDigest == decomposed.layerDigest, "Swift equates them")
        state.put(composed, in: ref)
        state.put(decomposed, in: ref)
        #expect(state.layer(ref, "\u{E9}") == composed)
        #expect(state.layer(ref, "e\u{301}") == decomposed)
        let entries = state.entries(.layers)
        #expect(entries.map(\.key) == [ProjectionKey.scoped(ref, "e\u{301}"), ProjectionKey.scoped(ref, "\u{E9}")], "0x65 sorts before 0xC3")
        #expect(entries.map(\.value) == [decomposed.encoded(), composed.encoded()])
        state.removeLayers(in: ref)
        #expect(state.entries(.layers).isEmpty)
    }
}
