"""``replica up``'s lanes protocol: the API it serves and the driver that uses it."""
