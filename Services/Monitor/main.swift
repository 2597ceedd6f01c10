import ServiceKit

// Prometheus metrics, alerts and the web dashboard from metric, forecast, candle and model events.
await ServiceRunner.main(MonitorService.definition)
