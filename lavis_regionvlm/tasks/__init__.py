"""Tasks registered with LAVIS."""
