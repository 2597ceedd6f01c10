import Contracts
import ServiceKit
import Storage

// Kraken candles into Postgres, then candle.closed events. Owns the ingest schema.
await ServiceRunner.main(
    ServiceDefinition(name: .ingestor, defaultHTTPPort: 8081, migrations: SchemaMigrations(schema: "ingest", migrations: [])) { context in
        await context.waitForShutdown()
    })
