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

    /// `registryId` (RegistryIdOrAlias): optional, 2 to 50 characters, a 12-digit id or an alias.
    public static func registryId(_ value: String?, member: String = "registryId") throws(CommandError) -> String? {
        guard let value else { return nil }
        try length(value, member: member, min: 2, max: 50)
        return value
    }

    /// A registry alias (RegistryAliasName): 2 to 50 characters matching `[a-z][a-z0-9]+(?:[._-][a-z0-9]+)*`.
    public static func isRegistryAlias(_ alias: String) -> Bool {
        let bytes = Array(alias.utf8)
        guard (2...50).contains(bytes.count), (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]) else { return false }
        var previous = bytes[0]
        for (index, byte) in bytes.enumerated().dropFirst() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                break
            // A separator may not come second (`[a-z][a-z0-9]+` is at least two characters), end, or follow another.
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                guard index >= 2, isAlphanumeric(previous) else { return false }
            default:
                return false
            }
            previous = byte
        }
        return isAlphanumeric(previous)
    }

    /// `registryId` where the model says RegistryId: optional, exactly 12 digits.
    public static func accountRegistryId(_ value: String?, member: String = "registryId") throws(CommandError) -> String? {
        guard let value else { return nil }
        guard value.utf8.count == 12, value.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            throw invalid(value, member: member, "Member must satisfy regular expression pattern: [0-9]{12}")
        }
        return value
    }

    /// `uploadId`: required, a UUID (`[0-9a-fA-F]{8}-…-[0-9a-fA-F]{12}`). Returned lowercased,
    /// as the coordinator issues them.
    public static func uploadId(_ value: String?, member: String = "uploadId") throws(CommandError) -> String {
        guard let value else { throw missing(member) }
        let groups = value.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12], groups.allSatisfy({ $0.allSatisfy(\.isHexDigit) && $0.allSatisfy(\.isASCII) }) else {
            throw invalid(value, member: member, "Member must satisfy regular expression pattern: [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
        }
        return value.lowercased()
    }

    /// A required non-negative long (PartSize).
    public static func partOffset(_ value: Int64?, member: String) throws(CommandError) -> UInt64 {
        guard let value else { throw missing(member) }
        guard value >= 0 else { throw invalid(String(value), member: member, "Member must have value greater than or equal to 0") }
        return UInt64(value)
    }

    /// A digest a registry client may name, in the OCI distribution spec's registered algorithms
    /// and canonical (lowercase) form: `sha256:` and 64 hex digits, or `sha512:` and 128.
    public static func isRegistryDigest(_ value: String) -> Bool {
        guard let algorithm = DigestAlgorithm(of: value) else { return false }
        let hex = value.utf8.dropFirst(algorithm.rawValue.utf8.count + 1)
        return hex.count == algorithm.hexCount && hex.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// A media type as the OCI image spec's descriptor schema has it (RFC 6838's names, no
    /// parameters): `[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}` twice, joined by `/`.
    public static func isMediaType(_ value: String) -> Bool {
        func isName(_ part: Substring.UTF8View) -> Bool {
            guard let first = part.first, (1...127).contains(part.count), isASCIIAlphanumeric(Unicode.Scalar(first)) else { return false }
            return part.allSatisfy { isASCIIAlphanumeric(Unicode.Scalar($0)) || "!#$&^_.+-".utf8.contains($0) }
        }
        let parts = value.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        return parts.count == 2 && isName(parts[0]) && isName(parts[1])
    }

    /// A LayerDigest: `[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+`.
    public static func isLayerDigest(_ value: String) -> Bool {
        guard let colon = value.firstIndex(of: ":") else { return false }
        let algorithm = value[..<colon], hex = value[value.index(after: colon)...]
        return !algorithm.isEmpty && !hex.isEmpty
            && algorithm.unicodeScalars.allSatisfy { $0.isASCII && (isASCIIAlphanumeric($0) || "-_+.".unicodeScalars.contains($0)) }
            && hex.unicodeScalars.allSatisfy { $0.isASCII && $0.properties.isASCIIHexDigit }
    }

    /// `layerDigests`: 1 to 100 LayerDigests.
    public static func layerDigests(_ value: [String]?, member: String = "layerDigests") throws(CommandError) -> [String] {
        guard let value else { throw missing(member) }
        guard (1...100).contains(value.count) else {
            throw CommandError(.invalidParameter, "1 validation error detected: '\(member)' must have between 1 and 100 items; it has \(value.count).")
        }
        for digest in value where !isLayerDigest(digest) {
            throw invalid(digest, member: member, "Member must satisfy regular expression pattern: [a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
        }
        return value
    }

    /// `imageTag`: optional, 1 to 300 characters (the model's bounds) of what a registry client can
    /// name (`[A-Za-z0-9_][A-Za-z0-9._-]*`, the OCI distribution spec's tag): no control
    /// characters, separators, paths or non-ASCII text.
    public static func imageTag(_ value: String?, member: String = "imageTag") throws(CommandError) -> String? {
        guard let value else { return nil }
        try length(value, member: member, min: 1, max: 300)
        guard isImageTag(value) else {
            throw invalid(value, member: member, "Member must satisfy regular expression pattern: [A-Za-z0-9_][A-Za-z0-9._-]*")
        }
        return value
    }

    /// Matches `[A-Za-z0-9_][A-Za-z0-9._-]{0,299}`.
    public static func isImageTag(_ tag: String) -> Bool {
        let bytes = tag.utf8
        guard let first = bytes.first, (1...300).contains(bytes.count), first != UInt8(ascii: "."), first != UInt8(ascii: "-") else {
            return false
        }
        return bytes.allSatisfy { byte in
            isASCIIAlphanumeric(Unicode.Scalar(byte)) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
    }

    /// `maxResults`: optional, 1 to 1000.
    public static func maxResults(_ value: Int64?, member: String = "maxResults") throws(CommandError) -> Int? {
        guard let value else { return nil }
        guard (1...1000).contains(value) else {
            throw invalid(String(value), member: member, value < 1 ? "Member must have value greater than or equal to 1" : "Member must have value less than or equal to 1000")
        }
        return Int(value)
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

    public static func length(_ value: String, member: String, min: Int, max: Int) throws(CommandError) {
        let count = value.unicodeScalars.count
        if count < min { throw invalid(value, member: member, "Member must have length greater than or equal to \(min)") }
        if count > max { throw invalid(value, member: member, "Member must have length less than or equal to \(max)") }
    }

    public static func missing(_ member: String) -> CommandError {
        CommandError(.invalidParameter, "The parameter '\(member)' is required but was not given.")
    }

    public static func invalid(_ value: String, member: String, _ rule: String) -> CommandError {
        CommandError(
            .invalidParameter,
            "1 validation error detected: Value '\(quoted(value))' at '\(member)' failed to satisfy constraint: \(rule)"
        )
    }

    /// The value as shown in a message: control characters escaped, long values cut.
    public static func quoted(_ value: String) -> String {
        var shown = ""
        for scalar in value.unicodeScalars.prefix(64) {
            shown += scalar.properties.generalCategory == .control ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return value.unicodeScalars.count > 64 ? shown + "…" : shown
    }
}

private func isASCIIAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
}
