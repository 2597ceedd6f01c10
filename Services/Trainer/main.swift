import Contracts
import Forecasting
import ServiceKit

// Trains the LSTM for jobs from the shared training.jobs work queue. Stateless: any number of replicas.
// First, before any thread starts: the right OpenBLAS kernel for this CPU (restarts the process if needed).
BLASKernel.correctingExecutable()
await ServiceRunner.main(TrainerService.definition)
