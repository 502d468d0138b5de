import Crypto
import Foundation
import LogHashing
import HTTPTypes
import Hummingbird
import UploadCore

/// One access key the operator allows: the user `arn:aws:iam::<registryId>:user/<name>`.
public struct AccessKey: Sendable, Equatable {
    public let accessKeyId: String
    public let secretAccessKey: String
    /// The registry (account) the key belongs to; `nil` is the one served. A key of another
    /// registry may act only where a repository's policy allows it (``AccessPolicy``).
    public let registryId: String?
    /// The user's name in its ARN; `nil` is the access key id.
    public let name: String?

    public init(accessKeyId: String, secretAccessKey: String, registryId: String? = nil, name: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.registryId = registryId
        self.name = name
    }

    /// Parses a credentials file: one key per line, `ACCESS_KEY_ID SECRET_ACCESS_KEY [REGISTRY_ID [NAME]]`;
    /// blank lines and lines starting with `#` are skipped; lines may end in CRLF. A key id is
    /// what a SigV4 credential can carry (no `/`, `,` or `=`), at most once, and no name the audit
    /// shows for calls without a key.
    public static func parse(_ text: String) throws -> [AccessKey] {
        var lineOfKey: [String: Int] = [:]
        // `\.isNewline`: "\r\n" is one `Character`, which a split on "\n" never meets.
        return try text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated().compactMap { number, line in
            let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
            if fields.isEmpty || fields[0].hasPrefix("#") { return nil }
            guard (2...4).contains(fields.count) else {
                throw ValidationFailure("credentials line \(number + 1): expected ACCESS_KEY_ID SECRET_ACCESS_KEY [REGISTRY_ID [NAME]]")
            }
            if let problem = problem(ofKeyId: fields[0]) { throw ValidationFailure("credentials line \(number + 1): \(problem)") }
            if let earlier = lineOfKey[fields[0]] {
                throw ValidationFailure("credentials line \(number + 1): access key id \(fields[0]) is on line \(earlier) too; give each key one line")
            }
            lineOfKey[fields[0]] = number + 1
            if fields.count >= 3, (try? Validation.accountRegistryId(fields[2])) == nil {
                throw ValidationFailure("credentials line \(number + 1): the registry id must be 12 digits")
            }
            if fields.count == 4, !fields[3].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+=,.@_-".contains($0)) }) || fields[3].count > 64 {
                throw ValidationFailure("credentials line \(number + 1): a user name is 1 to 64 of letters, digits and +=,.@_-")
            }
            return AccessKey(
                accessKeyId: fields[0], secretAccessKey: fields[1], registryId: fields.count >= 3 ? fields[2] : nil,
                name: fields.count == 4 ? fields[3] : nil)
        }
    }
}

extension AccessKey {
    /// What makes `id` no access key id, wherever keys come from: a SigV4 credential carries
    /// only some characters, and the audit shows two names for calls without a key.
    public static func problem(ofKeyId id: String) -> String? {
        guard !id.isEmpty, id.count <= 128, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            return "an access key id is 1 to 128 of letters, digits and ._- (a signature's credential cannot carry others)"
        }
        guard ![RequestMetadata.commandLinePrincipal, RequestMetadata.anonymousPrincipal].contains(id) else {
            return "'\(id)' is the principal the audit shows for calls without a key; name the key otherwise"
        }
        return nil
    }
}

public struct ValidationFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Verifies AWS Signature Version 4 as awscli and boto3 sign requests for `ecr-public`: the
/// signed headers named in `Authorization`, the region served, the SHA-256 of the raw body, a
/// ±15 minute clock window, and a constant-time comparison of signatures.
public struct SigV4Verifier: Sendable {
    public static let service = "ecr-public"
    public static let defaultRegion = "us-east-1"
    public static let window: Int64 = 15 * 60 * 1000

    /// A region's name as AWS spells them (`us-east-1`): lower-case letters, digits and hyphens.
    public static func isRegionName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) }
    }

    let keys: [String: AccessKey]
    let clock: any UploadCore.Clock
    let servedRegistryId: String
    /// The one region a credential scope may name (`serve --region`); `nil`, any region's name:
    /// the one each client signs with, which its own configuration chooses, as an endpoint URL
    /// leaves it (a region only partitions the signing key: every region's is derived from the same secret).
    let region: String?

    public init(keys: [AccessKey], clock: any UploadCore.Clock, servedRegistryId: String, region: String? = nil) {
        var byId: [String: AccessKey] = [:]
        for key in keys { byId[key.accessKeyId] = key }
        self.keys = byId
        self.clock = clock
        self.servedRegistryId = servedRegistryId
        self.region = region
    }

    /// Checks everything that needs no body: the Authorization header's form, a known key, the
    /// scope, the signed header list and the clock window. Run before reading a body, so that an
    /// unauthenticated client cannot make the server buffer one.
    func precheck(method: String, headers: HTTPFields) throws {
        _ = try checkedHeader(method: method, headers: headers)
    }

    private struct Checked {
        let auth: Authorization
        let key: AccessKey
        let scope: [String]
        let amzDate: String
    }

    private func checkedHeader(method: String, headers: HTTPFields) throws -> Checked {
        guard let authorization = headers[.authorization] else {
            throw APIError(type: "MissingAuthenticationTokenException", message: "Missing Authentication Token: the request must be signed with AWS Signature Version 4", status: .forbidden)
        }
        // Not a list: NIO joins two lines with a comma, and their `key=value`s would mix.
        guard headers[values: .authorization].count == 1 else { throw Self.incomplete("send one Authorization header, not several") }
        let auth = try Self.parseAuthorization(authorization)
        guard let key = keys[auth.accessKeyId] else {
            throw APIError(type: "UnrecognizedClientException", message: "The security token included in the request is invalid: unknown access key id", status: .forbidden)
        }
        let scope = auth.scope.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard scope.count == 4, scope[3] == "aws4_request", !scope[1].isEmpty else {
            throw Self.incomplete("the credential scope must be <date>/<region>/\(Self.service)/aws4_request")
        }
        guard scope[2] == Self.service else {
            throw Self.invalid("Credential should be scoped to correct service: '\(Self.service)'.", status: .forbidden)
        }
        guard Self.isRegionName(scope[1]), region.map({ scope[1] == $0 }) ?? true else {
            let served = region.map { "; this endpoint serves '\($0)'" } ?? ""
            throw Self.invalid("Credential should be scoped to a valid region, not '\(Validation.quoted(scope[1]))'\(served).", status: .forbidden)
        }
        // The target header chooses the operation, so a POST must sign it (botocore always does).
        let required = method == "POST" ? ["content-type", "host", "x-amz-date", "x-amz-target"] : ["host", "x-amz-date"]
        guard required.allSatisfy(auth.signedHeaders.contains) else {
            throw Self.incomplete("SignedHeaders must include \(required.joined(separator: ";"))")
        }
        guard let amzDate = headers[HTTPField.Name("X-Amz-Date")!], let signedAt = Self.parseAmzDate(amzDate) else {
            throw Self.incomplete("the X-Amz-Date header is missing or not yyyyMMddTHHmmssZ")
        }
        guard scope[0] == String(amzDate.prefix(8)) else { throw Self.invalid("The credential scope date does not match X-Amz-Date.", status: .forbidden) }
        let now = clock.now()
        if abs(now.millisecondsSinceEpoch - signedAt.millisecondsSinceEpoch) > Self.window {
            throw Self.invalid("Signature expired: \(amzDate) is outside the 15 minute window around \(Self.amzDate(now)).", status: .badRequest)
        }
        return Checked(auth: auth, key: key, scope: scope, amzDate: amzDate)
    }

    /// - Parameter authority: the request's Host (HTTP/1.1) or `:authority`, which HTTPTypes keeps
    ///   out of the header fields.
    /// - Returns: the access key id that signed the request (the principal).
    /// - Throws: ``APIError`` named as AWS names these failures.
    func verify(method: String, authority: String?, path: String, query: String, headers: HTTPFields, body: [UInt8]) throws -> String {
        try verify(method: method, authority: authority, path: path, query: query, headers: headers, payloadHash: Hex.encode(SHA256.hash(data: body)))
    }

    /// The same, given the hex SHA-256 of the body (hashed as it was read; see ``SpooledBody``).
    func verify(method: String, authority: String?, path: String, query: String, headers: HTTPFields, payloadHash: String) throws -> String {
        let checked = try checkedHeader(method: method, headers: headers)
        let (auth, key, scope, amzDate) = (checked.auth, checked.key, checked.scope, checked.amzDate)
        if let claimed = headers[HTTPField.Name("X-Amz-Content-SHA256")!], claimed != payloadHash {
            // The body is always signed here: UNSIGNED-PAYLOAD would leave it unauthenticated.
            throw Self.invalid("The x-amz-content-sha256 header must be the SHA-256 of the body; UNSIGNED-PAYLOAD is not accepted.", status: .badRequest)
        }
        var canonicalHeaders = ""
        for name in auth.signedHeaders {
            guard let field = HTTPField.Name(name) else { throw Self.incomplete("bad header name \(name)") }
            let values = name == "host" ? [authority].compactMap { $0 } : headers[values: field]
            guard !values.isEmpty else { throw Self.incomplete("the signed header \(name) is missing") }
            canonicalHeaders += name + ":" + values.map(Self.trimmed).joined(separator: ",") + "\n"
        }
        let canonicalRequest = [
            method, Self.canonicalPath(path), Self.canonicalQuery(query), canonicalHeaders,
            auth.signedHeaders.joined(separator: ";"), payloadHash,
        ].joined(separator: "\n")
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, auth.scope, Hex.encode(SHA256.hash(data: Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")
        var signingKey = SymmetricKey(data: Array(("AWS4" + key.secretAccessKey).utf8))
        for part in [scope[0], scope[1], scope[2], "aws4_request"] {
            signingKey = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: signingKey)))
        }
        let expected = Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: signingKey))
        guard Self.constantTimeEqual(expected, auth.signature.lowercased()) else {
            throw Self.invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.", status: .forbidden)
        }
        return key.accessKeyId
    }

    struct Authorization {
        let accessKeyId: String
        let scope: String
        let signedHeaders: [String]
        let signature: String
    }

    /// `AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/ecr-public/aws4_request, SignedHeaders=a;b, Signature=hex`
    static func parseAuthorization(_ value: String) throws -> Authorization {
        guard value.hasPrefix("AWS4-HMAC-SHA256 ") else { throw incomplete("only AWS4-HMAC-SHA256 is accepted") }
        var parts: [String: String] = [:]
        for item in value.dropFirst("AWS4-HMAC-SHA256 ".count).split(separator: ",") {
            let pair = item.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
            if pair.count == 2 { parts[pair[0]] = pair[1] }
        }
        guard let credential = parts["Credential"], let signed = parts["SignedHeaders"], let signature = parts["Signature"],
              let slash = credential.firstIndex(of: "/") else {
            throw incomplete("Authorization needs Credential, SignedHeaders and Signature")
        }
        let headers = signed.split(separator: ";").map { $0.lowercased() }
        // Each name once: the canonical request holds every value of each name it lists, so a
        // name listed again and again (thousands fit in a header) made one request cost seconds.
        guard !headers.isEmpty, headers.count <= maximumSignedHeaders, zip(headers, headers.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw incomplete("SignedHeaders must be 1 to \(maximumSignedHeaders) lowercase names, sorted, each once")
        }
        return Authorization(
            accessKeyId: String(credential[..<slash]), scope: String(credential[credential.index(after: slash)...]),
            signedHeaders: headers, signature: signature)
    }

    /// The most header names a signature may cover: the SDKs sign five to eight.
    static let maximumSignedHeaders = 64

    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        return query.split(separator: "&").map { item -> (String, String) in
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            return (encode(decode(pair[0])), encode(decode(pair.count > 1 ? pair[1] : "")))
        }
        .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// The path as every service but S3 signs it: the path as sent, without its dot segments and
    /// repeated slashes, encoded again (a `:` as `%3A`, a `%3A` sent as `%253A`), slashes kept, as
    /// botocore and the other SDKs sign it.
    static func canonicalPath(_ path: String) -> String {
        path.isEmpty ? "/" : encode(withoutDotSegments(path), keepingSlashes: true)
    }

    /// `path` without its empty, `.` and `..` segments (RFC 3986 §5.2.4, and repeated slashes,
    /// which AWS's services take out too), its first and last slash kept: botocore's
    /// `remove_dot_segments`, so that an endpoint URL such as `http://host/a//b/` is signed and
    /// checked alike.
    static func withoutDotSegments(_ path: String) -> String {
        var kept: [Substring] = []
        for segment in path.split(separator: "/") where segment != "." {
            if segment == ".." { _ = kept.popLast() } else { kept.append(segment) }
        }
        let first = path.hasPrefix("/") ? "/" : "", last = path.hasSuffix("/") && !kept.isEmpty ? "/" : ""
        return first + kept.joined(separator: "/") + last
    }

    private static func decode(_ s: String) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? s }

    /// RFC 3986 unreserved characters stay (and `/`, when kept); everything else is %XX, as SigV4 requires.
    private static func encode(_ s: String, keepingSlashes: Bool = false) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepingSlashes:
                out.unicodeScalars.append("/")
            default:
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// Trims the value and folds runs of spaces, as SigV4's canonical headers do.
    static func trimmed(_ value: String) -> String {
        value.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // botocore: ' '.join(v.split())
    }

    static func parseAmzDate(_ s: String) -> Timestamp? {
        let d = Array(s.utf8)
        guard d.count == 16, d[8] == UInt8(ascii: "T"), d[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? { Int64(String(decoding: d[range], as: UTF8.self)) }
        guard let y = number(0..<4), let m = number(4..<6), let day = number(6..<8),
              let hh = number(9..<11), let mm = number(11..<13), let ss = number(13..<15), (1...12).contains(m), (1...31).contains(day),
              hh < 24, mm < 60, ss < 60 else { return nil }
        // days from civil (Hinnant)
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Timestamp(millisecondsSinceEpoch: ((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
    }

    static func amzDate(_ t: Timestamp) -> String {
        let iso = t.iso8601  // 2026-11-29T16:05:16.123Z
        return iso.prefix(19).replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "") + "Z"
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<x.count { difference |= x[i] ^ y[i] }
        return difference == 0
    }


    static func incomplete(_ why: String) -> APIError {
        APIError(type: "IncompleteSignatureException", message: "The request signature is incomplete: \(why)", status: .badRequest)
    }

    static func invalid(_ message: String, status: HTTPResponse.Status) -> APIError {
        APIError(type: "InvalidSignatureException", message: message, status: status)
    }
}
