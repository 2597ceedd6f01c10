import Contracts
import Foundation
import Logging
import Messaging
import ServiceKit
import Storage

/// Loads a Kraken OHLCVT history file: resumable (progress per file is committed with each batch),
/// idempotent (upserts; a second run of a completed file reads nothing), bad rows to the rejected table,
/// one `candle.backfilled` summary event per batch that changed something, gaps recorded at the end.
struct HistoryBackfill: Sendable {
    let database: PostgresClient
    let logger: Logger
    var batchSize = 50_000

    struct Summary: Sendable, Equatable {
        var linesRead = 0
        var resumedAfterLine = 0
        var inserted = 0
        var revised = 0
        var unchanged = 0
        var rejected = 0
        var gaps: [Int64: Int] = [:]
        var missingIntervals: Int { gaps.values.reduce(0, +) }
    }

    /// Throws `BackfillError` with code `unrecognisedLayout` before anything is stored (the file is not even
    /// registered) when the file's first line is neither Kraken's header nor a row of seven numbers.
    func run(path: String, pair: String, interval: CandleInterval, restart: Bool = false, progress: ProgressReporter? = nil) async throws
        -> Summary
    {
        try Self.checkLayout(path: path)
        let reader = try LineReader(path: path)
        let fingerprint = try reader.fingerprint()
        let source = "history:" + (path as NSString).lastPathComponent
        let resumeAfter =
            restart
            ? 0
            : try await database.withConnection { connection -> Int in
                try connection.query(
                    """
                    INSERT INTO ingest.backfill_files (fingerprint, path, pair, interval_seconds)
                    VALUES (\(fingerprint), \(path), \(pair), \(Int(interval.seconds)))
                    ON CONFLICT (fingerprint) DO UPDATE SET path = EXCLUDED.path
                    RETURNING lines_done
                    """
                )[0].decode(0, as: Int.self)
            }
        var summary = Summary(resumedAfterLine: resumeAfter)
        if resumeAfter > 0 { logger.info("resuming backfill", metadata: ["path": "\(path)", "after_line": "\(resumeAfter)"]) }
        let parser = BatchParser(reader: reader, pair: pair, interval: interval, skipLines: resumeAfter, batchSize: batchSize)

        /// One batch, its rejected rows, its event and the file's progress, in one transaction.
        @Sendable func store(_ batch: BatchParser.Batch) async throws -> StoreOutcome {
            try await database.transaction { connection -> StoreOutcome in
                var outcome = try CandleStore.storeHistory(batch.candles, source: source, on: connection)
                outcome.rejected = try CandleStore.reject(batch.rejected, pair: pair, interval: interval, source: source, on: connection)
                try CandleStore.announceHistory(
                    batch.candles, pair: pair, interval: interval, outcome: outcome, source: source, on: connection)
                try connection.query("UPDATE ingest.backfill_files SET lines_done = \(batch.linesDone) WHERE fingerprint = \(fingerprint)")
                return outcome
            }
        }

        // Two stages on the two cores: the next batch is parsed and validated on a thread of its own while the
        // database stores the previous one. Batches commit in file order, so the progress row only moves forward.
        var storing: Task<StoreOutcome, Error>?
        // The open times this run stored rows in: with `summary.inserted`, whether the gap scan can be skipped.
        var stored: ClosedRange<Int64>?
        func collect() async throws {
            guard let outcome = try await storing?.value else { return }
            summary.inserted += outcome.inserted
            summary.revised += outcome.revised
            summary.unchanged += outcome.unchanged
            summary.rejected += outcome.rejected
            storing = nil
        }
        do {
            while true {
                let batch = try await onOwnThread("backfill-parser") { try parser.next() }
                try await collect()
                if batch.linesDone > resumeAfter {
                    storing = Task { try await store(batch) }
                    if let times = batch.openTimes {
                        stored = stored.map { min($0.lowerBound, times.lowerBound)...max($0.upperBound, times.upperBound) } ?? times
                    }
                }
                progress?.update(done: batch.bytesRead, total: reader.size, rows: batch.linesDone)
                if batch.atEnd {
                    summary.linesRead = batch.linesDone
                    break
                }
            }
            try await collect()
        } catch {
            // The batch being stored commits or rolls back on its own; its outcome is not counted.
            storing?.cancel()
            _ = try? await storing?.value
            throw error
        }
        progress?.finish(done: reader.size, rows: summary.linesRead)

        let inserted = summary.inserted
        let gaps = try await database.transaction { [stored] connection -> [(Int64, Int)] in
            let contiguous = try stored.map {
                try CandleStore.isExactly(pair: pair, interval: interval, insertedRows: inserted, filling: $0, on: connection)
            }
            if contiguous != true { _ = try CandleStore.recordGaps(pair: pair, interval: interval, from: 0, on: connection) }
            try connection.query(
                "UPDATE ingest.backfill_files SET completed_at = coalesce(completed_at, now()) WHERE fingerprint = \(fingerprint)")
            return try connection.query(
                """
                SELECT after_open_time, missing_intervals FROM ingest.gaps
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) ORDER BY after_open_time
                """
            ).map { (try $0.decode(0, as: Int64.self), try $0.decode(1, as: Int.self)) }
        }
        summary.gaps = Dictionary(uniqueKeysWithValues: gaps)
        return summary
    }

    /// Refuses a file whose first non-blank line does not fit `OHLCVTLine.expectedColumns`.
    static func checkLayout(path: String) throws {
        let reader = try LineReader(path: path)
        while let line = try reader.nextLine() {
            guard OHLCVTLine.fields(of: line) != nil else { continue }
            if let problem = OHLCVTLine.layoutProblem(firstLine: line) { throw BackfillError(.unrecognisedLayout, problem, path: path) }
            return
        }
    }
}

/// Reads a history file in batches of parsed, validated rows. Used by one thread at a time, one batch after the
/// other (the backfill waits for each batch before asking for the next).
final class BatchParser: @unchecked Sendable {
    struct Batch: Sendable {
        var candles: [Candle] = []
        var rejected: [RejectedRow] = []
        /// Lines read from the file's start, this batch included.
        var linesDone = 0
        var bytesRead = 0
        var atEnd = false

        /// The open times of its valid rows, from the earliest to the latest.
        var openTimes: ClosedRange<Int64>? {
            guard let first = candles.first else { return nil }
            var (earliest, latest) = (first.openTime, first.openTime)
            for candle in candles {
                earliest = min(earliest, candle.openTime)
                latest = max(latest, candle.openTime)
            }
            return earliest...latest
        }
    }

    private let reader: LineReader
    private let pair: String
    private let interval: CandleInterval
    private let skipLines: Int
    private let batchSize: Int
    private let now = Date()
    private var lineNumber = 0
    private var batchesRead = 0
    /// The first batch holds at most this many rows: the database starts storing after a short parse instead of
    /// waiting, idle, for a whole batch (a tenth of a second of a million-row backfill's 3.5).
    static let firstBatchLimit = 5_000

    init(reader: LineReader, pair: String, interval: CandleInterval, skipLines: Int, batchSize: Int) {
        self.reader = reader
        self.pair = pair
        self.interval = interval
        self.skipLines = skipLines
        self.batchSize = batchSize
    }

    /// The next `batchSize` rows (`firstBatchLimit` at most the first time) after the lines an earlier run completed
    /// (those are read past, not parsed).
    func next() throws -> Batch {
        var batch = Batch()
        let limit = batchesRead == 0 ? min(batchSize, Self.firstBatchLimit) : batchSize
        batchesRead += 1
        while batch.candles.count + batch.rejected.count < limit {
            guard let line = try reader.nextLine() else {
                batch.atEnd = true
                break
            }
            lineNumber += 1
            guard lineNumber > skipLines else { continue }
            switch OHLCVTLine.parse(line, pair: pair, interval: interval, now: now) {
            case .candle(let candle): batch.candles.append(candle)
            case .rejected(let row): batch.rejected.append(row)
            case .header, .blank: break
            }
        }
        batch.linesDone = lineNumber
        batch.bytesRead = reader.bytesRead
        return batch
    }
}

/// Reads a file line by line in large chunks (history files can hold millions of rows).
final class LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var atEnd = false
    let size: Int
    private(set) var bytesRead = 0

    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw BackfillError(.unreadable, "cannot open it", path: path)
        }
        self.handle = handle
        size = Int((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.intValue ?? 0)
    }

    deinit { try? handle.close() }

    /// Size plus a 64-bit FNV-1a hash of the first MiB: the same file gives the same fingerprint wherever it lives.
    func fingerprint() throws -> String {
        let head = try handle.read(upToCount: 1 << 20) ?? Data()
        try handle.seek(toOffset: 0)
        var hash = FNV1a64()
        hash.combine(head)
        // Unpadded hex, as earlier runs stored it: their progress rows keep matching.
        return "\(size)-\(String(hash.value, radix: 16))"
    }

    /// The longest line returned: a longer one (no history row is anywhere near) comes back cut to this many
    /// bytes, to be rejected with its reason, and the rest of it is skipped, so memory stays bounded whatever
    /// the file holds.
    static let maximumLineBytes = 64 * 1024
    private var skippingRestOfLine = false

    func nextLine() throws -> Substring? {
        while true {
            if let newline = buffer[position...].firstIndex(of: UInt8(ascii: "\n")) {
                let end = min(newline, position + Self.maximumLineBytes)
                let line = String(decoding: buffer[position..<end], as: UTF8.self)
                bytesRead += newline + 1 - position
                position = newline + 1
                if skippingRestOfLine {
                    skippingRestOfLine = false
                    continue
                }
                return Substring(line)
            }
            if buffer.count - position > Self.maximumLineBytes {
                // A line longer than the limit: return its head now, drop the rest up to its newline.
                let line = String(decoding: buffer[position..<(position + Self.maximumLineBytes)], as: UTF8.self)
                let wasSkipping = skippingRestOfLine
                skippingRestOfLine = true
                bytesRead += buffer.count - position
                position = buffer.count
                if !wasSkipping { return Substring(line) }
                continue
            }
            if atEnd {
                guard position < buffer.count else { return nil }
                let line = String(decoding: buffer[position...], as: UTF8.self)
                bytesRead += buffer.count - position
                position = buffer.count
                if skippingRestOfLine { return nil }
                return Substring(line)
            }
            buffer.removeFirst(position)
            position = 0
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}

/// Shows progress: a bar redrawn in place on a terminal, a log line per 10% otherwise.
final class ProgressReporter: @unchecked Sendable {
    // @unchecked: used by the one task that runs the backfill.
    private let label: String
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let started = ContinuousClock.now
    private var lastDraw = ContinuousClock.now - .seconds(1)
    private var lastDecile = -1
    private let logger: Logger

    init(label: String, logger: Logger) {
        self.label = label
        self.logger = logger
    }

    func update(done: Int, total: Int, rows: Int) {
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        if isTerminal {
            guard ContinuousClock.now - lastDraw >= .milliseconds(100) else { return }
            lastDraw = .now
            let width = 30
            let filled = Int(fraction * Double(width))
            let elapsed = ContinuousClock.now - started
            let rate = Double(rows) / max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(
                Data(String(format: "\r%@ [%@] %3.0f%%  %d rows  %.0f rows/s", label, bar, fraction * 100, rows, rate).utf8))
        } else {
            let decile = Int(fraction * 10)
            guard decile > lastDecile else { return }
            lastDecile = decile
            logger.info("backfill progress", metadata: ["percent": "\(decile * 10)", "rows": "\(rows)"])
        }
    }

    func finish(done: Int, rows: Int) {
        lastDraw = .now - .seconds(1)
        update(done: done, total: done, rows: rows)
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
