"""TCP state names as RFC 9293 3.3.2 writes them, for people and the edges.

``femtotcp ctl sockets`` shows them and the socket API tests them; both go
through ``state_name`` so that the core may keep its states as name strings
("SYN_RECEIVED") or as an enum without either edge noticing. (Beside the
``tcp`` package, not in it: naming a state must not load TCP.)
"""

from __future__ import annotations

#: Names already given (a handful of states; a connecting socket asks on
#: every event, and an enum member's ``name`` is a Python-level property).
_NAMES: dict[object, str] = {}


def state_name(state: object) -> str:
    """'SYN-RECEIVED', 'TIME-WAIT', 'ESTABLISHED' for a state given as a name
    string or as an enum member (by its name); 'UNKNOWN' for None."""
    name = _NAMES.get(state)
    if name is not None:
        return name
    if state is None:
        return "UNKNOWN"
    name = str(getattr(state, "name", state)).upper().replace("_", "-")
    if len(_NAMES) < 64:
        _NAMES[state] = name
    return name
