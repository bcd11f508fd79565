"""Dataset builders registered with LAVIS."""
