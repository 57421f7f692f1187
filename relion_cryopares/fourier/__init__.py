"""fourier layer (see DESIGN.md)."""
