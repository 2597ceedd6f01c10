import Contracts
import Forecasting
import ServiceKit

// Forecast events and the forecast API; scores past forecasts. Owns the predictions schema.
// First, before any thread starts: the right OpenBLAS kernel for this CPU (restarts the process if needed).
BLASKernel.correctingExecutable()
await ServiceRunner.main(PredictorService.definition)
