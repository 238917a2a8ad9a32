"""order-bridge service: HTTP app, config, buffer, Sendcloud client, logging, metrics and CLI."""
