import Testing
@testable import UploadCore
@testable import UploadStore

/// PutImage checks a manifest's structure against its media type, and stores only the manifest
/// types this registry serves.
struct ManifestValidationTests {
    static let digest = "sha256:" + String(repeating: "a", count: 64)
    static let other = "sha256:" + String(repeating: "b", count: 64)
    static let descriptor = #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(digest)","size":5}"#
    static let config = #"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(digest)","size":2}"#
    static let image = "application/vnd.oci.image.manifest.v1+json"
    static let index = "application/vnd.oci.image.index.v1+json"

    static func put(_ manifest: String, mediaType: String? = nil) throws(CommandError) -> PutImage {
        try PutImage(repositoryName: "team/app", imageManifest: manifest, imageManifestMediaType: mediaType)
    }

    /// What the decider answers the first push of `manifest` to a repository (one that does not
    /// hold it): a push rule's refusal, which the command carries (``PutImage/refusalUnlessStored``).
    static func refusalOfAFirstPush(_ manifest: String, _ why: String = "") throws -> CommandError {
        let put = try Self.put(manifest)
        #expect(put.refusalUnlessStored != nil, "\(why)")
        return try Harness().refusal(.putImage(put))
    }

    @Test(arguments: [
        #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[\#(descriptor)]}"#,
        #"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":\#(config),"layers":[]}"#,
        #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[\#(descriptor)]}"#,
        #"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#,
    ])
    func wellFormedManifests_ofTheServedTypes_areAccepted(manifest: String) throws {
        _ = try Self.put(manifest)
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil, checkingPush: true).pushRefusal == nil)
    }

    /// An empty artifactType is taken as none (clients that write one mean that); a media type is one.
    @Test(arguments: [#""artifactType":"","#, #""artifactType":"application/vnd.example.sbom.v1+json","#])
    func anArtifactTypeEmptyOrAMediaType_isTaken(member: String) throws {
        let manifest = #"{"schemaVersion":2,"mediaType":"\#(Self.image)",\#(member)"config":\#(Self.config),"layers":[{"mediaType":"application/x","artifactType":"","digest":"\#(Self.digest)","size":1}]}"#
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil, checkingPush: true).pushRefusal == nil)
    }

    /// Values are counted before any parse: a manifest of many small ones (its annotations, an
    /// array under an unknown member) costs each parse its count, on shared threads.
    @Test func aManifestOfMoreValuesThanTheBound_isRefusedAndOneWithinItIsTaken() throws {
        func manifest(values: Int) -> String {
            let filler = Array(repeating: "0", count: values).joined(separator: ",")
            return #"{"schemaVersion":2,"mediaType":"\#(Self.image)","config":\#(Self.config),"layers":[],"x":[\#(filler)]}"#
        }
        #expect(throws: CommandError.self) { try Self.put(manifest(values: PutImage.maximumManifestValues)) }
        _ = try Self.put(manifest(values: PutImage.maximumManifestValues - 100))
    }

    @Test(arguments: [
        ("not an object", "[1]"),
        ("no schemaVersion", #"{"mediaType":"\#(image)","config":\#(config),"layers":[]}"#),
        ("schemaVersion 1", #"{"schemaVersion":1,"mediaType":"\#(image)","config":\#(config),"layers":[]}"#),
        ("layers not a list", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":{"a":\#(descriptor)}}"#),
        ("layers missing", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config)}"#),
        ("config missing", #"{"schemaVersion":2,"mediaType":"\#(image)","layers":[]}"#),
        ("a layer without size", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[{"mediaType":"application/x","digest":"\#(digest)"}]}"#),
        ("a negative size", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[{"mediaType":"application/x","digest":"\#(digest)","size":-1}]}"#),
        ("a layer that is a string", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":["\#(digest)"]}"#),
        ("manifests not a list", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":"\#(digest)"}"#),
        ("an index with layers", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[],"layers":[]}"#),
        ("an image with manifests", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],"manifests":[]}"#),
        ("text/html", #"{"schemaVersion":2,"mediaType":"text/html","manifests":[]}"#),
        ("schema 1", #"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json","fsLayers":[{"blobSum":"\#(digest)"}]}"#),
        ("schemaVersion 2.0", #"{"schemaVersion":2.0,"mediaType":"\#(index)","manifests":[]}"#),
        ("a size that is a boolean", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[{"mediaType":"application/x","digest":"\#(digest)","size":true}]}"#),
        ("a mediaType that is a number", #"{"schemaVersion":2,"mediaType":7,"manifests":[]}"#),
    ])
    func manifestsOfTheWrongShapeOrType_areInvalidParameter(why: String, manifest: String) {
        let error = #expect(throws: CommandError.self, "\(why)") { try Self.put(manifest) }
        #expect(error?.code == .invalidParameter, "\(why)")
    }

    /// Text that is not JSON is told apart from JSON of another shape: a lone surrogate's escape was
    /// refused as "not a JSON object", pointing the pusher at the wrong thing.
    @Test func aManifestThatIsNotJSON_saysWhereAndWhy() {
        let error = #expect(throws: CommandError.self) { try Manifest(parsing: Array(#"{"schemaVersion":2,"a":"\ud800"}"#.utf8), given: nil) }
        #expect(error?.message.contains("is not JSON: a string must be UTF-8, with no lone surrogate at byte") == true, "\(String(describing: error))")
        let shape = #expect(throws: CommandError.self) { try Manifest(parsing: Array("[1]".utf8), given: nil) }
        #expect(shape?.message.contains("is not a JSON object") == true)
    }

    @Test(arguments: [
        ("a string", #""\#(digest)""#),
        ("no digest", #"{"mediaType":"\#(image)","size":1}"#),
        ("a digest that is not one", #"{"mediaType":"\#(image)","digest":"../../etc","size":1}"#),
        ("no size", #"{"mediaType":"\#(image)","digest":"\#(digest)"}"#),
        // A digest the referrers API could not list it under: clients ask for lowercase sha256 or sha512.
        ("an uppercase digest", #"{"mediaType":"\#(image)","digest":"sha256:\#(String(repeating: "A", count: 64))","size":1}"#),
        ("another algorithm", #"{"mediaType":"\#(image)","digest":"sha384:\#(String(repeating: "ab", count: 48))","size":1}"#),
    ])
    func aSubjectThatIsNotADescriptor_isInvalidParameter_butTheProjectorStillReadsIt(why: String, subject: String) throws {
        let manifest = #"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[],"subject":\#(subject)}"#
        #expect(try Self.refusalOfAFirstPush(manifest, why).code == .invalidParameter, "\(why)")
        // A manifest stored before the check is read again as it was.
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil, checkingPush: true).pushRefusal != nil)
        _ = try Self.put(#"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[],"subject":\#(Self.descriptor)}"#)
    }

    /// Go's decoders (docker's, containerd's) match member names without regard to case, the
    /// later one winning: `Layers` after `layers` would show them a layer never checked here.
    @Test(arguments: [
        ("Layers", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],"Layers":[\#(descriptor)]}"#),
        ("LAYERS", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],"LAYERS":[\#(descriptor)]}"#),
        ("long s", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],"layer\#u{17F}":[\#(descriptor)]}"#),
        ("Digest", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[{"mediaType":"application/x","digest":"\#(digest)","size":1,"Digest":"\#(other)"}]}"#),
        ("Config", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"Config":\#(config),"layers":[]}"#),
    ])
    func aMemberSpelledAsAKnownOneInAnotherCase_isRefused_butTheProjectorStillReadsIt(why: String, manifest: String) throws {
        #expect(try Self.refusalOfAFirstPush(manifest, why).code == .invalidParameter, "\(why)")
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil, checkingPush: true).pushRefusal != nil)
    }

    /// Foundation's parser takes a trailing comma, which every registry client's decoder refuses
    /// (the image could be pushed, never pulled); a name given twice is read as the first by some
    /// clients and the last by others; a digest with capitals names no blob that can be fetched.
    @Test(arguments: [
        ("a trailing comma", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],}"#),
        ("a trailing comma in a list", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[\#(descriptor),]}"#),
        ("layers given twice", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[\#(descriptor)],"layers":[]}"#),
        ("a digest given twice", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[{"mediaType":"application/x","digest":"\#(other)","size":1,"digest":"\#(digest)"}]}"#),
        ("a layer's digest in capitals", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[{"mediaType":"application/x","digest":"sha256:\#(String(repeating: "A", count: 64))","size":1}]}"#),
        ("a config's algorithm in capitals", #"{"schemaVersion":2,"mediaType":"\#(image)","config":{"mediaType":"application/x","digest":"SHA256:\#(String(repeating: "a", count: 64))","size":1},"layers":[]}"#),
        // RFC 8259 allows it; Go's decoders refuse the document (and Foundation did, so none is stored).
        ("a number beyond a double", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[],"annotations":{"n":1e400}}"#),
        // Media types are names (RFC 6838): clients print them, and DescribeImages answers one.
        ("a config's media type with a terminal's escape", #"{"schemaVersion":2,"mediaType":"\#(image)","config":{"mediaType":"application/x\u001b]0;t\u0007","digest":"\#(digest)","size":1},"layers":[]}"#),
        ("a layer's media type with no subtype", #"{"schemaVersion":2,"mediaType":"\#(image)","config":\#(config),"layers":[{"mediaType":"text","digest":"\#(digest)","size":1}]}"#),
        ("a listed manifest's media type with a space", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[{"mediaType":"application/x y","digest":"\#(digest)","size":1}]}"#),
        ("an artifactType with a carriage return", #"{"schemaVersion":2,"mediaType":"\#(image)","artifactType":"application/x\rforged","config":\#(config),"layers":[]}"#),
        ("an artifactType that is a number", #"{"schemaVersion":2,"mediaType":"\#(image)","artifactType":1,"config":\#(config),"layers":[]}"#),
        ("a descriptor's artifactType with a bidirectional override", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[{"mediaType":"application/x","artifactType":"application/\u202ex","digest":"\#(digest)","size":1}]}"#),
        ("a listed manifest's digest in capitals", #"{"schemaVersion":2,"mediaType":"\#(index)","manifests":[{"mediaType":"application/x","digest":"sha256:\#(String(repeating: "B", count: 64))","size":1}]}"#),
    ])
    func aManifestClientsWouldReadOtherwise_isRefused_butTheProjectorStillReadsIt(why: String, manifest: String) throws {
        #expect(try Self.refusalOfAFirstPush(manifest, why).code == .invalidParameter, "\(why)")
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil, checkingPush: true).pushRefusal != nil, "\(why)")
        #expect(try Manifest(parsing: Array(manifest.utf8), given: nil).pushRefusal == nil, "replay spends no time judging it")
    }

    @Test func aByteOrderMark_isRefused_butTheProjectorStillReadsIt() throws {
        let manifest = #"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[]}"#
        #expect(try Self.put(manifest).refusalUnlessStored == nil)
        #expect(try Self.refusalOfAFirstPush("\u{FEFF}" + manifest).code == .invalidParameter)
        #expect(try Manifest(parsing: Array(("\u{FEFF}" + manifest).utf8), given: nil, checkingPush: true).pushRefusal != nil)
    }

    @Test func anEmptyRepository_refusesWhatTheDeciderRefusesThere() throws {
        let artifact = #"{"schemaVersion":2,"mediaType":"\#(Self.image)","config":\#(Self.config),"layers":[\#(Self.descriptor)]}"#
        #expect(try Self.put(artifact).refusalInAnEmptyRepository?.code == .layersNotFound)
        #expect(try Self.put(#"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[\#(Self.descriptor)]}"#)
            .refusalInAnEmptyRepository?.code == .referencedImagesNotFound)
        let empty = #"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[]}"#
        #expect(try Self.put(empty).refusalInAnEmptyRepository == nil)
        let claimed = try PutImage(repositoryName: "team/app", imageManifest: empty, imageDigest: Self.digest)
        #expect(claimed.refusalInAnEmptyRepository?.code == .imageDigestDoesNotMatch)
        #expect(try Self.put(#"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[],}"#).refusalInAnEmptyRepository?.code == .invalidParameter)
    }

    @Test func theGivenMediaType_mustBeServed_andAgreeWithTheManifests() throws {
        let bare = #"{"schemaVersion":2,"manifests":[]}"#
        #expect(try Self.put(bare, mediaType: Self.index).imageManifestMediaType == Self.index)
        #expect(throws: CommandError.self) { try Self.put(bare, mediaType: "text/html") }
        #expect(throws: CommandError.self) { try Self.put(bare) }
        #expect(throws: CommandError.self) { try Self.put(#"{"schemaVersion":2,"mediaType":"\#(Self.index)","manifests":[]}"#, mediaType: Self.image) }
    }

    @Test(arguments: [("latest", true), ("v1.2_rc-3", true), ("_x", true), (String(repeating: "t", count: 300), true),
                      (String(repeating: "t", count: 301), false), ("", false), (".x", false), ("-x", false), ("a/b", false),
                      ("a\u{0}", false), ("a\nb", false), ("\u{202E}x", false), ("ä", false), ("a b", false), ("a:b", false)])
    func imageTags_followTheRegistryTagPattern(tag: String, valid: Bool) {
        #expect(Validation.isImageTag(tag) == valid, "\(tag.debugDescription)")
    }
}
