import Crypto
import Foundation
import LogHashing
import Testing

/// Signed notes and checkpoints, against Go's `golang.org/x/mod/sumdb/note` published test key
/// and signature: a note signed here opens there, and the reverse.
struct SignedNoteTests {
    static let goSigner = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let goVerifier = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let goText = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let goNote = goText + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

    @Test func signing_reproducesGosPublishedNote_andItsKeysRoundTrip() throws {
        let signer = try NoteSigner(Self.goSigner)
        #expect(signer.text == Self.goSigner)
        #expect(signer.verifier.text == Self.goVerifier)
        #expect(try NoteVerifier(Self.goVerifier) == signer.verifier)
        #expect(try SignedNote.sign(Self.goText, with: signer) == Self.goNote)
        #expect(try SignedNote.open(Self.goNote, verifiedBy: NoteVerifier(Self.goVerifier)) == Self.goText)
    }

    /// Two logs made alike (the same registry id) get origins of their own: the default key's name
    /// ends in its public key's fingerprint.
    @Test func aKeyNamedAfterAPrefix_endsInItsPublicKeysFingerprint() throws {
        let one = try NoteSigner.generate(namedAfter: "upload-coordinator/000000000000")
        let two = try NoteSigner.generate(namedAfter: "upload-coordinator/000000000000")
        #expect(one.name != two.name)
        for signer in [one, two] {
            let key = try #require(Data(base64Encoded: String(signer.verifier.text.split(separator: "+", maxSplits: 2)[2])))
            let fingerprint = SHA256.hash(data: key.dropFirst()).prefix(4).map { String(format: "%02x", $0) }.joined()
            #expect(signer.name == "upload-coordinator/000000000000/" + fingerprint)
            #expect(Checkpoint.isValidOrigin(signer.name))
        }
    }

    @Test func open_refusesAChangedTextSignatureOrKey_andIgnoresOtherKeysSignatures() throws {
        let verifier = try NoteVerifier(Self.goVerifier)
        let other = try NoteSigner.generate(name: "PeterNeumann")
        #expect(throws: NoteError.self) { try SignedNote.open(Self.goNote.replacingOccurrences(of: "problem,", with: "problem;"), verifiedBy: verifier) }
        #expect(throws: NoteError.self) { try SignedNote.open(Self.goNote.replacingOccurrences(of: "x08go", with: "x08gp"), verifiedBy: verifier) }
        #expect(throws: NoteError.self) { try SignedNote.open(Self.goNote, verifiedBy: other.verifier) }
        // Signed by another key under the same name: not this log's signature.
        #expect(throws: NoteError.self) { try SignedNote.open(try SignedNote.sign(Self.goText, with: other), verifiedBy: verifier) }
        // A witness's cosignature beside the log's is allowed.
        let witness = try NoteSigner.generate(name: "witness.example")
        let cosigned = Self.goNote + String(try SignedNote.sign(Self.goText, with: witness).split(separator: "\n\n").last!)
        #expect(try SignedNote.open(cosigned, verifiedBy: verifier) == Self.goText)
        #expect(try SignedNote.open(cosigned, verifiedBy: witness.verifier) == Self.goText)
        for malformed in ["", Self.goText, Self.goText + "\n", Self.goText + "\n— PeterNeumann\n", String(Self.goNote.dropLast())] {
            #expect(throws: NoteError.self) { try SignedNote.open(malformed, verifiedBy: verifier) }
        }
    }

    @Test func keys_refuseAWrongIdNameOrLength() {
        for bad in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  // id
            "PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  // name
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  // length
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            #expect(throws: NoteError.self, "\(bad)") { try NoteVerifier(bad) }
        }
        #expect(throws: NoteError.self) { try NoteSigner("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz") }
        #expect(throws: NoteError.self) { try NoteSigner.generate(name: "a+b") }
        // A name is an origin line, whose text may hold no control character: DEL neither.
        #expect(throws: NoteError.self) { try NoteSigner.generate(name: "ex\u{7F}ample.com/log") }
        #expect(!Checkpoint.isValidOrigin("ex\u{7F}ample.com/log"))
    }

    @Test func checkpoint_isTheC2SPBody_andParsesBack() throws {
        let root = Array(repeating: UInt8(7), count: 32)
        let checkpoint = Checkpoint(origin: "example.com/log", size: 1234, rootHash: root)
        #expect(checkpoint.text == "example.com/log\n1234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n")
        #expect(try Checkpoint(text: checkpoint.text) == checkpoint)
        #expect(try Checkpoint(text: checkpoint.text + "extension line\n") == checkpoint)
        for bad in ["example.com/log\n01234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", "example.com/log\n1234\nBwcH\n",
                    "\n1234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", "example.com/log\n1234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="] {
            #expect(throws: NoteError.self, "\(bad)") { try Checkpoint(text: bad) }
        }
        let signer = try NoteSigner.generate(name: "example.com/log")
        let note = try SignedNote.sign(checkpoint.text, with: signer)
        #expect(try Checkpoint(note: note, verifiedBy: signer.verifier) == checkpoint)
        #expect(try SignedNote.sign(checkpoint.text, with: signer) == note, "Ed25519 is deterministic: one size, one note")
    }
}
