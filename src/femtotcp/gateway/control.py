"""``femtotcp ctl`` for a gateway: the usual commands (stats with the ``nat.*``
counters, addr, route, neigh, sockets, capture ...) plus ``flows`` (the NAT
table) and ``forward add|del|list`` (port forwards at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from femtotcp.control.protocol import ControlError

if TYPE_CHECKING:
    from femtotcp.control.server import ControlServer
    from femtotcp.gateway.gateway import Gateway


def serve(gw: Gateway, path: str) -> ControlServer:
    """Start a control server for ``gw`` on ``path`` with the gateway's commands."""
    from femtotcp.control.server import ControlServer
    server = ControlServer(gw, path)

    def flows(args: dict[str, Any], emit: Any) -> dict[str, Any]:
        if args:
            raise ControlError("bad_request", "flows takes no arguments")
        rows: list[dict[str, Any]] = server.call(gw.flow_rows)
        return {"flows": rows, "count": len(rows), "limit": gw.nat.limits.max_flows}

    def forward(args: dict[str, Any], emit: Any) -> dict[str, Any]:
        action = args.get("action")
        proto = args.get("proto", "tcp")
        spec = args.get("spec", "")
        if action not in ("add", "del", "list") or proto not in ("tcp", "udp") \
                or not isinstance(spec, str) or len(spec) > 100:
            raise ControlError("bad_request",
                               "forward: action add|del|list, proto tcp|udp, spec "
                               "[ADDR:]HOSTPORT:GUESTPORT")
        try:
            if action == "add":
                server.call(gw.add_forward, proto, spec)
            elif action == "del":
                server.call(gw.remove_forward, proto, spec)
        except (ValueError, OSError, KeyError) as exc:
            raise ControlError("bad_request", str(exc)[:200]) from None
        rows: list[dict[str, Any]] = server.call(gw.forward_rows)
        return {"forwards": rows}

    server.handlers["flows"] = flows
    server.handlers["forward"] = forward
    return server.start()
