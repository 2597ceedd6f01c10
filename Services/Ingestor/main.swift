import ArgumentParser
import Contracts
import Foundation
import ServiceKit

// Kraken candles into Postgres, then candle.closed events. Owns the ingest schema.
//   ingestor                 run as a service: poll Kraken on schedule, relay the outbox
//   ingestor backfill FILE   load a Kraken OHLCVT history file, then exit
if CommandLine.arguments.dropFirst().first == "backfill" {
    do {
        let command = try BackfillCommand.parse(Array(CommandLine.arguments.dropFirst(2)))
        try await command.run()
    } catch {
        BackfillCommand.exit(withError: error)
    }
} else {
    await ServiceRunner.main(IngestorService.definition)
}
