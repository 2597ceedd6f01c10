import Contracts
import ServiceKit

// Trains the LSTM for jobs from the shared training.jobs work queue. Stateless: any number of replicas.
await ServiceRunner.main(TrainerService.definition)
