"""Local exchange simulators speaking real venue wire protocols (see recorder.sim.server)."""
