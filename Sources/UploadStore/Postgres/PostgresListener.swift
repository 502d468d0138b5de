import Foundation
import Logging
import PostgresKit

/// A thread that `LISTEN`s on the log's channel and, when another node's commit is notified (and
/// once a second), hands the log's tail to the ``CommitNotifier``, so live feeds on every node
/// wake for every node's events. The tail is read from the log, not taken from the notification: any role that can
/// connect may `NOTIFY` the channel, and a made-up position (2^64 − 1) would otherwise stand as
/// every node's tail until restart, waking every feed at once, for ever. It reconnects by itself
/// after the server goes away; the feeds' own timeout reads the log again meanwhile, so nothing is
/// missed, only later.
final class PostgresListener: Sendable {
    private let stopped = Locked(false)
    /// Whether the thread is connected and listening now.
    private let listening = Locked(false)
    var isListening: Bool { listening.withLock { $0 } }

    /// - Parameter answerLimit: ``StoreConfiguration/databaseAnswerLimit``: a frozen server costs
    ///   a reconnection, not the thread.
    init(url: String, answerLimit: Duration?, notifier: CommitNotifier, logger: Logger) {
        let (stopped, listening) = (self.stopped, self.listening)
        NamedThread.start("uc-pg-listener") {
            var connection: PostgresConnection?
            var lastRead = ContinuousClock.now
            while !stopped.withLock({ $0 }) {
                do {
                    if connection == nil {
                        let opened = try PostgresConnection(url: url)
                        opened.answerLimit = answerLimit
                        // A frozen node's listener, never reading, would hold the server's queue
                        // of notifications at its place until the queue filled (8 GB) and every
                        // node's commit failed: the server ends it instead, as it ends a frozen
                        // leader's. This thread reads the tail every second, so it is never idle.
                        try PostgresLeadership.limitServerSideWaits(opened, idleLimit: PostgresLeadership.idleLimit)
                        try opened.execute("LISTEN \(PostgresLog.channel)")
                        connection = opened
                        listening.withLock { $0 = true }
                    }
                    let received = try connection!.notifications(waitingUpTo: .milliseconds(200))
                    // Every second too, so that a log that lost commits (a failover) lowers the
                    // tail even while no node appends (``CommitNotifier/observed(tail:commitsBefore:)``).
                    if !received.isEmpty || ContinuousClock.now - lastRead > .seconds(1) {
                        lastRead = ContinuousClock.now
                        let commits = notifier.commits
                        notifier.observed(tail: try PostgresLog.lastPosition(connection!) ?? 0, commitsBefore: commits)
                    }
                } catch {
                    if connection != nil { logger.warning("lost the connection that listens for commits; reconnecting", metadata: ["error": "\(error)"]) }
                    connection = nil
                    listening.withLock { $0 = false }
                    Thread.sleep(forTimeInterval: 0.5)
                }
            }
        }
    }

    /// Ends the thread within its next wait.
    func stop() { stopped.withLock { $0 = true } }
}
