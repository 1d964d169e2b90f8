"""Mininet testbeds that rebuild the seed's network under brtun agents."""
