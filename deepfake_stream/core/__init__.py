"""The floor every other package stands on: settings, errors, Kafka clients and records, the
stage loop, tracing, metrics. It imports no feature package."""
