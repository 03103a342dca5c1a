"""Event bus: one interface, an in-process implementation and a Redis implementation."""
