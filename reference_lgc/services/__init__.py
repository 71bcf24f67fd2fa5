"""Clients of the national services, one module per service. Each takes a `CallContext` and raises
`ServiceUnavailable` (network, timeout, HTTP 5xx, server fault) or `ServiceRefused` (a business answer
that refuses the request) so the service-call framework can show *échec* with the reason."""
