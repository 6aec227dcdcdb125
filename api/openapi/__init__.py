"""The OpenAPI documents the app serves, kept apart from the resources: the
generic builder (paths from the app's own routes, checked against the tables),
the shared building blocks, and one table of operations and schemas per API
generation (legacy/ for /api/v1)."""
