"""relion layer (see DESIGN.md)."""
