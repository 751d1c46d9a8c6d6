"""Fault injection: failpoints for any program, and (in :mod:`faults.toxiproxy`) a fault proxy.

::

    from faults import failpoint

    if await failpoint("startup.cache"):   # True when armed with ``skip``
        ...
    failpoint.sync("ws.publish")

- :mod:`faults.failpoints`: ``failpoint``, armed from ``REPLICA_FAILPOINTS`` or by the program;
- :mod:`faults.spec`: the spec language (``point=action; ...``), parsed strictly;
- :mod:`faults.actions`: the actions, each performing itself, and ``register_action``.
"""

from faults.actions import Action, FailpointError, register_action
from faults.failpoints import Failpoints, failpoint
from faults.spec import FailpointSpec, parse_spec

__all__ = ["Action", "FailpointError", "FailpointSpec", "Failpoints", "failpoint", "parse_spec", "register_action"]
