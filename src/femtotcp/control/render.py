"""``femtotcp ctl``'s output for people: one renderer per command's result.

Only the text is made here; the JSON documents (``--json``) are the contract
(docs/ctl-json.md) and pass through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [headers] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    return "\n".join(lines) + "\n"


def _hostport(addr: str | None, port: int | None) -> str:
    a = "*" if addr in (None, "0.0.0.0", "::") else str(addr)
    if a != "*" and ":" in a:
        a = f"[{a}]"
    return f"{a}:{'*' if port is None else port}"


def _print_progress(command: str, p: dict[str, Any], out: TextIO) -> None:
    if command != "ping":
        return
    if "error" in p:
        out.write(f"icmp_seq={p.get('seq')}: {p['error']}\n")
    else:
        out.write(f"{p.get('bytes')} bytes from {p.get('from')}: icmp_seq={p.get('seq')} "
                  f"ttl={p.get('ttl')} time={p.get('rtt_ms')} ms"
                  f"{' (DUP!)' if p.get('duplicate') else ''}\n")
    out.flush()


def render(command: str, r: dict[str, Any]) -> str:
    """The reply ``r`` of ``command`` as text for people."""
    fn = _RENDERERS.get(command)
    return fn(r) if fn is not None else json.dumps(r, indent=2) + "\n"


def _render_stats(r: dict[str, Any]) -> str:
    parts = []
    reasm = r.get("reassembly")
    if reasm is not None:
        parts.append(f"reassembly: {reasm['datagrams']} datagrams, {reasm['bytes']} bytes held")
    reasm6 = r.get("reassembly6")
    if reasm6 is not None:
        parts.append(f"reassembly (IPv6): {reasm6['datagrams']} datagrams, "
                     f"{reasm6['bytes']} bytes held")
    udp = r.get("udp")
    if udp is not None:
        parts.append(f"udp: {udp['endpoints']} endpoints, {udp['queued_datagrams']} datagrams "
                     f"({udp['queued_bytes']} bytes) queued")
    tcp = r.get("tcp")
    if tcp is not None:
        parts.append(f"tcp: {tcp['listeners']} listening, {tcp['connections']} connections, "
                     f"syn queue {tcp['syn_queue']}, accept queue {tcp['accept_queue']}, "
                     f"out-of-order segments {tcp['out_of_order_segments']}")
    else:
        parts.append("tcp: not loaded")
    text = "\n".join(parts) + "\n\n"
    queues = r.get("queues") or {}
    if queues:
        text += "bounded queues (the fullest of each kind):\n" + table(
            ["QUEUE", "NOW", "CAP"], [[k, v["now"], v["cap"]] for k, v in queues.items()]) + "\n"
    drops = r.get("drops") or {}
    if drops:
        text += "drops by reason:\n" + table(
            ["REASON", "COUNT"], [[k, v] for k, v in drops.items()]) + "\n"
    text += table(["COUNTER", "VALUE"], [[k, v] for k, v in (r.get("counters") or {}).items()])
    for dev, counters in (r.get("devices") or {}).items():
        if counters:
            text += f"\ndevice {dev}:\n" + table(["COUNTER", "VALUE"],
                                                [[k, v] for k, v in counters.items()])
    return text


def _render_addr(r: dict[str, Any]) -> str:
    lines = []
    for i in r.get("interfaces", []):
        lines.append(f"{i['index']}: {i['name']}  {i['link']} {i['mac']}  mtu {i['mtu']}")
        for a in i.get("addresses", []):
            extra = " tentative" if a.get("tentative") else ""
            brd = f" brd {a['broadcast']}" if a.get("broadcast") else ""
            lines.append(f"    inet {a['address']}/{a['prefixlen']}{brd} {a['origin']}{extra}")
        for a in i.get("ipv6", []):
            def left(v: Any) -> str:
                return "forever" if v is None else f"{v:g}s"
            lines.append(f"    inet6 {a['address']}/{a['prefixlen']} {a['origin']} {a['state']}"
                         f"  valid_lft {left(a.get('valid_lifetime'))}"
                         f" preferred_lft {left(a.get('preferred_lifetime'))}")
        for g in i.get("groups", []):
            lines.append(f"    group {g['address']} users {g['users']}")
        dhcp = i.get("dhcp")
        if dhcp is not None and dhcp.get("address"):
            lines.append(f"    dhcp {dhcp.get('state')}: {dhcp['address']} from "
                         f"{dhcp.get('server')}, router {dhcp.get('router') or '-'}, "
                         f"dns {' '.join(dhcp.get('dns') or []) or '-'}")
            lines.append(f"        lease {dhcp.get('lease_time')} s, renew in "
                         f"{dhcp.get('renew_in')} s, rebind in {dhcp.get('rebind_in')} s, "
                         f"expires in {dhcp.get('expires_in')} s")
        elif dhcp is not None:
            lines.append(f"    dhcp {dhcp.get('state')}: no lease yet")
    return "\n".join(lines) + "\n"


def _render_route(r: dict[str, Any]) -> str:
    out = table(["DESTINATION", "GATEWAY", "INTERFACE", "ORIGIN"],
                [[x.get("destination"), x.get("gateway"), x.get("interface"), x.get("origin")]
                 for x in r.get("routes", [])])
    learned = r.get("pmtu") or []
    if learned:
        out += "\nlearned path MTUs:\n" + table(
            ["DESTINATION", "MTU", "EXPIRES", "LOCKED"],
            [[x.get("destination"), x.get("mtu"), f"{x.get('expires')}s",
              "yes" if x.get("locked") else "no"] for x in learned])
    return out


def _render_dns(r: dict[str, Any]) -> str:
    if not r.get("resolver"):
        return "no resolver (the dns module is not loaded)\n"
    servers = [f"{x.get('address')} ({x.get('source')})" for x in r.get("servers", [])]
    return (f"servers: {', '.join(servers) or '-'}\n"
            f"search: {' '.join(r.get('search') or []) or '-'}\n")


def _render_neigh(r: dict[str, Any]) -> str:
    return table(["ADDRESS", "MAC", "STATE", "AGE", "INTERFACE", "PENDING"],
                 [[n.get("address"), n.get("mac"), n.get("state"), n.get("age"),
                   n.get("interface"), n.get("pending")] for n in r.get("neighbours", [])])


def _render_sockets(r: dict[str, Any]) -> str:
    rows = []
    for s in r.get("sockets", []):
        rows.append([s["proto"], s["state"], s.get("recv_q"), s.get("send_q"),
                     _hostport(s.get("local_address"), s.get("local_port")),
                     _hostport(s.get("peer_address"), s.get("peer_port")),
                     s.get("rtt_ms"), s.get("rto_ms"), s.get("cwnd")])
    return table(["PROTO", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "RTT(ms)",
                  "RTO(ms)", "CWND"], rows)


def _render_resolve(r: dict[str, Any]) -> str:
    text = "".join(f"{r['name']}  {a}\n" for a in r.get("addresses", []))
    if r.get("cname_chain"):
        text += f"aliases: {' -> '.join(r['cname_chain'])}\n"
    return text


def _render_ping(r: dict[str, Any]) -> str:
    text = (f"--- {r['host']} ping statistics ---\n"
            f"{r['transmitted']} packets transmitted, {r['received']} received, "
            + (f"+{r['duplicates']} duplicates, " if r.get("duplicates") else "")
            + (f"+{r['errors']} errors, " if r.get("errors") else "")
            + f"{r['loss_percent']:g}% packet loss\n")
    rtt = r.get("rtt_ms")
    if rtt:
        text += (f"rtt min/avg/max/mdev = {rtt['min']:.3f}/{rtt['avg']:.3f}/"
                 f"{rtt['max']:.3f}/{rtt['mdev']:.3f} ms\n")
    return text


def _render_capture(r: dict[str, Any]) -> str:
    if r.get("capturing"):
        return f"capturing to {r['path']}\n"
    if r.get("path") is None:
        return "no capture was running\n"
    return f"capture stopped: {r['path']} ({r.get('packets', 0)} packets)\n"


def _render_flows(r: dict[str, Any]) -> str:
    """A gateway's NAT table (``femtotcp ctl flows``), then how full it is."""
    rows = [[f.get("proto"), f.get("guest"), f.get("remote"), f.get("state"),
             f.get("bytes_out"), f.get("bytes_in"), f.get("idle")]
            for f in r.get("flows", [])]
    text = table(["PROTO", "GUEST", "REMOTE", "STATE", "BYTES-OUT", "BYTES-IN", "IDLE(s)"],
                 rows) if rows else ""
    return text + f"{r.get('count', len(rows))} flows (limit {r.get('limit')})\n"


def _render_forward(r: dict[str, Any]) -> str:
    """A gateway's port forwards (``femtotcp ctl forward add|del|list``)."""
    rows = [[f.get("proto"), f.get("host"), f.get("guest")] for f in r.get("forwards", [])]
    if not rows:
        return "no port forwards\n"
    return table(["PROTO", "HOST", "GUEST"], rows)


_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "stats": _render_stats, "addr": _render_addr, "route": _render_route, "dns": _render_dns,
    "neigh": _render_neigh, "sockets": _render_sockets, "resolve": _render_resolve,
    "ping": _render_ping, "capture": _render_capture, "flows": _render_flows,
    "forward": _render_forward,
}
