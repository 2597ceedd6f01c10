import ArgumentParser
import Contracts
import Foundation
import ServiceKit

// Kraken candles into Postgres, then candle.closed events. Owns the ingest schema.
//   ingestor                 run as a service: poll Kraken on schedule, relay the outbox
//   ingestor backfill FILE   load a Kraken OHLCVT history file, then exit
//   ingestor pairs add PAIR  load a pair's history and have the running service poll it (also: list, remove)
if CommandLine.arguments.dropFirst().first == "pairs" {
    // Each subcommand by its own type and as a constant, so that its async `run()` is the one called (on a
    // variable the protocol's mutating synchronous default would be).
    do {
        switch try PairsCommand.parseAsRoot(Array(CommandLine.arguments.dropFirst(2))) {
        case let add as PairsCommand.Add: try await add.run()
        case let list as PairsCommand.List: try await list.run()
        case let remove as PairsCommand.Remove: try await remove.run()
        case var other: try other.run()
        }
    } catch {
        PairsCommand.exit(withError: error)
    }
} else if CommandLine.arguments.dropFirst().first == "backfill" {
    do {
        let command = try BackfillCommand.parse(Array(CommandLine.arguments.dropFirst(2)))
        try await command.run()
    } catch {
        BackfillCommand.exit(withError: error)
    }
} else {
    await ServiceRunner.main(IngestorService.definition)
}
