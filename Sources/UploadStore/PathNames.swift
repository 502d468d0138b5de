/// Path names, taken apart here rather than by Foundation's `NSString.deletingLastPathComponent`,
/// which crashes (an illegal instruction) on a one-character name such as `X` or `Z/`: a folder an
/// operator names on the command line.
public enum PathNames {
    /// The folder that holds what `path` names: `.` when `path` names no folder, `/` for one at
    /// the root. Trailing and doubled slashes are ignored.
    public static func folder(of path: String) -> String {
        func trimmingSlashes(_ text: Substring) -> Substring {
            var text = text
            while text.count > 1, text.hasSuffix("/") { text = text.dropLast() }
            return text
        }
        let named = trimmingSlashes(Substring(path))
        guard let slash = named.lastIndex(of: "/") else { return "." }
        let folder = trimmingSlashes(named[..<slash])
        return folder.isEmpty ? "/" : String(folder)
    }
}
