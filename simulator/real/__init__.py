"""Sim to real: calibrate the model on real agents, replay one plan on both sides, compare.

The only part of the simulator that speaks gRPC or starts processes; the model (simulator.*)
imports nothing from here.
"""
