"""relion-cryopares: supervised deep-learning pose assignment (cryoPARES) as RELION External jobs."""

__version__ = "0.1.0"
