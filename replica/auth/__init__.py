"""The auth service: HS256 access tokens (:mod:`replica.auth.tokens`) validated over HTTP (:mod:`replica.auth.app`)."""
