import Testing
import UploadCore
@testable import UploadStore

/// The in-memory state's keys compare bytes, as LMDB's keys do, and carry their hash.
struct ExactKeysTests {
    @Test func stringsThatDifferOnlyInNormalisation_areDifferentKeys() {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        #expect(composed == decomposed)
        #expect(ExactString(composed) != ExactString(decomposed))
        var map: [ExactString: Int] = [ExactString(composed): 1]
        map[ExactString(decomposed)] = 2
        #expect(map[ExactString(composed)] == 1 && map[ExactString(decomposed)] == 2)
    }

    /// Equal bytes are equal keys with equal hashes; a one-byte change anywhere is a different key.
    /// (The byte comparison behind a matching hash is ``ExactBytesTests``'s.)
    @Test(arguments: [0, 7, 8, 15, 16, 19])
    func keysDifferingAtAnyByte_areDifferent(at index: Int) {
        let base = Array("0123456789abcdefghij".utf8)
        var changed = base
        changed[index] ^= 0x20
        let a = ExactString(String(decoding: base, as: UTF8.self)), b = ExactString(String(decoding: changed, as: UTF8.self))
        #expect(a != b)
        #expect(a == ExactString(String(decoding: base, as: UTF8.self)))
        #expect(a.hashValue == ExactString(String(decoding: base, as: UTF8.self)).hashValue)
    }

    @Test func repositories_compareBothNames() {
        let a = RepositoryRef(registryId: "123456789012", repositoryName: "team/app")
        #expect(ExactRepository(a) == ExactRepository(RepositoryRef(registryId: "123456789012", repositoryName: "team/app")))
        #expect(ExactRepository(a) != ExactRepository(RepositoryRef(registryId: "123456789013", repositoryName: "team/app")))
        #expect(ExactRepository(a) != ExactRepository(RepositoryRef(registryId: "123456789012", repositoryName: "team/apq")))
        // The names' boundary is part of the key: "ab" + "c" is not "a" + "bc".
        #expect(ExactRepository(RepositoryRef(registryId: "ab", repositoryName: "c")) != ExactRepository(RepositoryRef(registryId: "a", repositoryName: "bc")))
    }

    /// The tables' repository key is the reference's description, byte for byte (it is built
    /// without the string, and the store's layout depends on it).
    @Test(arguments: [("123456789012", "team/app"), ("", ""), ("1", "a/b_c-d.e"), ("123456789012", "caf\u{E9}/x"), ("123456789012", "cafe\u{301}/x")])
    func repositoryKey_isTheDescriptionsBytes(registryId: String, name: String) {
        let ref = RepositoryRef(registryId: registryId, repositoryName: name)
        #expect(ProjectionKey.repository(ref) == Array(ref.description.utf8))
    }
}
