"""staging-replica: a local staging replica with fault injection."""

#: The file that describes a project's own backend (read from the current directory by default).
PROJECT_FILE = "replica.toml"
