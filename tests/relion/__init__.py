"""Tests of the External-job contract (relion_cryopares.relion)."""
