import Contracts
import ServiceKit
import Storage

// Scaled windows and dataset versions from closed candles. Owns the features schema.
await ServiceRunner.main(
    ServiceDefinition(name: .preprocessor, defaultHTTPPort: 8082, migrations: SchemaMigrations(schema: "features", migrations: [])) { context in
        await context.waitForShutdown()
    })
