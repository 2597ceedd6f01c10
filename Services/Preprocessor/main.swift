import Contracts
import Forecasting
import ServiceKit

// Scaled windows and dataset versions from closed candles. Owns the features schema.
// First, before any thread starts: the right OpenBLAS kernel for this CPU (restarts the process if needed).
BLASKernel.correctingExecutable()
await ServiceRunner.main(PreprocessorService.definition)
