"""A chat backend: Starlette, messages fanned out through Redis pub/sub, history in Postgres."""
