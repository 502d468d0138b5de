/// The stateless parameter rules of the ECR Public API. A failure is an `InvalidParameterException`
/// whose message names the member, the value and the rule, in AWS's own wording.
public enum Validation {
    /// `repositoryName`: required, 2 to 205 characters, matching
    /// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`.
    public static func repositoryName(_ value: String?, member: String = "repositoryName") throws(CommandError) -> String {
        guard let value else { throw missing(member) }
        try length(value, member: member, min: 2, max: 205)
        guard isRepositoryName(value) else {
            throw invalid(
                value, member: member,
                "Member must satisfy regular expression pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
            )
        }
        return value
    }

    /// `registryId` (RegistryIdOrAlias): optional, 1 to 256 characters.
    public static func registryId(_ value: String?, member: String = "registryId") throws(CommandError) -> String? {
        guard let value else { return nil }
        try length(value, member: member, min: 1, max: 256)
        return value
    }

    /// Matches the repository name pattern: `/`-separated components, each of lowercase letters
    /// and digits, with single `.`, `_` or `-` allowed only between two of them.
    public static func isRepositoryName(_ name: String) -> Bool {
        var previous: UInt8 = UInt8(ascii: "/")  // as if a component had just ended
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                break
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "/"):
                guard isAlphanumeric(previous) else { return false }
            default:
                return false
            }
            previous = byte
        }
        return isAlphanumeric(previous)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    static func length(_ value: String, member: String, min: Int, max: Int) throws(CommandError) {
        let count = value.unicodeScalars.count
        if count < min { throw invalid(value, member: member, "Member must have length greater than or equal to \(min)") }
        if count > max { throw invalid(value, member: member, "Member must have length less than or equal to \(max)") }
    }

    static func missing(_ member: String) -> CommandError {
        CommandError(.invalidParameter, "The parameter '\(member)' is required but was not given.")
    }

    static func invalid(_ value: String, member: String, _ rule: String) -> CommandError {
        CommandError(
            .invalidParameter,
            "1 validation error detected: Value '\(quoted(value))' at '\(member)' failed to satisfy constraint: \(rule)"
        )
    }

    /// The value as shown in a message: control characters escaped, long values cut.
    static func quoted(_ value: String) -> String {
        var shown = ""
        for scalar in value.unicodeScalars.prefix(64) {
            shown += scalar.properties.generalCategory == .control ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return value.unicodeScalars.count > 64 ? shown + "…" : shown
    }
}
