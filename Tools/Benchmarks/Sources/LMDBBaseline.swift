import Foundation

/// The floor: `lmdb-baseline` (Tools/Benchmarks/reference/lmdb-baseline.c), raw LMDB appends and a
/// cursor scan, run in the same run as the figure it is compared with.
struct LMDBBaseline {
    struct Result {
        let appendPerSecond: Double
        let scanPerSecond: Double
        /// Bytes written to the disk per record.
        let diskBytesPerRecord: Double
    }

    let executable: String
    let workDirectory: String

    /// Runs it in a fresh directory with N records of `recordBytes`, `batch` per transaction.
    func run(records: Int, recordBytes: Int, batch: Int, sync: Bool = true) throws -> Result {
        let dir = workDirectory + "/baseline-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var arguments = ["-n", "\(records)", "-s", "\(recordBytes)", "-b", "\(batch)"]
        if !sync { arguments.append("--nosync") }
        let blocksBefore = DiskWrites.childBlocks()
        let output = try Processes.run(executable, arguments + [dir])
        let diskBytes = Double(DiskWrites.childBlocks() - blocksBefore) * 512 / Double(records)
        guard let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let append = (json["append_per_s"] as? NSNumber)?.doubleValue,
              let scan = (json["scan_per_s"] as? NSNumber)?.doubleValue else {
            throw BenchError("lmdb-baseline printed \(output)")
        }
        return Result(appendPerSecond: append, scanPerSecond: scan, diskBytesPerRecord: diskBytes)
    }
}
