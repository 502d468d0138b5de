import Synchronization

/// Bytes that clients make the server hold at once, counted for all connections together and for
/// those of each client address (``ConnectionsByAddress/key(of:)``: an IPv6 client's /64), so that
/// one client, holding many connections' bytes, cannot spend the budget every other client needs:
/// request bodies spooled before their signature is checked (``SpooledBody``, on disk), and answers
/// made whole in memory until a slow reader takes them (``AnswerHolding``).
public final class ByteBudget: Sendable {
    public let limit: Int
    /// The most one client address may hold at once.
    public let limitPerAddress: Int
    private let total: CappedCount
    private let byAddress = Mutex<[[UInt8]: Int]>([:])

    /// - Parameters:
    ///   - limitPerAddress: at most `limit`; by default ``defaultShare(of:smallestShare:)``.
    ///   - smallestShare: the least a default share is: the largest single thing counted, which a
    ///     smaller share would refuse from every address, on an idle server too.
    public init(limit: Int, limitPerAddress: Int? = nil, smallestShare: Int) {
        self.limit = limit
        self.limitPerAddress = min(limitPerAddress ?? Self.defaultShare(of: limit, smallestShare: smallestShare), limit)
        total = CappedCount(limit: limit)
    }

    /// An eighth of the budget (eight clients holding as much as they may are needed to spend
    /// it), and never less than `smallestShare`; at most the budget.
    public static func defaultShare(of limit: Int, smallestShare: Int) -> Int { min(limit, max(limit / 8, smallestShare)) }

    /// Counts `amount` more held for a client at `address` (`nil`: not from an IP address).
    /// - Returns: `false`, counting nothing, when that would pass its share or the whole budget.
    func take(_ amount: Int, from address: [UInt8]? = nil) -> Bool {
        if let address {
            let granted = byAddress.withLock { held in
                let now = held[address, default: 0]
                guard now + amount <= limitPerAddress else { return false }
                held[address] = now + amount
                return true
            }
            guard granted else { return false }
        }
        if total.take(amount) { return true }
        if let address { giveBack(amount, from: address) }
        return false
    }

    /// Counts `amount` more held, whether or not it passes the budget: bytes already held (an
    /// answer's bytes queued for its connection), which must be counted to refuse what comes next.
    func add(_ amount: Int, from address: [UInt8]? = nil) {
        total.add(amount)
        if let address { byAddress.withLock { $0[address, default: 0] += amount } }
    }

    func give(_ amount: Int, from address: [UInt8]? = nil) {
        total.give(amount)
        if let address { giveBack(amount, from: address) }
    }

    /// What all clients hold now.
    var held: Int { total.current }

    private func giveBack(_ amount: Int, from address: [UInt8]) {
        byAddress.withLock { held in
            let now = held[address, default: 0] - amount
            held[address] = now > 0 ? now : nil
        }
    }
}
