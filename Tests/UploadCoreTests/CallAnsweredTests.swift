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
}
