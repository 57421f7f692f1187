"""refine layer (see DESIGN.md)."""
