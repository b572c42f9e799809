"""Wardline's domain: each sub-package is a skill that talks to the world only through the ports in skills.core."""
