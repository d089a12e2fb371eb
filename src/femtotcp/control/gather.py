"""What the ctl commands report, gathered from a running stack.

Every function here runs in the stack's loop thread (the server hands them to
it with ``Runtime.call``) and returns plain JSON values: the ``result`` objects
of docs/ctl-json.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from femtotcp.control.protocol import _plain
from femtotcp.proto.tcpstate import state_name
from femtotcp.wire import ip_str, mac_str


class HostLike(Protocol):
    """What the control server needs from ``femtotcp.host.Host``."""

    stack: Any
    runtime: Any
    services: list[Any]
    pcap: Any

    def start_capture(self, path: str) -> None: ...

    def stop_capture(self) -> None: ...



def _endpoint(value: Any) -> tuple[str | None, int | None]:
    """(address text, port) from an (addr bytes, port) pair; (None, None) for none."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None, None
    addr, port = value
    return (ip_str(bytes(addr)) if addr is not None else None,
            int(port) if isinstance(port, int) else None)


def _ms(seconds: Any) -> float | None:
    """Seconds (or None) as milliseconds, three decimals."""
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return round(float(seconds) * 1000.0, 3)
    return None


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return None


def _tcp_rows(stack: Any) -> list[dict[str, Any]]:
    """TCP listeners and connections as ``sockets`` rows (empty without TCP):
    ``tcp.listeners()`` and ``tcp.connections()``, with ``conn.info()``."""
    tcp = getattr(stack, "tcp", None)
    if tcp is None:
        return []
    rows: list[dict[str, Any]] = []
    for lst in tcp.listeners():
        addr, port = _endpoint(lst.local)
        accept = len(lst.accept_queue)
        backlog = int(lst.backlog)
        rows.append({
            "proto": "tcp", "state": "LISTEN",
            "local_address": addr, "local_port": port,
            "peer_address": None, "peer_port": None,
            "recv_q": accept, "send_q": backlog,
            "syn_queue": len(lst.syn_queue), "accept_queue": accept, "backlog": backlog,
        })
    for conn in tcp.connections():
        info: Mapping[str, Any] = conn.info()
        laddr, lport = _endpoint(conn.local)
        raddr, rport = _endpoint(conn.remote)
        error = info.get("error")
        rows.append({
            "proto": "tcp", "state": state_name(info.get("state")),
            "local_address": laddr, "local_port": lport,
            "peer_address": raddr, "peer_port": rport,
            "recv_q": _int_or_none(info.get("rcv_queue")) or 0,
            "send_q": _int_or_none(info.get("snd_queue")) or 0,
            "rtt_ms": _ms(info.get("rtt")),
            "rttvar_ms": _ms(info.get("rttvar")),
            "rto_ms": _ms(info.get("rto")),
            "cwnd": _int_or_none(info.get("cwnd")),
            "ssthresh": _int_or_none(info.get("ssthresh")),
            "mss": _int_or_none(info.get("mss")),
            "snd_wnd": _int_or_none(info.get("snd_wnd")),
            "rcv_wnd": _int_or_none(info.get("rcv_wnd")),
            "out_of_order_segments": _int_or_none(info.get("ooo_blocks")) or 0,
            "out_of_order_bytes": _int_or_none(info.get("ooo_bytes")) or 0,
            "retransmits": _int_or_none(info.get("retransmits")),
            "error": str(error) if error is not None else None,
        })
    return rows


def _udp_rows(stack: Any) -> list[dict[str, Any]]:
    udp = getattr(stack, "udp", None)
    if udp is None:
        return []
    rows: list[dict[str, Any]] = []
    for ep in sorted(udp.all_endpoints(), key=lambda e: (e.local[1], e.local[0])):
        addr, port = ep.local
        remote = getattr(ep, "remote", None)
        raddr, rport = _endpoint(remote)
        row = {
            "proto": "udp", "state": "ESTABLISHED" if remote is not None else "UNCONN",
            "local_address": ip_str(addr), "local_port": port,
            "peer_address": raddr, "peer_port": rport,
            "recv_q": int(getattr(ep, "queued_bytes", 0)), "send_q": 0,
            "queued_datagrams": len(getattr(ep, "queue", ())),
        }
        groups = _socket_groups(ep)
        if groups:                      # (only a socket that joined some has the key)
            row["groups"] = groups
        rows.append(row)
    return rows


def _socket_groups(ep: Any) -> list[str]:
    """The groups the endpoint's socket joined, as ``GROUP%INDEX``."""
    ms = getattr(ep, "mcast", None)
    return [f"{ip_str(g)}%{i}" for g, i in ms.groups] if ms is not None else []


def _iface_groups(stack: Any, iface: Any) -> list[dict[str, Any]]:
    """The groups ``iface`` is a member of, with the sockets (or the stack's
    own uses) holding each, like ``ip maddr``: IPv4's (all-hosts always) and
    IPv6's."""
    out: list[dict[str, Any]] = []
    ipv4 = getattr(stack, "ipv4", None)
    if ipv4 is not None:
        out.append({"address": "224.0.0.1", "users": 1})
        for g, entry in ipv4.joined.get(iface, {}).items():
            if g not in ipv4.groups:
                include, sources = entry.state()
                out.append({"address": ip_str(g), "users": entry.users,
                            "mode": "include" if include else "exclude",
                            "sources": sorted(ip_str(s) for s in sources)})
    ipv6 = getattr(stack, "ipv6", None)
    if ipv6 is not None:
        out += [{"address": ip_str(g), "users": n} for g, n in ipv6.groups.get(iface, {}).items()]
    return out


def gather_sockets(host: HostLike) -> dict[str, Any]:
    """``sockets``: UDP endpoints and TCP listeners/connections, like ``ss -tuan``."""
    return {"sockets": _udp_rows(host.stack) + _tcp_rows(host.stack)}


def group_drops(counters: Any) -> dict[str, int]:
    """``stats``' "drops": dropped packets by reason. The stack's counters group
    them (``Counters.drops``); this one function is where ``ctl`` asks, so a
    counters registry with declared kinds can take its place alone."""
    drops_fn = getattr(counters, "drops", None)
    return {str(k): int(v) for k, v in drops_fn().items()} if callable(drops_fn) else {}


def gather_stats(host: HostLike) -> dict[str, Any]:
    """``stats``: every counter, drops by reason, and what the bounded queues hold."""
    stack = host.stack
    counters = stack.counters
    snapshot = {str(k): int(v) for k, v in sorted(counters.items())}
    drops = group_drops(counters)
    reassembly = None
    ipv4 = getattr(stack, "ipv4", None)
    reasm = getattr(ipv4, "reassembly", None) if ipv4 is not None else None
    if reasm is not None:
        r = reasm.stats()
        reassembly = {"datagrams": int(r.get("datagrams", 0)), "bytes": int(r.get("bytes", 0))}
    reassembly6 = None
    ipv6 = stack.ipv6
    if ipv6 is not None:
        r6 = ipv6.reassembly.stats()
        reassembly6 = {"datagrams": int(r6.get("datagrams", 0)),
                       "bytes": int(r6.get("bytes", 0))}
    udp = None
    if getattr(stack, "udp", None) is not None:
        eps = stack.udp.all_endpoints()
        udp = {"endpoints": len(eps),
               "queued_datagrams": sum(len(getattr(e, "queue", ())) for e in eps),
               "queued_bytes": sum(int(getattr(e, "queued_bytes", 0)) for e in eps)}
    tcp = None
    if getattr(stack, "tcp", None) is not None:
        rows = _tcp_rows(stack)
        listeners = [r for r in rows if r["state"] == "LISTEN"]
        conns = [r for r in rows if r["state"] != "LISTEN"]
        tcp = {"listeners": len(listeners), "connections": len(conns),
               "syn_queue": sum(r["syn_queue"] for r in listeners),
               "accept_queue": sum(r["accept_queue"] for r in listeners),
               "out_of_order_segments": sum(r["out_of_order_segments"] for r in conns),
               "out_of_order_bytes": sum(r["out_of_order_bytes"] for r in conns),
               "states": _count_states(conns)}
    devices = {}
    for iface in stack.interfaces:
        devices[iface.name] = {str(k): int(v)
                               for k, v in sorted(iface.device.counters.items())}
    return {"counters": snapshot, "drops": drops, "reassembly": reassembly,
            "reassembly6": reassembly6, "udp": udp,
            "tcp": tcp, "devices": devices, "modules": sorted(stack.modules),
            "queues": gather_queues(stack)}


def _fullest(pairs: Any) -> dict[str, int]:
    """``{"now", "cap"}`` of the fullest of several queues of one kind (the one
    closest to its cap), or an empty one."""
    best = (0, 1)
    for now, cap in pairs:
        if cap > 0 and now * best[1] >= best[0] * cap:
            best = (now, cap)
    return {"now": int(best[0]), "cap": int(best[1])}


def gather_queues(stack: Any) -> dict[str, dict[str, int]]:
    """Every bounded queue of the stack: how full it is now and its cap (the
    limit past which input is dropped and counted). Per-object queues (one per
    neighbour, connection, endpoint, listener) show the fullest one."""
    cfg = stack.config
    q: dict[str, dict[str, int]] = {}
    q["stack.loopback"] = {"now": stack.local_queued, "cap": cfg.local_queue_max}
    for name, table in (("arp", stack.arp), ("ndp", getattr(stack.ipv6, "ndp", None))):
        if table is None:
            continue
        caches = list(table.caches.values())
        q[f"{name}.cache"] = _fullest((len(c), cfg.arp_cache_max) for c in caches)
        entries = [n for c in caches for n in c.values()]
        q[f"{name}.pending_packets"] = _fullest((len(n.pending), cfg.arp_pending_max)
                                                for n in entries)
        q[f"{name}.pending_bytes"] = _fullest((n.pending_bytes, cfg.arp_pending_bytes)
                                              for n in entries)
    for name, ip in (("ipv4", stack.ipv4), ("ipv6", stack.ipv6)):
        reasm = getattr(ip, "reassembly", None)
        if reasm is None:
            continue
        held = reasm.stats()
        q[f"{name}.reassembly_datagrams"] = {"now": int(held["datagrams"]),
                                             "cap": cfg.reasm_max_datagrams}
        q[f"{name}.reassembly_bytes"] = {"now": int(held["bytes"]), "cap": cfg.reasm_max_bytes}
    if stack.udp is not None:
        eps = stack.udp.all_endpoints()
        q["udp.receive_datagrams"] = _fullest((len(e.queue), cfg.udp_queue_max) for e in eps)
        q["udp.receive_bytes"] = _fullest((e.queued_bytes, e.rcvbuf) for e in eps)
    tcp = stack.tcp
    if tcp is not None:
        from femtotcp.proto.tcp.config import TcpConfig
        tcfg = cfg.tcp or TcpConfig()        # the TCP module writes its config there
        listeners = list(tcp.listeners())
        conns = list(tcp.connections())
        q["tcp.syn_queue"] = _fullest((len(lst.syn_queue), tcfg.max_syn_backlog)
                                      for lst in listeners)
        q["tcp.accept_queue"] = _fullest((len(lst.accept_queue), int(lst.backlog))
                                         for lst in listeners)
        q["tcp.time_wait"] = {"now": int(getattr(tcp, "time_wait_count", 0)),
                              "cap": tcfg.max_time_wait}
        infos = [(c.info(), getattr(c, "rcvbuf", tcfg.rcvbuf), getattr(c, "sndbuf", 0))
                 for c in conns]
        q["tcp.out_of_order_segments"] = _fullest(
            (int(i.get("ooo_blocks") or 0), tcfg.ooo_max_segments) for i, _, _ in infos)
        q["tcp.out_of_order_bytes"] = _fullest(
            (int(i.get("ooo_bytes") or 0), tcfg.ooo_max_bytes or tcfg.rcvbuf)
            for i, _, _ in infos)
        q["tcp.receive_buffer"] = _fullest((int(i.get("rcv_queue") or 0), rcvbuf)
                                           for i, rcvbuf, _ in infos)
        q["tcp.send_buffer"] = _fullest((int(i.get("snd_queue") or 0), sndbuf)
                                        for i, _, sndbuf in infos)
    resolver = stack.resolver
    if resolver is not None:
        q["dns.lookups"] = {"now": len(resolver.lookups), "cap": resolver.max_lookups}
        q["dns.cache"] = {"now": len(resolver.cache), "cap": resolver.cache_max}
    return q


def _count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return dict(sorted(out.items()))


#: Lease fields that hold absolute times on the stack's clock, and their names
#: in the reply as seconds from now.
_LEASE_TIMES = {"obtained": "obtained_ago", "t1": "renew_in", "t2": "rebind_in",
                "expiry": "expires_in", "expires": "expires_in"}


def _dhcp(svc: Any, now: float) -> dict[str, Any]:
    """A DHCP client's state and lease (services/dhcp.py ``DhcpClient.describe``)."""
    describe = getattr(svc, "describe", None)
    if callable(describe):
        raw: Any = describe()
    else:
        lease = getattr(svc, "lease", None)
        raw = {"state": getattr(svc, "state", None)}
        if lease is not None:
            lease_describe = getattr(lease, "describe", None)
            raw.update(_plain(lease_describe(now) if callable(lease_describe) else lease))
    doc = _plain(raw)
    if not isinstance(doc, dict):
        return {"state": None, "lease": doc}
    doc.setdefault("state", None)
    for field, name in _LEASE_TIMES.items():
        v = doc.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and doc.get(name) is None:
            doc[name] = round(now - v if name == "obtained_ago" else v - now, 1)
    return doc


def gather_addr(host: HostLike) -> dict[str, Any]:
    """``addr``: each interface's addresses with their origin, and any DHCP lease."""
    stack = host.stack
    now = stack.now
    clients = [s for s in host.services if hasattr(s, "lease")]
    out = []
    for iface in stack.interfaces:
        addrs = [{"address": ip_str(a.addr), "prefixlen": a.prefixlen, "origin": a.origin,
                  "tentative": bool(a.tentative),
                  "broadcast": ip_str(a.broadcast) if a.prefixlen < 31 else None}
                 for a in iface.ipv4]
        mine = [c for c in clients if getattr(c, "iface", None) is iface]
        if not mine and iface is stack.interfaces[0]:
            mine = [c for c in clients if getattr(c, "iface", None) is None]
        dhcp = _dhcp(mine[0], now) if mine else None
        ipv6 = stack.ipv6
        out.append({"name": iface.name, "index": iface.index, "mac": mac_str(iface.mac),
                    "mtu": iface.mtu, "link": "raw_ip" if iface.raw_ip else "ethernet",
                    "addresses": addrs, "dhcp": dhcp, "groups": _iface_groups(stack, iface),
                    "ipv6": [_plain(a) for a in ipv6.describe_addresses(iface)]
                    if ipv6 is not None else []})
    return {"interfaces": out}


def gather_routes(host: HostLike) -> dict[str, Any]:
    """``route``: the routes of both families, and the path MTUs learned from
    Fragmentation Needed and Packet Too Big (as ``ip route get`` shows a
    route's cached ``mtu``, with its expiry and lock)."""
    stack = host.stack
    ipv6 = stack.ipv6
    routes6 = ipv6.routes.routes if ipv6 is not None else []
    now = stack.now
    pmtu = []
    learned: list[tuple[bytes, int, float, bool]] = []
    if stack.ipv4 is not None:
        learned += [(dst, mtu, expires, locked)
                    for dst, (mtu, expires, locked) in stack.ipv4.pmtu.items()]
    if ipv6 is not None:
        learned += [(dst, mtu, expires, False) for dst, (mtu, expires) in ipv6.pmtu.items()]
    for dst, mtu, expires, locked in learned:
        if expires > now:
            pmtu.append({"destination": ip_str(dst), "mtu": mtu,
                         "expires": round(expires - now, 1), "locked": locked})
    return {"routes": [_plain(r.describe()) for r in stack.routes.routes + routes6],
            "pmtu": pmtu}


def gather_dns(host: HostLike) -> dict[str, Any]:
    """``dns``: the resolver's servers in the order they are asked, with where
    each came from, and its search list (as ``resolvectl status`` shows)."""
    resolver = host.stack.resolver
    if resolver is None:
        return {"resolver": False, "servers": [], "search": []}
    return {"resolver": True,
            "servers": [{"address": ip_str(a), "source": source}
                        for a, source in resolver.describe_servers()],
            "search": resolver.current_search(), "ndots": resolver.ndots}


def gather_neigh(host: HostLike) -> dict[str, Any]:
    arp = host.stack.arp
    ipv6 = host.stack.ipv6
    entries = arp.entries() if arp is not None else []
    if ipv6 is not None:
        entries += ipv6.ndp.entries()
    return {"neighbours": [_plain(e) for e in entries]}

