"""The server's routes, one ``APIRouter`` per room; each takes the server's state through the
``ServerStateDep`` dependency, so a router works in any app whose ``state.server`` is a
``ServerState`` (``create_app`` assembles them)."""
