import Foundation

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

    /// Whether a file system is mounted at `path`, a bind mount of the one it is in too (which the
    /// device numbers of a folder and its parent do not tell): as Linux lists its mounts, in
    /// `/proc/self/mountinfo` (its fifth field, with space, tab, newline and backslash as octal
    /// escapes; compared as bytes, since a mount's path need not be UTF-8). `false` where it
    /// cannot be read.
    public static func isMountPoint(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        let target = Array(UnsafeBufferPointer(start: resolved, count: strlen(resolved)).map { UInt8(bitPattern: $0) })
        free(resolved)
        guard let table = FileManager.default.contents(atPath: "/proc/self/mountinfo") else { return false }
        return table.split(separator: UInt8(ascii: "\n")).contains { line in
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            return fields.count > 4 && unescapedMountField(fields[4]) == target
        }
    }

    private static func unescapedMountField(_ field: Data) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = Array(field)[...]
        while let byte = rest.popFirst() {
            if byte == UInt8(ascii: "\\"), rest.count >= 3, let code = UInt8(String(decoding: rest.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(code)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return bytes
    }
}
