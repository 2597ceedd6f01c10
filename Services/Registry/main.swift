import Contracts
import ServiceKit

// Experiments, runs, model versions, aliases, promotion and rollback. Owns the registry schema.
await ServiceRunner.main(RegistryService.definition)
