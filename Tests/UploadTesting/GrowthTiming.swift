/// Timing how work grows with its size, for tests that hold a path linear (a quadratic one made a
/// caller wait minutes): relative to the same run, never an absolute bound.
public enum GrowthTiming {
    /// The fastest of `rounds` timings of `small` and of `large`, taken in turn, so that a burst of
    /// other tests' work on the shared cores meets both sizes rather than one.
    public static func fastest(
        rounds: Int = 5, small: () throws -> Void, large: () throws -> Void
    ) rethrows -> (small: Duration, large: Duration) {
        let clock = ContinuousClock()
        var (fewest, most) = (Duration.seconds(3600), Duration.seconds(3600))
        for _ in 0..<rounds {
            fewest = min(fewest, try clock.measure(small))
            most = min(most, try clock.measure(large))
        }
        return (fewest, most)
    }
}
