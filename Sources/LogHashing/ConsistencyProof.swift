/// RFC 9162 §2.1.4: consistency proofs, which show that the tree of `first` leaves is a prefix of
/// the tree of `second` leaves: every leaf of the older tree is still there, unchanged and in
/// place. An auditor who kept an older root needs only the proof and the newer root.
extension MerkleTree {
    /// PROOF(first, D[0 ..< second]), RFC 9162 §2.1.4.1, from stored complete-subtree nodes.
    /// Empty when `first` is 0 or equals `second` (nothing to prove).
    public static func consistencyProof(first: UInt64, second: UInt64, node: (UInt8, UInt64) throws -> Hash) rethrows -> [Hash] {
        precondition(first <= second)
        guard first > 0, first < second else { return [] }
        // SUBPROOF(m, D[start ..< end], b): `knownRoot` is b, whether MTH(D[start ..< start + m]) is
        // the first root the verifier already holds.
        func subproof(_ m: UInt64, _ start: UInt64, _ end: UInt64, knownRoot: Bool) throws -> [Hash] {
            if m == end - start { return knownRoot ? [] : [try rootHash(start, end, node: node)] }
            let k = largestPowerOfTwo(below: end - start)
            if m <= k {
                return try subproof(m, start, start + k, knownRoot: knownRoot) + [rootHash(start + k, end, node: node)]
            }
            return try subproof(m - k, start + k, end, knownRoot: false) + [rootHash(start, start + k, node: node)]
        }
        return try subproof(first, 0, second, knownRoot: true)
    }

    /// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `first` leaves with root
    /// `firstRoot` is a prefix of the tree of `second` leaves with root `secondRoot`.
    public static func verifyConsistency(first: UInt64, second: UInt64, firstRoot: Hash, secondRoot: Hash, proof: [Hash]) -> Bool {
        guard first <= second else { return false }
        if first == second { return proof.isEmpty && firstRoot == secondRoot }
        // Every tree extends the empty one.
        if first == 0 { return proof.isEmpty && firstRoot == emptyRoot }
        guard !proof.isEmpty, proof.allSatisfy({ $0.count == hashSize }) else { return false }
        var path = proof[...]
        // A first tree that is a complete subtree is its own first node of the path.
        if first & (first - 1) == 0 { path = [firstRoot] + path }
        var fn = first - 1, sn = second - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path.removeFirst(), sr = fr
        for c in path {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                while fn & 1 == 0 && fn != 0 {
                    fn >>= 1
                    sn >>= 1
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && fr == firstRoot && sr == secondRoot
    }
}
