"""SimPy model of many agents for capacity planning."""
