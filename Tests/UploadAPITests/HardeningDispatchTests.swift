import Foundation
import HTTPTypes
import Hummingbird
import Logging
import LogHashing
import NIOCore
import Testing
@testable import UploadAPI
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

/// Each finding of the attack review that the HTTP layer answers, through the in-process router.
/// (Connection timeouts and the connection cap need real sockets: Tests/EndToEnd/test_attacks.py.)
struct HardeningDispatchTests {
    static let create = "SpencerFrontendService.CreateRepository"
    static let putImage = "SpencerFrontendService.PutImage"
    static let invocation = HTTPField.Name("amz-sdk-invocation-id")!

    func withAPI(
        authentication: ECRPublicService.Authentication = .anonymous, clock: TestClock = TestClock(),
        _ body: @escaping @Sendable (RouterClient, Store, ECRPublicService) async throws -> Void
    ) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try Store(testConfiguration(dir, clock: clock))
        let service = ECRPublicService(service: UploadService(store: store, blobs: try BlobStore(directory: dir.path), logger: Logger(label: "test")), logger: Logger(label: "test"), authentication: authentication)
        do {
            try await body(RouterClient(router: service.router()), store, service)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    static func call(_ client: RouterClient, _ target: String, _ json: String, headers: HTTPFields = [:]) async throws -> (status: HTTPResponse.Status, body: [String: Any]) {
        let response = try await DispatchTests.call(client, target, json, headers: headers)
        return (response.status, response.body)
    }

    @Test func invocationIds_thatAreEmptyLongOrNotPrintable_areRefusedBeforeTheStore() async throws {
        try await withAPI { client, store, _ in
            for bad in ["", String(repeating: "x", count: 65), "tab\there", "ünïcode"] {
                let r = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#, headers: [Self.invocation: bad])
                #expect(r.status == .badRequest, "\(bad.debugDescription)")
                #expect(r.body["__type"] as? String == "InvalidParameterException", "\(bad.debugDescription)")
            }
            #expect(try store.read { try $0.lastPosition() } == 0, "nothing written")
            let ok = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#, headers: [Self.invocation: String(repeating: "x", count: 64)])
            #expect(ok.status == .ok, "64 printable characters are an id")
        }
    }

    @Test func aReusedInvocationId_withAnotherBody_isIdempotentParameterMismatch_andAnExactRetryIsAnsweredAsBefore() async throws {
        try await withAPI { client, store, _ in
            let id: HTTPFields = [Self.invocation: "7d1c2f0e-reused"]
            let first = try await Self.call(client, Self.create, #"{"repositoryName": "team/c1"}"#, headers: id)
            #expect(first.status == .ok)
            let retry = try await Self.call(client, Self.create, #"{"repositoryName": "team/c1"}"#, headers: id)
            #expect(retry.status == .ok, "the same call again is its retry")
            let other = try await Self.call(client, Self.create, #"{"repositoryName": "team/c2"}"#, headers: id)
            #expect(other.status == .badRequest)
            #expect(other.body["__type"] as? String == "IdempotentParameterMismatchException")
            let otherOperation = try await Self.call(client, "SpencerFrontendService.InitiateLayerUpload", #"{"repositoryName": "team/c1"}"#, headers: id)
            #expect(otherOperation.body["__type"] as? String == "IdempotentParameterMismatchException")
            #expect(try store.read { try $0.lastPosition() } == 1, "only the first call wrote")
        }
    }

    /// A BatchDeleteImage's ids and refusals are not events: its retry is answered with what the
    /// first attempt deleted, read back from the events, and its refusals decided again.
    @Test func anExactRetryOfBatchDeleteImage_isAnsweredWithTheFirstAttemptsIdsAndFailures() async throws {
        try await withAPI { client, store, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            var digests: [String] = []
            for (tag, note) in [("a", "1"), ("b", "2"), ("b2", "2")] {
                let index = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(note)\"}}"#
                let pushed = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(index)", "imageTag": "\#(tag)"}"#)
                let image = try #require(pushed.body["image"] as? [String: Any])
                digests.append(try #require((image["imageId"] as? [String: Any])?["imageDigest"] as? String))
            }
            let delete = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "a"}, {"imageTag": "missing"}, {"imageDigest": "\#(digests[1])"}, {"imageTag": "b2", "imageDigest": "\#(digests[0])"}]}"#
            let id: HTTPFields = [Self.invocation: "0f9e8d7c-batch-delete"]
            let first = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            let written = try store.read { try $0.lastPosition() }
            let ids = try #require(first.body["imageIds"] as? [[String: Any]])
            let failures = try #require(first.body["failures"] as? [[String: Any]])
            #expect(ids.map { $0["imageDigest"] as? String } == [digests[0], digests[1]])
            #expect(failures.map { $0["failureCode"] as? String } == ["ImageNotFound", "ImageNotFound"])
            let retry = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            #expect(retry.status == .ok)
            #expect(NSDictionary(dictionary: retry.body).isEqual(to: first.body), "\(retry.body) against \(first.body)")
            #expect(try store.read { try $0.lastPosition() } == written, "the retry wrote nothing")

            // A multi-arch clean-up naming an image before its list: the image is refused for the
            // list, which goes after it; at the retry no list names it, and it is refused as before.
            let child = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}"#
            let childSize = child.utf8.filter { $0 != UInt8(ascii: "\\") }.count  // the manifest itself: `child` without its JSON escapes
            let childDigest = try #require(((try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(child)", "imageTag": "c"}"#)).body["image"] as? [String: Any]).flatMap { ($0["imageId"] as? [String: Any])?["imageDigest"] as? String })
            let list = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"\#(childDigest)\",\"size\":\#(childSize)}]}"#
            let listDigest = try #require(((try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(list)", "imageTag": "all"}"#)).body["image"] as? [String: Any]).flatMap { ($0["imageId"] as? [String: Any])?["imageDigest"] as? String })
            let cleanUp = #"{"repositoryName": "team/app", "imageIds": [{"imageDigest": "\#(childDigest)"}, {"imageDigest": "\#(listDigest)"}]}"#
            let cleanUpId: HTTPFields = [Self.invocation: "0f9e8d7c-clean-up"]
            let cleaned = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", cleanUp, headers: cleanUpId)
            #expect((cleaned.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageReferencedByManifestList"])
            let cleanedAgain = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", cleanUp, headers: cleanUpId)
            #expect((cleanedAgain.body["imageIds"] as? [[String: Any]])?.map { $0["imageDigest"] as? String } == [listDigest])
            #expect((cleanedAgain.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageReferencedByManifestList"])

            // An image not there when the request was decided, pushed before its retry: still not found.
            func push(_ note: String, tag: String) async throws -> String {
                let index = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(note)\"}}"#
                let pushed = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(index)", "imageTag": "\#(tag)"}"#)
                return try #require((pushed.body["image"] as? [String: Any]).flatMap { ($0["imageId"] as? [String: Any])?["imageDigest"] as? String })
            }
            let late = try await push("4", tag: "late")
            _ = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", #"{"repositoryName": "team/app", "imageIds": [{"imageDigest": "\#(late)"}]}"#)
            _ = try await push("3", tag: "a3")
            let mixed = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "a3"}, {"imageDigest": "\#(late)"}]}"#
            let mixedId: HTTPFields = [Self.invocation: "0f9e8d7c-mixed"]
            let decided = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            _ = try await push("4", tag: "late")
            let decidedAgain = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            #expect((decided.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageNotFound"])
            #expect(NSDictionary(dictionary: decidedAgain.body).isEqual(to: decided.body), "\(decidedAgain.body) against \(decided.body)")
        }
    }

    /// An id the first attempt refused as not there, and named since (a tag pushed anew, an image
    /// deleted by that attempt pushed again), is answered at the retry as not found: an image
    /// deleted after its place does not make it one a manifest list named.
    @Test func aRetriedBatchDeleteImage_answersAnIdNamedSinceAsNotFound_notAsNamedByAList() async throws {
        let clock = TestClock()
        try await withAPI(clock: clock) { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            func push(_ note: String, tag: String) async throws {
                let index = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(note)\"}}"#
                let pushed = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(index)", "imageTag": "\#(tag)"}"#)
                #expect(pushed.status == .ok)
            }
            try await push("x", tag: "t0")
            try await push("y", tag: "t1")
            let delete = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "nope"}, {"imageTag": "t0"}, {"imageTag": "fresh"}, {"imageTag": "t1"}]}"#
            let id: HTTPFields = [Self.invocation: "3c2b1a09-named-since"]
            let first = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            #expect((first.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageNotFound", "ImageNotFound"])
            clock.advance(milliseconds: 1_000)
            try await push("x", tag: "nope")   // the image the first attempt deleted, again
            try await push("z", tag: "fresh")  // an image never deleted, under a tag not there then
            let again = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            #expect(NSDictionary(dictionary: again.body).isEqual(to: first.body), "\(again.body) against \(first.body)")
        }
    }

    /// A call that succeeded and changed nothing records CallAnswered when it sent an invocation id,
    /// so that its retry is answered as it was, not decided again against what came since (a tag
    /// pushed in between, which the retry would delete), and another call cannot take its id.
    @Test func aCallThatChangedNothing_isRememberedForItsRetry() async throws {
        try await withAPI { client, store, _ in
            let created = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            let arn = try #require((created.body["repository"] as? [String: Any])?["repositoryArn"] as? String)
            let delete = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "v1"}]}"#
            let deleteId: HTTPFields = [Self.invocation: "1e2d3c4b-delete-nothing"]
            let refused = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: deleteId)
            #expect((refused.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageNotFound"])
            let untag = #"{"resourceArn": "\#(arn)", "tagKeys": ["env"]}"#
            let untagId: HTTPFields = [Self.invocation: "1e2d3c4b-untag-nothing"]
            let untagged = try await Self.call(client, "SpencerFrontendService.UntagResource", untag, headers: untagId)
            #expect(untagged.status == .ok)
            let marks = try store.read { try $0.events(after: 1).map(\.event) }
            #expect(marks == [
                .callAnswered(CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "BatchDeleteImage", failureCodes: ["ImageNotFound"])),
                .callAnswered(CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "UntagResource", failureCodes: [])),
            ])

            let index = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}"#
            #expect(try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(index)", "imageTag": "v1"}"#).status == .ok)
            #expect(try await Self.call(client, "SpencerFrontendService.TagResource", #"{"resourceArn": "\#(arn)", "tags": [{"Key": "env", "Value": "prod"}]}"#).status == .ok)
            let written = try store.read { try $0.lastPosition() }

            let refusedAgain = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: deleteId)
            #expect(NSDictionary(dictionary: refusedAgain.body).isEqual(to: refused.body), "\(refusedAgain.body) against \(refused.body)")
            let untaggedAgain = try await Self.call(client, "SpencerFrontendService.UntagResource", untag, headers: untagId)
            #expect(untaggedAgain.status == .ok)
            #expect(try store.read { try $0.lastPosition() } == written, "the retries wrote nothing")
            let images = try await Self.call(client, "SpencerFrontendService.DescribeImages", #"{"repositoryName": "team/app"}"#)
            #expect((images.body["imageDetails"] as? [[String: Any]])?.first?["imageTags"] as? [String] == ["v1"], "the tag pushed since stays")
            let tags = try await Self.call(client, "SpencerFrontendService.ListTagsForResource", #"{"resourceArn": "\#(arn)"}"#)
            #expect((tags.body["tags"] as? [[String: Any]])?.map { $0["Key"] as? String } == ["env"], "the tag put since stays")

            // The id is the first call's: another call reusing it, of another operation too, is refused.
            for (target, body) in [("BatchDeleteImage", #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "v2"}]}"#), ("UntagResource", untag)] {
                let other = try await Self.call(client, "SpencerFrontendService." + target, body, headers: deleteId)
                #expect(other.body["__type"] as? String == "IdempotentParameterMismatchException", "\(target)")
            }
            // Without an id there is nothing to hold: a call that changes nothing writes nothing.
            _ = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "v9"}]}"#)
            #expect(try store.read { try $0.lastPosition() } == written)
        }
    }

    /// A BatchDeleteImage that deleted nothing answers its retry with the refusals it recorded,
    /// whatever changed since: an image a list named then (the list deleted since) is still refused
    /// for the list, and refusals that need no state stay what they were once the repository is gone
    /// (in a call that deleted something too).
    @Test func aBatchDeleteImageThatDeletedNothing_answersItsRecordedRefusalsAgain() async throws {
        try await withAPI { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            func push(_ manifest: String, tag: String) async throws -> String {
                let pushed = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(manifest)", "imageTag": "\#(tag)"}"#)
                return try #require((pushed.body["image"] as? [String: Any]).flatMap { ($0["imageId"] as? [String: Any])?["imageDigest"] as? String })
            }
            let child = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}"#
            let childSize = child.utf8.filter { $0 != UInt8(ascii: "\\") }.count
            let childDigest = try await push(child, tag: "child")
            let list = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"\#(childDigest)\",\"size\":\#(childSize)}]}"#
            let listDigest = try await push(list, tag: "all")
            let delete = #"{"repositoryName": "team/app", "imageIds": [{"imageDigest": "\#(childDigest)"}, {"imageDigest": "nope"}, {}, {"imageTag": "child", "imageDigest": "\#(listDigest)"}]}"#
            let id: HTTPFields = [Self.invocation: "2f3e4d5c-nothing-deleted"]
            let first = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            let codes = ["ImageReferencedByManifestList", "InvalidImageDigest", "MissingDigestAndTag", "ImageTagDoesNotMatchDigest"]
            #expect((first.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == codes)
            _ = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", #"{"repositoryName": "team/app", "imageIds": [{"imageDigest": "\#(listDigest)"}]}"#)
            let again = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", delete, headers: id)
            #expect((again.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == codes, "\(again.body)")
            #expect((again.body["imageIds"] as? [Any])?.isEmpty == true)
            func reasons(_ body: [String: Any]) -> [String] {
                (body["failures"] as? [[String: Any]] ?? []).map { $0["failureReason"] as? String ?? "" }
            }
            #expect(reasons(again.body)[1...2] == reasons(first.body)[1...2], "the refusals that need no state, word for word")

            // Deleting something too, then the repository deleted: its stateless refusals stay.
            let mixed = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "child"}, {"imageDigest": "nope"}, {}]}"#
            let mixedId: HTTPFields = [Self.invocation: "2f3e4d5c-mixed"]
            let deleted = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            #expect((deleted.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["InvalidImageDigest", "MissingDigestAndTag"])
            _ = try await Self.call(client, "SpencerFrontendService.DeleteRepository", #"{"repositoryName": "team/app", "force": true}"#)
            let deletedAgain = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            #expect(NSDictionary(dictionary: deletedAgain.body).isEqual(to: deleted.body), "\(deletedAgain.body) against \(deleted.body)")
        }
    }

    /// A BatchDeleteImage that deleted some ids and refused others answers its retry with the
    /// refusals it recorded, where reading them again by time misread two: a tag pushed in the
    /// first attempt's millisecond (not there then), and a tag refused for a list and moved since
    /// (there then).
    @Test func aBatchDeleteImageThatDeletedSome_answersItsRecordedRefusalsAgain() async throws {
        let clock = TestClock()
        try await withAPI(clock: clock) { client, store, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            func push(_ manifest: String, tag: String) async throws -> String {
                let pushed = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(manifest)", "imageTag": "\#(tag)"}"#)
                return try #require((pushed.body["image"] as? [String: Any]).flatMap { ($0["imageId"] as? [String: Any])?["imageDigest"] as? String })
            }
            func empty(_ note: String) -> String {
                #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(note)\"}}"#
            }
            _ = try await push(empty("t1"), tag: "t1")
            let mixed = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "fresh"}, {"imageTag": "t1"}]}"#
            let mixedId: HTTPFields = [Self.invocation: "6b5a4c3d-deleted-some"]
            let first = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            #expect((first.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageNotFound"])
            let marked = try store.read { try $0.events(after: try $0.lastPosition() - 1).map(\.event) }
            #expect(marked == [.callAnswered(CallAnswered(
                registryId: testRegistryId, repositoryName: "team/app", operation: "BatchDeleteImage", failureCodes: ["ImageNotFound", ""]))])
            _ = try await push(empty("fresh"), tag: "fresh")  // the clock has not moved
            let again = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", mixed, headers: mixedId)
            #expect(NSDictionary(dictionary: again.body).isEqual(to: first.body), "\(again.body) against \(first.body)")

            let child = empty("child")
            let childSize = child.utf8.filter { $0 != UInt8(ascii: "\\") }.count  // the manifest itself, without its JSON escapes
            let childDigest = try await push(child, tag: "c")
            let list = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"\#(childDigest)\",\"size\":\#(childSize)}]}"#
            let listDigest = try await push(list, tag: "all")
            let cleanUp = #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "c"}, {"imageDigest": "\#(listDigest)"}]}"#
            let cleanUpId: HTTPFields = [Self.invocation: "6b5a4c3d-clean-up"]
            let cleaned = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", cleanUp, headers: cleanUpId)
            #expect((cleaned.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageReferencedByManifestList"])
            clock.advance(milliseconds: 1_000)
            _ = try await push(empty("moved"), tag: "c")
            let cleanedAgain = try await Self.call(client, "SpencerFrontendService.BatchDeleteImage", cleanUp, headers: cleanUpId)
            #expect((cleanedAgain.body["imageIds"] as? [[String: Any]])?.map { $0["imageDigest"] as? String } == [listDigest])
            // The same code; its reason says what held when the request was decided, not which list.
            #expect((cleanedAgain.body["failures"] as? [[String: Any]])?.map { $0["failureCode"] as? String } == ["ImageReferencedByManifestList"],
                    "\(cleanedAgain.body)")
        }
    }

    /// A retried DeleteRepository answers the deleted repository's creation time from its event,
    /// not the state at the retry (where it is gone, or created again later).
    @Test func anExactRetryOfDeleteRepository_answersTheDeletedRepositorysCreationTime() async throws {
        let clock = TestClock()
        try await withAPI(clock: clock) { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            let id: HTTPFields = [Self.invocation: "5a4b3c2d-delete"]
            clock.advance(milliseconds: 60_000)
            let deleted = try await Self.call(client, "SpencerFrontendService.DeleteRepository", #"{"repositoryName": "team/app"}"#, headers: id)
            let createdAt = try #require((deleted.body["repository"] as? [String: Any])?["createdAt"] as? Double)
            #expect(createdAt == 1_796_083_200)
            let retried = try await Self.call(client, "SpencerFrontendService.DeleteRepository", #"{"repositoryName": "team/app"}"#, headers: id)
            #expect(NSDictionary(dictionary: retried.body).isEqual(to: deleted.body), "the repository is gone: \(retried.body)")
            clock.advance(milliseconds: 60_000)
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            let afterRecreate = try await Self.call(client, "SpencerFrontendService.DeleteRepository", #"{"repositoryName": "team/app"}"#, headers: id)
            #expect(NSDictionary(dictionary: afterRecreate.body).isEqual(to: deleted.body), "created again since: \(afterRecreate.body)")
        }
    }

    /// Catalog data is answered from what the call recorded, so that a retry after another call
    /// changed it is answered as the first attempt was.
    @Test func retriesOfCatalogWrites_answerWhatTheyRecorded_notTheStateSince() async throws {
        try await withAPI { client, _, _ in
            let createId: HTTPFields = [Self.invocation: "6b5a4c3d-create"]
            let create = #"{"repositoryName": "team/app", "catalogData": {"description": "first"}}"#
            let created = try await Self.call(client, Self.create, create, headers: createId)
            #expect((created.body["catalogData"] as? [String: Any])?["description"] as? String == "first")
            _ = try await Self.call(client, "SpencerFrontendService.PutRepositoryCatalogData", #"{"repositoryName": "team/app", "catalogData": {"description": "later"}}"#)
            let createdAgain = try await Self.call(client, Self.create, create, headers: createId)
            #expect(NSDictionary(dictionary: createdAgain.body).isEqual(to: created.body), "\(createdAgain.body)")
            let plain = try await Self.call(client, Self.create, #"{"repositoryName": "team/plain"}"#)
            #expect((plain.body["catalogData"] as? [String: Any])?.isEmpty == true)

            let nameId: HTTPFields = [Self.invocation: "6b5a4c3d-registry"]
            let named = try await Self.call(client, "SpencerFrontendService.PutRegistryCatalogData", #"{"displayName": "first"}"#, headers: nameId)
            _ = try await Self.call(client, "SpencerFrontendService.PutRegistryCatalogData", #"{"displayName": "later"}"#)
            let namedAgain = try await Self.call(client, "SpencerFrontendService.PutRegistryCatalogData", #"{"displayName": "first"}"#, headers: nameId)
            #expect((named.body["registryCatalogData"] as? [String: Any])?["displayName"] as? String == "first")
            #expect(NSDictionary(dictionary: namedAgain.body).isEqual(to: named.body), "\(namedAgain.body)")
            let unnamed = try await Self.call(client, "SpencerFrontendService.PutRegistryCatalogData", "{}")
            #expect((unnamed.body["registryCatalogData"] as? [String: Any])?["displayName"] as? String == "later", "nothing recorded: the state")
        }
    }

    /// DescribeImages holds the ids it is given to the model's bound on a tag, as every length.
    @Test func describeImages_refusesATagOutsideTheModelsLength() async throws {
        try await withAPI { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            for tag in ["", String(repeating: "t", count: 301)] {
                let r = try await Self.call(client, "SpencerFrontendService.DescribeImages", #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "ok"}, {"imageTag": "\#(tag)"}]}"#)
                #expect(r.body["__type"] as? String == "InvalidParameterException", "\(tag.count)")
                #expect((r.body["message"] as? String)?.contains("imageIds.2.member.imageTag") == true, "\(r.body)")
            }
            let missing = try await Self.call(client, "SpencerFrontendService.DescribeImages", #"{"repositoryName": "team/app", "imageIds": [{"imageTag": "\#(String(repeating: "t", count: 300))"}]}"#)
            #expect(missing.body["__type"] as? String == "ImageNotFoundException")
        }
    }

    /// DescribeImages reads its page a few records at a time: every image is listed once, in
    /// digest order, across pages whose size is no multiple of that, and at the default size.
    @Test func describeImages_pagesListEveryImageOnce_acrossTheRecordsReadAtOnce() async throws {
        try await withAPI { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            var pushed: [String] = []
            for n in 0..<(2 * ECRPublicService.imagesDecodedAtOnce + 5) {
                let index = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"annotations\":{\"n\":\"\#(n)\"}}"#
                let r = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(index)"}"#)
                pushed.append(try #require(((r.body["image"] as? [String: Any])?["imageId"] as? [String: Any])?["imageDigest"] as? String))
            }
            for pageSize in [7, ECRPublicService.imagesDecodedAtOnce, ECRPublicService.imagesDecodedAtOnce + 1, 1000] {
                var listed: [String] = [], token: String?
                repeat {
                    let tokenMember = token.map { #", "nextToken": "\#($0)""# } ?? ""
                    let r = try await Self.call(client, "SpencerFrontendService.DescribeImages", #"{"repositoryName": "team/app", "maxResults": \#(pageSize)\#(tokenMember)}"#)
                    let details = try #require(r.body["imageDetails"] as? [[String: Any]], "\(r.body)")
                    #expect(details.count <= pageSize)
                    listed += details.compactMap { $0["imageDigest"] as? String }
                    token = r.body["nextToken"] as? String
                } while token != nil
                #expect(listed == pushed.sorted(), "pages of \(pageSize)")
            }
            let all = try await Self.call(client, "SpencerFrontendService.DescribeImages", #"{"repositoryName": "team/app"}"#)
            #expect((all.body["imageDetails"] as? [[String: Any]])?.count == pushed.count && all.body["nextToken"] == nil)
        }
    }

    /// Every event of a call repeats its User-Agent: it is recorded cut to 512 bytes, with its
    /// control characters (a tab would shift the audit's columns) and bidirectional controls (an
    /// override would show the principal's column reversed, and the agent's text in its place) replaced.
    @Test func aLongUserAgentWithControlCharacters_isRecordedCutAndShown() async throws {
        try await withAPI { client, store, _ in
            let agent = "aws-cli/2\tx" + String(repeating: "é", count: 30_000)
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#, headers: [.userAgent: agent])
            let recorded = try #require(try store.read { try $0.events() }.last?.metadata.userAgent)
            #expect(recorded.hasPrefix("aws-cli/2\u{FFFD}xé"))
            #expect(recorded.utf8.count == 511, "13 bytes, then 249 two-byte characters: cut at a character")
            #expect(!recorded.unicodeScalars.contains { $0.properties.generalCategory == .control })
            for (sent, kept) in [("aws-cli/2.31 md/arch#x86_64", "aws-cli/2.31 md/arch#x86_64"), ("a\u{85}b\tc é", "a\u{FFFD}b\u{FFFD}c é"),
                                ("aws-cli/2 \u{202E}enil-dnammoc", "aws-cli/2 \u{FFFD}enil-dnammoc")] {
                _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/\#(sent.count)"}"#, headers: [.userAgent: sent])
                #expect(try store.read { try $0.events() }.last?.metadata.userAgent == kept)
            }
        }
    }

    @Test func metrics_labelsComeFromAClosedSet_whateverTargetsAreSent() async throws {
        try await withAPI { client, _, _ in
            for i in 0..<200 {
                _ = try await Self.call(client, "SpencerFrontendService.Invented\(i)", "{}")
                _ = try await Self.call(client, "Other\(i)", "{}")
            }
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            let series = text.split(separator: "\n").filter { $0.hasPrefix("upload_coordinator_requests_total{") }
            #expect(!text.contains("Invented") && !text.contains("Other"))
            // Each operation's `ok` (at 0 from the start), and the one refusal every sender gets.
            let counted = series.filter { !$0.hasSuffix(" 0") }
            #expect(series.count == ECRPublicService.operations.count + 1, "\(series)")
            #expect(counted.sorted() == [
                #"upload_coordinator_requests_total{operation="CreateRepository",outcome="ok"} 1"#,
                #"upload_coordinator_requests_total{operation="unknown",outcome="UnknownOperationException"} 400"#,
            ], "\(counted)")
        }
    }

    @Test func feedQueries_outOfRangeOrPastTheTail_areA400_andTheTailIsEmpty() async throws {
        try await withAPI { client, _, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            try await client.execute(uri: "/events?after=1&limit=5", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.body.readableBytes == 0)
            }
            // Past the tail: the log does not hold what such a consumer read (a restore, a failover
            // that lost commits), with or without its leaf, and the largest position does not overflow.
            for path in ["/events?after=2", "/events?after=18446744073709551615", "/events?after=18446744073709551614&limit=5",
                         "/events?after=-1", "/events?after=abc", "/events?limit=18446744073709551616", "/events/stream?after=-1"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .badRequest, "\(path)")
                    #expect(response.headers[DispatchTests.errorType] == "InvalidParameterException", "\(path)")
                }
            }
        }
    }

    /// Between two slices of a page or a stream, a failover may take the log back and other events
    /// fill it past the feed's position: the next slice finds another leaf where the feed's last
    /// event was, and the feed ends rather than go on over the other history.
    @Test func aFeedSlice_whoseLastSentEventTheLogNoLongerHolds_isTakenBack() async throws {
        try await withAPI { client, store, service in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/other"}"#)
            let first = try await service.feedSlice(after: 0, limit: 1)
            #expect(first.last == 1)
            let sent = try #require(first.leaf)
            #expect(sent == (try store.read { try $0.merkleNode(level: 0, index: 0) }))
            #expect(try await service.feedSlice(after: 1, sent: sent, limit: 5).last == 2)
            var other = sent
            other[0] ^= 1
            await #expect(throws: ECRPublicService.FeedTakenBack.self) { try await service.feedSlice(after: 1, sent: other, limit: 5) }
            // At the tail too, where the slice holds no event.
            await #expect(throws: ECRPublicService.FeedTakenBack.self) { try await service.feedSlice(after: 2, sent: other, limit: 5) }
            #expect(try await service.feedSlice(after: 2, limit: 5).last == 2)
            // A consumer resumed at the tail: its leaf stands as the last sent, for the next slice to check.
            let tail = try #require(try await service.feedSlice(after: 1, sent: sent, limit: 5).leaf)
            let resumed = try await service.openingSlice(after: 2, leafHash: Hex.encode(tail), limit: 5)
            #expect(resumed.slice.last == 2 && resumed.slice.leaf == tail && resumed.tail == 2)
            let page = try await service.openingSlice(after: 0, leafHash: nil, limit: 1)
            #expect(page.slice.last == 1 && page.tail == 2, "a page short of the log's end says where it ends")
        }
    }

    @Test func tags_outsideWhatARegistryClientCanName_areRefused() async throws {
        try await withAPI { client, store, _ in
            _ = try await Self.call(client, Self.create, #"{"repositoryName": "team/app"}"#)
            let manifest = #"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}"#
            for tag in ["a\\u0000b", "line\\nbreak", "a/b", "../..", "\\u202eevil", String(repeating: "🙂", count: 300), ".hidden", "-dash", String(repeating: "t", count: 301)] {
                let r = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(manifest)", "imageTag": "\#(tag)"}"#)
                #expect(r.body["__type"] as? String == "InvalidParameterException", "\(tag.prefix(20))")
            }
            #expect(try store.read { try $0.lastPosition() } == 1, "nothing written")
            let ok = try await Self.call(client, Self.putImage, #"{"repositoryName": "team/app", "imageManifest": "\#(manifest)", "imageTag": "v1.2_rc-3"}"#)
            #expect(ok.status == .ok)
        }
    }

    @Test func signedRequests_withAnUnknownTarget_areAuthenticatedFirst() async throws {
        let verifier = SigV4Verifier(keys: [AccessKey(accessKeyId: "AKID", secretAccessKey: "secret")], clock: TestClock(), servedRegistryId: testRegistryId)
        try await withAPI(authentication: .sigV4(verifier)) { client, _, _ in
            let r = try await DispatchTests.call(client, "SpencerFrontendService.Invented", "{}")
            #expect(r.headers[DispatchTests.errorType] == "MissingAuthenticationTokenException", "no unsigned caller learns which targets exist")
        }
    }
}
