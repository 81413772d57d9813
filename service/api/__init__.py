"""HTTP only: routes, authentication, error mapping, middleware. No business logic."""
