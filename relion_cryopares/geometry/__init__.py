"""geometry layer (see DESIGN.md)."""
