"""Integrations of pipeline_core with other systems; each imports its system only when used."""
