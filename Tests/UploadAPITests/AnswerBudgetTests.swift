import Foundation
import HTTPTypes
import LogHashing
import Hummingbird
import Logging
import NIOCore
import Testing
@testable import UploadAPI
@testable import UploadStore
import UploadCore
import UploadService
import UploadTesting

/// Answers held for slow readers (``AnswerHolding``), through the in-process router: the test fills
/// the budget itself, standing for what readers that do not read would hold.
struct AnswerBudgetTests {
    static let create = "SpencerFrontendService.CreateRepository"
    static let putImage = "SpencerFrontendService.PutImage"
    static let describeRepositories = "SpencerFrontendService.DescribeRepositories"

    func withAPI(budget: ByteBudget, _ body: @escaping @Sendable (RouterClient) async throws -> Void) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try Store(testConfiguration(dir))
        let logger = Logger(label: "test")
        let service = ECRPublicService(
            service: UploadService(store: store, blobs: try BlobStore(directory: dir.path), logger: logger), logger: logger, answerBudget: budget)
        do {
            try await body(RouterClient(router: service.router()))
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    /// An index of no manifests, padded to about 100 KB: a manifest that needs no blobs.
    static func paddedIndex(_ note: String) -> String {
        #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(note)\",\"pad\":\"\#(String(repeating: "x", count: 100_000))\"}}"#
    }

    static func get(_ client: RouterClient, _ uri: String) async throws -> (status: HTTPResponse.Status, headers: HTTPFields, bytes: Int) {
        try await client.execute(uri: uri, method: .get, headers: [.accept: "application/vnd.oci.image.index.v1+json"]) {
            ($0.status, $0.headers, $0.body.readableBytes)
        }
    }

    @Test func readsPastTheBudget_getTheirEndpointsTryAgain_whileWritesAndSmallAnswersAreSent_andNothingIsKeptCounted() async throws {
        let budget = ByteBudget(limit: 1 << 20, smallestShare: 1 << 20)
        try await withAPI(budget: budget) { client in
            for n in 0..<100 {
                let name = "team/app-\(n)-" + String(repeating: "r", count: 150)
                #expect(try await DispatchTests.call(client, Self.create, #"{"repositoryName": "\#(name)"}"#).status == .ok)
            }
            _ = try await DispatchTests.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            #expect(try await DispatchTests.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(Self.paddedIndex("1"))", "imageTag": "big"}"#).status == .ok)
            // A repository page past one piece (its catalog's texts), its logo, and /metrics (a histogram per operation called).
            let text = String(repeating: "word ", count: 2_000), logo = Data([0x89, 0x50, 0x4E, 0x47] + [UInt8](repeating: 0, count: 20_000)).base64EncodedString()
            #expect(try await DispatchTests.call(client, "SpencerFrontendService.PutRepositoryCatalogData", #"{"repositoryName": "team/app", "catalogData": {"aboutText": "\#(text)", "usageText": "\#(text)", "logoImageBlob": "\#(logo)"}}"#).status == .ok)
            let logoURL = try #require(try await DispatchTests.call(client, "SpencerFrontendService.GetRepositoryCatalogData", #"{"repositoryName": "team/app"}"#).body["catalogData"] as? [String: Any])["logoUrl"] as? String
            let logoPath = try #require(logoURL.flatMap { URL(string: $0)?.path })
            for operation in ECRPublicService.operations.keys { _ = try await DispatchTests.call(client, "SpencerFrontendService." + operation, "{}") }
            let manifest = "/v2/team/app/manifests/big", page = "/gallery/repositories/team/app"
            // Each answer below is more than one piece, so it is held while its client reads it.
            let listing = try await client.execute(uri: "/", method: .post, headers: [.contentType: "application/x-amz-json-1.1", HTTPField.Name("X-Amz-Target")!: Self.describeRepositories], body: ByteBuffer(string: "{}")) { $0 }
            #expect(listing.status == .ok && listing.body.readableBytes > ECRPublicService.pieceBytes)
            for uri in [manifest, page, logoPath, "/metrics"] {
                let answer = try await Self.get(client, uri)
                #expect(answer.status == .ok && answer.bytes > ECRPublicService.pieceBytes, "\(uri): \(answer.status), \(answer.bytes) bytes")
            }

            // Slow readers hold all but 10,000 bytes: less than any answer of more than one piece.
            budget.add(budget.limit - 10_000)
            let pulled = try await Self.get(client, manifest)
            #expect(pulled.status == .tooManyRequests && pulled.headers[.retryAfter] == "1", "the registry's 429")
            let refused = try await DispatchTests.call(client, Self.describeRepositories, "{}")
            #expect(refused.status == .badRequest && refused.body["__type"] as? String == "ThrottlingException")
            let busy = try await Self.get(client, page)
            #expect(busy.status == .serviceUnavailable && busy.headers[.retryAfter] == "1", "a page's 503")
            let image = try await Self.get(client, logoPath)
            #expect(image.status == .badRequest && image.headers[DispatchTests.errorType] == "ThrottlingException", "a logo's")
            #expect(try await Self.get(client, "/metrics").status == .ok, "/metrics answers while the budget is spent, to show it")
            // A write's answer (PutImage's holds its manifest) is sent all the same; so is a small one.
            let written = try await DispatchTests.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(Self.paddedIndex("2"))", "imageTag": "two"}"#)
            #expect(written.status == .ok && (written.body["image"] as? [String: Any])?["imageManifest"] != nil)
            #expect(try await DispatchTests.call(client, "SpencerFrontendService.DescribeImageTags", #"{"repositoryName": "team/app"}"#).status == .ok)
            #expect(budget.held == budget.limit - 10_000, "refused answers, and writes' not held, count nothing")

            // Once the readers have gone, the same reads are answered.
            budget.give(budget.limit - 10_000)
            #expect(try await Self.get(client, manifest).status == .ok)
            #expect(try await DispatchTests.call(client, Self.describeRepositories, "{}").status == .ok)
        }
        #expect(budget.held == 0, "every answer's bytes given back once it is written")
    }

    @Test func anAddressShare_isAnEighthOfTheBudget_atLeast32MiB_atMostTheWhole() {
        #expect(ByteBudget.answers().limitPerAddress == 64 << 20)
        #expect(ByteBudget.answers(limit: 100 << 20).limitPerAddress == 32 << 20)
        #expect(ByteBudget.answers(limit: 40 << 20, limitPerAddress: 50 << 20).limitPerAddress == 40 << 20)
    }

    /// A feed's largest slice (about 1 MiB of records and one more, each escaped as JSON at most
    /// six-fold: a DEL or C1 control is `\u007f`) and a wide bundle's (4 MiB of entries and one
    /// more) fit in the least share an address is given: one that did not would be refused to its
    /// consumer for good, at the same cursor.
    @Test func theLargestStreamedSlice_fitsTheLeastShareAnAddressIsGiven() {
        let largestRecord = PutImage.maximumManifestBytes + (64 << 10)  // a manifest, and its event's other fields
        #expect(6 * (EventEnvelope.pageBytes + largestRecord) < ByteBudget.smallestAnswerBudget)
        #expect(EntryBundle.sliceBytes + largestRecord < ByteBudget.smallestAnswerBudget)
    }

    /// Every operation is one or the other: one added later must be placed.
    @Test func theOperationsWhoseAnswersMayBeRefused_areEveryOperationButTheWrites() {
        let writes: Set = [
            "CreateRepository", "PutImage", "CompleteLayerUpload", "UploadLayerPart", "InitiateLayerUpload", "BatchDeleteImage", "DeleteRepository",
            "PutRepositoryCatalogData", "PutRegistryCatalogData", "SetRepositoryPolicy", "DeleteRepositoryPolicy", "TagResource", "UntagResource",
        ]
        #expect(ECRPublicService.reads.isDisjoint(with: writes), "a write's answer is always sent")
        #expect(ECRPublicService.reads.union(writes) == Set(ECRPublicService.operations.keys))
    }
}
