"""flows_alpha."""
