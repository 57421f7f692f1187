"""pruning layer (see DESIGN.md)."""
