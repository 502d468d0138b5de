import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// A call that changes nothing records CallAnswered when it sent an invocation id, naming its
/// operation (a retry is matched by it, so those names are permanent) and, for BatchDeleteImage,
/// its refusals' codes; without an id it records nothing.
extension DecisionRulesTests {
    @Test func eachCallThatChangesNothing_recordsCallAnswered_onlyWithAnInvocationId() throws {
        var w = try Harness()
        let upload = try w.startWithPart()
        let unchanged: [(Command, CallAnswered)] = try [
            (.part(upload, 0, 99), CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "UploadLayerPart", failureCodes: [])),
            (.tagResource(try TagResource(resourceArn: arn, tags: [])),
             CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "TagResource", failureCodes: [])),
            (.untagResource(try UntagResource(resourceArn: arn, tagKeys: ["absent"])),
             CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "UntagResource", failureCodes: [])),
            (.putRegistryCatalogData(try PutRegistryCatalogData(displayName: nil)),
             CallAnswered(registryId: testRegistryId, repositoryName: nil, operation: "PutRegistryCatalogData", failureCodes: [])),
            (.delete([ImageIdentifier(imageTag: "absent"), ImageIdentifier(imageDigest: "nope"), ImageIdentifier()]),
             CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "BatchDeleteImage",
                          failureCodes: ["ImageNotFound", "InvalidImageDigest", "MissingDigestAndTag"])),
        ]
        for (command, expected) in unchanged {
            #expect(try w.decide(command).events.isEmpty, "\(command.operationName) without an invocation id")
            let held = try Decider.decide(command, state: w.tables, settings: w.settings, context: DecisionContext(now: w.now, sentInvocationId: true))
            #expect(held.events == [.callAnswered(expected)], "\(command.operationName)")
        }
        // A call that changes something records only its change.
        let created = try Decider.decide(
            .createRepository(try CreateRepository(repositoryName: "team/new")), state: w.tables, settings: w.settings,
            context: DecisionContext(now: w.now, sentInvocationId: true))
        #expect(created.events.map(\.type) == [.repositoryCreated])
    }

    /// A later binary's refusal code decodes here, and a retry reads it as ImageNotFound; the
    /// refusals that need no state are answered word for word.
    @Test func aFailureCodeThisBinaryDoesNotKnow_decodes_andIsAnsweredAsNotFound() throws {
        let w = try Harness()
        let later = CallAnswered(registryId: testRegistryId, repositoryName: "team/app", operation: "BatchDeleteImage", failureCodes: ["KmsError", "InvalidImageDigest"])
        var writer = FieldWriter()
        later.encode(into: &writer)
        let decoded = try EventType.callAnswered.payloadType.init(decoding: FieldReader(writer.bytes), version: 1).event
        #expect(decoded == .callAnswered(later))
        let command = try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageDigest: "nope")])
        let answer = try Decider.answeredAgain(
            .batchDeleteImage(command), recorded: [decoded], decidedAt: w.now, state: w.tables, settings: w.settings)
        #expect(answer.imageFailures.map(\.failureCode) == [.imageNotFound, .invalidImageDigest])
        #expect(answer.imageFailures.last?.failureReason == "Invalid image digest 'nope'")
        #expect(answer.imageIds.isEmpty)
    }

    /// A BatchDeleteImage that deleted some ids and refused others, with an invocation id, records
    /// CallAnswered with each id's outcome after its deletions; its retry answers those codes
    /// whatever changed since. A record without them (binaries up to 7ca8032 kept none beside
    /// deletions) has its refusals decided again from the state and the first attempt's time.
    @Test func aBatchDeleteImageThatRefusedSomeIds_recordsTheirCodesAfterItsDeletions() throws {
        var w = try Harness()
        let (x, y) = try w.images()
        let list = Fixture.index([y])
        try w.run(.put(list, tag: "all"))
        let listDigest = Fixture.imageDigest(list)
        // y is refused for the list, deleted after it; v1 is untagged (x keeps v2); `late` is not there.
        let command = try Command.delete([
            ImageIdentifier(imageDigest: y), ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "late"), ImageIdentifier(imageDigest: listDigest),
        ])
        let held = try Decider.decide(command, state: w.tables, settings: w.settings, context: DecisionContext(now: w.now, sentInvocationId: true))
        let deletions: [Event] = [
            .imageUntagged(ImageUntagged(registryId: testRegistryId, repositoryName: "team/app", imageDigest: x, imageTag: "v1")),
            .imageDeleted(ImageDeleted(registryId: testRegistryId, repositoryName: "team/app", imageDigest: listDigest)),
        ]
        #expect(held.events == deletions + [.callAnswered(CallAnswered(
            registryId: testRegistryId, repositoryName: "team/app", operation: "BatchDeleteImage",
            failureCodes: ["ImageReferencedByManifestList", "", "ImageNotFound", ""]))])
        #expect(try w.decide(command).events == deletions, "without an invocation id, only the deletions")
        let decidedAt = w.now
        try w.apply(held.events)
        let late = try Command.put(Fixture.image(config: Fixture.digest("c"), layers: [Fixture.digest("b")]), tag: "late")
        var later = w  // the same log, where `late` is pushed a millisecond after the first attempt
        later.now = Timestamp(millisecondsSinceEpoch: decidedAt.millisecondsSinceEpoch + 1)
        try later.run(late)
        try w.run(late)  // in the first attempt's millisecond

        let again = try Decider.answeredAgain(command, recorded: held.events, decidedAt: decidedAt, state: w.tables, settings: w.settings)
        #expect(again.imageIds == [ImageIdentifier(imageDigest: x, imageTag: "v1"), ImageIdentifier(imageDigest: listDigest)])
        #expect(again.imageFailures.map(\.imageId) == [ImageIdentifier(imageDigest: y), ImageIdentifier(imageTag: "late")])
        #expect(again.imageFailures.map(\.failureCode) == [.imageReferencedByManifestList, .imageNotFound],
                "`late`, pushed in the first attempt's millisecond, read by time would be one a deleted list named")

        // As an earlier binary recorded it, with `late` pushed a millisecond after.
        let decidedAgain = try Decider.answeredAgain(command, recorded: deletions, decidedAt: decidedAt, state: later.tables, settings: later.settings)
        #expect(decidedAgain.imageIds == again.imageIds)
        #expect(decidedAgain.imageFailures.map(\.failureCode) == [.imageReferencedByManifestList, .imageNotFound])
    }

    /// Every request of up to three ids, over images with one tag and with two, a manifest list,
    /// some by tag and some by digest, malformed ones, with and without keeping untagged images:
    /// its retry, read back from the events (and the outcomes recorded where they do not tell
    /// them: a refusal, or an untag followed by its image's deletion, which reads two ways),
    /// answers the same ids and refusals as the first attempt, after the repository is deleted
    /// too (where nothing left to decide by could give them again).
    @Test func everyRetriedBatchDeleteImage_answersItsFirstAttemptsIdsAndRefusals() throws {
        var w = try Harness()
        let (x, y) = try w.images()  // x tagged v1 and v2
        try w.run(.put(Fixture.image(config: Fixture.digest("c"), layers: [Fixture.digest("a"), Fixture.digest("b")]), tag: "solo"))  // y's only tag
        let unlisted = w  // before a list names x
        let list = Fixture.index([x])
        try w.run(.put(list, tag: "all"))
        let pool = [
            ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "v2"), ImageIdentifier(imageTag: "solo"),
            ImageIdentifier(imageDigest: x), ImageIdentifier(imageDigest: "sha256:" + y.dropFirst(7).uppercased()),
            ImageIdentifier(imageDigest: x, imageTag: "solo"), ImageIdentifier(imageTag: "absent"),
            ImageIdentifier(imageDigest: Fixture.imageDigest(list)), ImageIdentifier(imageDigest: "nope"),
        ]
        var requests: [[ImageIdentifier]] = pool.map { [$0] }
        for _ in 2...3 { requests += requests.filter { $0.count == requests.last!.count }.flatMap { r in pool.map { r + [$0] } } }
        // Longer ones a review found misread by counting refusals alone.
        requests += [[pool[2], pool[1], pool[3], pool[4], pool[1]], [pool[2], pool[0], pool[4], pool[3]]]
        var answered = 0, recordedOutcomes = 0
        for ids in requests {
            for keepsUntagged in [false, true] {
                var command = try BatchDeleteImage(repositoryName: "team/app", imageIds: ids)
                command.keepsUntaggedImages = keepsUntagged
                let first = try Decider.decide(.batchDeleteImage(command), state: w.tables, settings: w.settings, context: DecisionContext(now: w.now, sentInvocationId: true))
                #expect(first.refusalByRequestedId.count == ids.count)
                #expect(first.refusalByRequestedId.compactMap { $0 } == first.imageFailures.map(\.failureCode), "\(ids)")
                if first.events.last?.type == .callAnswered { recordedOutcomes += 1 }
                var after = w
                try after.apply(first.events)
                try after.run(.deleteRepository(try DeleteRepository(repositoryName: "team/app", force: true)))
                let again = try Decider.answeredAgain(.batchDeleteImage(command), recorded: first.events, decidedAt: w.now, state: after.tables, settings: after.settings)
                #expect(again.imageIds == first.imageIds, "\(ids), keeping untagged images: \(keepsUntagged)")
                #expect(again.imageFailures.map(\.imageId) == first.imageFailures.map(\.imageId), "\(ids)")
                #expect(again.imageFailures.map(\.failureCode) == first.imageFailures.map(\.failureCode), "\(ids)")
                answered += 1
            }
        }
        #expect(answered == 2 * (9 + 81 + 729 + 2))
        #expect(recordedOutcomes > 0 && recordedOutcomes < answered, "only where the events do not tell the answer")

        // Where they do, the log keeps only the deletions; where an untag reads two ways, the outcomes too.
        func recorded(_ ids: [ImageIdentifier]) throws -> [EventType] {
            try Decider.decide(.delete(ids), state: unlisted.tables, settings: w.settings, context: DecisionContext(now: w.now, sentInvocationId: true)).events.map(\.type)
        }
        #expect(try recorded([pool[0]]) == [.imageUntagged])
        #expect(try recorded([pool[2]]) == [.imageUntagged, .imageDeleted])
        #expect(try recorded([pool[0], pool[3]]) == [.imageUntagged, .imageDeleted, .callAnswered], "x keeps v2: the digest deleted it")
        #expect(try recorded([pool[2], pool[4]]) == [.imageUntagged, .imageDeleted, .callAnswered], "the digest refused")
    }
}
