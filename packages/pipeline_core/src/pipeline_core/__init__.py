"""pipeline_core."""
