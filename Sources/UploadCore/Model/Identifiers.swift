/// A repository, named by its registry's canonical 12-digit id and its repository name.
public struct RepositoryRef: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let registryId: String
    public let repositoryName: String

    public init(registryId: String, repositoryName: String) {
        self.registryId = registryId
        self.repositoryName = repositoryName
    }

    /// The repository's ARN, as ECR Public spells it (an empty region); ``RepositoryARN`` reads it back.
    public var arn: String { "arn:aws:ecr-public::\(registryId):repository/\(repositoryName)" }

    /// A registry's ARN.
    public static func registryARN(_ registryId: String) -> String { "arn:aws:ecr-public::\(registryId):registry/\(registryId)" }

    public static func < (a: RepositoryRef, b: RepositoryRef) -> Bool {
        (a.registryId, a.repositoryName) < (b.registryId, b.repositoryName)
    }

    /// `registryId/repositoryName`: unambiguous, since a registry id is 12 digits.
    public var description: String { "\(registryId)/\(repositoryName)" }
}

/// Who asked for a command, recorded with every event it produces.
///
/// `requestId` and `source` are always present; the other members are filled in by the front end
/// that knows them (the HTTP server knows the user agent and address, SigV4 the principal).
@FieldRecord
public struct RequestMetadata: Hashable, Sendable {
    /// Unique per request; echoed to the caller (`x-amzn-RequestId`).
    public var requestId: String
    /// Which front end took the command: `cli`, `http`, `sweeper`, …
    public var source: String
    public var userAgent: String?
    public var sourceAddress: String?
    /// The authenticated caller (the SigV4 access key id); `nil` for an anonymous request.
    public var principal: String?
    /// The SDK's `amz-sdk-invocation-id`, the same on every retry of one call.
    public var invocationId: String?
    /// What the call asked for (a digest of its operation and body), recorded with its invocation
    /// id so that a retry is told from another call that reuses the id.
    public var requestDigest: String?

    /// Stored with every event, under these tags.
    enum FieldTag: UInt64 {
        case requestId = 1, source, userAgent, sourceAddress, principal, invocationId, requestDigest
    }
    public static var recordName: String { "metadata" }

    /// Who asked, as the audit shows it (its page and `audit initiations`): the key, else the
    /// command line's (run on the server's machine, with no key), else "anonymous" (`serve
    /// --allow-anonymous`).
    public var shownPrincipal: String { principal ?? (source == "cli" ? Self.commandLinePrincipal : Self.anonymousPrincipal) }

    /// The principals the audit shows for a call with no key: no access key may take these names.
    public static let commandLinePrincipal = "command-line", anonymousPrincipal = "anonymous"

    /// The most bytes of a `User-Agent` an event records: every event of a call repeats it.
    public static let longestUserAgent = 512

    /// A `User-Agent` header as events record it: its first ``longestUserAgent`` bytes (cut at a
    /// character's boundary), each scalar that ``Unicode/Scalar/misleadsWhenShown`` as U+FFFD (a tab
    /// would shift the audit's columns, a bidirectional override reorder them).
    public static func recorded(userAgent header: String?) -> String? {
        guard let header else { return nil }
        // The usual agent: printable ASCII, short, recorded as it came.
        if header.utf8.count <= longestUserAgent, !header.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }) { return header }
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in header.unicodeScalars {
            let shown: Unicode.Scalar = scalar.misleadsWhenShown ? "\u{FFFD}" : scalar
            bytes += UTF8.width(shown)
            guard bytes <= longestUserAgent else { break }
            kept.append(shown)
        }
        return String(kept)
    }

    public init(
        requestId: String, source: String, userAgent: String? = nil, sourceAddress: String? = nil,
        principal: String? = nil, invocationId: String? = nil, requestDigest: String? = nil
    ) {
        self.requestId = requestId
        self.source = source
        self.userAgent = userAgent
        self.sourceAddress = sourceAddress
        self.principal = principal
        self.invocationId = invocationId
        self.requestDigest = requestDigest
    }
}

