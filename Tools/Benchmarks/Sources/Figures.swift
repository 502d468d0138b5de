import Foundation

/// One measured figure and the reference it is stated against, both from the same run.
struct Figure {
    let name: String
    let value: Double
    let reference: Double
    let unit: String
    /// What the reference is, for the table.
    let referenceName: String
    /// The issue's target for the ratio (or, for `open`, for the value), if it has one.
    let target: Target?

    enum Target {
        case ratioAtLeast(Double)
        case valueAtLeast(Double)
        case valueAtMost(Double)

        var text: String {
            switch self {
            case .ratioAtLeast(let r): "ratio >= \(r)"
            case .valueAtLeast(let v): "value >= \(Report.format(v))"
            case .valueAtMost(let v): "value <= \(Report.format(v))"
            }
        }
    }

    var ratio: Double { reference > 0 ? value / reference : 0 }

    var met: Bool? {
        switch target {
        case nil: nil
        case .ratioAtLeast(let r)?: ratio >= r
        case .valueAtLeast(let v)?: value >= v
        case .valueAtMost(let v)?: value <= v
        }
    }

    /// The machine-readable line: `figure=<name> value=<v> reference=<r> ratio=<x>`.
    var line: String {
        "figure=\(name) value=\(Report.format(value)) reference=\(Report.format(reference)) ratio=\(String(format: "%.3f", ratio))"
    }
}

/// Collects figures and prints them: each machine-readable line as it is measured (so a run
/// cut short still leaves what it measured), then the table at the end.
final class Report {
    private(set) var figures: [Figure] = []
    private(set) var notes: [String] = []

    func add(_ figure: Figure) {
        figures.append(figure)
        FileHandle.standardOutput.write(Data((figure.line + "\n").utf8))
    }

    func note(_ text: String) {
        notes.append(text)
        FileHandle.standardError.write(Data("# \(text)\n".utf8))
    }

    func printTable() {
        let header = ["figure", "value", "unit", "reference", "ratio", "target", "met"]
        let rows = figures.map { f in
            [f.name, Report.format(f.value), f.unit, "\(Report.format(f.reference)) (\(f.referenceName))",
             String(format: "%.3f", f.ratio), f.target?.text ?? "-", f.met.map { $0 ? "yes" : "NO" } ?? "-"]
        }
        let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        func render(_ row: [String]) -> String {
            "| " + row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: " | ") + " |"
        }
        print(render(header))
        print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|")
        for row in rows { print(render(row)) }
        for note in notes { print("- \(note)") }
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.3f", v)
    }
}

/// Latencies in seconds; percentiles by nearest rank.
struct Latencies {
    private(set) var samples: [Double] = []

    mutating func append(_ s: Double) { samples.append(s) }
    mutating func append(contentsOf other: Latencies) { samples.append(contentsOf: other.samples) }

    func percentile(_ p: Double) -> Double {
        guard !samples.isEmpty else { return 0 }
        let sorted = samples.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
