import Testing
import UploadStore

/// The folder a path names its last component in, for one-character names too (on which
/// Foundation's `deletingLastPathComponent` crashed `backup --to X`).
struct PathNamesTests {
    @Test(arguments: [
        ("X", "."), ("Z/", "."), ("ab", "."), ("/x", "/"), ("/", "/"), ("//", "/"), ("a/b", "a"), ("a/b/", "a"),
        ("/a/b", "/a"), ("a//b", "a"), ("./x", "."), ("../x/y", "../x"),
    ])
    func folder_ofEachPath(path: String, folder: String) {
        #expect(PathNames.folder(of: path) == folder, "\(path)")
    }
}
