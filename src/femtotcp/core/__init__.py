"""What every layer may use: the timer heap, the counters registry and the
loop protocol. Imports nothing else from femtotcp (see docs/architecture.md)."""
