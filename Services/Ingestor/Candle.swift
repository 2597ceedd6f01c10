import KrakenFormat

// The candle rules and the history-file row parser live in Shared/KrakenFormat (one copy, fuzzed by
// Tests/Fuzz); these names keep the ingestor's code and tests reading as before.
typealias Candle = KrakenFormat.Candle
typealias RejectedRow = KrakenFormat.RejectedRow
typealias CandleValidator = KrakenFormat.CandleValidator
typealias OHLCVTLine = KrakenFormat.OHLCVTLine
typealias KrakenError = KrakenFormat.KrakenError
typealias KrakenOHLC = KrakenFormat.KrakenOHLC
/// Why a history file cannot be backfilled at all (unreadable, or not in Kraken's layout).
typealias BackfillError = KrakenFormat.HistoryFileError
