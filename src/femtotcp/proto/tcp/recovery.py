"""Loss recovery strategies (fast retransmit / fast recovery), chosen once per
connection when the handshake settles SACK: ``NEWRENO`` (RFC 5681 3.2, RFC
6582) without it, ``SACK`` (RFC 6675, pipe-based, with the ``Scoreboard``)
with it. The strategies hold no state: the sender's ``in_recovery``,
``recover``, ``high_rxt`` and ``dupacks`` are the episode's state, and each
hook is one decision the RFCs make differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from femtotcp.proto.tcp.sender import Sender


class Recovery:
    """The hooks the sender calls; the base class is never used itself."""

    name = "none"

    def is_dupack(self, newly_sacked: int, window: int, snd_wnd: int) -> bool:
        """RFC 5681 2 (same window, nothing else) / RFC 6675 2 (new SACK info)."""
        raise NotImplementedError

    def lost(self, snd: Sender, una: int, mss: int, dupthresh: int) -> bool:
        """Enter recovery before DupThresh duplicate ACKs?"""
        raise NotImplementedError

    def enter(self, snd: Sender, una: int, ssthresh: int) -> None:
        """Fast retransmit: resend the first hole and set cwnd."""
        raise NotImplementedError

    def on_dupack(self, snd: Sender) -> None:
        """A duplicate ACK during recovery."""

    def on_full_ack(self, snd: Sender, ack: int) -> None:
        """The ACK covers ``recover``: recovery ends here; set cwnd."""
        raise NotImplementedError

    def on_partial_ack(self, snd: Sender, ack: int, acked: int) -> None:
        """An ACK of new data below ``recover``."""

    def output(self, snd: Sender) -> bool:
        """Send during recovery; False: the ordinary output loop does it."""
        return False


class NewRenoRecovery(Recovery):
    name = "newreno"

    def is_dupack(self, newly_sacked: int, window: int, snd_wnd: int) -> bool:
        return window == snd_wnd

    def lost(self, snd: Sender, una: int, mss: int, dupthresh: int) -> bool:
        return False

    def enter(self, snd: Sender, una: int, ssthresh: int) -> None:
        """RFC 6582 3.2 steps 1-2."""
        mss = snd.opt.mss
        snd.retransmit(una, una + mss)
        snd.cc.cwnd = ssthresh + snd.config.dupthresh * mss

    def on_dupack(self, snd: Sender) -> None:
        snd.cc.cwnd += snd.opt.mss      # RFC 6582 3.2 step 4: inflate

    def on_full_ack(self, snd: Sender, ack: int) -> None:
        """RFC 6582 3.2 step 3."""
        cc = snd.cc
        mss = snd.opt.mss
        flight = snd.snd_max - ack
        cc.cwnd = min(cc.ssthresh, max(flight, mss) + mss)

    def on_partial_ack(self, snd: Sender, ack: int, acked: int) -> None:
        """RFC 6582 3.2 step 5: resend the next hole, deflate."""
        cc = snd.cc
        mss = snd.opt.mss
        snd.retransmit(ack, ack + mss)
        cwnd = cc.cwnd - acked
        if acked >= mss:
            cwnd += mss
        cc.cwnd = cwnd if cwnd > mss else mss


class SackRecovery(Recovery):
    name = "sack"

    def is_dupack(self, newly_sacked: int, window: int, snd_wnd: int) -> bool:
        return newly_sacked > 0

    def lost(self, snd: Sender, una: int, mss: int, dupthresh: int) -> bool:
        return snd.sb.first_lost(una, mss, dupthresh)     # RFC 6675 5: IsLost

    def enter(self, snd: Sender, una: int, ssthresh: int) -> None:
        """RFC 6675 5 step 4."""
        mss = snd.opt.mss
        snd.cc.cwnd = ssthresh
        snd.high_rxt = una
        sb = snd.sb
        first = sb.starts[0] if sb.starts else una + mss
        sent = snd.retransmit(una, min(first, una + mss))
        snd.high_rxt = una + sent

    def on_full_ack(self, snd: Sender, ack: int) -> None:
        """RFC 6675 5 step 1 of the next ACK: cwnd = ssthresh."""
        snd.cc.cwnd = snd.cc.ssthresh

    def output(self, snd: Sender) -> bool:
        snd.sack_output()
        return True


NEWRENO = NewRenoRecovery()
SACK = SackRecovery()
