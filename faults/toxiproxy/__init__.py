"""A Toxiproxy-compatible fault proxy (server and typed client).

Speaks Toxiproxy v2.12.0's HTTP API with the same bytes, so existing clients
work unchanged, and fixes the original's known defects (see the README section
in ``reference/toxiproxy.md``).
"""

#: The environment variable holding the API's bearer token (unset or empty: an open API, as Toxiproxy's).
TOKEN_ENV = "TOXIPROXY_TOKEN"
