import Contracts
import ServiceKit

// Forecast events and the forecast API; scores past forecasts. Owns the predictions schema.
await ServiceRunner.main(PredictorService.definition)
