"""ctf layer (see DESIGN.md)."""
