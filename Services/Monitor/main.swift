import Contracts
import ServiceKit
import Storage

// Prometheus metrics, alerts and the web dashboard from metric, forecast and candle events.
await ServiceRunner.main(
    ServiceDefinition(name: .monitor, defaultHTTPPort: 8086, migrations: SchemaMigrations(schema: "monitor", migrations: [])) { context in
        await context.waitForShutdown()
    })
