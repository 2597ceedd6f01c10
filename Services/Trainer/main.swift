import Contracts
import ServiceKit
import Storage

// Trains the LSTM for jobs from the shared training.jobs work queue. Stateless: any number of replicas.
await ServiceRunner.main(
    ServiceDefinition(name: .trainer, defaultHTTPPort: 8083, migrations: nil) { context in
        await context.waitForShutdown()
    })
