import Foundation
import UploadCore

/// Opaque `nextToken`s: the base64 of the page's scope (the operation, and the repository it
/// lists) and the last item's name. Stateless, and since names are unique and pages follow key
/// order, a token is never repeated. A token is taken only by the listing that issued it: another
/// operation's, or another repository's, is InvalidParameterException, as ECR answers it, rather
/// than a page that starts at a name from somewhere else.
enum Pagination {
    /// A page's length when `maxResults` is not given: 100, as ECR documents for every Describe
    /// operation.
    static let defaultLimit = 100

    /// What a listing's tokens are issued for: `operation`, and the repository it lists, if any.
    /// Neither holds a newline (operation names and repository names are checked before).
    static func scope(_ operation: String, _ repositoryName: String? = nil) -> String {
        repositoryName.map { operation + "\n" + $0 } ?? operation
    }

    /// The name the page after `token` starts after, when `token` was issued for `scope`.
    static func after(_ token: String?, scope: String) throws -> String? {
        guard let token else { return nil }
        let prefix = scope + "\n"
        guard let data = Data(base64Encoded: token), let text = String(data: data, encoding: .utf8),
              text.hasPrefix(prefix), text.utf8.count > prefix.utf8.count else {
            throw APIError.invalidParameter("The nextToken '\(token.prefix(64))' is not one this service issued for this request")
        }
        return String(text.dropFirst(prefix.count))
    }

    /// Cuts a page of `limit` from `items` (which holds up to `limit + 1`), with the token for the rest.
    static func page<T>(_ items: [(name: String, value: T)], limit: Int, scope: String) -> (items: [T], nextToken: String?) {
        guard items.count > limit else { return (items.map(\.value), nil) }
        let page = Array(items.prefix(limit))
        return (page.map(\.value), Data((scope + "\n" + page.last!.name).utf8).base64EncodedString())
    }
}
