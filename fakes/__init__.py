"""In-process fakes of the Agent protocol for client developers, and broken agents."""
from __future__ import annotations

from fakes.agent import METHODS, SERVICE, FakeAgent, full_method_name, serve, testing_server
from fakes.backend import Call, FakeBackend, FakeJob
from fakes.ext import EXT_SERVICE, FakeExtensions
from fakes.faults import Fault, FaultPlan
from fakes.habits import ClientHabitWarning, Habit, HabitRules
from fakes.progression import AfterPolls, AfterSeconds, Immediate, Manual, ManualClock, Progression, Scripted
from fakes.source import FakeFileSource

__all__ = [
    "AfterPolls", "AfterSeconds", "Call", "ClientHabitWarning", "EXT_SERVICE", "FakeAgent", "FakeBackend",
    "FakeExtensions", "FakeFileSource",
    "FakeJob", "Fault", "FaultPlan", "Habit", "HabitRules", "Immediate", "METHODS", "Manual", "ManualClock",
    "Progression", "SERVICE", "Scripted", "full_method_name", "serve", "testing_server",
]
# fakes.legal (Behaviour, behaviours, LegalAgent) is imported on its own: it brings in Hypothesis
