import Contracts
import ServiceKit

// Scaled windows and dataset versions from closed candles. Owns the features schema.
await ServiceRunner.main(PreprocessorService.definition)
