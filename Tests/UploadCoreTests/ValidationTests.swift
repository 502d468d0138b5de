import Testing
@testable import UploadCore
@testable import UploadStore

/// The seed's constraints for InitiateLayerUpload, one row per case.
struct ValidationTests {
    static let name205 = String(repeating: "a", count: 205)

    @Test(arguments: [
        // lengths
        ("a", false), ("ab", true), (name205, true), (name205 + "a", false), (String(repeating: "a", count: 256), false),
        // pattern: separators, case, nesting
        ("team/app", true), ("a/b/c/d", true), ("a.b_c-d", true), ("a1/b2.c3", true), ("0x", true),
        ("Team/app", false), ("team/App", false), ("-app", false), ("app-", false), (".app", false), ("app.", false),
        ("_app", false), ("/app", false), ("app/", false), ("team//app", false), ("a..b", false), ("a.-b", false),
        ("a/-b", false), ("a b", false), ("tëam", false), ("ab\n", false), ("ab\u{0}", false), ("a:b", false),
    ])
    func repositoryName_whenValidated_acceptsOnlyTheSeedPattern(name: String, valid: Bool) {
        let result = Result { () throws(CommandError) in try InitiateLayerUpload(repositoryName: name) }
        switch result {
        case .success(let command):
            #expect(valid, "accepted \(name.debugDescription)")
            #expect(command.repositoryName == name)
        case .failure(let error):
            #expect(!valid, "refused \(name.debugDescription): \(error)")
            #expect(error.code == .invalidParameter)
            #expect(error.message.contains("repositoryName"))
        }
    }

    /// The OCI image spec's descriptor schema: `[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}`, twice.
    @Test(arguments: [
        ("application/vnd.oci.image.manifest.v1+json", true), ("application/vnd.oci.empty.v1+json", true),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", true), ("application/vnd.in-toto+json", true),
        ("a/b", true), ("A0!#$&^_.+-/z9!#$&^_.+-", true),
        (String(repeating: "a", count: 127) + "/" + String(repeating: "b", count: 127), true),
        (String(repeating: "a", count: 128) + "/b", false), ("a/" + String(repeating: "b", count: 128), false),
        ("", false), ("a", false), ("a/", false), ("/b", false), ("a/b/c", false), ("-a/b", false), ("a/.b", false),
        ("text/plain; charset=utf-8", false), ("a/b\r", false), ("a\u{1B}/b", false), ("a/b c", false), ("é/b", false), ("a/\u{202E}b", false),
    ])
    func mediaType_isTheImageSpecsPattern(value: String, valid: Bool) {
        #expect(Validation.isMediaType(value) == valid, "\(value.debugDescription)")
    }

    @Test func repositoryName_whenMissing_isInvalidParameter() {
        #expect(throws: CommandError(.invalidParameter, "The parameter 'repositoryName' is required but was not given.")) {
            try InitiateLayerUpload(repositoryName: nil)
        }
    }

    @Test func repositoryName_whenTooShort_saysTheRule() throws {
        let error = try #require(throws: CommandError.self) { try InitiateLayerUpload(repositoryName: "a") }
        #expect(error.message == "1 validation error detected: Value 'a' at 'repositoryName' failed to satisfy constraint: Member must have length greater than or equal to 2")
    }

    @Test(arguments: [(0, false), (1, false), (2, true), (12, true), (50, true), (51, false), (256, false)])
    func registryId_whenValidated_hasLength2To50(length: Int, valid: Bool) {
        let id = String(repeating: "7", count: length)
        let result = Result { () throws(CommandError) in try InitiateLayerUpload(registryId: id, repositoryName: "team/app") }
        switch result {
        case .success(let command): #expect(valid && command.registryId == id)
        case .failure(let error): #expect(!valid && error.code == .invalidParameter && error.message.contains("registryId"))
        }
    }

    @Test(arguments: [
        ("ab", true), ("r000000000000", true), ("my-team.registry_1", true), ("a1-b2", true),
        ("a", false), ("1abc", false), ("Abc", false), ("a-b", false), ("ab-", false), ("ab--cd", false), ("ab_.cd", false),
        ("ab cd", false), (String(repeating: "a", count: 50), true), (String(repeating: "a", count: 51), false),
    ])
    func registryAlias_matchesTheModelsPattern(alias: String, valid: Bool) {
        #expect(Validation.isRegistryAlias(alias) == valid)
    }

    @Test func invalidValue_withControlCharacters_isEscapedInTheMessage() throws {
        let error = try #require(throws: CommandError.self) { try CreateRepository(repositoryName: "bad\u{1b}name") }
        #expect(error.message.contains("bad\\u{1B}name"))
        #expect(!error.message.contains("\u{1b}"))
    }

    /// A tag outside the model's 1 to 300 characters refuses the whole BatchDeleteImage (it was a
    /// failure in a 200 answer); any tag within them is looked up.
    @Test(arguments: [(0, false), (1, true), (300, true), (301, false)])
    func batchDeleteImage_refusesATagOutsideTheModelsBounds(length: Int, accepted: Bool) throws {
        let ids = [ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: String(repeating: "t", count: length))]
        let result = Result { () throws(CommandError) in try BatchDeleteImage(repositoryName: "team/app", imageIds: ids) }
        #expect(((try? result.get()) != nil) == accepted)
        if case .failure(let error) = result {
            #expect(error.code == .invalidParameter && error.message.contains("'imageIds.2.member.imageTag'"), "\(error)")
        }
    }

    @Test func registryId_isValidatedBeforeRepositoryName() throws {
        let error = try #require(throws: CommandError.self) { try DeleteRepository(registryId: "", repositoryName: "A") }
        #expect(error.message.contains("registryId"))
    }
}
