import Foundation

/// A safe subset of Markdown for catalog text (aboutText, usageText), rendered to HTML.
///
/// Every character of the input is escaped before any markup is made, and markup is made only
/// from this list, so no raw HTML passes through:
/// - `#`…`######` headings (rendered one level down, `h3`…`h6`, under the page's own);
/// - paragraphs, and `-`/`*` or `1.` lists;
/// - fenced code blocks (```` ``` ````) and `inline code`;
/// - `**strong**` and `*emphasis*`;
/// - `[text](url)` links, only to `http:` and `https:` URLs, which open with `rel="nofollow noopener
///   noreferrer"`; any other link (`javascript:`, `data:`, relative) is shown as its text.
///
/// Pure and deterministic: the same text always renders to the same bytes.
public enum SafeMarkdown {
    public static func html(_ markdown: String) -> String {
        var output = ""
        var paragraph: [String] = []
        var list: (ordered: Bool, items: [String])?
        var code: [String]?

        func flushParagraph() {
            guard !paragraph.isEmpty else { return }
            output += "<p>" + paragraph.map(inline).joined(separator: "\n") + "</p>\n"
            paragraph = []
        }
        func flushList() {
            guard let current = list else { return }
            let tag = current.ordered ? "ol" : "ul"
            output += "<\(tag)>" + current.items.map { "<li>\(inline($0))</li>" }.joined() + "</\(tag)>\n"
            list = nil
        }

        // By `isNewline`: "\r\n" is one Character in Swift, which a split on "\n" would not see.
        for rawLine in markdown.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = String(rawLine)
            if code != nil {
                if line.trimmingLeadingSpaces.hasPrefix("```") {
                    output += "<pre><code>" + code!.map(escape).joined(separator: "\n") + "</code></pre>\n"
                    code = nil
                } else {
                    code!.append(line)
                }
                continue
            }
            let trimmed = line.trimmingLeadingSpaces
            if trimmed.hasPrefix("```") {
                flushParagraph(); flushList()
                code = []
            } else if trimmed.isEmpty {
                flushParagraph(); flushList()
            } else if let (level, text) = heading(trimmed) {
                flushParagraph(); flushList()
                let tag = "h\(min(level + 2, 6))"
                output += "<\(tag)>\(inline(text))</\(tag)>\n"
            } else if let (ordered, text) = listItem(trimmed) {
                flushParagraph()
                if let current = list, current.ordered != ordered { flushList() }
                if list == nil { list = (ordered, []) }
                list!.items.append(text)  // in place: a text of thousands of items stays linear
            } else {
                flushList()
                paragraph.append(trimmed)
            }
        }
        if let code { output += "<pre><code>" + code.map(escape).joined(separator: "\n") + "</code></pre>\n" }
        flushParagraph()
        flushList()
        return output
    }

    /// Escapes text for HTML content and for double- or single-quoted attribute values.
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    private static func heading(_ line: String) -> (Int, String)? {
        let hashes = line.prefix { $0 == "#" }.count
        guard (1...6).contains(hashes), line.dropFirst(hashes).first == " " else { return nil }
        return (hashes, String(line.dropFirst(hashes + 1)))
    }

    private static func listItem(_ line: String) -> (ordered: Bool, text: String)? {
        if line.hasPrefix("- ") || line.hasPrefix("* ") { return (false, String(line.dropFirst(2))) }
        let digits = line.prefix { $0.isASCII && $0.isNumber }
        if !digits.isEmpty, digits.count <= 9, line.dropFirst(digits.count).hasPrefix(". ") {
            return (true, String(line.dropFirst(digits.count + 2)))
        }
        return nil
    }

    /// One line's inline markup: code spans first (their text is literal), then links, strong and
    /// emphasis over escaped text.
    static func inline(_ text: String) -> String {
        var output = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "`") {
            let after = rest.index(after: open)
            guard let close = rest[after...].firstIndex(of: "`") else { break }
            output += spans(rest[..<open]) + "<code>" + escape(String(rest[after..<close])) + "</code>"
            rest = rest[rest.index(after: close)...]
        }
        return output + spans(rest)
    }

    /// Links, strong and emphasis in text without code spans. A `[` that starts no link is text.
    /// Linear in the text: each `]` and `)` is looked for once, whatever stands before it.
    private static func spans(_ text: Substring) -> String {
        var output = ""
        var plain = text.startIndex
        var search = text.startIndex
        while let first = text[search...].firstIndex(of: "[") {
            // Every `[` before this `]` finds the same `]` first; the label opens at the last of them.
            guard let close = text[first...].firstIndex(of: "]") else { break }
            let afterClose = text.index(after: close)
            guard afterClose < text.endIndex, text[afterClose] == "(" else {
                search = afterClose
                continue
            }
            guard let end = text[afterClose...].firstIndex(of: ")") else { break }
            let open = text[first..<close].lastIndex(of: "[")!
            let label = emphasis(text[text.index(after: open)..<close])
            let target = text[text.index(after: afterClose)..<end].trimmingCharacters(in: .whitespaces)
            output += emphasis(text[plain..<open])
            output += isSafeLink(target) ? "<a href=\"\(escape(target))\" rel=\"nofollow noopener noreferrer\">\(label)</a>" : label
            plain = text.index(after: end)
            search = plain
        }
        return output + emphasis(text[plain...])
    }

    /// `http:` or `https:` and something after it, with nothing a browser would read as another
    /// scheme, a line break or a quote.
    static func isSafeLink(_ target: String) -> Bool {
        let lower = target.lowercased()
        let scheme = lower.hasPrefix("https://") ? 8 : lower.hasPrefix("http://") ? 7 : 0
        guard scheme > 0, target.count > scheme, target.count <= 2048 else { return false }
        return target.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "'" && $0 != "<" && $0 != ">" && $0 != "\\" }
    }

    /// `**strong**` and `*emphasis*` over escaped text.
    private static func emphasis(_ text: Substring) -> String {
        wrap(wrap(escape(String(text)), marker: "**", in: "strong"), marker: "*", in: "em")
    }

    /// Each pair of `marker` around text that neither starts nor ends with a space (as CommonMark
    /// flanks them) wrapped in `tag`; any other marker stays as written. Linear: once an opener
    /// finds no closer, no later one can (its candidates are a subset), so the rest is text.
    private static func wrap(_ text: String, marker: String, in tag: String) -> String {
        var output = ""
        var rest = Substring(text)
        while let open = rest.firstRange(of: marker) {
            let inner = rest[open.upperBound...]
            guard let first = inner.first, first != " ", first != "*" else {
                output += rest[..<open.upperBound]
                rest = inner
                continue
            }
            guard let close = closing(marker, in: inner) else { break }
            output += rest[..<open.lowerBound] + "<\(tag)>" + inner[..<close.lowerBound] + "</\(tag)>"
            rest = inner[close.upperBound...]
        }
        return output + rest
    }

    /// The first `marker` in `text` after its first character, with no space before it.
    private static func closing(_ marker: String, in text: Substring) -> Range<Substring.Index>? {
        var search = text.index(after: text.startIndex)
        while search < text.endIndex, let found = text[search...].firstRange(of: marker) {
            if text[text.index(before: found.lowerBound)] != " " { return found }
            search = found.upperBound
        }
        return nil
    }
}

extension String {
    fileprivate var trimmingLeadingSpaces: String { String(drop { $0 == " " || $0 == "\t" }) }
}
