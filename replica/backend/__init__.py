"""The backend replica: a FastAPI app whose ``/ws`` route follows the incident-era flow.

- :mod:`replica.backend.app`: ``create_app(settings)``, settings validated before binding;
- :mod:`replica.backend.startup`: the startup phases that fill ``app.state``;
- :mod:`replica.backend.services`: ``ThreadService`` (Postgres), ``AgentSupervisor`` (Redis);
- :mod:`replica.backend.messages`: the JSON messages of the protocol (pure);
- :mod:`replica.backend.auth_client`: ``authenticate(websocket)`` through the auth service;
- :mod:`replica.backend.injection`: its failpoints, ``block(redis)`` and defects (light: the catalog checks with it);
- :mod:`replica.backend.handlers`: the ``/ws`` variants and the loader for user handlers;
- :mod:`replica.backend.server`: ``serve(settings)`` with uvicorn or gunicorn.
"""
