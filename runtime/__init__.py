"""Below the router and the adapters: messaging, material storage, tracing, failpoints,
serving, breakers, logs and health. Imports only `contracts`."""
