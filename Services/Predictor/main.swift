import Contracts
import ServiceKit
import Storage

// Forecast events and the forecast API; scores past forecasts. Owns the predictions schema.
await ServiceRunner.main(
    ServiceDefinition(name: .predictor, defaultHTTPPort: 8085, migrations: SchemaMigrations(schema: "predictions", migrations: [])) { context in
        await context.waitForShutdown()
    })
