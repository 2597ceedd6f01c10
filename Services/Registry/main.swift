import Contracts
import Forecasting
import ServiceKit

// Experiments, runs, model versions, aliases, promotion and rollback. Owns the registry schema.
// First, before any thread starts: the right OpenBLAS kernel for this CPU (restarts the process if needed).
BLASKernel.correctingExecutable()
await ServiceRunner.main(RegistryService.definition)
