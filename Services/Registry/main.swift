import Contracts
import ServiceKit
import Storage

// Experiments, runs, model versions, aliases, promotion and rollback. Owns the registry schema.
await ServiceRunner.main(
    ServiceDefinition(name: .registry, defaultHTTPPort: 8084, migrations: SchemaMigrations(schema: "registry", migrations: [])) { context in
        await context.waitForShutdown()
    })
