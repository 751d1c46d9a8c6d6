"""The warm command process: ``replica`` commands on a running stack, without the imports.

A command's own process spends most of a short run importing what it uses (Typer,
Rich, pydantic and the catalog's models, the probe's clients): about a quarter of
a second before it runs anything. ``replica up`` therefore keeps one more process,
the *command server* (:mod:`replica.warm.server`), which has imported all that once.
A command that would use the running stack (``scenarios run``, ``reproduce``,
``validate``, ``scenarios freeze`` on the local driver) hands its command line, its
working directory, its environment and its standard streams to it
(:mod:`replica.warm.client`); the server forks, and the fork runs the command as
the client would have, writing straight to the client's terminal. The client
forwards Ctrl-C and SIGTERM to the fork and exits with the fork's exit status.

Only the user who ran ``replica up`` can reach the socket (0600 in the private
state dir; the peer's uid is checked too). A client whose Python or whose
``replica`` package is not the server's runs the command itself, and so does one
with ``REPLICA_WARM=0`` in its environment.
"""

#: True in a fork of the command server running a client's command.
in_warm_process = False
