"""The built-in ``/ws`` handler variants, declared once.

Everything that lists variants derives from :data:`VARIANTS`: the handler loader,
settings and catalog validation (:data:`BUILTIN_HANDLERS`), the columns of the fix
table, and the modules the backend's fork server preloads. Pure data: importing
this module imports nothing of the backend.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    name: str
    #: ``package.module:function`` of the ``async def handle(websocket)``.
    target: str
    summary: str
    #: The handler's own startup wait before "Service startup incomplete" (None: it never waits).
    startup_wait_s: float | None

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


_HANDLERS = "replica.backend.handlers"

#: In the order of the fix table's columns.
VARIANTS: tuple[Variant, ...] = (
    Variant("incident", f"{_HANDLERS}.incident:handle", "the route as it was at incident time", 30.0),
    Variant("seed-fix", f"{_HANDLERS}.seed_fix:handle", "the five-whys' Phase 2: staging degraded mode, E2E-header bypass", 30.0),
    Variant("landed-fix", f"{_HANDLERS}.landed_fix:handle", "what shipped: the log line fixed, a fallback handler, a 5 s wait", 5.0),
    Variant("log-line-fix", f"{_HANDLERS}.landed_fix:log_line_fix", "the landed fix's log-line change alone", 30.0),
    Variant("fallback-handler", f"{_HANDLERS}.landed_fix:fallback_handler", "the landed fix's fallback handler alone", 30.0),
    Variant("startup-wait-5s", f"{_HANDLERS}.landed_fix:startup_wait_5s", "the landed fix's 5 s startup wait alone", 5.0),
    Variant("recommended", f"{_HANDLERS}.recommended:handle", "503 before accept while not ready, 403 before accept, 1013 after", None),
)

BUILTIN_HANDLERS: tuple[str, ...] = tuple(v.name for v in VARIANTS)
#: The modules holding the variants, for the fork server to import once.
PRELOAD_MODULES: tuple[str, ...] = tuple(dict.fromkeys(v.module for v in VARIANTS))


def variant(name: str) -> Variant | None:
    """The built-in variant called ``name``, or None (a user's ``module:function``)."""
    return next((v for v in VARIANTS if v.name == name), None)
