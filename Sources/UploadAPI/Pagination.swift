import Foundation
import UploadCore

/// Opaque `nextToken`s: the base64 of the last item's name. Stateless, and since names are unique
/// and pages follow key order, a token is never repeated.
enum Pagination {
    /// A page's length when `maxResults` is not given: 100, as ECR documents for every Describe
    /// operation.
    static let defaultLimit = 100

    static func after(_ token: String?) throws -> String? {
        guard let token else { return nil }
        guard let data = Data(base64Encoded: token), let name = String(data: data, encoding: .utf8), !name.isEmpty else {
            throw APIError.invalidParameter("The nextToken '\(token.prefix(64))' is not one this service issued")
        }
        return name
    }

    /// Cuts a page of `limit` from `items` (which holds up to `limit + 1`), with the token for the rest.
    static func page<T>(_ items: [(name: String, value: T)], limit: Int) -> (items: [T], nextToken: String?) {
        guard items.count > limit else { return (items.map(\.value), nil) }
        let page = Array(items.prefix(limit))
        return (page.map(\.value), Data(page.last!.name.utf8).base64EncodedString())
    }
}
