import Foundation
import JSONGrammar

/// A repository policy (an IAM resource policy document) read into what this coordinator
/// enforces: statements of `Effect`, `Principal`, `Action` and optional `Resource`. Anything it
/// could not enforce (`Condition`, `NotAction`, `NotPrincipal`, `NotResource`, actions of another
/// service) is refused when the policy is set, so that no stored policy says more than is enforced.
///
/// Evaluation is IAM's for a resource policy: an explicit Deny that matches wins; otherwise a
/// caller of the repository's own registry is allowed (its identity policies are not modelled:
/// every key is as an administrator of its registry), and a caller of another registry needs an
/// Allow that names it.
public struct RepositoryPolicy: Sendable, Equatable {
    public static let largestText = 10_240

    public enum Effect: String, Sendable { case allow = "Allow", deny = "Deny" }

    public struct Statement: Sendable, Equatable {
        public var effect: Effect
        /// `nil` is `*`: everyone, anonymous callers included.
        public var principals: [String]?
        /// Patterns with `*` and `?`, lowercased: `ecr-public:putimage`, `ecr-public:*`, `*`.
        public var actions: [String]
        /// Patterns over the repository's ARN; `nil` (no `Resource`) is the repository itself.
        public var resources: [String]?
    }

    public let statements: [Statement]

    /// Parses and checks `text`; `InvalidParameterException` names what is wrong.
    public init(_ text: String) throws(CommandError) {
        try Validation.length(text, member: "policyText", min: 0, max: Self.largestText)
        // Read as manifests are (``ParsedJSON``, Foundation's grammar of when policies were first
        // stored): every node reads a stored policy alike, whatever its toolchain.
        guard let object = try? ParsedJSON(parsing: Array(text.utf8), grammar: .foundationsLegacy), object.isObject,
              !object.holdsANumberBeyondADouble else {
            throw Self.invalid("is not a JSON object")
        }
        // In byte order: the same text, the same refusal.
        for key in object.memberNames.sorted(by: { $0.precedesByBytes($1) }) where !["Version", "Id", "Statement"].contains(key) { throw Self.invalid("has the member '\(key)', which a policy does not have") }
        if let version = object[member: "Version"] {
            guard let version = version.string, ["2012-10-17", "2008-10-17"].contains(version) else {
                throw Self.invalid("has a Version other than 2012-10-17 or 2008-10-17")
            }
        }
        let list: [ParsedJSON]
        switch object[member: "Statement"] {
        case let one? where one.isObject: list = [one]
        case .array(let many)? where !many.isEmpty: list = many
        default: throw Self.invalid("needs a Statement: an object or a non-empty list of them")
        }
        var statements: [Statement] = []
        for (index, statement) in list.enumerated() {
            guard statement.isObject else { throw Self.invalid("has a Statement[\(index)] that is not an object") }
            statements.append(try Self.statement(statement, index))
        }
        self.statements = statements
    }

    private static func statement(_ s: ParsedJSON, _ index: Int) throws(CommandError) -> Statement {
        let place = "Statement[\(index)]"
        for key in s.memberNames.sorted(by: { $0.precedesByBytes($1) }) where !["Sid", "Effect", "Principal", "Action", "Resource"].contains(key) {
            let why = ["Condition", "NotAction", "NotPrincipal", "NotResource"].contains(key) ? "which this coordinator does not enforce" : "which a statement does not have"
            throw invalid("has '\(key)' in \(place), \(why)")
        }
        if let sid = s[member: "Sid"], sid.string == nil { throw invalid("has a Sid in \(place) that is not a string") }
        guard let effectName = s[member: "Effect"]?.string, let effect = Effect(rawValue: effectName) else {
            throw invalid("needs Effect Allow or Deny in \(place)")
        }
        let principals: [String]?
        switch s[member: "Principal"] {
        case .string("*")?: principals = nil
        case let map? where map.isObject:
            guard map.memberNames.count == 1, let aws = map[member: "AWS"] else { throw invalid("has a Principal in \(place) other than \"*\" or {\"AWS\": …}") }
            let names = try strings(aws, "Principal.AWS", place)
            guard !names.contains("*") else { principals = nil; break }
            for name in names where PolicyPrincipal.pattern(name) == nil {
                throw invalid("has the principal '\(Validation.quoted(name))' in \(place): give \"*\", a 12-digit account, arn:aws:iam::ACCOUNT:root or arn:aws:iam::ACCOUNT:user/NAME")
            }
            principals = names
        default: throw invalid("needs a Principal in \(place)")
        }
        let actions = try strings(s[member: "Action"], "Action", place).map { $0.lowercased() }
        for action in actions where !enforcedActions.contains(where: { matches($0, pattern: action) }) {
            throw invalid("has the action '\(Validation.quoted(action))' in \(place), which names no ecr-public: action on a repository")
        }
        let resources = try s[member: "Resource"].map { value throws(CommandError) in try strings(value, "Resource", place) }
        return Statement(effect: effect, principals: principals, actions: actions, resources: resources)
    }

    /// A string or a non-empty list of strings.
    private static func strings(_ value: ParsedJSON?, _ member: String, _ place: String) throws(CommandError) -> [String] {
        if let one = value?.string { return [one] }
        let names = value?.array?.compactMap(\.string) ?? []
        guard !names.isEmpty, names.count == value?.array?.count else {
            throw invalid("needs \(member) in \(place) as a string or a non-empty list of strings")
        }
        return names
    }

    private static func invalid(_ why: String) -> CommandError {
        CommandError(.invalidParameter, "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided': the policy \(why)")
    }

    /// Whether `caller` may take `action` (`ecr-public:PutImage`) on the repository `resource`
    /// (its ARN) of registry `owner`. `byDefault` is the answer when no statement names the call:
    /// by default, a caller of the owner's registry is allowed.
    public func allows(_ caller: PolicyPrincipal?, action: String, resource: String, owner: String, byDefault: Bool? = nil) -> Bool {
        let matching = statements.filter { statement in
            statement.actions.contains { Self.matches(action.lowercased(), pattern: $0) }
                && (statement.resources ?? [resource]).contains { Self.matches(resource, pattern: $0) }
                && (statement.principals.map { names in caller.map { caller in names.contains { caller.isNamed(by: $0) } } ?? false } ?? true)
        }
        if matching.contains(where: { $0.effect == .deny }) { return false }
        return byDefault ?? ((caller?.registryId ?? owner) == owner) || matching.contains { $0.effect == .allow }
    }

    /// The actions a repository policy is enforced on, as `ecr-public:` and the lowercased name:
    /// every AWS operation on one repository, and the registry front end's pulls (named as ECR
    /// names them). An action or wildcard that names none of them is refused when the policy is
    /// set, as it would be stored and never applied.
    public static let enforcedActions: [String] = [
        "BatchCheckLayerAvailability", "BatchDeleteImage", "CompleteLayerUpload", "DeleteRepository", "DeleteRepositoryPolicy",
        "DescribeImageTags", "DescribeImages", "GetRepositoryCatalogData", "GetRepositoryPolicy", "InitiateLayerUpload",
        "ListTagsForResource", "PutImage", "PutRepositoryCatalogData", "SetRepositoryPolicy", "TagResource", "UntagResource",
        "UploadLayerPart", "BatchGetImage", "GetDownloadUrlForLayer",
    ].map { "ecr-public:" + $0.lowercased() }

    /// IAM's wildcards: `*` any run of characters, `?` any one.
    static func matches(_ text: String, pattern: String) -> Bool {
        let text = Array(text.unicodeScalars), pattern = Array(pattern.unicodeScalars)
        var t = 0, p = 0, star = -1, mark = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "*" {
                star = p; mark = t; p += 1
            } else if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                t += 1; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}

/// Who a policy judges: a key's user ARN, `arn:aws:iam::<registry>:user/<name>`, and the
/// registry (account) it belongs to.
public struct PolicyPrincipal: Sendable, Equatable {
    public let registryId: String
    public let name: String

    public init(registryId: String, name: String) {
        self.registryId = registryId
        self.name = name
    }

    public var arn: String { "arn:aws:iam::\(registryId):user/\(name)" }

    /// Whether a policy's principal names this one: its user ARN, or its whole account (the
    /// 12-digit id, or `arn:aws:iam::<id>:root`).
    func isNamed(by principal: String) -> Bool {
        switch Self.pattern(principal) {
        // By bytes: `==` would take a name for another spelled with other but equivalent scalars.
        case .account(let id): id.sameBytes(as: registryId)
        case .user(let arn): arn.sameBytes(as: self.arn)
        case nil: false
        }
    }

    enum Pattern { case account(String), user(String) }

    static func pattern(_ principal: String) -> Pattern? {
        func isAccount(_ id: Substring) -> Bool { id.count == 12 && id.allSatisfy { $0.isASCII && $0.isNumber } }
        if isAccount(principal[...]) { return .account(principal) }
        let prefix = "arn:aws:iam::"
        guard principal.hasPrefix(prefix) else { return nil }
        let rest = principal.dropFirst(prefix.count)
        guard let colon = rest.firstIndex(of: ":"), isAccount(rest[..<colon]) else { return nil }
        let resource = rest[rest.index(after: colon)...]
        if resource == "root" { return .account(String(rest[..<colon])) }
        // IAM takes no wildcard in a principal: `user/*` would be stored and match no one.
        guard resource.hasPrefix("user/"), resource.count > 5, !resource.contains("*"), !resource.contains("?") else { return nil }
        return .user(principal)
    }
}
